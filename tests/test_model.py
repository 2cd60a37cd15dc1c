import pytest
import torch

from deband.config import ModelConfig
from deband.model.unet import UNet, count_parameters
from helpers.models import IDENTITY


@pytest.mark.parametrize("h,w", [(1, 1), (7, 3), (33, 65), (64, 64)])
def test_any_size(tiny_model, h, w):
    x = torch.rand(2, 3, h, w)
    out = tiny_model(x, torch.rand(2))
    assert out.shape == x.shape and out.dtype == torch.float32


def test_untrained_model_is_identity():
    x = torch.rand(1, 3, 20, 30)
    assert torch.equal(UNet(IDENTITY)(x, torch.ones(1)), x)


def test_time_changes_output(tiny_model):
    x = torch.rand(1, 3, 32, 32)
    assert not torch.allclose(tiny_model(x, torch.zeros(1)), tiny_model(x, torch.ones(1)))


def test_scalar_t_broadcasts(tiny_model):
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(tiny_model(x, 0.5), tiny_model(x, torch.full((2,), 0.5)))


def test_default_size_fits_the_budget():
    n = count_parameters(UNet(ModelConfig()))
    assert 500_000 < n < 2_500_000  # <= 10 MB as float32


def test_receptive_field_spans_hundreds_of_pixels(tiny_model):
    cfg = ModelConfig(channels=(8, 8, 8, 8, 8), refine=0, time_dim=16)
    torch.manual_seed(0)
    from helpers.models import randomised

    model = randomised(UNet(cfg))
    x = torch.rand(1, 3, 512, 512, requires_grad=True)
    model(x, torch.ones(1))[0, :, 256, 256].sum().backward()
    cols = (x.grad[0].abs().sum(0).sum(0) > 0).nonzero()
    assert cols.max() - cols.min() > 300


def test_grown_smooth_scales_start_close_to_the_old_model(tiny_model):
    from dataclasses import replace

    from deband.model.unet import grow_smooth_scales

    wider = replace(tiny_model.config, smooth_scales=tiny_model.config.smooth_scales + 2)
    grown = UNet(wider)
    grown.load_state_dict(grow_smooth_scales(tiny_model.state_dict(), tiny_model.config, wider))
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        before, after = tiny_model(x, 1.0), grown(x, 1.0)
        fresh = UNet(wider)(x, 1.0)
    assert grown.blend.out_channels == 3 * (wider.smooth_scales + 1)
    assert (after - before).abs().max() < 0.1 * (fresh - before).abs().max()
    with pytest.raises(ValueError):
        grow_smooth_scales(tiny_model.state_dict(), tiny_model.config, replace(wider, refine=2))
    with pytest.raises(ValueError):
        grow_smooth_scales(grown.state_dict(), wider, tiny_model.config)


def reference_forward(model: UNet, x_t: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """UNet.forward written plainly: every full-resolution step materialised, the blend by
    `blend_reference`. The optimised forward must match it up to rounding."""
    import torch.nn.functional as F

    from deband.model.blend import blend_reference
    from deband.model.unet import time_features

    cfg = model.config
    b, c, h, w = x_t.shape
    t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(b)
    temb = model.time_mlp(time_features(t, cfg.time_dim))
    ph, pw = (-h) % cfg.multiple, (-w) % cfg.multiple
    x = F.pad(x_t, (0, pw, 0, ph), mode="replicate")
    r, gain = cfg.unshuffle, cfg.detail_gain
    u = F.pixel_unshuffle(x, r)
    blocks = u.unflatten(1, (c, r * r))
    mean = blocks.mean(2)
    within = (blocks - mean[:, :, None]).flatten(1, 2) * gain
    around = (mean - F.avg_pool2d(F.pad(mean, (1, 1, 1, 1), mode="replicate"), 3, stride=1)) * gain
    feat = model.stem(torch.cat([u * 2 - 1, within, around], dim=1))
    skips = []
    for level, blocks in enumerate(model.enc):
        feat = model.down[level - 1](feat) if level > 0 else feat
        for block in blocks:
            feat = block(feat, temb)
        skips.append(feat)
    for level in reversed(range(len(model.dec))):
        feat = F.interpolate(model.up[level](feat), scale_factor=2.0, mode="nearest") + skips[level]
        for block in model.dec[level]:
            feat = block(feat, temb)
    feat = F.silu(feat)
    smooth = blend_reference(x, model.blend(feat), cfg.smooth_scales) if model.blend is not None else x
    residual = F.pixel_shuffle(model.head(feat), r)
    if cfg.refine:
        residual = residual + model.refine(torch.cat([x * 2 - 1, (smooth - x) * gain + residual], dim=1))
    return (smooth + residual / gain)[:, :, :h, :w]


BOUND = 1e-5  # max abs difference, on [0, 1], allowed between the fast paths and the references


@pytest.mark.parametrize("s", [2, 4, 8, 128])
@pytest.mark.parametrize("h,w", [(1, 1), (1, 5), (3, 1), (7, 5)])
def test_separable_upsample_is_bilinear_upsample(s, h, w):
    import torch.nn.functional as F

    from deband.model.blend import upsample_separable

    x = torch.randn(2, 3, h, w) * 10
    expected = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
    got = upsample_separable(x, s)
    assert got.shape == expected.shape and got.is_contiguous()
    assert (got - expected).abs().max() < 1e-5 * 10


@pytest.mark.parametrize("scales,h,w", [(3, 8, 8), (3, 24, 40), (5, 32, 96), (7, 128, 384)])
@pytest.mark.parametrize("spread", [0.1, 5.0, 30.0, 1e4])
def test_streamed_blend_equals_the_reference(scales, h, w, spread):
    from deband.model.blend import blend, blend_reference

    g = torch.Generator().manual_seed(scales * 1000 + h)
    x = torch.rand(2, 3, h, w, generator=g)
    logits = torch.randn(2, 3 * (scales + 1), h // 4, w // 4, generator=g) * spread  # huge ones: softmax stability
    with torch.no_grad():
        got, expected = blend(x, logits, scales), blend_reference(x, logits, scales)
    assert torch.isfinite(got).all()
    assert (got - expected).abs().max() < BOUND


def test_streamed_blend_is_differentiable_while_training():
    from deband.model.blend import blend, blend_reference

    x, logits = torch.rand(1, 3, 16, 16), torch.randn(1, 12, 4, 4, requires_grad=True)
    blend(x, logits, 3).sum().backward()
    assert logits.grad is not None and torch.equal(blend(x, logits, 3), blend_reference(x, logits, 3))


@pytest.mark.parametrize("h,w", [(1, 1), (7, 3), (33, 65), (97, 131)])
def test_forward_equals_the_reference_forward(tiny_model, h, w):
    x = torch.rand(2, 3, h, w)
    for model in (tiny_model, tiny_model.to(memory_format=torch.channels_last)):
        with torch.no_grad():
            assert (model(x, 0.7) - reference_forward(model, x, 0.7)).abs().max() < BOUND


@pytest.mark.slow
@pytest.mark.parametrize("h,w", [(97, 131), (200, 301)])
def test_shipped_model_forward_equals_the_reference_forward(h, w):
    from deband.model.checkpoint import load_model
    from deband.synthesis.sources import procedural_scene

    model = load_model(None).eval().to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(h)
    scene = procedural_scene(h, w, g).clamp(0, 1)
    x = torch.stack([(scene * 63).round() / 63, torch.rand(3, h, w, generator=g)])  # banded scene, noise
    with torch.inference_mode():
        for t in (1.0, 0.5):
            assert (model(x, t) - reference_forward(model, x, t)).abs().max() < BOUND


def test_chroma_stage_starts_as_the_model_it_grew_from(tiny_model):
    from dataclasses import replace

    from deband.model.unet import add_chroma_stage

    cfg = replace(tiny_model.config, chroma_scales=3)
    grown = UNet(cfg)
    grown.load_state_dict(add_chroma_stage(tiny_model.state_dict(), tiny_model.config, cfg))
    x = torch.rand(1, 3, 70, 90)
    with torch.no_grad():
        assert torch.equal(grown(x, 1.0), tiny_model(x, 1.0))
    with pytest.raises(ValueError):
        add_chroma_stage(tiny_model.state_dict(), tiny_model.config, replace(cfg, refine=0))


def test_chroma_stage_changes_cb_cr_only_and_learns(tiny_model):
    from dataclasses import replace

    from deband.io.pixels import rgb_to_ycbcr
    from deband.model.unet import add_chroma_stage

    cfg = replace(tiny_model.config, chroma_scales=3)
    grown = UNet(cfg)
    grown.load_state_dict(add_chroma_stage(tiny_model.state_dict(), tiny_model.config, cfg))
    x = torch.rand(1, 3, 64, 64)
    target = x.mean(dim=(2, 3), keepdim=True).expand_as(x)  # flat colour: the chroma stage can help
    (grown(x, torch.ones(1)) - target).square().mean().backward()
    gate_grad = grown.chroma.weight.grad[2 * (cfg.chroma_scales + 1) :]
    assert gate_grad.abs().sum() > 0  # the zero gate gets a gradient from the first step
    with torch.no_grad():
        grown.chroma.bias[2 * (cfg.chroma_scales + 1) :] = 1.0  # gate open: Cb/Cr blended
        before, after = rgb_to_ycbcr(tiny_model(x, 1.0)), rgb_to_ycbcr(grown(x, 1.0))
    assert torch.allclose(before[:, 0], after[:, 0], atol=1e-5)  # Y' untouched
    assert (before[:, 1:] - after[:, 1:]).abs().mean() > 1e-3  # Cb/Cr smoothed

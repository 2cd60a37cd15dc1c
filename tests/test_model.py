import pytest
import torch

from conftest import IDENTITY
from deband.config import ModelConfig
from deband.model import UNet, count_parameters


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
    from conftest import randomised

    model = randomised(UNet(cfg))
    x = torch.rand(1, 3, 512, 512, requires_grad=True)
    model(x, torch.ones(1))[0, :, 256, 256].sum().backward()
    cols = (x.grad[0].abs().sum(0).sum(0) > 0).nonzero()
    assert cols.max() - cols.min() > 300


def test_grown_smooth_scales_start_close_to_the_old_model(tiny_model):
    from dataclasses import replace

    from deband.model import grow_smooth_scales

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

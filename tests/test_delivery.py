import numpy as np
import pytest
import torch

from deband.io.chroma import subsample_420, upsample
from deband.io.pixels import rgb_to_ycbcr, ycbcr_to_rgb
from deband.io.planes import codes_to_frame
from deband.synthesis import delivery, encoders
from deband.synthesis.degrade import random_degrade
from deband.synthesis.sources import procedural_scene

SIZES = [(64, 96), (65, 97)]  # (h, w), one odd


def scene(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return procedural_scene(w, h, torch.Generator().manual_seed(seed))


def grey_ramp(n: int = 4096) -> torch.Tensor:
    """A smooth grey ramp over [0, 1], shape (3, 2, n): far more levels than 8 bits."""
    return torch.linspace(0, 1, n).expand(3, 2, n).contiguous()


def needs(codec: str):
    return pytest.mark.skipif(not encoders.available(codec), reason=f"this PyAV build has no {codec} encoder/decoder")


RANDOM = [  # (wrapper, how many different pictures 8 seeds give at least)
    (delivery.random_ycbcr420, 2),  # only the matrix is drawn
    (delivery.random_requantise, 5),
    (delivery.random_ten_to_eight, 3),
    (delivery.random_dark_lift, 6),
    (delivery.random_codec, 6),
    (delivery.random_delivery, 5),
    (delivery.random_colour_banding, 6),
    (lambda x, g: delivery.random_banding(x, g, delivery_probability=0.5), 5),
]


def distinct(pictures: list[torch.Tensor]) -> int:
    return len({p.numpy().tobytes() for p in pictures})


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("wrapper, variety", RANDOM)
def test_random_wrappers_are_deterministic_and_keep_the_picture_format(size, wrapper, variety):
    x = scene(*size)
    outs = [wrapper(x, torch.Generator().manual_seed(s)) for s in range(8)]
    assert all(torch.equal(wrapper(x, torch.Generator().manual_seed(s)), outs[s]) for s in (0, 5))
    assert distinct(outs) >= variety  # other seeds mostly give other pictures
    for y in outs:
        assert y.shape == x.shape and y.dtype == torch.float32
        assert 0 <= y.min() and y.max() <= 1
        assert 0 < (y - x).abs().mean() < 0.1


def test_random_banding_without_delivery_is_random_degrade():
    x = scene(48, 64)
    for seed in range(6):
        a = delivery.random_banding(x, torch.Generator().manual_seed(seed), 0.3)
        assert torch.equal(a, random_degrade(x, torch.Generator().manual_seed(seed), 0.3))


@pytest.mark.parametrize("size", SIZES)
def test_ycbcr420_averages_a_one_pixel_chroma_checker_away(size):
    h, w = size
    checker = ((torch.arange(h)[:, None] + torch.arange(w)[None]) % 2 * 2 - 1).float() * 0.1  # (h, w), +-0.1
    ycc = torch.stack([torch.full((h, w), 0.5), checker, -checker])
    y = rgb_to_ycbcr(delivery.ycbcr420(ycbcr_to_rgb(ycc)))
    assert y.shape == (3, h, w)
    whole = (slice(1, None), slice(0, h - 2 * (h % 2)), slice(0, w - 2 * (w % 2)))  # away from half blocks
    assert y[whole].abs().max() < 1e-4
    assert (y[0] - 0.5).abs().max() < 1 / 219  # luma untouched but for rounding


def test_ycbcr420_keeps_chroma_that_changes_slowly():
    x = scene(64, 96)
    smooth = torch.nn.functional.avg_pool2d(x[None], 9, stride=1, padding=4, count_include_pad=False)[0]
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert (delivery.ycbcr420(smooth) - smooth)[inner].abs().max() < 0.02


def test_ycbcr420_leaves_grey_at_220_levels():
    y = delivery.ycbcr420(grey_ramp())
    assert torch.allclose(y[0], y[1], atol=1e-6) and torch.allclose(y[0], y[2], atol=1e-6)  # Cb = Cr = 128
    assert y[0].unique().numel() == 220  # codes 16..235


def test_ycbcr420_takes_batches_and_odd_sizes():
    x = torch.stack([scene(65, 97, 1), scene(65, 97, 2)])
    y = delivery.ycbcr420(x)
    assert y.shape == x.shape
    assert torch.equal(y[1], delivery.ycbcr420(x[1]))


@pytest.mark.parametrize("bits", [5, 6, 7])
def test_truncated_luma_has_the_levels_of_a_bit_shift(bits):
    shift = 8 - bits
    y = delivery.requantise(grey_ramp(), bits, 8, "trunc")
    assert y[0].unique().numel() == (235 >> shift) - (16 >> shift) + 1
    assert delivery.requantise(grey_ramp(), bits, 8, "round")[0].unique().numel() <= 2**bits


def test_truncation_is_biased_downward_rounding_is_not():
    x = grey_ramp()[:, :, 100:-100]  # away from the clipped ends
    step = 4 / 219  # one 6-bit luma code
    trunc = (delivery.requantise(x, 6, 8, "trunc") - x).mean()
    rounded = (delivery.requantise(x, 6, 8, "round") - x).mean()
    assert trunc < -0.3 * step and abs(rounded) < 0.1 * step
    twice = (delivery.requantise(x, 6, 8, "trunc", passes=2) - x).mean()
    assert twice <= trunc


def test_chroma_requantisation_leaves_luma_of_grey():
    x = grey_ramp()
    assert torch.equal(delivery.requantise(x, 8, 5, "trunc"), delivery.ycbcr420(x))  # grey chroma 128 survives


@pytest.mark.parametrize("mode", ["trunc", "round"])
@pytest.mark.parametrize("matrix", ["bt709", None])
def test_ten_to_eight_leaves_8_bit_levels(mode, matrix):
    x = grey_ramp()
    y = delivery.ten_to_eight(x, mode, matrix)
    assert y[0].unique().numel() <= 256 < x[0].unique().numel()
    if mode == "trunc" and matrix:  # limited range: 8-bit code * 4 <= 10-bit code (rounded from x)
        assert ((y - x)[:, :, 100:-100] <= 0.5 / 876 + 1e-6).all() and (y - x)[:, :, 100:-100].mean() < -0.25 / 255


def test_ten_to_eight_truncation_is_a_bit_shift():
    codes10 = torch.arange(1024)
    x = (codes10 / 1023).float().expand(3, 1, 1024)
    y = delivery.ten_to_eight(x, "trunc", None)
    assert torch.equal((y[0, 0] * 255).round().long(), codes10 >> 2)


def test_dark_lift_makes_big_steps_in_the_shadows():
    x = grey_ramp()
    y = delivery.dark_lift(x, white=0.25, gamma=1.6)
    shadows = y[0][x[0] < 0.2].unique()
    assert shadows.numel() < 20 and (shadows[1:] - shadows[:-1]).min() > 4 / 255
    lights = y[0][x[0] > 0.8].unique()
    assert (lights[1:] - lights[:-1]).max() < (shadows[1:] - shadows[:-1]).max()  # the gamma lift: shadows worst
    assert (delivery.dark_lift(x, 0.25, 1.0) - x).abs().max() <= 2 / 255  # gamma 1: linear gain, steps of 4 codes


def test_grain_is_seeded_and_sized():
    x = torch.full((3, 64, 96), 0.5)
    a = delivery.add_grain(x, 0.01, False, torch.Generator().manual_seed(1))
    assert torch.equal(a, delivery.add_grain(x, 0.01, False, torch.Generator().manual_seed(1)))
    assert torch.equal(a[0], a[1]) and 0.008 < (a - x).std() < 0.012  # monochrome, at sigma
    coarse = delivery.add_grain(x, 0.01, True, torch.Generator().manual_seed(1))

    def lag1(n):
        return torch.corrcoef(torch.stack([n[0, :, 1:].flatten(), n[0, :, :-1].flatten()]))[0, 1]

    assert lag1(coarse - x) > lag1(a - x) + 0.3


def test_chroma_grid_round_trip_keeps_flat_planes():
    c = torch.full((2, 65, 97), 0.25)
    sub = subsample_420(c)
    assert sub.shape == (2, 33, 49)
    assert torch.allclose(upsample(sub, 65, 97), c)


CODECS = [("libx264", 30), ("libx265", 30), ("libsvtav1", 45)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("codec, crf", [pytest.param(c, q, marks=needs(c)) for c, q in CODECS])
def test_codec_round_trip_is_reproducible(size, codec, crf):
    x = scene(*size, seed=3)
    preset = encoders.PRESETS[codec][-1]
    y = delivery.through_codec(x, codec, crf, preset, grain=2 / 255, frames=3, seed=4)
    assert y.shape == x.shape and y.dtype == torch.float32 and 0 <= y.min() and y.max() <= 1
    assert 0 < (y - x).abs().mean() < 0.1
    for _ in range(2):
        assert torch.equal(delivery.through_codec(x, codec, crf, preset, grain=2 / 255, frames=3, seed=4), y)
    assert not torch.equal(delivery.through_codec(x, codec, crf, preset, grain=2 / 255, frames=3, seed=5), y)


@pytest.mark.parametrize("codec", [pytest.param(c, marks=needs(c)) for c, _ in CODECS])
def test_codec_at_a_high_crf_bands_a_smooth_ramp(codec):
    x = torch.linspace(0.2, 0.4, 96).expand(3, 64, 96).contiguous()  # 51 8-bit codes across
    crf = {"libx264": 40, "libx265": 40, "libsvtav1": 55}[codec]
    y = delivery.through_codec(x, codec, crf, encoders.PRESETS[codec][0])
    assert y[0, 32].unique().numel() < delivery.ycbcr420(x)[0, 32].unique().numel()


@needs("libx265")
def test_ten_bit_frames_round_trip_at_ten_bits():
    ramp = np.linspace(200, 800, 96).round().astype(np.uint16)  # 600 10-bit codes across 96 px
    y = np.broadcast_to(ramp, (64, 96)).copy()
    chroma = np.full((32, 48), 512, np.uint16)
    frame = codes_to_frame([y, chroma, chroma], "yuv420p10le", 96, 64)
    out = encoders.round_trip([frame], "libx265", 0, "ultrafast", "yuv420p10le")
    assert len(out) == 1 and out[0].format.name == "yuv420p10le"
    plane = out[0].planes[0]
    decoded = np.frombuffer(plane, "<u2").reshape(plane.height, -1)[:, : plane.width]
    assert np.abs(decoded.astype(int) - y).max() <= 2  # CRF 0: near-lossless, and not cut to 8 bits
    assert np.unique(decoded[32] % 4).size > 1


def test_unknown_codec_is_refused():
    with pytest.raises(ValueError, match="unsupported codec"):
        encoders.available("mpeg2video")


def test_colour_banding_bands_chroma_or_channels_and_ends_at_8_bits():
    x = scene(64, 96)
    cb_steps = []
    for seed in range(12):
        y = delivery.random_colour_banding(x, torch.Generator().manual_seed(seed))
        assert torch.equal(y, (y * 255).round() / 255)  # delivered as 8-bit R'G'B'
        cb_steps.append(float((rgb_to_ycbcr(y)[1] - rgb_to_ycbcr(x)[1]).abs().max() * 255))
    assert max(cb_steps) > 4  # some draws move Cb by several codes: colour bands, not only luma


def test_store_ycbcr_444_keeps_full_resolution_chroma():
    x = torch.zeros(3, 8, 8)
    x[0, :, ::2] = 1.0  # a one-pixel red/black stripe: chroma that 4:2:0 averages away
    kept = delivery.store_ycbcr(x, 8, 8, subsampled=False)
    assert (kept - x).abs().max() < 3 / 255
    assert (delivery.store_ycbcr(x, 8, 8) - x).abs().max() > 0.2

"""Values stored at few bits: the grid a frame sits on, its cells, and values placed in them by the luma."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deband.io.chroma import downsample, upsample
from deband.io.pixels import quantise, rgb_to_ycbcr, ycbcr_to_rgb
from deband.restore.cells import (
    CHROMA_STEPS,
    CHROMA_TOLERANCE,
    PLACE_EPS,
    PLACE_WINDOW,
    _guide,
    channel_cells,
    chroma_cells,
    explained,
    place_channels,
    place_chroma,
    restore_cells,
    samples,
)
from deband.restore.debander import Debander
from deband.restore.guard import Guard
from deband.synthesis.delivery import store_ycbcr, ycbcr420


def hair(h: int = 128, w: int = 128, seed: int = 0) -> torch.Tensor:
    """A clean (1, 3, h, w) image whose luma is fine texture and whose Cb/Cr are, window by
    window, a linear function of it (coefficients varying slowly), as over hair or fabric."""
    g = torch.Generator().manual_seed(seed)
    y = 0.5 + 0.08 * torch.randn(1, 1, h, w, generator=g)
    y = torch.nn.functional.avg_pool2d(y, 3, stride=1, padding=1, count_include_pad=False)  # texture of 2-3 px
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    a = torch.stack([0.1 * torch.sin(4 * xx + 1), -0.1 + 0.2 * yy])[None]  # (1, 2, h, w)
    b = torch.stack([0.6 + 0.3 * yy, -0.5 + 0.2 * xx])[None]
    cbcr = a + b * (y - 0.5)
    return ycbcr_to_rgb(torch.cat([y, cbcr], 1)).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).square().mean()))


def test_samples_inverts_bilinear_upsampling():
    g = torch.Generator().manual_seed(1)
    s = torch.nn.functional.avg_pool2d(torch.rand(1, 2, 40, 52, generator=g), 3, stride=1, padding=1)
    c = upsample(s, 80, 104)
    assert (downsample(c, 40, 52) - s).abs().max() > 0.01  # the block means are not the samples
    assert (samples(downsample(c, 40, 52)) - s).abs().max() < 2e-3


@pytest.mark.parametrize("bits", [4, 5, 6])
def test_cells_find_the_grid_of_chroma_stored_at_few_bits_and_none_at_eight(bits):
    x = quantise(store_ycbcr(hair(), 8, bits, 10), 8)
    levels, half = chroma_cells(x)
    assert half.shape == (1, 2, 64, 64)
    step = 2 ** (8 - bits) / 224
    assert bool(((half - step / 2).abs() < 1e-6).all())  # one grid per plane: a frame is stored at one depth
    codes = levels * 224 + 128
    assert (codes / (step * 224) - (codes / (step * 224)).round()).abs().max() < 1e-3  # on the grid found
    assert not bool((chroma_cells(quantise(ycbcr420(hair()), 8))[1] > 0).any())


def test_a_plane_counts_only_its_varying_codes_away_from_clipping():
    guard = Guard()
    g = torch.Generator().manual_seed(4)
    on_grid = 128 + 8 * torch.randint(-6, 7, (1, 1, 60, 60), generator=g).float()
    off_grid = 128 + 40 * torch.rand(1, 1, 60, 60, generator=g)
    both = torch.cat([on_grid, off_grid], -1)
    usable = torch.ones_like(both, dtype=torch.bool)
    assert float(guard.frame_grid(on_grid, usable[..., :60], CHROMA_STEPS, CHROMA_TOLERANCE)[0]) == 8
    assert float(guard.frame_grid(both, usable, CHROMA_STEPS, CHROMA_TOLERANCE)[0]) == 0
    assert float(guard.frame_grid(both, usable & (torch.arange(120) < 60), CHROMA_STEPS, CHROMA_TOLERANCE)[0]) == 8
    flat = torch.full((1, 1, 60, 60), 144.0)  # one value sits on any grid: not counted
    flat[..., :2, :2] = 130.3
    everywhere = torch.ones_like(flat, dtype=torch.bool)
    assert float(guard.frame_grid(flat, everywhere, CHROMA_STEPS, CHROMA_TOLERANCE)[0]) == 0


def test_samples_next_to_clipped_pixels_are_not_counted():
    clean = hair(seed=5)
    clean[..., :, :64] = (clean[..., :, :64] * 4 - 1.5).clamp(0, 1)  # saturated: R'G'B' clipped here and there
    x = quantise(store_ycbcr(clean, 8, 5, 10), 8)
    assert float(((x <= 0) | (x >= 1)).float().mean()) > 0.05
    assert bool(((chroma_cells(x)[1] * 448 - 8).abs() < 1e-4).all())
    codes = (samples(downsample(rgb_to_ycbcr(x)[:, 1:], 64, 64)) * 224 + 128).reshape(2, 1, 64, 64)
    everywhere = torch.ones_like(codes, dtype=torch.bool)
    # counted, the clipped samples hide the grid
    assert not bool(Guard().frame_grid(codes, everywhere, CHROMA_STEPS, CHROMA_TOLERANCE).any())


def test_place_keeps_every_block_in_its_cell_and_a_plane_without_a_grid_as_it_started():
    x = quantise(store_ycbcr(hair(), 8, 4, 10), 8)
    levels, half = chroma_cells(x)
    half[:, 1] = 0  # Cr: no grid
    start = upsample(levels, 128, 128)
    placed = place_chroma(levels, half, rgb_to_ycbcr(x)[:, :1], start)
    means = downsample(placed, 64, 64)
    assert bool(((means - levels).abs() <= half + 1e-6)[:, 0].all())
    assert torch.equal(placed[:, 1], start[:, 1])
    assert not torch.equal(placed[:, 0], start[:, 0])


def test_a_ramp_the_restorer_dissolved_stays_dissolved():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    clean = ycbcr_to_rgb(torch.stack([0.4 + 0.2 * xx, 0.1 * xx - 0.03, 0.1 * yy + 0.02])[None])  # steps ~40 px wide
    x = quantise(store_ycbcr(clean, 8, 5, 10), 8)
    assert bool((chroma_cells(x)[1] > 0).all())
    want = rgb_to_ycbcr(clean)[:, 1:]
    # placing from the steps themselves reaches +6.7 dB here; from the restorer's ramp +16.8
    assert psnr(rgb_to_ycbcr(restore_cells(x, clean))[:, 1:], want) > psnr(rgb_to_ycbcr(x)[:, 1:], want) + 12


@pytest.mark.parametrize("bits", [4, 5])
def test_chroma_placed_by_the_luma_comes_back_closer_and_luma_stays(bits):
    clean = hair()
    x = quantise(store_ycbcr(clean, 8, bits, 10), 8)
    out = restore_cells(x, x)
    want, got, before = (rgb_to_ycbcr(v) for v in (clean, out, x))
    gain = psnr(got[:, 1:], want[:, 1:]) - psnr(before[:, 1:], want[:, 1:])
    assert gain > 3.0, gain  # smoothing these planes loses: their texture is the luma's
    assert (got[:, :1] - before[:, :1]).abs().max() < 1e-6


def test_nothing_changes_without_a_chroma_grid():
    x = quantise(ycbcr420(hair()), 8)
    assert torch.equal(restore_cells(x, x), x)


def test_luma_stays_where_the_placed_chroma_would_leave_the_gamut():
    clean = (hair(seed=6) * 2.5 - 0.8).clamp(0, 1)  # saturated colours against the gamut's walls
    x = quantise(store_ycbcr(clean, 8, 4, 10), 8)
    ycc = rgb_to_ycbcr(x)
    levels, half = chroma_cells(x)
    placed = ycbcr_to_rgb(torch.cat([ycc[:, :1], place_chroma(levels, half, ycc[:, :1], ycc[:, 1:])], 1))
    assert (rgb_to_ycbcr(placed.clamp(0, 1))[:, :1] - ycc[:, :1]).abs().max() > 0.01  # clipping would move Y'
    out = restore_cells(x, x)
    assert (rgb_to_ycbcr(out)[:, :1] - ycc[:, :1]).abs().max() < 1e-5
    assert bool((out >= 0).all() and (out <= 1).all())
    want = rgb_to_ycbcr(clean)[:, 1:]
    assert psnr(rgb_to_ycbcr(out)[:, 1:], want) > psnr(ycc[:, 1:], want) + 1


def chroma_psnr(img: np.ndarray, clean: torch.Tensor) -> float:
    got = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    return psnr(rgb_to_ycbcr(got)[:, 1:], rgb_to_ycbcr(clean)[:, 1:])


def test_the_restorer_places_chroma_stored_at_few_bits_unless_told_not_to():
    clean = hair(96, 96, seed=2)
    img = quantise(store_ycbcr(clean, 8, 5, 10), 8)[0].permute(1, 2, 0).numpy()
    placed = Debander.load(None, "cpu").restore(img)
    plain = Debander.load(None, "cpu", grid=False).restore(img)
    assert chroma_psnr(placed, clean) > chroma_psnr(plain, clean) + 2.0


def test_the_cli_places_chroma_unless_no_grid(tmp_path):
    from deband.cli import main
    from deband.io.files import read_image, write_image

    clean = hair(64, 64, seed=3)
    src = tmp_path / "in.png"
    x = quantise(store_ycbcr(clean, 8, 4, 10), 8)[0].permute(1, 2, 0).numpy()
    write_image(src, (x * 255).round().astype(np.uint8))
    assert main(["image", str(src), "-o", str(tmp_path / "plain.png"), "--no-grid"]) == 0
    assert main(["image", str(src), "-o", str(tmp_path / "placed.png")]) == 0
    plain, placed = (read_image(tmp_path / f"{k}.png").pixels for k in ("plain", "placed"))  # 16-bit by default
    plain, placed = (v.astype(np.float32) / np.iinfo(v.dtype).max for v in (plain, placed))
    assert chroma_psnr(placed, clean) > chroma_psnr(plain, clean) + 2.0


@pytest.mark.parametrize("bits", [4, 5, 6])
def test_channel_cells_find_the_grid_of_rgb_cut_to_few_bits_either_way(bits):
    clean = hair(seed=7)
    q = 2.0 ** (8 - bits)  # or 8-bit codes rounded to multiples of q
    for cut, step in ((quantise(clean, bits), 1 / (2**bits - 1)), ((clean * 255 / q).round() * q / 255, q / 255)):
        x = quantise(cut, 8)
        levels, half = channel_cells(x)
        assert half.shape == x.shape
        assert bool(((half * 2 - step).abs() < 1e-6).all())
        assert bool(((levels - cut).abs() < 1e-6).all())
    assert not bool((channel_cells(quantise(clean, 8))[1] > 0).any())


def test_values_at_the_ends_of_the_range_are_not_counted():
    x = quantise(hair(seed=8), 8)
    x[..., ::3, :] = torch.randint(0, 2, x[..., ::3, :].shape, generator=torch.Generator().manual_seed(0)).float()
    assert not bool((channel_cells(x)[1] > 0).any())  # 0 and 1 sit on every grid


def test_channels_placed_by_the_luma_stay_in_their_cells_and_come_back_closer():
    clean = hair(seed=9)
    x = quantise(quantise(clean, 5), 8)
    levels, half = channel_cells(x)
    placed = place_channels(levels, half, rgb_to_ycbcr(x)[:, :1], x)
    assert bool(((placed - levels).abs() <= half + 1e-6).all())
    assert psnr(restore_cells(x, x), clean) > psnr(x, clean) + 0.7  # measured +1.02


def colour_noise(seed: int = 11) -> torch.Tensor:
    """Texture whose three channels vary independently of each other (1, 3, 128, 128)."""
    g = torch.Generator().manual_seed(seed)
    noise = 0.5 + 0.12 * torch.randn(1, 3, 128, 128, generator=g)
    return torch.nn.functional.avg_pool2d(noise, 3, stride=1, padding=1, count_include_pad=False).clamp(0, 1)


def test_the_luma_explains_channels_that_follow_it_and_not_independent_ones():
    def shares(clean: torch.Tensor) -> list[float]:  # per channel, where `explained`
        x = quantise(quantise(clean, 5), 8)
        levels, half = channel_cells(x)
        guide = _guide(rgb_to_ycbcr(x)[0, 0].numpy(), PLACE_WINDOW, PLACE_EPS)
        return [float(explained(guide, levels[0, j].numpy(), float(half[0, j, 0, 0])).mean()) for j in range(3)]

    assert shares(hair(seed=9))[0] > 0.9  # R (measured 0.98; B, a small part of Y' here, is not)
    red, _, blue = shares(colour_noise())
    assert red < 0.1 and blue < 0.1  # (G, most of Y', is in half the windows: a loss of 0.5 dB there)


def test_channels_the_luma_does_not_explain_are_only_clamped_into_their_cells(monkeypatch):
    import deband.restore.cells as module

    x = quantise(quantise(colour_noise(), 5), 8)
    start = (x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    levels, half = channel_cells(x)
    monkeypatch.setattr(module, "explained", lambda guide, levels, half: np.zeros(levels.shape, bool))
    out = place_channels(levels, half, rgb_to_ycbcr(start)[:, :1], start)
    assert torch.allclose(out, levels + (start - levels).clamp(-half, half), atol=1e-7)

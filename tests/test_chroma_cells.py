"""Chroma delivered 4:2:0 at few bits: its samples, their cells, and chroma placed in them by the luma."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deband.io.chroma import downsample, upsample
from deband.io.pixels import quantise, rgb_to_ycbcr, ycbcr_to_rgb
from deband.restore.chroma_cells import cells, place, restore_cells, samples
from deband.restore.debander import Debander
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
    levels, half = cells(x)
    assert half.shape == (1, 2, 64, 64)
    step = 2 ** (8 - bits) / 224
    assert float(((half - step / 2).abs() < 1e-6).float().mean()) > 0.9  # a finer grid is found elsewhere
    assert bool((half <= step / 2 + 1e-6).all()) and bool((half > 0).all())
    codes, q = levels * 224 + 128, half * 2 * 224
    assert (codes / q - (codes / q).round()).abs().max() < 1e-3  # on the grid found
    assert not bool((cells(quantise(ycbcr420(hair()), 8))[1] > 0).any())


def test_place_keeps_every_block_in_its_cell():
    x = quantise(store_ycbcr(hair(), 8, 4, 10), 8)
    levels, half = cells(x)
    half[..., :20, :] = 0  # blocks without a grid keep their start
    start = upsample(levels, 128, 128)
    placed = place(levels, half, rgb_to_ycbcr(x)[:, :1], start)
    means = downsample(placed, 64, 64)
    assert bool(((means - levels).abs() <= half + 1e-6)[..., 20:, :].all())
    assert torch.equal(placed[..., :40, :], start[..., :40, :])
    assert not torch.equal(placed[..., 40:, :], start[..., 40:, :])


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


def chroma_psnr(img: np.ndarray, clean: torch.Tensor) -> float:
    got = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    return psnr(rgb_to_ycbcr(got)[:, 1:], rgb_to_ycbcr(clean)[:, 1:])


def test_the_restorer_places_chroma_stored_at_few_bits_when_asked():
    clean = hair(96, 96, seed=2)
    img = quantise(store_ycbcr(clean, 8, 5, 10), 8)[0].permute(1, 2, 0).numpy()
    placed = Debander.load(None, "cpu", chroma_cells=True).restore(img)
    plain = Debander.load(None, "cpu").restore(img)
    assert chroma_psnr(placed, clean) > chroma_psnr(plain, clean) + 2.0


def test_the_cli_places_chroma_with_chroma_cells(tmp_path):
    from deband.cli import main
    from deband.io.files import read_image, write_image

    clean = hair(64, 64, seed=3)
    src = tmp_path / "in.png"
    x = quantise(store_ycbcr(clean, 8, 4, 10), 8)[0].permute(1, 2, 0).numpy()
    write_image(src, (x * 255).round().astype(np.uint8))
    assert main(["image", str(src), "-o", str(tmp_path / "plain.png")]) == 0
    assert main(["image", str(src), "-o", str(tmp_path / "placed.png"), "--chroma-cells"]) == 0
    plain, placed = (read_image(tmp_path / f"{k}.png").pixels for k in ("plain", "placed"))  # 16-bit by default
    plain, placed = (v.astype(np.float32) / np.iinfo(v.dtype).max for v in (plain, placed))
    assert chroma_psnr(placed, clean) > chroma_psnr(plain, clean) + 2.0

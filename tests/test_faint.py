"""Faint-detail scenes: the detail has the contrast its kind promises and survives delivery."""

import pytest
import torch

from deband.io.pixels import quantise
from deband.synthesis.faint import CODE, CONTRAST, KINDS, colormap, deliver, faint_pair, faint_scene


def _scene(kind: str, seed: int = 0, size: int = 96):
    g = torch.Generator().manual_seed(seed)
    crop = torch.rand((3, size, size), generator=torch.Generator().manual_seed(seed + 100)) if kind == "crop" else None
    return faint_scene(size, size, g, kind, crop)


def _codes_peak_to_peak(detail: torch.Tensor) -> float:
    return (detail.flatten(1).amax(1) - detail.flatten(1).amin(1)).max().item() / CODE


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_detail_has_the_stated_contrast(kind, seed):
    s = _scene(kind, seed)
    lo, hi = CONTRAST
    assert lo <= s.contrast <= hi
    ptp = _codes_peak_to_peak(s.detail)
    if kind in ("terrain", "texture", "crop"):  # peak to peak of the detail layer
        assert ptp == pytest.approx(s.contrast, abs=0.02)
    elif kind == "grating":  # amplitude: half the peak-to-peak range (sampling may miss the crest a little)
        assert 0.9 * s.contrast <= ptp / 2 <= s.contrast + 1e-4
    else:  # noise: standard deviation
        assert (s.detail.std() / CODE).item() == pytest.approx(s.contrast, rel=0.08)
    assert s.base.amin() >= 6 * CODE - 1e-6 and s.base.amax() <= 1 - 6 * CODE + 1e-6


@pytest.mark.parametrize("kind", ["terrain", "texture", "grating", "luma_grain", "crop"])
def test_detail_survives_8bit_rounding(kind):
    """Delivered at 8 bits, the faint scene is closer to the clean one than its smooth base is:
    the detail is in the input for the restorer to keep."""
    s = _scene(kind)
    delivered = quantise(s.clean, 8)
    assert (delivered - s.clean).pow(2).mean() < 0.5 * (s.base - s.clean).pow(2).mean()


def test_scenes_are_deterministic_and_vary_with_the_seed():
    a, b, c = _scene("terrain", 5), _scene("terrain", 5), _scene("terrain", 6)
    assert torch.equal(a.clean, b.clean)
    assert not torch.equal(a.clean, c.clean)


def test_terrain_rivers_are_thin_lines():
    s = _scene("terrain")
    on_line = (s.detail.abs().amax(0) > 0.5 * s.contrast * CODE).float().mean().item()
    assert 0.002 < on_line < 0.2  # a network of lines, neither absent nor a wash over the image


def test_colormap_hits_its_stops():
    stops = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 1.0, 1.0]])
    field = torch.tensor([[0.0, 0.5, 1.0, 0.25]])
    out = colormap(field, stops)  # (3, 1, 4)
    assert torch.allclose(out[:, 0, :3].T, stops)
    assert torch.allclose(out[:, 0, 3], torch.tensor([0.5, 0.25, 0.0]))


def test_pairs_are_delivered_at_8_bits_and_take_crops_only_when_given():
    calls = []

    def crops(size):
        calls.append(size)
        return torch.full((3, size, size), 0.5)

    for seed in range(24):
        clean, banded = faint_pair(32, torch.Generator().manual_seed(seed))
        assert clean.shape == banded.shape == (3, 32, 32)
        assert (banded - clean).abs().mean() < 3 * CODE  # rounding (+ 4:2:0 chroma) only, nothing coarser
    assert not calls
    for seed in range(24):
        faint_pair(32, torch.Generator().manual_seed(seed), crops)
    assert calls and set(calls) == {32}


def test_deliver_rounds_or_subsamples():
    x = torch.rand((3, 16, 16), generator=torch.Generator().manual_seed(0))
    outs = [deliver(x, torch.Generator().manual_seed(s)) for s in range(8)]
    assert any(torch.equal(o, quantise(x, 8)) for o in outs)
    assert any(not torch.equal(o, quantise(x, 8)) for o in outs)

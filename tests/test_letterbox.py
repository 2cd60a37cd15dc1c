import numpy as np
import pytest
import torch

from deband.io.pixels import quantise
from deband.restore.debander import Debander
from deband.restore.letterbox import add_bars, find_bars, keep_bars
from deband.synthesis.sources import procedural_scene


def _framed(seed: int, h: int = 120, w: int = 160) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    clean = 0.2 + 0.8 * procedural_scene(h, w, g)  # picture brighter than any bar: the edge is hard
    banded = quantise(clean, 6)
    c, b = add_bars(clean, banded, g)
    return clean, c, b


@pytest.mark.slow
def test_added_bars_are_flat_identical_and_span_one_axis():
    for seed in range(20):
        clean, c, b = _framed(seed)
        bars = c != clean
        assert bars.any()
        assert torch.equal(c[bars], b[bars])  # the target keeps the bars exactly as delivered
        assert c[bars].max() <= 24 / 255 and torch.equal(c[bars] * 255, (c[bars] * 255).round())  # dark 8-bit codes
        rows, cols = bars.any(0).any(1), bars.any(0).any(0)
        assert rows.all() != cols.all()  # letterbox (every column) or pillarbox (every row), not both


def test_find_bars_measures_added_bars_exactly():
    for seed in range(20):
        clean, _, b = _framed(seed)
        bars = (b != quantise(clean, 6)).any(0)  # (h, w)
        h, w = bars.shape
        rows, cols = bars.all(1), bars.all(0)
        expected = (
            int(rows.int().argmin()) if rows[0] else 0,
            int(rows.flip(0).int().argmin()) if rows[-1] else 0,
            int(cols.int().argmin()) if cols[0] else 0,
            int(cols.flip(0).int().argmin()) if cols[-1] else 0,
        )
        found = find_bars(b)
        # bars thinner than 4 lines are left to the model
        assert found == tuple(e if e >= 4 else 0 for e in expected)


@pytest.mark.parametrize("seed", range(12))
def test_banded_dark_scenes_have_no_bars(seed):
    g = torch.Generator().manual_seed(100 + seed)
    dark = procedural_scene(128, 192, g) * 0.12  # bands up to 30 codes: the top band is flat and dark
    assert find_bars(quantise(dark, 8)) == (0, 0, 0, 0)
    assert find_bars(quantise(dark, 6)) == (0, 0, 0, 0)


def test_flat_and_bright_frames_have_no_bars():
    assert find_bars(torch.zeros(3, 64, 64)) == (0, 0, 0, 0)  # all black: nothing is a border
    x = torch.full((3, 64, 64), 0.5)
    x[:, :10] = 0.9
    assert find_bars(x) == (0, 0, 0, 0)  # flat but bright: not a bar


def test_restorer_hands_bars_back_exactly(tiny_model):
    _, _, b = _framed(3, 96, 128)
    x = b[None]
    top, bottom, left, right = find_bars(b)
    assert top + bottom + left + right > 0
    kept = Debander(tiny_model, steps=2).restore_batch(x)
    free = Debander(tiny_model, steps=2, bars=False).restore_batch(x)
    bars = torch.zeros(96, 128, dtype=torch.bool)
    bars[:top], bars[96 - bottom :], bars[:, :left], bars[:, 128 - right :] = True, True, True, True
    assert torch.equal(kept[..., bars], x[..., bars])
    assert not torch.equal(free[..., bars], x[..., bars])  # the (untrained) model alone does change them
    assert torch.equal(kept[..., ~bars], free[..., ~bars])  # the picture is the model's own output


def test_keep_bars_is_a_no_op_without_bars():
    x = torch.rand(2, 3, 40, 50)
    y = torch.rand(2, 3, 40, 50)
    assert torch.equal(keep_bars(x, y), y)
    assert np.isfinite(y.numpy()).all()


@pytest.mark.parametrize("bits", [8, 6, 5, 4])
def test_darkest_band_of_a_straight_sky_gradient_is_not_a_bar(bits):
    ramp = torch.linspace(0.0, 0.5, 240)[None, :, None].expand(3, 240, 320)  # horizontal bands, straight edges
    assert find_bars(quantise(ramp, bits)) == (0, 0, 0, 0)
    assert find_bars(quantise(ramp.transpose(1, 2), bits)) == (0, 0, 0, 0)

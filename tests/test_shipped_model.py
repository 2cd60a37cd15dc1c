"""The shipped model still does its job: a banded gradient gains PSNR, a texture and a field
of faint detail keep theirs.

Three tiny, fixed pictures built here (no files, no randomness outside a seed) go through the
shipped weights with the default 2 INDI steps on the CPU; each takes well under a second.
The thresholds sit about 1 dB below what the shipped model measures today, so retraining noise
passes and a broken model, loader or sampler does not.
"""

import numpy as np
import pytest
import torch

from deband import Debander
from deband.io.pixels import quantise
from deband.metrics import psnr

SIZE = 160


def _psnr(x: np.ndarray, clean: np.ndarray) -> float:
    """PSNR in dB of (h, w, 3) float arrays on [0, 1]."""
    return float(psnr(torch.from_numpy(x).permute(2, 0, 1), torch.from_numpy(clean).permute(2, 0, 1)))


def _coords(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, n) float32 row and column coordinates, each on [0, 1]."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / (n - 1)
    return yy, xx


def smooth_gradient(n: int = SIZE) -> np.ndarray:
    """A sky-like 2-D colour gradient with a gentle curve: (n, n, 3) float32 on [0, 1]."""
    yy, xx = _coords(n)
    r = 0.30 + 0.25 * xx + 0.10 * yy
    g = 0.35 + 0.15 * np.sin(1.3 * xx + 0.7 * yy)
    b = 0.55 - 0.20 * yy + 0.05 * xx * yy
    return np.stack([r, g, b], axis=-1).astype(np.float32)


def grainy_texture(n: int = SIZE, seed: int = 0) -> np.ndarray:
    """A grating of +-13 codes (period ~6 px) under seeded luma grain (std 6 codes) on a gentle
    ramp: detail with nothing to deband. (n, n, 3) float32 on [0, 1]."""
    yy, xx = _coords(n)
    grain = np.random.default_rng(seed).standard_normal((n, n, 1)) * 6 / 255
    grating = 0.05 * np.sin((xx * 0.9 + yy * 0.4) * (n - 1))
    base = 0.40 + 0.10 * xx + 0.05 * yy
    rgb = base[..., None] * np.array([1.0, 0.9, 0.8]) + grating[..., None] + grain
    return np.clip(rgb, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def shipped() -> Debander:
    return Debander.load(device="cpu", steps=2)


def test_shipped_model_removes_6_bit_banding(shipped):
    clean = smooth_gradient()
    banded = quantise(clean, 6).astype(np.float32)
    before, after = _psnr(banded, clean), _psnr(shipped.restore(banded), clean)
    # measured with the shipped weights: 46.51 -> 52.55 dB (+6.04); zeroed weights -5.8 dB,
    # a freshly initialised net +0.3 dB
    assert after - before > 5.0, f"{before:.2f} -> {after:.2f} dB"


def _delivered_and_restored(shipped: Debander, clean: np.ndarray) -> tuple[float, float]:
    """PSNR of clean delivered as 8-bit codes, and of the shipped model's output from them."""
    delivered = np.round(clean * 255).astype(np.uint8)
    return _psnr(delivered.astype(np.float32) / 255, clean), _psnr(shipped.restore(delivered), clean)


def test_shipped_model_leaves_8_bit_texture_alone(shipped):
    before, after = _delivered_and_restored(shipped, grainy_texture())
    # measured with the shipped weights: 58.91 -> 58.95 dB (+0.04; seeds 1-3 +0.05 to +0.06);
    # zeroed weights -30 dB, a freshly initialised net -7.9 dB, every weight off by 30 % -1.9 dB
    assert after > before - 1.0, f"{before:.2f} -> {after:.2f} dB"


def faint_field(n: int = SIZE) -> np.ndarray:
    """A colour-mapped field with faint detail: a smooth two-colour ramp, thin winding lines
    3 codes darker and a fine texture of +-1.5 codes (period ~5 px). (n, n, 3) float32 on
    [0, 1]; its detail survives 8-bit rounding, so a debander must leave it."""
    yy, xx = _coords(n)
    t = 0.5 + 0.35 * (xx - 0.5) + 0.15 * np.sin(3.0 * yy)
    base = (1 - t)[..., None] * np.array([0.30, 0.42, 0.28]) + t[..., None] * np.array([0.55, 0.50, 0.38])
    lines = np.exp(-(((np.sin(9 * xx + 4 * np.sin(5 * yy)) * n / 9) / 1.2) ** 2))  # ~1-2 px wide
    texture = 1.5 * np.sin(xx * n * 1.3) * np.sin(yy * n * 1.1)
    detail = (texture - 3.0 * lines)[..., None] / 255
    return np.clip(base + detail, 0, 1).astype(np.float32)


def test_shipped_model_keeps_faint_detail(shipped):
    before, after = _delivered_and_restored(shipped, faint_field())
    # measured with the shipped weights: 58.91 -> 58.19 dB (-0.72) with the detail guard,
    # -9.79 dB without it (the model alone smooths the lines and texture away)
    assert after > before - 1.5, f"{before:.2f} -> {after:.2f} dB"

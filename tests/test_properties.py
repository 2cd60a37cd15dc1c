"""Property tests (Hypothesis): restore, the tiler, image I/O and output quantisation over
random shapes, dtypes, channel counts and settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deband.io.files import read_image, write_image
from deband.io.pixels import to_codes
from deband.model.unet import UNet
from deband.restore.debander import Debander, tiled, to_float
from helpers.models import TINY, randomised

torch.manual_seed(0)
MODEL = randomised(UNet(TINY))  # module level: Hypothesis cannot reuse function-scoped fixtures

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sides = st.integers(1, 40)
channels = st.sampled_from([None, 1, 2, 3, 4])  # None: a 2-D (h, w) array


@st.composite
def images(draw, dtypes=(np.uint8, np.uint16, np.float32)) -> np.ndarray:
    """(h, w) or (h, w, c) arrays; floats stray slightly outside [0, 1] to test clipping."""
    h, w, c = draw(sides), draw(sides), draw(channels)
    dtype = draw(st.sampled_from(dtypes))
    shape = (h, w) if c is None else (h, w, c)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype == np.float32:
        return rng.uniform(-0.1, 1.1, shape).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True, dtype=dtype)


@st.composite
def tilings(draw) -> tuple[int, int]:
    """(tile, overlap) with tile > 2 * overlap."""
    tile = draw(st.integers(3, 48))
    return tile, draw(st.integers(0, (tile - 1) // 2))


@pytest.mark.slow
@FAST
@given(img=images(), tiling=tilings(), steps=st.integers(1, 4), strength=st.floats(0.1, 1.0))
def test_restore_keeps_shape_range_and_alpha(img, tiling, steps, strength):
    tile, overlap = tiling
    out = Debander(model=MODEL, steps=steps, strength=strength, tile=tile, overlap=overlap).restore(img)
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    if img.ndim == 3 and img.shape[2] in (2, 4):
        alpha = img.shape[2] - 1
        np.testing.assert_array_equal(out[..., alpha], to_float(img)[..., alpha])


@FAST
@given(b=st.integers(1, 2), c=st.integers(1, 4), h=sides, w=sides, tiling=tilings(), seed=st.integers(0, 2**32 - 1))
def test_tiled_identity_is_bit_exact(b, c, h, w, tiling, seed):
    tile, overlap = tiling
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((b, c, h, w), generator=g) * 3 - 1  # any floats, not only [0, 1]
    assert torch.equal(tiled(lambda t: t, x, tile, overlap), x)


@settings(max_examples=150, deadline=None)
@given(img=images(dtypes=(np.uint8, np.uint16)), suffix=st.sampled_from([".png", ".tif"]))
def test_write_read_round_trip(tmp_path_factory, img, suffix):
    path = tmp_path_factory.mktemp("io") / f"x{suffix}"
    write_image(path, img)
    back = read_image(path).pixels
    assert back.dtype == img.dtype
    if suffix == ".png" and img.ndim == 3 and img.shape[2] == 1:
        back = back[..., None]  # (h, w, 1) is stored as plain gray and comes back (h, w)
    if suffix == ".png" and img.ndim == 3 and img.shape[2] == 2:
        # PNG (via OpenCV) has no gray+alpha: written as RGBA with the gray replicated
        assert back.shape == (*img.shape[:2], 4)
        np.testing.assert_array_equal(back[..., :3], np.repeat(img[..., :1], 3, axis=2))
        np.testing.assert_array_equal(back[..., 3], img[..., 1])
        return
    assert back.shape == img.shape
    np.testing.assert_array_equal(back, img)


@settings(max_examples=300, deadline=None)
@given(
    img=images(dtypes=(np.float32,)),
    spread=st.floats(0, 100),
    bits=st.sampled_from([8, 16]),
    dither=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_to_codes_in_range(img, spread, bits, dither, seed):
    x = (img - 0.5) * spread + 0.5  # from tiny to wildly out-of-range values
    q = to_codes(x, bits, dither=dither, seed=seed)
    assert q.shape == x.shape and q.dtype == (np.uint8 if bits == 8 else np.uint16)
    clipped = np.clip(x, 0, 1) * (2**bits - 1)
    assert np.abs(q.astype(np.float64) - clipped).max() <= (1.5 if dither else 0.5) + 1e-3

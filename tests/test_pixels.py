"""The pixel contract: codes <-> floats, levels, quantisation, dither, Y'CbCr and luma."""

import numpy as np
import pytest
import torch

from deband.io.pixels import (
    MATRICES,
    bits_of,
    from_codes,
    from_signal,
    levels,
    luma,
    luma_codes,
    quantise,
    rgb_to_ycbcr,
    to_codes,
    to_signal,
    tpdf_pattern,
    ycbcr_to_rgb,
)


def _rgb(seed: int = 0, h: int = 6, w: int = 5) -> np.ndarray:
    """(h, w, 3) float32 on [0, 1]."""
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


# --- codes <-> floats --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, bits", [(np.uint8, 8), (np.uint16, 16)])
def test_every_code_survives_the_round_trip(dtype, bits):
    codes = np.arange(2**bits, dtype=dtype)
    x = from_codes(codes)
    assert x.dtype == np.float32 and x[0] == 0 and x[-1] == 1
    np.testing.assert_array_equal(to_codes(x, bits), codes)
    np.testing.assert_array_equal(to_codes(x[None], bits, dither=False)[0], codes)


@pytest.mark.parametrize("dtype, bits", [(np.uint8, 8), (np.uint16, 16)])
def test_from_codes_numpy_and_torch_agree(dtype, bits):
    codes = np.arange(0, 2**bits, 7, dtype=dtype).reshape(1, -1)
    t = from_codes(torch.from_numpy(codes.astype(np.int32)), bits)
    assert t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), from_codes(codes))
    np.testing.assert_array_equal(from_codes(codes, dtype=np.float64), codes / (2**bits - 1))


def test_bits_come_from_the_dtype():
    assert bits_of(np.uint8) == 8 and bits_of(np.uint16) == 16
    with pytest.raises(ValueError):
        bits_of(np.int32)
    with pytest.raises(ValueError):
        from_codes(np.zeros(3, np.float32))
    with pytest.raises(ValueError):
        from_codes(torch.zeros(3))  # a tensor does not say its bit depth


def test_to_codes_rounds_and_clips():
    x = np.array([[-0.5, 0.0, 0.5 / 255, 1.4 / 255, 1.6 / 255, 0.5, 1.0, 7.0]], np.float32)
    assert to_codes(x, 8).tolist() == [[0, 0, 0, 1, 2, 128, 255, 255]]  # 0.5 LSB rounds to even
    assert to_codes(x, 16).dtype == np.uint16 and to_codes(x, 16)[0, -2:].tolist() == [65535, 65535]
    with pytest.raises(ValueError):
        to_codes(x, 10)


def test_to_codes_in_strips_equals_one_pass():
    x = np.random.default_rng(3).random((2100, 2001), dtype=np.float32)  # several strips of rows
    np.testing.assert_array_equal(to_codes(x, 8), np.round(x * 255).astype(np.uint8))


# --- dither ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 16])
def test_dither_is_unbiased_within_one_lsb_and_seeded(bits):
    top = 2**bits - 1
    x = np.random.default_rng(1).random((200, 300), dtype=np.float32)
    q = to_codes(x, bits, dither=True, seed=4)
    err = q.astype(np.float64) - x.astype(np.float64) * top
    # the noise stays within +-1 LSB: a code moves at most one step from the undithered one
    assert np.abs(q.astype(np.int64) - to_codes(x, bits)).max() == 1
    assert np.abs(err).max() < 1.5 + 1e-3  # noise under 1 LSB plus rounding's half LSB
    assert abs(err.mean()) < 0.01
    assert 0.3 < err.std() < 0.6  # TPDF +-1 LSB before rounding: sqrt(1/6 + 1/12) = 0.5
    np.testing.assert_array_equal(q, to_codes(x, bits, dither=True, seed=4))
    assert not np.array_equal(q, to_codes(x, bits, dither=True, seed=5))


def test_dithered_8bit_keeps_the_mean_of_a_gradient():
    x = np.linspace(0.3, 0.31, 4000, dtype=np.float32)[None].repeat(50, 0)
    q = to_codes(x, 8, dither=True).astype(np.float64) / 255
    assert np.unique(q).size > 2
    assert abs(q.mean(0)[:500].mean() - x[0, :500].mean()) < 2e-4


def test_tpdf_pattern_is_fixed_and_triangular():
    p = tpdf_pattern((300, 400), seed=2)
    assert p.dtype == np.float32 and p.shape == (300, 400)
    assert np.abs(p).max() < 1 and abs(p.mean()) < 0.01
    assert (np.abs(p) < 0.5).mean() == pytest.approx(0.75, abs=0.01)  # triangle: 3/4 of the mass
    np.testing.assert_array_equal(p, tpdf_pattern((300, 400), seed=2))


# --- quantise ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, bits, mode, code",
    [
        (0.0, 6, "trunc", 0),
        (0.5, 6, "trunc", 32),
        (0.4999, 6, "trunc", 31),
        (0.9999, 6, "trunc", 63),
        (1.0, 6, "trunc", 63),  # the top value stays at the last level
        (0.5, 6, "round", 32),  # 31.5 rounds to even
        (0.2, 6, "round", 13),  # 12.6
        (0.2, 6, "trunc", 12),
        (1.5, 6, "round", 63),
        (-0.1, 6, "trunc", 0),
        (0.55, 1, "trunc", 1),
    ],
)
def test_quantise_known_values(value, bits, mode, code):
    top = 2**bits - 1
    assert quantise(np.array([value]), bits, mode)[0] == pytest.approx(code / top, abs=1e-12)
    t = quantise(torch.tensor([value], dtype=torch.float64), bits, mode)
    assert t.item() == pytest.approx(code / top, abs=1e-12)


@pytest.mark.parametrize("bits", [3, 5, 6, 8])
def test_quantise_levels(bits):
    x = torch.linspace(0, 1, 10_000).reshape(1, 1, 100, 100)
    q = quantise(x, bits)
    assert q.unique().numel() == 2**bits
    assert (q - x).abs().max() <= 0.5 / (2**bits - 1) + 1e-6


@pytest.mark.parametrize("mode", ["round", "trunc"])
def test_quantise_numpy_and_torch_agree(mode):
    x = _rgb(2, 40, 40) * 1.2 - 0.1
    np.testing.assert_array_equal(quantise(torch.from_numpy(x), 5, mode).numpy(), quantise(x, 5, mode))


def test_quantise_rejects_bad_modes():
    with pytest.raises(ValueError):
        quantise(np.zeros(2), 6, "floor")
    with pytest.raises(ValueError):
        quantise(np.zeros(2), 5.5, "trunc")
    assert quantise(np.array([0.5]), 5.5)[0] == pytest.approx(round(0.5 * (2**5.5 - 1)) / (2**5.5 - 1))


# --- levels ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bits, full, expected",
    [
        (8, True, (0, 255, 128, 255)),
        (8, False, (16, 219, 128, 224)),
        (10, True, (0, 1023, 512, 1023)),
        (10, False, (64, 876, 512, 896)),
        (12, True, (0, 4095, 2048, 4095)),
        (12, False, (256, 3504, 2048, 3584)),
        (16, True, (0, 65535, 32768, 65535)),
        (16, False, (4096, 56064, 32768, 57344)),
    ],
)
def test_levels(bits, full, expected):
    lv = levels(bits, full)
    assert tuple(lv) == expected
    assert (lv.y_offset, lv.y_scale, lv.c_offset, lv.c_scale) == expected


# --- Y'CbCr and luma ---------------------------------------------------------------------------


@pytest.mark.parametrize("matrix", sorted(MATRICES))
def test_ycbcr_round_trip_numpy_and_torch(matrix):
    x = _rgb(4)  # (h, w, 3)
    t = torch.from_numpy(x).permute(2, 0, 1).contiguous()  # (3, h, w), the same numbers
    ycc = rgb_to_ycbcr(x, matrix, axis=-1)
    ycc_t = rgb_to_ycbcr(t, matrix)
    np.testing.assert_allclose(ycc_t.permute(1, 2, 0).numpy(), ycc, rtol=0, atol=1e-7)
    assert ycc[..., 0].min() >= 0 and ycc[..., 0].max() <= 1 and np.abs(ycc[..., 1:]).max() <= 0.5
    np.testing.assert_allclose(ycbcr_to_rgb(ycc, matrix, axis=-1), x, rtol=0, atol=1e-6)
    torch.testing.assert_close(ycbcr_to_rgb(ycc_t, matrix), t, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(x.astype(np.float64), matrix, -1), matrix, -1), x, atol=1e-12)


@pytest.mark.parametrize("matrix", sorted(MATRICES))
def test_luma_numpy_hwc_equals_torch_chw(matrix):
    x = _rgb(5)
    t = torch.from_numpy(x).permute(2, 0, 1)[None]  # (1, 3, h, w)
    y = luma(x, matrix, axis=-1)
    assert y.shape == x.shape[:2]
    np.testing.assert_allclose(luma(t, matrix)[0].numpy(), y, rtol=0, atol=1e-7)
    np.testing.assert_allclose(y, rgb_to_ycbcr(x, matrix, axis=-1)[..., 0], rtol=0, atol=0)
    kr, kb = MATRICES[matrix]
    assert luma(np.array([1.0, 1.0, 1.0]), matrix, axis=-1) == pytest.approx(1.0)
    assert luma(np.array([1.0, 0.0, 0.0]), matrix, axis=-1) == pytest.approx(kr)
    assert luma(np.array([0.0, 0.0, 1.0]), matrix, axis=-1) == pytest.approx(kb)


def test_unknown_matrix_is_refused():
    with pytest.raises(ValueError):
        luma(_rgb(), "bt470", axis=-1)


def test_luma_codes_of_black_white_and_gray():
    rgb = np.array([[[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [-1, -1, -1], [2, 2, 2]]], np.float32)
    codes = luma_codes(rgb)
    assert codes.dtype == np.uint16 and codes.tolist() == [[64, 940, 502, 64, 940]]
    assert luma_codes(rgb, bits=8).tolist() == [[16, 235, 126, 16, 235]]
    with pytest.raises(ValueError):
        luma_codes(rgb[0])


def test_signal_is_the_code_over_the_peak_and_back():
    v = np.array([0.0, 0.5, 1.0])
    assert np.allclose(to_signal(v, 8, full=False) * 255, [16, 125.5, 235])
    assert np.allclose(to_signal(v - 0.5, 10, full=False, chroma=True) * 1023, [64, 512, 960])
    assert np.allclose(from_signal(to_signal(v, 10, True), 10, True), v)

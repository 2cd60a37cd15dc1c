"""The pixel contract: how numbers become pixels and pixels numbers, in one place.

Inside deband a picture is float32 on [0, 1]: `(n, c, h, w)` tensors for the network,
`(h, w[, c])` arrays at the file boundary. Everything that turns integer codes into those
values or back, re-quantises, dithers, or mixes R'G'B' into Y'CbCr lives here, so that
training, evaluation, image files and video all round, scale and weigh colours the same way.

Functions take numpy arrays or torch tensors alike (torch is never imported here) and
return the same kind they were given, unless they say otherwise.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor

# Kr, Kb of each Y'CbCr matrix (ITU-T H.273); Kg = 1 - Kr - Kb
MATRICES = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114), "bt2020": (0.2627, 0.0593)}


def _is_torch(x: Array) -> bool:
    return type(x).__module__.startswith("torch")


# ----------------------------------------------------------------------------- codes


def peak(bits: int | float) -> float:
    """The largest code at `bits` bits, 2**bits - 1 (bits may be fractional for degradations)."""
    return 2.0**bits - 1


def bits_of(dtype: Any) -> int:
    """8 for uint8, 16 for uint16 (numpy dtypes); ValueError otherwise."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 8
    if dtype == np.uint16:
        return 16
    raise ValueError(f"no bit depth for {dtype} pixels; expected uint8 or uint16")


def from_codes(codes: Array, bits: int | None = None, dtype: Any = np.float32) -> Array:
    """Integer codes -> float32 on [0, 1]: code / (2**bits - 1).

    codes: numpy uint8/uint16 (bits taken from the dtype unless given) or a torch tensor
    (bits required). Returns float32 of the same shape and kind (numpy: `dtype`, e.g.
    float64 where the caller goes on in double precision).
    """
    if _is_torch(codes):
        if bits is None:
            raise ValueError("bits is required for torch codes")
        return codes.float() / int(peak(bits))
    bits = bits_of(codes.dtype) if bits is None else bits
    return codes.astype(dtype) / int(peak(bits))


def add_tpdf(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add triangular (TPDF) dither of +-1 LSB to float32 `values` in place, and return them.

    values are in LSB units (code scale). Two uniform draws, added then subtracted, give
    noise in (-1, 1) with a triangular density: enough to break up steps so that rounding
    brings no bands back, and no more.
    """
    values += rng.random(values.shape, dtype=np.float32)
    values -= rng.random(values.shape, dtype=np.float32)
    return values


def tpdf_pattern(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A fixed TPDF dither pattern in (-1, 1) LSB, float32 of `shape` (the same for every frame)."""
    return add_tpdf(np.zeros(shape, np.float32), np.random.default_rng(seed))


def to_codes(x: np.ndarray, bits: int, dither: bool = False, seed: int = 0) -> np.ndarray:
    """float [0, 1] -> uint8 (bits 8) or uint16 (bits 16) codes, by rounding to nearest.

    x: numpy, any shape. With `dither`, TPDF noise (+-1 LSB, seeded) is added before
    rounding so that a smooth gradient keeps no bands at the lower depth. Works in strips
    of about 4 M values, so a huge image needs no full-size float temporaries.
    """
    if bits not in (8, 16):
        raise ValueError("bits must be 8 or 16")
    top_code = int(peak(bits))
    out = np.empty(x.shape, np.uint16 if bits == 16 else np.uint8)
    rng = np.random.default_rng(seed)
    rows = max(1, 4_000_000 // max(1, x[0].size))
    for top in range(0, x.shape[0], rows):
        v = np.clip(x[top : top + rows], 0, 1, dtype=np.float32) * top_code
        if dither:
            add_tpdf(v, rng)
        np.clip(np.round(v, out=v), 0, top_code, out=v)
        out[top : top + rows] = v
    return out


def quantise(x: Array, bits: int | float, mode: str = "round") -> Array:
    """Re-quantise values on [0, 1] to 2**bits levels, staying on [0, 1] (a degradation).

    mode "round": to the nearest level. "trunc": keep the top `bits` bits of a
    high-precision code (a bit shift without rounding): floor(x * 2**bits), the top value
    kept at the last level. bits may be fractional ("round" only).
    """
    levels = peak(bits)
    x = x.clip(0, 1)
    if mode == "round":
        return (x * levels).round() / levels
    if mode == "trunc":
        if bits != int(bits):
            raise ValueError("truncation needs a whole number of bits")
        return ((x * 2.0**bits) // 1).clip(0, levels) / levels
    raise ValueError(f"unknown quantisation mode {mode!r}; expected 'round' or 'trunc'")


# ----------------------------------------------------------------------------- Y'CbCr


class Levels(NamedTuple):
    """code = offset + scale * value, for Y' (value on [0, 1]) and Cb/Cr (on [-0.5, 0.5])."""

    y_offset: float
    y_scale: float
    c_offset: float
    c_scale: float


def levels(bits: int, full: bool) -> Levels:
    """Full range (codes 0..2**bits-1) or limited range (16-235 / 16-240 at 8 bits, scaled
    by 2**(bits-8)), as in ITU-T H.273."""
    if full:
        m = float(2**bits - 1)
        return Levels(0.0, m, float(2 ** (bits - 1)), m)
    s = float(2 ** (bits - 8))
    return Levels(16 * s, 219 * s, 128 * s, 224 * s)


def to_signal(value: Array, bits: int, full: bool, chroma: bool = False) -> Array:
    """A Y' value (on [0, 1]) or a Cb/Cr value (`chroma`, on [-0.5, 0.5]) as the `bits`-bit
    code it would be stored as, over 2**bits - 1: a fraction on about [0, 1], not rounded
    or clipped. `quantise(to_signal(v, bits, full, chroma), bits)` rounds it onto the codes."""
    lv = levels(bits, full)
    offset, scale = (lv.c_offset, lv.c_scale) if chroma else (lv.y_offset, lv.y_scale)
    return (offset + scale * value) / peak(bits)


def from_signal(signal: Array, bits: int, full: bool, chroma: bool = False) -> Array:
    """Inverse of `to_signal`: code / (2**bits - 1) -> the Y' or Cb/Cr value."""
    lv = levels(bits, full)
    offset, scale = (lv.c_offset, lv.c_scale) if chroma else (lv.y_offset, lv.y_scale)
    return (signal * peak(bits) - offset) / scale


def _coeffs(matrix: str) -> tuple[float, float]:
    if matrix not in MATRICES:
        raise ValueError(f"unknown matrix {matrix!r}; expected one of {sorted(MATRICES)}")
    return MATRICES[matrix]


def _split(x: Array, axis: int) -> tuple[Array, Array, Array]:
    if _is_torch(x):
        return x.unbind(axis)
    return tuple(np.moveaxis(x, axis, 0))


def _stack(parts: list[Array], axis: int) -> Array:
    if _is_torch(parts[0]):
        import torch  # only reached with tensors, so torch is already loaded

        return torch.stack(parts, dim=axis)
    return np.stack(parts, axis=axis)


def luma(rgb: Array, matrix: str = "bt709", axis: int = -3) -> Array:
    """Y' of R'G'B' values; the colour channels lie on `axis` (-3 for (..., 3, h, w),
    -1 for (h, w, 3)). Returns the shape without that axis."""
    kr, kb = _coeffs(matrix)
    r, g, b = _split(rgb, axis)
    return kr * r + (1 - kr - kb) * g + kb * b


def rgb_to_ycbcr(rgb: Array, matrix: str = "bt709", axis: int = -3) -> Array:
    """R'G'B' on [0, 1] -> Y' on [0, 1], Cb and Cr on [-0.5, 0.5] (no clamping)."""
    kr, kb = _coeffs(matrix)
    r, g, b = _split(rgb, axis)
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb = (b - y) / (2 * (1 - kb))
    cr = (r - y) / (2 * (1 - kr))
    return _stack([y, cb, cr], axis)


def ycbcr_to_rgb(ycc: Array, matrix: str = "bt709", axis: int = -3) -> Array:
    """Inverse of `rgb_to_ycbcr` (no clamping)."""
    kr, kb = _coeffs(matrix)
    y, cb, cr = _split(ycc, axis)
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    return _stack([r, g, b], axis)


def luma_codes(rgb: np.ndarray, bits: int = 10, matrix: str = "bt709") -> np.ndarray:
    """Limited-range Y' codes of an R'G'B' image, rounded, no dither (what CAMBI scores).

    rgb (ndarray): shape (h, w, 3), float, range [0, 1]; computed in float64.
    Returns shape (h, w), uint16 (at 10 bits: 64..940).
    """
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must have shape (h, w, 3), got {rgb.shape}")
    lv = levels(bits, full=False)
    y = np.clip(luma(rgb.astype(np.float64), matrix, axis=-1), 0, 1)
    return np.rint(y * lv.y_scale + lv.y_offset).astype(np.uint16)


def ycbcr_codes(values: Array, bits: int, full: bool, chroma: bool = False, dither: Array | None = None) -> np.ndarray:
    """Normalised Y' (on [0, 1]) or, with `chroma`, Cb/Cr (on [-0.5, 0.5]) -> integer codes.

    values: numpy or CPU torch, any shape, float32. The `levels` of bits/full map values to
    code scale; `dither` (LSB, broadcast against values, e.g. a `tpdf_pattern`) is added, then
    codes are rounded half to even and clipped to [0, 2**bits - 1].
    Returns numpy uint8 (bits <= 8) or uint16, the shape of values.
    """
    lv = levels(bits, full)
    offset, scale = (lv.c_offset, lv.c_scale) if chroma else (lv.y_offset, lv.y_scale)
    v = np.asarray(values) * scale + offset
    if dither is not None:
        v = v + np.asarray(dither)
    codes = np.clip(np.rint(v), 0, 2**bits - 1)
    return codes.astype(np.uint8 if bits <= 8 else np.uint16)

"""Y'CbCr <-> R'G'B' on [0, 1] values (full range), BT.709 or BT.601 matrices."""

from __future__ import annotations

import torch

_KR_KB = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114), "bt2020": (0.2627, 0.0593)}


def _coeffs(matrix: str) -> tuple[float, float]:
    if matrix not in _KR_KB:
        raise ValueError(f"unknown matrix {matrix!r}; expected one of {sorted(_KR_KB)}")
    return _KR_KB[matrix]


def rgb_to_ycbcr(rgb: torch.Tensor, matrix: str = "bt709") -> torch.Tensor:
    """rgb (Tensor): shape (..., 3, h, w), range [0, 1]. Returns Y in [0, 1], Cb/Cr in [-0.5, 0.5]."""
    kr, kb = _coeffs(matrix)
    r, g, b = rgb.unbind(-3)
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb = (b - y) / (2 * (1 - kb))
    cr = (r - y) / (2 * (1 - kr))
    return torch.stack([y, cb, cr], dim=-3)


def ycbcr_to_rgb(ycc: torch.Tensor, matrix: str = "bt709") -> torch.Tensor:
    """Inverse of `rgb_to_ycbcr` (no clamping)."""
    kr, kb = _coeffs(matrix)
    y, cb, cr = ycc.unbind(-3)
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    return torch.stack([r, g, b], dim=-3)


def luma(rgb: torch.Tensor, matrix: str = "bt709") -> torch.Tensor:
    """Y' of rgb (..., 3, h, w) on [0, 1]; returns shape (..., h, w)."""
    kr, kb = _coeffs(matrix)
    r, g, b = rgb.unbind(-3)
    return kr * r + (1 - kr - kb) * g + kb * b

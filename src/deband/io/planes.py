"""Y'CbCr planes: R'G'B' <-> normalised planes <-> integer codes <-> PyAV frames.

Planes are lists [y (..., h, w) on [0, 1], cb, cr (..., hc, wc) on [-0.5, 0.5]], float32
torch tensors; the chroma grid (hc, wc) is the picture's own (4:2:0, 4:2:2 or 4:4:4, odd
sizes rounded up). Codes are numpy uint8 (8 bits) or uint16 arrays, one per plane. Levels,
matrices and rounding come from `deband.io.pixels`; chroma resampling from
`deband.io.chroma`. Frames are read and written as numbers, with no swscale: the stream's
matrix and range are the caller's to choose (`deband.video.colour` reads them from a stream).
"""

from __future__ import annotations

import av
import numpy as np
import torch

from deband.io import pixels
from deband.io.chroma import downsample, upsample


def rgb_to_planes(rgb: torch.Tensor, matrix: str, chroma: tuple[int, int] | None = None) -> list[torch.Tensor]:
    """R'G'B' (..., 3, h, w) -> planes [y (..., h, w), cb, cr], float32: Y'CbCr by `matrix`,
    Cb/Cr box-averaged onto the `chroma` grid (hc, wc), or kept at (h, w) when None. Linear,
    so it also takes an R'G'B' change to a Y'CbCr change."""
    y, cb, cr = pixels.rgb_to_ycbcr(rgb, matrix).unbind(-3)  # (..., h, w) each
    if chroma is not None:
        cb, cr = downsample(cb, *chroma), downsample(cr, *chroma)
    return [y, cb, cr]


def planes_to_rgb(planes: list[torch.Tensor], matrix: str) -> torch.Tensor:
    """[y (..., h, w), cb, cr (..., hc, wc)] -> R'G'B' (..., 3, h, w) float32, clamped to [0, 1];
    chroma upsampled bilinearly with centred siting."""
    y, cb, cr = planes
    h, w = y.shape[-2:]
    ycc = torch.stack([y, upsample(cb, h, w), upsample(cr, h, w)], dim=-3)  # (..., 3, h, w)
    return pixels.ycbcr_to_rgb(ycc, matrix).clamp_(0, 1)


def add_rgb_delta(planes: list[torch.Tensor], delta: torch.Tensor, matrix: str) -> list[torch.Tensor]:
    """Planes [y (n, h, w), cb, cr (n, hc, wc)] plus an R'G'B' change delta (n, 3, h, w),
    taken to Y'CbCr (linear) and box-averaged onto the chroma grid. Zero delta is exact."""
    change = rgb_to_planes(delta, matrix, tuple(planes[1].shape[-2:]))
    return [p + d for p, d in zip(planes, change)]


def codes_to_plane(codes: np.ndarray, bits: int, full: bool, chroma: bool = False) -> torch.Tensor:
    """Integer codes (h, w) of one plane -> normalised Y' on [0, 1] or, with `chroma`, Cb/Cr
    on [-0.5, 0.5]: float32 (h, w), exact (inverse of `pixels.ycbcr_codes`)."""
    lv = pixels.levels(bits, full)
    offset, scale = (lv.c_offset, lv.c_scale) if chroma else (lv.y_offset, lv.y_scale)
    return (torch.from_numpy(codes.astype(np.float32)) - offset) / scale


def planes_to_codes(
    planes: list[torch.Tensor], bits: int, full: bool, dither: list[np.ndarray] | None = None
) -> list[np.ndarray]:
    """Normalised planes (..., h', w') -> integer codes, uint8 or uint16, clipped to the code
    range; `dither` (one (h', w') pattern per plane, in LSB) is added before rounding."""
    return [
        pixels.ycbcr_codes(p, bits, full, chroma=i > 0, dither=None if dither is None else dither[i])
        for i, p in enumerate(planes)
    ]


def frame_codes(frame: av.VideoFrame) -> list[np.ndarray]:
    """The integer codes of a planar Y'CbCr frame: [y (h, w), cb, cr (hc, wc)], uint8 up to
    8 bits, else uint16. Exact (no resampling, no conversion)."""
    bits = max(c.bits for c in frame.format.components)
    dtype = np.uint8 if bits <= 8 else np.dtype("<u2")
    return [np.frombuffer(plane, dtype).reshape(plane.height, -1)[:, : plane.width] for plane in frame.planes[:3]]


def codes_to_frame(codes: list[np.ndarray], pix_fmt: str, width: int, height: int) -> av.VideoFrame:
    """Integer planes (y (h, w), cb, cr (hc, wc)) -> a VideoFrame of `pix_fmt`."""
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane, arr in zip(frame.planes, codes):
        buf = np.zeros((plane.height, plane.line_size // arr.itemsize), arr.dtype)
        buf[:, : plane.width] = arr
        plane.update(buf)
    return frame

"""A stream's colour: the matrix and range its frames are read with, the tags written out, and
what a compare mode draws. The conversions themselves are `deband.io.planes`.

Each frame's Y'CbCr planes are read as numbers (no swscale) and converted with the stream's
matrix and range (BT.709 for HD and BT.601 for SD when untagged; limited unless tagged full
or yuvj*). PyAV's own `to_ndarray("rgb48le")` is not used: it ignores the range tag and
falls back to BT.601 for untagged HD. Levels, matrices, rounding and dither come from
`deband.io.pixels`.

Planes are lists [y (n, h, w) on [0, 1], cb, cr (n, hc, wc) on [-0.5, 0.5]], float32;
the chroma grid (hc, wc) is the frame's own (4:2:0, 4:2:2 or 4:4:4, odd sizes rounded up).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import av
import numpy as np
import torch

from deband.io import pixels
from deband.io.planes import codes_to_plane, frame_codes

log = logging.getLogger(__name__)

NATIVE = re.compile(r"^yuvj?(420|422|444)p(?:(9|10|12|14|16)le)?$")  # group 1: family, 2: bits
_COLORSPACE = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020"}  # AVColorSpace -> matrix
_TAG_OF_MATRIX = {"bt709": 1, "bt601": 6, "bt2020": 9}  # matrix -> AVColorSpace written out
_DIVIDER = 2  # width in pixels of the line between "before" and "after" in split mode


@dataclass(frozen=True)
class Colour:
    """How a stream's codes map to R'G'B', and the tags to write out."""

    matrix: str  # "bt709" | "bt601" | "bt2020"
    full_range: bool
    primaries: int  # AVColorPrimaries, copied
    trc: int  # AVColorTransferCharacteristic, copied
    colorspace: int  # AVColorSpace written out (the assumed one when untagged)

    @property
    def color_range(self) -> int:
        return 2 if self.full_range else 1  # AVCOL_RANGE_JPEG / AVCOL_RANGE_MPEG

    def tag(self, target: av.VideoFrame | av.video.stream.VideoStream) -> None:
        """Write primaries, transfer, matrix and range onto an output frame or stream."""
        target.color_primaries, target.color_trc = self.primaries, self.trc
        target.colorspace, target.color_range = self.colorspace, self.color_range


def matrix_of(code: int, width: int, height: int) -> str:
    """The matrix of an H.273 MatrixCoefficients code (AVColorSpace, VapourSynth's _Matrix);
    unspecified or unsupported: BT.709 for HD, BT.601 for SD (up to 1024x576)."""
    matrix = _COLORSPACE.get(code)
    if matrix is None:
        if code not in (0, 2):  # 0 RGB (converted before), 2 unspecified
            log.warning("colour matrix %d not supported; guessing from size", code)
        matrix = "bt709" if height > 576 or width > 1024 else "bt601"
    return matrix


def colour_of(frame: av.VideoFrame) -> Colour:
    """Matrix and range from the frame's tags; untagged: BT.709 for HD, BT.601 for SD."""
    matrix = matrix_of(frame.colorspace, frame.width, frame.height)
    full = frame.color_range == 2 or (frame.color_range == 0 and "yuvj" in frame.format.name)
    return Colour(matrix, full, frame.color_primaries, frame.color_trc, _TAG_OF_MATRIX[matrix])


def native(frame: av.VideoFrame) -> av.VideoFrame:
    """The frame in a planar yuv(j)4xxp[NN]le format (converted with swscale otherwise)."""
    fmt = frame.format
    if NATIVE.match(fmt.name):
        return frame
    if fmt.is_rgb:  # R'G'B' sources become full-range BT.709 4:4:4 at 16 bits
        out = frame.reformat(
            format="yuv444p16le",
            src_colorspace="ITU709",
            dst_colorspace="ITU709",
            src_color_range="JPEG",
            dst_color_range="JPEG",
        )
        out.colorspace, out.color_range = 1, 2
        return out
    bits = max(c.bits for c in fmt.components)
    depth = "" if bits <= 8 else "10le" if bits <= 10 else "12le" if bits <= 12 else "16le"
    chroma = [c for c in fmt.components if c.is_chroma]
    sub_x = frame.width // max(chroma[0].width, 1) if chroma else 1
    sub_y = frame.height // max(chroma[0].height, 1) if chroma else 1
    family = "420" if (sub_x, sub_y) == (2, 2) else "422" if sub_x == 2 else "444"
    return frame.reformat(format=f"yuv{family}p{depth}")


def family_of(frame: av.VideoFrame) -> str:
    """"420" | "422" | "444" of a native frame."""
    return NATIVE.match(frame.format.name).group(1)


def frame_to_planes(frame: av.VideoFrame, colour: Colour) -> list[torch.Tensor]:
    """Normalised Y'CbCr planes of a native frame: [y (h, w) on [0, 1], cb, cr (hc, wc) on
    [-0.5, 0.5]], float32, exact (no resampling)."""
    depth = NATIVE.match(frame.format.name).group(2)
    bits = int(depth) if depth else 8
    return [codes_to_plane(codes, bits, colour.full_range, chroma=i > 0) for i, codes in enumerate(frame_codes(frame))]


def compose(
    planes: list[torch.Tensor], x: torch.Tensor, restored: torch.Tensor, mode: str | None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Base planes and R'G'B' delta of the output frame for a compare mode.

    planes: input Y'CbCr on the output chroma grid; x, restored: (n, 3, h, w) on [0, 1].
    None: restored. "split": input left, restored right, a white divider line.
    "side-by-side": input | restored, twice the width.
    """
    if mode is None:
        return planes, restored - x
    if mode == "split":
        w = x.shape[-1]
        target = x.clone()
        target[..., w // 2 :] = restored[..., w // 2 :]
        lo = max(w // 2 - _DIVIDER // 2, 0)
        target[..., lo : lo + _DIVIDER] = 1.0
        return planes, target - x
    if mode == "side-by-side":
        doubled = [torch.cat([p, p], dim=-1) for p in planes]
        return doubled, torch.cat([torch.zeros_like(x), restored - x], dim=-1)
    raise ValueError(f"unknown compare mode {mode!r}")


def dither_patterns(planes: list[torch.Tensor], seed: int) -> list[np.ndarray]:
    """One static TPDF pattern (h', w') in LSB per plane (n, h', w'), the same every frame;
    the planes take consecutive parts of one seeded pattern, so they are independent."""
    shapes = [tuple(p.shape[-2:]) for p in planes]
    sizes = [h * w for h, w in shapes]
    flat = pixels.tpdf_pattern((sum(sizes),), seed)
    parts = np.split(flat, np.cumsum(sizes)[:-1])
    return [part.reshape(shape) for part, shape in zip(parts, shapes)]

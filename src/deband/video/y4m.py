"""YUV4MPEG2 in, YUV4MPEG2 out: `deband video - -o -` between two pipes.

A YUV4MPEG2 stream is one header line ("YUV4MPEG2 W1920 H1080 F24000:1001 Ip A1:1 C420p10
XCOLORRANGE=LIMITED ...") and then, per frame, a line "FRAME[ params]" followed by the Y, Cb
and Cr planes, row by row, one byte per sample at 8 bits and two (little-endian) above. The
stream is read and written here directly: it never seeks, so a pipe is fine, and every header
field is under control.

The output header is the input's, token for token, but for the width (doubled by
side-by-side), the C tag (the output bit depth; at 8 bits the input's 4:2:0 siting: jpeg,
mpeg2 or paldv) and XYSCSS (rewritten to match C when the input had one). Frame rate (F),
interlacing (I), pixel aspect (A), XCOLORRANGE and every other X field, and each frame's own
parameters, are passed on unchanged. The colour path is the container path's
(`deband.video.colour`): range from XCOLORRANGE (limited when absent), the matrix guessed
from the size (YUV4MPEG2 has no matrix tag: BT.709 for HD, BT.601 for SD), and the output
is the input planes plus the model's change, so an identity restorer gives the input codes
back (x4 at 10 bits from 8-bit input, as in the container path).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import BinaryIO

import numpy as np
import torch
from tqdm import tqdm

from deband.errors import InputError, UnsupportedError
from deband.io.chroma import upsample
from deband.io.planes import add_rgb_delta, codes_to_frame, planes_to_codes, planes_to_rgb
from deband.video.colour import Colour, colour_of, compose, dither_patterns, frame_to_planes
from deband.video.options import Restorer, VideoOptions, VideoReport

MAGIC = b"YUV4MPEG2"
_LINE_MAX = 4096  # longest header or frame line accepted
_SUB = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}  # family -> (sub_x, sub_y)
_SITINGS = ("jpeg", "mpeg2", "paldv")  # 4:2:0 chroma siting at 8 bits (C420jpeg ...)
_DEPTHS = (8, 9, 10, 12, 14, 16)
_MAX_SIDE = 16384  # widest and tallest frame (16K video; within FFmpeg's picture limits at 16 bits)
_RATIO = re.compile(r"[0-9]{1,10}:[0-9]{1,10}")
_FIELDS = {  # header tag -> the form of its value
    "W": re.compile(r"[0-9]{1,10}"),
    "H": re.compile(r"[0-9]{1,10}"),
    "C": re.compile(r"[0-9a-z]{1,20}"),
    "F": _RATIO,  # frames per second, 0:0 unknown
    "A": _RATIO,  # pixel aspect ratio, 0:0 unknown
    "I": re.compile(r"[ptbm?]"),  # interlacing
    "X": re.compile(r"[!-~]*"),  # extensions (XCOLORRANGE=FULL, XYSCSS=420P10 ...)
}


@dataclass(frozen=True)
class Y4MHeader:
    """A YUV4MPEG2 stream header: the fields deband needs, and every other token as it was."""

    width: int
    height: int
    family: str  # "420" | "422" | "444"
    bits: int  # 8, 9, 10, 12, 14 or 16
    siting: str  # "jpeg" | "mpeg2" | "paldv" for 8-bit 4:2:0 written so, "" otherwise
    tokens: tuple[str, ...]  # the other tokens (F, I, A, X...), in order, XYSCSS included

    @classmethod
    def parse(cls, line: bytes, name: str = "-") -> Y4MHeader:
        """The header from its line (without the newline). Every field is checked before
        anything is allocated: InputError for a malformed or repeated one, UnsupportedError
        for a frame size or colour format deband does not handle."""
        words = line.split()
        if not words or words[0] != MAGIC:
            raise InputError(f"{name}: not a YUV4MPEG2 stream (it starts with {line[:20]!r})")
        fields, tokens = {}, []
        for word in words[1:]:
            tag, value = _field(word, name)
            if tag in fields and tag != "X":
                raise InputError(f"{name}: YUV4MPEG2 header gives {tag} twice: {line[:80]!r}")
            fields[tag] = value
            if tag not in "WHC":
                tokens.append(tag + value)
        if "W" not in fields or "H" not in fields:
            raise InputError(f"{name}: YUV4MPEG2 header without a frame size: {line[:80]!r}")
        width, height = _side(fields["W"], "W", name), _side(fields["H"], "H", name)
        family, bits, siting = _chroma(fields.get("C", "420jpeg"), name)
        return cls(width, height, family, bits, siting, tuple(tokens))

    @property
    def pix_fmt(self) -> str:
        """The matching FFmpeg pixel format (yuv420p, yuv422p10le, ...)."""
        return f"yuv{self.family}p" + ("" if self.bits == 8 else f"{self.bits}le")

    @property
    def full_range(self) -> bool:
        return "XCOLORRANGE=FULL" in self.tokens

    @property
    def rate(self) -> Fraction | None:
        """Frames per second from the F token; None when absent or 0:0."""
        for t in self.tokens:
            if t[0] == "F":
                num, den = map(int, t[1:].split(":"))
                return Fraction(num, den) if num else None
        return None

    def plane_shapes(self) -> list[tuple[int, int]]:
        """(rows, columns) of Y, Cb, Cr; chroma rounded up for odd sizes."""
        sx, sy = _SUB[self.family]
        c = (-(-self.height // sy), -(-self.width // sx))
        return [(self.height, self.width), c, c]

    @property
    def frame_bytes(self) -> int:
        return sum(h * w for h, w in self.plane_shapes()) * (1 if self.bits == 8 else 2)

    def output(self, width: int, family: str, bits: int) -> Y4MHeader:
        """This header for output frames of another width, chroma family or bit depth."""
        siting = (self.siting or "jpeg") if (family, bits) == ("420", 8) else ""
        tag = _c_tag(family, bits, siting).upper()
        tokens = tuple(f"XYSCSS={tag}" if t.startswith("XYSCSS=") else t for t in self.tokens)
        return replace(self, width=width, family=family, bits=bits, siting=siting, tokens=tokens)

    def line(self) -> bytes:
        """The header line, newline included."""
        fields = [f"W{self.width}", f"H{self.height}", *self.tokens]
        c = "C" + _c_tag(self.family, self.bits, self.siting)
        fields.insert(next((i for i, t in enumerate(fields) if t[0] not in "WHFIA"), len(fields)), c)
        return b" ".join([MAGIC, *(f.encode("ascii") for f in fields)]) + b"\n"


def _field(word: bytes, name: str) -> tuple[str, str]:
    """(tag, value) of a header field whose value has the form its tag asks for."""
    text = word.decode("ascii", "replace")
    pattern = _FIELDS.get(text[0])
    if pattern is None or not pattern.fullmatch(text[1:]):
        raise _bad_field(word, name)
    if text[0] in "FA":
        num, den = map(int, text[1:].split(":"))
        if (num == 0) != (den == 0):  # 0:0 is unknown; n:0 and 0:d are nothing
            raise _bad_field(word, name)
    return text[0], text[1:]


def _bad_field(word: bytes, name: str) -> InputError:
    return InputError(f"{name}: bad YUV4MPEG2 header field {word[:40]!r}")


def _side(value: str, tag: str, name: str) -> int:
    """A frame width (W) or height (H): 1 to _MAX_SIDE."""
    side = int(value)
    if side == 0:
        raise _bad_field((tag + value).encode(), name)
    if side > _MAX_SIDE:
        raise UnsupportedError(f"{name}: YUV4MPEG2 frame size {tag}{value} is over {_MAX_SIDE} pixels")
    return side


def _chroma(tag: str, name: str) -> tuple[str, int, str]:
    """C tag -> (family, bits, siting): "420jpeg" -> ("420", 8, "jpeg"), "422p10" -> ("422", 10, "")."""
    family, rest = tag[:3], tag[3:]
    if family in _SUB:
        if rest in _SITINGS and family == "420":
            return family, 8, rest
        if rest == "":
            return family, 8, ""
        if rest[:1] == "p" and rest[1:].isdigit() and int(rest[1:]) in _DEPTHS:
            return family, int(rest[1:]), ""
    raise UnsupportedError(
        f"{name}: YUV4MPEG2 colour format C{tag} is not supported (4:2:0, 4:2:2 or 4:4:4 at 8-16 bits)"
    )


def _c_tag(family: str, bits: int, siting: str) -> str:
    return family + (siting if bits == 8 else f"p{bits}")


# ----------------------------------------------------------------------------- reading


def read_header(src: BinaryIO, name: str = "-") -> Y4MHeader:
    line = src.readline(_LINE_MAX)
    if not line:
        raise InputError(f"{name}: empty input (expected a YUV4MPEG2 stream)")
    if not line.endswith(b"\n"):
        raise InputError(f"{name}: not a YUV4MPEG2 stream (no header line)")
    return Y4MHeader.parse(line[:-1], name)


def read_frames(src: BinaryIO, header: Y4MHeader, name: str = "-") -> Iterator[tuple[bytes, list[np.ndarray]]]:
    """(frame parameters after "FRAME", e.g. b"" or b" Ib", [y (h, w), cb, cr (hc, wc)]) per
    frame, uint8 or uint16; InputError on a broken frame line or a truncated frame."""
    dtype = np.uint8 if header.bits == 8 else np.dtype("<u2")
    shapes, size, k = header.plane_shapes(), header.frame_bytes, 0
    while line := src.readline(_LINE_MAX):
        if not line.startswith(b"FRAME") or not line.endswith(b"\n"):
            raise InputError(f"{name}: frame {k + 1} does not start with a FRAME line ({line[:20]!r})")
        data = src.read(size)
        if len(data) < size:
            raise InputError(f"{name}: frame {k + 1} is truncated ({len(data)} of {size} bytes)")
        flat, planes = np.frombuffer(data, dtype), []
        for h, w in shapes:
            planes.append(flat[: h * w].reshape(h, w))
            flat = flat[h * w :]
        k += 1
        yield line[5:-1], planes


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class _Window:
    """Frames [first, end) of the stream, from start/duration in seconds at the header's rate."""

    first: int = 0
    end: int | None = None

    @classmethod
    def of(cls, header: Y4MHeader, options: VideoOptions) -> _Window:
        rate = header.rate or Fraction(25)
        lo = Fraction(options.start or 0).limit_denominator(1_000_000)
        hi = None if options.duration is None else lo + Fraction(options.duration).limit_denominator(1_000_000)
        return cls(math.ceil(lo * rate), None if hi is None else math.ceil(hi * rate))


class Y4MWriter:
    """Batches of input codes -> restorer -> output codes -> YUV4MPEG2 frames on `dst`."""

    def __init__(self, dst: BinaryIO, header: Y4MHeader, restorer: Restorer, options: VideoOptions):
        self.dst, self.inp, self.restorer, self.options = dst, header, restorer, options
        sx, sy = _SUB[header.family]
        odd = header.width % sx or header.height % sy
        family = "444" if options.compare == "side-by-side" and odd else header.family
        width = header.width * (2 if options.compare == "side-by-side" else 1)
        self.out = header.output(width, family, options.bit_depth)
        self.colour = _colour(header)
        self.dither: list[np.ndarray] | None = None
        self.written = 0

    def write(self, params: list[bytes], codes: list[list[np.ndarray]], report: VideoReport) -> None:
        """Restore and write a batch: frame parameters and code planes of each frame."""
        with report.timing("decode_s"):
            planes = [torch.stack(ps) for ps in zip(*(self._planes(c) for c in codes))]
            x = planes_to_rgb(planes, self.colour.matrix)  # (n, 3, h, w)
        with report.timing("model_s"):
            restored = self.restorer.restore_batch(x).float().cpu()
        if restored.shape != x.shape:
            raise ValueError(f"restore_batch returned {tuple(restored.shape)}, expected {tuple(x.shape)}")
        with report.timing("encode_s"):
            if self.out.family != self.inp.family:  # 4:4:4 fallback: base chroma on the full grid
                planes = [planes[0]] + [upsample(c, self.inp.height, self.inp.width) for c in planes[1:]]
            base, delta = compose(planes, x, restored, self.options.compare)
            out_planes = add_rgb_delta(base, delta, self.colour.matrix)
            if self.out.bits == 8 and self.dither is None:
                self.dither = dither_patterns(out_planes, self.options.seed)
            out = planes_to_codes(out_planes, self.out.bits, self.colour.full_range, self.dither)
            if self.written == 0:
                self.dst.write(self.out.line())
            for i, p in enumerate(params):
                self.dst.write(b"FRAME" + p + b"\n")
                for q in out:
                    self.dst.write(q[i].astype(q.dtype.newbyteorder("<"), copy=False).tobytes())
                self.written += 1
            self.dst.flush()

    def _planes(self, codes: list[np.ndarray]) -> list[torch.Tensor]:
        frame = codes_to_frame(codes, self.inp.pix_fmt, self.inp.width, self.inp.height)
        return frame_to_planes(frame, self.colour)


def _colour(header: Y4MHeader) -> Colour:
    """Range from XCOLORRANGE; matrix guessed from the size as for an untagged container."""
    h, w = header.plane_shapes()[1]
    probe = codes_to_frame(
        [np.zeros((header.height, header.width), np.uint8), np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)],
        f"yuv{header.family}p",
        header.width,
        header.height,
    )
    probe.color_range = 2 if header.full_range else 1
    return colour_of(probe)


def deband_y4m(
    src: BinaryIO, dst: BinaryIO, restorer: Restorer, options: VideoOptions | None = None,
    progress: bool = False, name: str = "-",
) -> VideoReport:
    """Deband a YUV4MPEG2 stream from `src` (read once, never sought) onto `dst`.

    restorer: `restore_batch(rgb (n, 3, h, w) float32 [0, 1]) -> same`. options: bit_depth,
    start/duration (frames skipped/stopped at the header's rate, 25 when it has none),
    compare, batch and seed apply; codec, crf, preset and overwrite do not. The header is
    written with the first frame, so nothing is written when no frame is. Raises InputError
    (not YUV4MPEG2, a bad header field, a broken or truncated frame: after writing the
    complete frames before it; no frame in range), UnsupportedError (mono, 4:1:1, alpha,
    frames over 16384 pixels a side), and BrokenPipeError when the reader of dst goes away.
    """
    options = options or VideoOptions()
    t0, report = time.perf_counter(), VideoReport()
    header = read_header(src, name)
    writer = Y4MWriter(dst, header, restorer, options)
    with tqdm(unit="frame", disable=not progress, desc=name) as bar:
        for batch in _batches(read_frames(src, header, name), _Window.of(header, options), options.batch):
            report.frames_in += len(batch)
            params, codes = zip(*batch)
            writer.write(list(params), list(codes), report)
            bar.update(len(batch))
    report.frames_out = writer.written
    if writer.written == 0:
        raise InputError(f"{name}: no video frames in the selected range")
    report.total_s = time.perf_counter() - t0
    return report


def _batches(frames: Iterator[tuple], window: _Window, size: int) -> Iterator[list[tuple]]:
    """The frames inside `window`, `size` at a time. When the stream breaks (InputError:
    a truncated frame, a bad FRAME line), the complete frames before it come first."""
    batch, error = [], None
    try:
        for k, frame in enumerate(frames):
            if window.end is not None and k >= window.end:
                break
            if k >= window.first:
                batch.append(frame)
            if len(batch) == size:
                yield batch
                batch = []
    except InputError as e:
        error = e
    if batch:
        yield batch
    if error is not None:
        raise error

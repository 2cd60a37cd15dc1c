"""Video: PyAV decode -> restore in RGB batches -> 10-bit encode, other streams copied.

`deband_video(src, dst, debander, VideoOptions())` streams the first video stream of `src`
through `debander.restore_batch` a few frames at a time and writes `dst`:

* Colour: each frame's Y'CbCr planes are read as numbers (no swscale) and converted with the
  stream's matrix and range (BT.709 for HD and BT.601 for SD when untagged; limited unless
  tagged full or yuvj*). PyAV's own `to_ndarray("rgb48le")` is not used: it ignores the
  range tag and falls back to BT.601 for untagged HD.
* Residual re-encoding: the output planes are the input planes plus the model's change
  (restored - input) taken back to Y'CbCr. An identity model therefore gives the input
  code values exactly (x4 at 10 bits in limited range), out-of-gamut and super-white values
  survive, and chroma is not blurred by a resample round trip. Chroma is upsampled
  bilinearly with centred siting for the model; the change is box-averaged back.
* Output: yuv420p10le / yuv422p10le / yuv444p10le after the input's chroma family
  (8-bit with a static TPDF dither when bit_depth=8). When the frame size is not a multiple
  of the chroma subsampling (odd sizes in 4:2:0) the output falls back to 4:4:4.
* Timestamps: video frames keep their pts (VFR included) in the input time base; audio,
  subtitle and data packets are remuxed byte for byte. `start`/`duration` seek and trim
  every stream to the same range and shift it to start at 0.
* Safety: written to `.NAME.partial-XXXX.EXT` beside `dst` and renamed when complete;
  removed on any error or KeyboardInterrupt. A hard kill (SIGKILL) cannot clean up and
  leaves the hidden partial file, never a truncated file under the final name.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from deband.errors import UNREADABLE, UNSUPPORTED
from deband.pixels import rgb_to_ycbcr, ycbcr_to_rgb

log = logging.getLogger(__name__)

CODECS = ("libx265", "libx264", "ffv1")
COMPARE_MODES = (None, "split", "side-by-side")
_NATIVE = re.compile(r"^yuvj?(420|422|444)p(?:(9|10|12|14|16)le)?$")
_SUBSAMPLING = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}  # family -> (sub_x, sub_y)
_COLORSPACE = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020"}  # AVColorSpace -> matrix
_TAG_OF_MATRIX = {"bt709": 1, "bt601": 6, "bt2020": 9}  # matrix -> AVColorSpace written out
_DROP_TAGS = re.compile(
    r"^(duration|encoder|_statistics.*|bps|number_of_.*|major_brand|"
    r"minor_version|compatible_brands|creation_time)(-.*)?$",
    re.I,
)
_MATROSKA = (".mkv", ".mka", ".mk3d", ".webm")
_DIVIDER = 2  # width in pixels of the line between "before" and "after" in split mode


class VideoError(ValueError):
    """A video that cannot be debanded: unreadable, no video stream, no frames.

    code: exit code for the CLI, UNREADABLE (corrupt, no frames) or UNSUPPORTED (no video).
    """

    def __init__(self, message: str, code: int = UNREADABLE):
        super().__init__(message)
        self.code = code


class Restorer(Protocol):
    """Anything with `restore_batch`; `deband.restore.Debander` is one."""

    def restore_batch(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb (Tensor): shape (n, 3, h, w), range [0, 1], float32, CPU. Returns the same."""
        ...


@dataclass(frozen=True)
class VideoOptions:
    codec: str = "libx265"  # "libx265" | "libx264" (High 10 at 10 bits) | "ffv1" (lossless)
    crf: int = 18  # constant rate factor, 0-51 (ignored by ffv1)
    preset: str = "medium"  # x264/x265 speed preset (ignored by ffv1)
    bit_depth: int = 10  # 10, or 8 with a static TPDF +-1 LSB dither
    start: float | None = None  # seconds into the input where the piece starts
    duration: float | None = None  # seconds of input to process
    compare: str | None = None  # None | "split" (left before, right after) | "side-by-side"
    batch: int = 4  # frames per restore_batch call
    overwrite: bool = False  # replace an existing dst
    seed: int = 0  # seed of the dither pattern (the same for every frame)

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {self.codec!r}")
        if self.bit_depth not in (8, 10):
            raise ValueError(f"bit_depth must be 8 or 10, got {self.bit_depth}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")
        if self.compare not in COMPARE_MODES:
            raise ValueError(f"compare must be one of {COMPARE_MODES}, got {self.compare!r}")
        if self.batch < 1:
            raise ValueError("batch must be at least 1")
        if self.start is not None and self.start < 0:
            raise ValueError("start must be >= 0 seconds")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be > 0 seconds")


@dataclass
class VideoReport:
    frames_in: int = 0  # frames decoded inside the selected range
    frames_out: int = 0  # frames encoded
    skipped_packets: int = 0  # corrupt video packets that were skipped
    decode_s: float = 0.0  # demux + decode + Y'CbCr -> RGB
    model_s: float = 0.0  # restore_batch
    encode_s: float = 0.0  # RGB -> Y'CbCr + encode + mux (copied packets included)
    total_s: float = 0.0  # wall clock of the whole call

    @property
    def fps(self) -> float:
        """End-to-end frames per second."""
        return self.frames_out / self.total_s if self.total_s > 0 else 0.0


# ----------------------------------------------------------------------------- colour


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


def colour_of(frame: av.VideoFrame) -> Colour:
    """Matrix and range from the frame's tags; untagged: BT.709 for HD, BT.601 for SD."""
    matrix = _COLORSPACE.get(frame.colorspace)
    if matrix is None:
        if frame.colorspace not in (0, 2):  # 0 RGB (converted before), 2 unspecified
            log.warning("colour matrix %d not supported; guessing from size", frame.colorspace)
        matrix = "bt709" if frame.height > 576 or frame.width > 1024 else "bt601"
    full = frame.color_range == 2 or (frame.color_range == 0 and "yuvj" in frame.format.name)
    return Colour(matrix, full, frame.color_primaries, frame.color_trc, _TAG_OF_MATRIX[matrix])


def _levels(bits: int, full: bool) -> tuple[float, float, float, float]:
    """(y_offset, y_scale, c_offset, c_scale): code = offset + scale * value (H.273)."""
    if full:
        m = float(2**bits - 1)
        return 0.0, m, float(2 ** (bits - 1)), m
    s = float(2 ** (bits - 8))
    return 16 * s, 219 * s, 128 * s, 224 * s


def _native(frame: av.VideoFrame) -> av.VideoFrame:
    """The frame in a planar yuv(j)4xxp[NN]le format (converted with swscale otherwise)."""
    fmt = frame.format
    if _NATIVE.match(fmt.name):
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


def _bits(fmt_name: str) -> int:
    depth = _NATIVE.match(fmt_name).group(2)
    return int(depth) if depth else 8


# ----------------------------------------------------------------------------- planes


def frame_to_planes(frame: av.VideoFrame, colour: Colour) -> list[torch.Tensor]:
    """Normalised Y'CbCr planes of a native frame: [y (h, w) on [0, 1], cb, cr (hc, wc) on
    [-0.5, 0.5]], float32, exact (no resampling)."""
    bits = _bits(frame.format.name)
    y_off, y_scale, c_off, c_scale = _levels(bits, colour.full_range)
    dtype = np.uint8 if bits == 8 else np.dtype("<u2")
    planes = []
    for i, plane in enumerate(frame.planes[:3]):
        rows = np.frombuffer(plane, dtype).reshape(plane.height, -1)[:, : plane.width]
        v = torch.from_numpy(rows.astype(np.float32))
        planes.append((v - y_off) / y_scale if i == 0 else (v - c_off) / c_scale)
    return planes


def _upsample(c: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Chroma (n, hc, wc) -> (n, h, w), bilinear with centred siting."""
    if c.shape[-2:] == (h, w):
        return c
    sy, sx = -(-h // c.shape[-2]), -(-w // c.shape[-1])  # 2 or 1 (ceil for odd sizes)
    up = F.interpolate(c[:, None], scale_factor=(sy, sx), mode="bilinear", align_corners=False)
    return up[:, 0, :h, :w]


def _downsample(c: torch.Tensor, hc: int, wc: int) -> torch.Tensor:
    """Full-resolution chroma (n, h, w) -> (n, hc, wc) by box averaging (edge-padded)."""
    h, w = c.shape[-2:]
    if (h, w) == (hc, wc):
        return c
    sy, sx = -(-h // hc), -(-w // wc)
    padded = F.pad(c[:, None], (0, wc * sx - w, 0, hc * sy - h), mode="replicate")
    return F.avg_pool2d(padded, (sy, sx))[:, 0]


def planes_to_rgb(planes: list[torch.Tensor], matrix: str) -> torch.Tensor:
    """[y (n, h, w), cb, cr (n, hc, wc)] -> R'G'B' (n, 3, h, w) float32, clamped to [0, 1]."""
    y, cb, cr = planes
    h, w = y.shape[-2:]
    ycc = torch.stack([y, _upsample(cb, h, w), _upsample(cr, h, w)], dim=1)  # (n, 3, h, w)
    return ycbcr_to_rgb(ycc, matrix).clamp_(0, 1)


def add_rgb_delta(planes: list[torch.Tensor], delta: torch.Tensor, matrix: str) -> list[torch.Tensor]:
    """Planes [y (n, h, w), cb, cr (n, hc, wc)] plus an R'G'B' change delta (n, 3, h, w),
    taken to Y'CbCr (linear) and box-averaged onto the chroma grid. Zero delta is exact."""
    dy, dcb, dcr = rgb_to_ycbcr(delta, matrix).unbind(1)  # (n, h, w) each
    y, cb, cr = planes
    hc, wc = cb.shape[-2:]
    return [y + dy, cb + _downsample(dcb, hc, wc), cr + _downsample(dcr, hc, wc)]


def quantise(
    planes: list[torch.Tensor], bits: int, full: bool, noise: list[torch.Tensor] | None = None
) -> list[np.ndarray]:
    """Normalised planes (n, h', w') -> integer codes, uint8 or uint16, clipped to the code
    range; `noise` (one (h', w') pattern per plane, in LSB) is added before rounding."""
    y_off, y_scale, c_off, c_scale = _levels(bits, full)
    out = []
    for i, p in enumerate(planes):
        v = p * y_scale + y_off if i == 0 else p * c_scale + c_off
        if noise is not None:
            v = v + noise[i]
        codes = v.round_().clamp_(0, 2**bits - 1)
        out.append(codes.numpy().astype(np.uint8 if bits == 8 else np.uint16))
    return out


def tpdf_noise(shapes: list[tuple[int, int]], seed: int) -> list[torch.Tensor]:
    """Static triangular (TPDF) dither patterns in (-1, 1) LSB, one per plane shape."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(s, generator=g) + torch.rand(s, generator=g) - 1 for s in shapes]


def codes_to_frame(codes: list[np.ndarray], pix_fmt: str, width: int, height: int) -> av.VideoFrame:
    """Integer planes (y (h, w), cb, cr (hc, wc)) -> a VideoFrame of `pix_fmt`."""
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane, arr in zip(frame.planes, codes):
        buf = np.zeros((plane.height, plane.line_size // arr.itemsize), arr.dtype)
        buf[:, : plane.width] = arr
        plane.update(buf)
    return frame


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


# ----------------------------------------------------------------------------- streams


@dataclass
class _Probe:
    """What must be known before the output header is written (from the first frame)."""

    width: int
    height: int
    family: str  # "420" | "422" | "444" of the (native) input
    colour: Colour
    display_matrix: list[int] | None


def _open_input(src: Path) -> av.container.InputContainer:
    if not src.is_file():
        raise FileNotFoundError(f"no such video: {src}")
    try:
        return av.open(str(src))
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise VideoError(f"{src}: cannot read it as a video ({getattr(e, 'strerror', None) or e})") from e


def _video_stream(inp: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The first video stream that is not cover art."""
    for s in inp.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    sound_only = bool(inp.streams.audio or inp.streams.subtitles)  # else nothing usable: corrupt
    raise VideoError(f"{inp.name}: no video stream", UNSUPPORTED if sound_only else UNREADABLE)


def _probe(src: Path) -> _Probe:
    """Decode the first frame for its format, colour tags and display matrix."""
    with _open_input(src) as inp:
        stream = _video_stream(inp)
        for packet in inp.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue
            if frames:
                frame = _native(frames[0])
                sd = frames[0].side_data.get("DISPLAYMATRIX")
                matrix = np.frombuffer(bytes(sd), "<i4").tolist() if sd is not None else None
                family = _NATIVE.match(frame.format.name).group(1)
                return _Probe(frame.width, frame.height, family, colour_of(frame), matrix)
    raise VideoError(f"{src}: the video stream has no decodable frames")


def _out_family(probe: _Probe) -> str:
    """The input's chroma family, or 4:4:4 when the size is not a multiple of it."""
    sub_x, sub_y = _SUBSAMPLING[probe.family]
    if probe.width % sub_x or probe.height % sub_y:
        log.info("%dx%d does not fit %s chroma; writing 4:4:4", probe.width, probe.height, probe.family)
        return "444"
    return probe.family


def _clean_tags(tags: dict[str, str]) -> dict[str, str]:
    """Metadata minus what describes the old file (durations, statistics, encoder)."""
    return {k: v for k, v in tags.items() if not _DROP_TAGS.match(k)}


def _encoder_options(options: VideoOptions) -> dict[str, str]:
    if options.codec == "libx265":
        return {"crf": str(options.crf), "preset": options.preset, "x265-params": "log-level=error"}
    if options.codec == "libx264":
        return {"crf": str(options.crf), "preset": options.preset}
    return {"level": "3", "slicecrc": "1"}  # ffv1


def _add_video(
    out: av.container.OutputContainer,
    src_stream: av.video.stream.VideoStream,
    probe: _Probe,
    options: VideoOptions,
    pix_fmt: str,
) -> av.video.stream.VideoStream:
    """The encoded output video stream, in the input's time base, with its colour tags."""
    rate = src_stream.average_rate or src_stream.guessed_rate or Fraction(25)
    vs = out.add_stream(options.codec, rate=rate, options=_encoder_options(options))
    vs.width = probe.width * (2 if options.compare == "side-by-side" else 1)
    vs.height, vs.pix_fmt = probe.height, pix_fmt
    vs.time_base = vs.codec_context.time_base = src_stream.time_base
    c = probe.colour
    vs.color_primaries, vs.color_trc = c.primaries, c.trc
    vs.colorspace, vs.color_range = c.colorspace, c.color_range
    if src_stream.sample_aspect_ratio:
        vs.sample_aspect_ratio = src_stream.sample_aspect_ratio
    if probe.display_matrix is not None:
        vs.set_display_matrix(probe.display_matrix)
    vs.metadata.update(_clean_tags(src_stream.metadata))
    vs.disposition = src_stream.disposition
    return vs


def _add_copies(
    out: av.container.OutputContainer, inp: av.container.InputContainer, video: av.video.stream.VideoStream
) -> dict[int, av.stream.Stream]:
    """Output streams for every other stream, packets copied. Streams without a codec
    (e.g. an MP4 chapter text track) are skipped with a warning."""
    copies = {}
    for s in inp.streams:
        if s.index == video.index:
            continue
        if s.type in ("data", "unknown") and s.codec_context is None:
            log.warning("stream #%d (%s, no codec) is not copied", s.index, s.type)
            continue
        try:
            o = out.add_stream_from_template(s)
        except (ValueError, av.FFmpegError) as e:
            name = s.codec_context.name if s.codec_context else s.type
            raise ValueError(  # an output problem: the container chosen cannot hold it
                f"stream #{s.index} ({s.type} {name}) cannot be stored in {out.format.name}; try .mkv ({e})"
            ) from e
        o.time_base = s.time_base
        o.metadata.update(_clean_tags(s.metadata))
        o.disposition = s.disposition
        copies[s.index] = o
    return copies


def _chapters(inp: av.container.InputContainer, start: Fraction, end: Fraction | None) -> list[dict]:
    """Chapters overlapping [start, end), shifted to start at 0 and clipped."""
    out = []
    for ch in inp.chapters():
        tb = ch["time_base"]
        a, b = max(ch["start"] * tb, start), ch["end"] * tb if end is None else min(ch["end"] * tb, end)
        if b > a:
            out.append({**ch, "start": round((a - start) / tb), "end": round((b - start) / tb)})
    return out


# ----------------------------------------------------------------------------- the job


@dataclass
class _Job:
    """State of one deband_video call: containers, streams, range, batch, counters."""

    inp: av.container.InputContainer
    out: av.container.OutputContainer
    video: av.video.stream.VideoStream  # input video stream
    vout: av.video.stream.VideoStream  # encoded output stream
    copies: dict[int, av.stream.Stream]  # input stream index -> output stream
    restorer: Restorer
    options: VideoOptions
    probe: _Probe
    family: str  # output chroma family
    lo: Fraction | None  # range start in seconds (absolute), None: from the beginning
    hi: Fraction | None  # range end in seconds (absolute), None: to the end
    bar: tqdm
    report: VideoReport = field(default_factory=VideoReport)
    pending: list[av.VideoFrame] = field(default_factory=list)
    done: set[int] = field(default_factory=set)  # streams that went past `hi`
    noise: list[torch.Tensor] | None = None
    timed: bool = False  # a video frame with a timestamp was seen
    untimed: int = 0  # frames numbered here because the stream has no timestamps (raw .h264)

    def in_range(self, t: Fraction) -> bool:
        return (self.lo is None or t >= self.lo) and (self.hi is None or t < self.hi)

    def shift(self, time_base: Fraction) -> int:
        """The range start in ticks of `time_base` (subtracted from every timestamp)."""
        return 0 if self.lo is None else round(self.lo / time_base)

    def finished(self) -> bool:
        """Past the range end in the video and every audio stream (sparse ones not awaited)."""
        audio = [i for i, o in self.copies.items() if o.type == "audio"]
        return self.video.index in self.done and all(i in self.done for i in audio)


@contextmanager
def _timed(report: VideoReport, name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        setattr(report, name, getattr(report, name) + time.perf_counter() - t0)


def _on_video_packet(job: _Job, packet: av.Packet) -> None:
    """Decode one packet (skipping it if corrupt) and queue the frames in range."""
    try:
        with _timed(job.report, "decode_s"):
            frames = packet.decode()
    except av.FFmpegError as e:
        job.report.skipped_packets += 1
        log.warning("skipping corrupt video packet at pts %s: %s", packet.pts, e)
        return
    for frame in frames:
        if frame.pts is None and not job.timed:  # raw .h264/.hevc: number frames at the stream rate
            rate = job.video.average_rate or job.video.guessed_rate or Fraction(25)
            frame.pts = job.untimed * max(1, round(1 / (rate * job.video.time_base)))
            job.untimed += 1
        elif frame.pts is None:
            log.warning("dropping a video frame without a timestamp")
            continue
        else:
            job.timed = True
        t = frame.pts * job.video.time_base
        if job.hi is not None and t >= job.hi:
            job.done.add(job.video.index)
        elif job.in_range(t):
            job.pending.append(frame)
            job.report.frames_in += 1
            if len(job.pending) >= job.options.batch:
                _process(job)


def _on_copy_packet(job: _Job, packet: av.Packet) -> None:
    """Remux one packet of a copied stream, untouched but for the range shift."""
    if packet.dts is None:  # the empty flush packet demux yields at the end
        return
    tb = packet.time_base
    t = (packet.pts if packet.pts is not None else packet.dts) * tb
    if job.hi is not None and t >= job.hi:
        job.done.add(packet.stream.index)
        return
    if not job.in_range(t):
        return
    shift = job.shift(tb)
    if shift:
        packet.dts -= shift
        if packet.pts is not None:
            packet.pts -= shift
    packet.stream = job.copies[packet.stream.index]
    job.out.mux(packet)


def _read_batch(job: _Job, frames: list[av.VideoFrame]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Frames -> (Y'CbCr planes on the output chroma grid, R'G'B' (n, 3, h, w) on [0, 1])."""
    p = job.probe
    per_frame = []
    for f in frames:
        f = _native(f)
        if (f.width, f.height) != (p.width, p.height):
            raise VideoError(f"{job.inp.name}: frame size changed mid-stream to {f.width}x{f.height}")
        per_frame.append(frame_to_planes(f, p.colour))
    planes = [torch.stack(ps) for ps in zip(*per_frame)]  # [y (n, h, w), cb, cr (n, hc, wc)]
    x = planes_to_rgb(planes, p.colour.matrix)  # (n, 3, h, w)
    if job.family != p.family:  # 4:4:4 fallback: base chroma on the full grid
        planes = [planes[0]] + [_upsample(c, p.height, p.width) for c in planes[1:]]
    return planes, x


def _write_batch(
    job: _Job, frames: list[av.VideoFrame], planes: list[torch.Tensor], x: torch.Tensor, restored: torch.Tensor
) -> None:
    """Compose, re-quantise and encode one batch; frames keep their pts and duration."""
    o, c = job.options, job.probe.colour
    base, delta = compose(planes, x, restored, o.compare)
    out_planes = add_rgb_delta(base, delta, c.matrix)
    if o.bit_depth == 8 and job.noise is None:
        job.noise = tpdf_noise([tuple(q.shape[-2:]) for q in out_planes], o.seed)
    codes = quantise(out_planes, o.bit_depth, c.full_range, job.noise)
    shift, vout = job.shift(job.video.time_base), job.vout
    for i, src in enumerate(frames):
        frame = codes_to_frame([q[i] for q in codes], vout.pix_fmt, vout.width, vout.height)
        frame.pts, frame.time_base, frame.duration = src.pts - shift, src.time_base, src.duration
        frame.color_primaries, frame.color_trc = c.primaries, c.trc
        frame.colorspace, frame.color_range = c.colorspace, c.color_range
        for packet in vout.encode(frame):
            job.out.mux(packet)
        job.report.frames_out += 1


def _process(job: _Job) -> None:
    """Restore and encode the queued frames."""
    frames, job.pending = job.pending, []
    if not frames:
        return
    with _timed(job.report, "decode_s"):
        planes, x = _read_batch(job, frames)
    with _timed(job.report, "model_s"):
        restored = job.restorer.restore_batch(x).float().cpu()
    if restored.shape != x.shape:
        raise ValueError(f"restore_batch returned {tuple(restored.shape)}, expected {tuple(x.shape)}")
    with _timed(job.report, "encode_s"):
        _write_batch(job, frames, planes, x, restored)
    job.bar.update(len(frames))


def _repair_dts(packets: list[av.Packet]) -> None:
    """Rebuild decode timestamps when the encoder gave impossible ones (dts > pts).

    libx265 leaves its B-frame delay uninitialised when a clip has fewer frames than that
    delay (1-2 frames at the fast presets) and emits garbage dts. The k-th dts becomes the
    k-th smallest pts less the smallest shift that keeps every dts <= its pts.
    """
    pts = [p.pts for p in packets]
    if not packets or None in pts:
        return
    ordered = sorted(pts)
    lo = ordered[0] - (ordered[-1] - ordered[0]) - 1  # no real delay exceeds the clip
    if all(p.dts is not None and lo <= p.dts <= p.pts for p in packets):
        return
    delay = max(0, max(o - q for o, q in zip(ordered, pts)))
    for packet, o in zip(packets, ordered):
        packet.dts = o - delay


def _run(job: _Job) -> None:
    """Demux everything once: video through the model, the rest remuxed."""
    if job.lo is not None and job.lo > 0:
        job.inp.seek(int(job.lo / job.video.time_base), stream=job.video, backward=True)
    streams = [job.video] + [job.inp.streams[i] for i in job.copies]
    packets = job.inp.demux(streams)
    while True:
        with _timed(job.report, "decode_s"):
            packet = next(packets, None)
        if packet is None:
            break
        if packet.stream.index == job.video.index:
            _on_video_packet(job, packet)
        else:
            with _timed(job.report, "encode_s"):
                _on_copy_packet(job, packet)
        if job.finished():
            break
    _process(job)
    with _timed(job.report, "encode_s"):
        tail = job.vout.encode(None)
        if job.report.frames_out == len(tail):  # the whole clip came out at the flush
            _repair_dts(tail)
        for packet in tail:
            job.out.mux(packet)
    if job.report.frames_out == 0:
        raise VideoError(f"{job.inp.name}: no video frames in the selected range")


# ----------------------------------------------------------------------------- entry point


def _origin(inp: av.container.InputContainer, video: av.video.stream.VideoStream) -> Fraction:
    """Time of the first video frame in seconds (the container's start when unknown)."""
    if video.start_time is not None:
        return video.start_time * video.time_base
    return Fraction(inp.start_time or 0, 1_000_000)


def _range(
    inp: av.container.InputContainer, video: av.video.stream.VideoStream, options: VideoOptions
) -> tuple[Fraction | None, Fraction | None]:
    """Absolute [lo, hi) in seconds; `start` counts from the first video frame."""
    if options.start is None and options.duration is None:
        return None, None
    origin = _origin(inp, video)
    lo = origin + Fraction(options.start or 0).limit_denominator(1_000_000)
    hi = None if options.duration is None else lo + Fraction(options.duration).limit_denominator(1_000_000)
    return lo, hi


def _expected_frames(
    video: av.video.stream.VideoStream, inp: av.container.InputContainer, lo: Fraction | None, hi: Fraction | None
) -> int | None:
    """Frame count for the progress bar: stream.frames, else duration x rate; None if unknown."""
    if lo is None and hi is None and video.frames:
        return video.frames
    rate = video.average_rate or video.guessed_rate
    origin = _origin(inp, video)
    end = origin + Fraction(inp.duration, 1_000_000) if inp.duration else None
    if hi is not None:
        end = hi if end is None else min(end, hi)
    if rate is None or end is None:
        return None
    return max(round((end - (lo if lo is not None else origin)) * rate), 0)


def _check_paths(src: Path, dst: Path, overwrite: bool) -> None:
    if not src.is_file():
        raise FileNotFoundError(f"no such video: {src}")
    if dst.exists():
        if os.path.samefile(src, dst):
            raise ValueError("the output is the input file")
        if not overwrite:
            raise FileExistsError(f"{dst} exists (pass overwrite=True to replace it)")
    if not dst.suffix:
        raise ValueError("give the output a container extension such as .mkv or .mp4")
    if not dst.parent.is_dir():
        raise ValueError(f"output folder {dst.parent} does not exist")


def _temp_path(dst: Path) -> Path:
    """A new empty `.NAME.partial-XXXXXXXX.EXT` beside dst (same extension: the muxer
    guesses the format from it), created with the usual permissions (0666 less umask)."""
    while True:
        path = dst.with_name(f".{dst.stem}.partial-{secrets.token_hex(4)}{dst.suffix}")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue


def _write(
    src: Path, tmp: Path, restorer: Restorer, options: VideoOptions, probe: _Probe, progress: bool
) -> VideoReport:
    """Open both containers, set up streams and run the job into `tmp`."""
    t0 = time.perf_counter()
    with _open_input(src) as inp:
        video = _video_stream(inp)
        video.thread_type = "AUTO"
        # Matroska would shift every stream when a copied one starts below 0 (AAC priming)
        keep_ts = {"avoid_negative_ts": "disabled"} if tmp.suffix.lower() in _MATROSKA else {}
        try:
            out = av.open(str(tmp), "w", options=keep_ts)
        except (ValueError, av.FFmpegError) as e:
            raise ValueError(f"cannot write {tmp.suffix} files ({e})") from e
        try:
            family = _out_family(probe)
            pix_fmt = f"yuv{family}p" + ("10le" if options.bit_depth == 10 else "")
            vout = _add_video(out, video, probe, options, pix_fmt)
            copies = _add_copies(out, inp, video)
            lo, hi = _range(inp, video, options)
            out.metadata.update(_clean_tags(inp.metadata))
            out.set_chapters(_chapters(inp, lo or Fraction(0), hi))
            total = _expected_frames(video, inp, lo, hi)
            with tqdm(total=total, unit="frame", disable=not progress, desc=src.name) as bar:
                job = _Job(inp, out, video, vout, copies, restorer, options, probe, family, lo, hi, bar)
                _run(job)
        except BaseException:
            try:
                out.close()
            except Exception:  # the partial file is deleted anyway
                pass
            raise
        out.close()
    job.report.total_s = time.perf_counter() - t0
    return job.report


def deband_video(
    src: str | Path, dst: str | Path, debander: Restorer, options: VideoOptions | None = None, progress: bool = True
) -> VideoReport:
    """Deband the first video stream of `src` into `dst`; every other stream is copied.

    debander: any object with `restore_batch(rgb (n, 3, h, w) float32 [0, 1]) -> same`.
    Writes `dst` atomically (temp file beside it, renamed when complete). Raises
    FileNotFoundError (no src), FileExistsError (dst exists, overwrite False), ValueError
    (dst is src, no such folder, a container that cannot be written or cannot hold a stream)
    and VideoError (unreadable, no video stream, no frames).
    """
    src, dst, options = Path(src), Path(dst), options or VideoOptions()
    _check_paths(src, dst, options.overwrite)
    probe = _probe(src)
    tmp = _temp_path(dst)
    try:
        report = _write(src, tmp, debander, options, probe, progress)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info(
        "%s: %d frames at %.2f frame/s (decode %.1fs, model %.1fs, encode %.1fs)",
        dst.name,
        report.frames_out,
        report.fps,
        report.decode_s,
        report.model_s,
        report.encode_s,
    )
    return report


# ----------------------------------------------------------------------------- analysis


def read_video_rgb(path: str | Path, max_frames: int | None = None) -> torch.Tensor:
    """Decode the first video stream to R'G'B' (t, 3, h, w) float32 on [0, 1], with the
    same colour handling as deband_video (for tests and benchmarks: holds all frames)."""
    with _open_input(Path(path)) as inp:
        frames = []
        for frame in inp.decode(_video_stream(inp)):
            f = _native(frame)
            colour = colour_of(f)
            planes = [p[None] for p in frame_to_planes(f, colour)]
            frames.append(planes_to_rgb(planes, colour.matrix)[0])
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise VideoError(f"{path}: no video frames")
    return torch.stack(frames)


def temporal_flicker(
    frames: torch.Tensor, reference: torch.Tensor | None = None, threshold: float = 1.5 / 255, margin: int = 4
) -> float:
    """Mean |frame[t+1] - frame[t]| over pixels that are static in `reference`.

    frames, reference (Tensor): shape (t, 3, h, w) or (t, h, w), range [0, 1], t >= 2.
    A pixel is static when every frame-to-frame change of the reference (default: frames)
    within `margin` pixels of it stays below `threshold` (the margin keeps a restorer's
    spatial support around moving content out). Compare temporal_flicker(out, ref=in)
    with temporal_flicker(in): a restorer that adds no flicker keeps them about equal.
    Returns nan when nothing is static.
    """
    ref = frames if reference is None else reference
    if frames.shape[0] < 2 or frames.shape != ref.shape:
        raise ValueError("need two or more frames, and a reference of the same shape")
    d_ref = (ref[1:] - ref[:-1]).abs()  # (t-1, ...)
    d_ref = d_ref.amax(dim=1) if d_ref.ndim == 4 else d_ref  # (t-1, h, w)
    moving = (d_ref >= threshold).any(dim=0).float()  # (h, w)
    moving = F.max_pool2d(moving[None, None], 2 * margin + 1, stride=1, padding=margin)[0, 0]
    static = moving == 0  # (h, w)
    if not static.any():
        return float("nan")
    d = (frames[1:] - frames[:-1]).abs()
    d = d.mean(dim=1) if d.ndim == 4 else d  # (t-1, h, w)
    return float(d[:, static].mean())

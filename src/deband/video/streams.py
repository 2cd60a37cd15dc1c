"""Containers and streams: open and probe the input, set up the output, copy what is not video.

The output video stream keeps the input's time base, colour tags, HDR mastering display and
content light level (as encoder SEI, `hdr`), aspect ratio, rotation, metadata and
disposition; every other stream (audio, subtitles, data) is set up for packets copied byte
for byte. Container metadata and chapters are carried over, less what describes
the old file. `Span` is the selected time range; every stream is trimmed and shifted by it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from deband.errors import InputError, OutputError, UnsupportedError
from deband.video.colour import Colour, colour_of, family_of, native
from deband.video.hdr import HdrMetadata
from deband.video.options import VideoOptions

log = logging.getLogger(__name__)

_SUBSAMPLING = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}  # family -> (sub_x, sub_y)
_DROP_TAGS = re.compile(
    r"^(duration|encoder|_statistics.*|bps|number_of_.*|major_brand|"
    r"minor_version|compatible_brands|creation_time)(-.*)?$",
    re.I,
)
_MATROSKA = (".mkv", ".mka", ".mk3d", ".webm")
_DECODE_TIMES_ONLY = ("avi",)  # FFmpeg's names of containers without presentation times


# ----------------------------------------------------------------------------- input


def open_input(src: Path) -> av.container.InputContainer:
    """The opened container; InputError when src is missing or not a media file."""
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    try:
        return av.open(str(src))
    except (av.FFmpegError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or e
        raise InputError(f"{src}: cannot read it as a video ({reason})") from e


def video_stream(inp: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The first video stream that is not cover art."""
    for s in inp.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    if inp.streams.audio or inp.streams.subtitles:
        raise UnsupportedError(f"{inp.name}: no video stream")
    raise InputError(f"{inp.name}: no video stream")  # nothing usable: corrupt


def decode_times_only(inp: av.container.InputContainer) -> bool:
    """Whether the container stores decode times only (AVI): the pts FFmpeg gives its video
    packets are made up from them, and are wrong once the codec reorders frames."""
    return inp.format.name in _DECODE_TIMES_ONLY


@dataclass(frozen=True)
class Probe:
    """What must be known before the output header is written (from the first frame)."""

    width: int
    height: int
    family: str  # "420" | "422" | "444" of the (native) input
    colour: Colour
    display_matrix: list[int] | None
    hdr: HdrMetadata | None = None  # mastering display / content light level

    @property
    def out_family(self) -> str:
        """The input's chroma family, or 4:4:4 when the size is not a multiple of it."""
        sub_x, sub_y = _SUBSAMPLING[self.family]
        return "444" if self.width % sub_x or self.height % sub_y else self.family


def probe(src: Path) -> Probe:
    """Decode the first frame for its format, colour tags and display matrix."""
    with open_input(src) as inp:
        stream = video_stream(inp)
        for packet in inp.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue
            if frames:
                frame = native(frames[0])
                sd = frames[0].side_data.get("DISPLAYMATRIX")
                matrix = np.frombuffer(bytes(sd), "<i4").tolist() if sd is not None else None
                hdr = HdrMetadata.of_frame(frames[0])
                return Probe(frame.width, frame.height, family_of(frame), colour_of(frame), matrix, hdr)
    raise InputError(f"{src}: the video stream has no decodable frames")


# ----------------------------------------------------------------------------- time range


@dataclass(frozen=True)
class Span:
    """The selected range [lo, hi) in absolute seconds; None: from the start / to the end.
    zero: the time that becomes 0 in the output (None: lo); a chunk of a longer range keeps
    the whole range's zero."""

    lo: Fraction | None = None
    hi: Fraction | None = None
    zero: Fraction | None = None

    @classmethod
    def select(
        cls, inp: av.container.InputContainer, video: av.video.stream.VideoStream, options: VideoOptions
    ) -> Span:
        """`options.start` counts from the first video frame."""
        if options.start is None and options.duration is None:
            return cls()
        lo = _origin(inp, video) + Fraction(options.start or 0).limit_denominator(1_000_000)
        hi = None if options.duration is None else lo + Fraction(options.duration).limit_denominator(1_000_000)
        return cls(lo, hi)

    def contains(self, t: Fraction) -> bool:
        return (self.lo is None or t >= self.lo) and (self.hi is None or t < self.hi)

    def past(self, t: Fraction) -> bool:
        return self.hi is not None and t >= self.hi

    def shift(self, time_base: Fraction) -> int:
        """The output's zero in ticks of `time_base` (subtracted from every timestamp)."""
        zero = self.lo if self.zero is None else self.zero
        return 0 if zero is None else round(zero / time_base)

    def expected_frames(self, inp: av.container.InputContainer, video: av.video.stream.VideoStream) -> int | None:
        """Frame count for the progress bar: stream.frames, else duration x rate; None if unknown."""
        if self.lo is None and self.hi is None and video.frames:
            return video.frames
        rate = video.average_rate or video.guessed_rate
        origin = _origin(inp, video)
        end = origin + Fraction(inp.duration, 1_000_000) if inp.duration else None
        if self.hi is not None:
            end = self.hi if end is None else min(end, self.hi)
        if rate is None or end is None:
            return None
        return max(round((end - (self.lo if self.lo is not None else origin)) * rate), 0)


def _origin(inp: av.container.InputContainer, video: av.video.stream.VideoStream) -> Fraction:
    """Time of the first video frame in seconds (the container's start when unknown)."""
    if video.start_time is not None:
        return video.start_time * video.time_base
    return Fraction(inp.start_time or 0, 1_000_000)


def next_packet(packets: Iterator[av.Packet], name: str, where: str) -> av.Packet | None:
    """The next packet of a demux, None at its end; a read error raises InputError naming the
    input and `where` the read stopped (e.g. "past 12 frames")."""
    try:
        return next(packets, None)
    except av.FFmpegError as e:
        raise InputError(f"{name}: cannot read {where} ({e})") from e


def repair_dts(packets: list[av.Packet]) -> None:
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


# ----------------------------------------------------------------------------- output


@dataclass
class Streams:
    """The open containers of one run and how their streams pair up."""

    inp: av.container.InputContainer
    out: av.container.OutputContainer
    video: av.video.stream.VideoStream  # the input video stream
    vout: av.video.stream.VideoStream  # the encoded output video stream
    copies: dict[int, av.stream.Stream]  # input stream index -> output stream, packets copied
    span: Span


@contextmanager
def open_streams(
    src: Path,
    tmp: Path | BinaryIO,
    dst: Path,
    probe: Probe,
    options: VideoOptions,
    span: Span | None = None,
    video_only: bool = False,
    video_from: av.video.stream.VideoStream | None = None,
) -> Iterator[Streams]:
    """Open src and tmp (a file written as dst's container, or a seekable file object whose
    `name` gives the container), set up every output stream, metadata and chapters. Both
    containers are closed on the way out; on an error the output is closed quietly (the
    caller deletes tmp).

    span: the range (default: from options); video_only: no other stream, metadata or
    chapters (a chunk); video_from: copy packets of this already encoded stream instead of
    encoding (joining chunks)."""
    with open_input(src) as inp:
        video = video_stream(inp)
        video.thread_type = "AUTO"
        # Matroska would shift every stream when a copied one starts below 0 (AAC priming)
        keep_ts = {"avoid_negative_ts": "disabled"} if dst.suffix.lower() in _MATROSKA else {}
        try:
            out = av.open(str(tmp) if isinstance(tmp, Path) else tmp, "w", options=keep_ts)
        except (ValueError, av.FFmpegError) as e:
            raise OutputError(f"{dst}: cannot write {dst.suffix} files ({e})") from e
        try:
            span = span or Span.select(inp, video, options)
            vout = _add_video(out, video, probe, options, video_from)
            copies = {} if video_only else _add_copies(out, inp, video, dst)
            if not video_only:
                out.metadata.update(_clean_tags(inp.metadata))
                out.set_chapters(_chapters(inp, span.lo or Fraction(0), span.hi))
            yield Streams(inp, out, video, vout, copies, span)
        except BaseException:
            try:
                out.close()
            except Exception:  # the partial file is deleted anyway
                pass
            raise
        out.close()


def _clean_tags(tags: dict[str, str]) -> dict[str, str]:
    """Metadata minus what describes the old file (durations, statistics, encoder)."""
    return {k: v for k, v in tags.items() if not _DROP_TAGS.match(k)}


def _encoder_options(options: VideoOptions, hdr: HdrMetadata | None = None) -> dict[str, str]:
    sei = hdr.encoder_params(options.codec) if hdr is not None else []
    t = options.threads
    if options.codec == "libx265":
        pools = [f"pools={t}", f"frame-threads={t}"] if t else []
        params = ":".join(["log-level=error", *pools, *sei])
        return {"crf": str(options.crf), "preset": options.preset, "x265-params": params}
    if options.codec == "libx264":
        return ({"crf": str(options.crf), "preset": options.preset} | ({"threads": str(t)} if t else {})
                | ({"x264-params": ":".join(sei)} if sei else {}))
    if hdr is not None:
        log.warning("ffv1 output cannot carry the HDR mastering display / content light level; only the tags are kept")
    return {"level": "3", "slicecrc": "1"}  # ffv1


def _add_video(
    out: av.container.OutputContainer,
    src_stream: av.video.stream.VideoStream,
    probe: Probe,
    options: VideoOptions,
    template: av.video.stream.VideoStream | None = None,
) -> av.video.stream.VideoStream:
    """The encoded output video stream (or one copying `template`'s packets), in the input's
    time base, with its colour tags."""
    family = probe.out_family
    if family != probe.family and template is None:
        log.info("%dx%d does not fit %s chroma; writing 4:4:4", probe.width, probe.height, probe.family)
    rate = src_stream.average_rate or src_stream.guessed_rate or Fraction(25)
    if template is not None:
        vs = out.add_stream_from_template(template)
        vs.codec_context.framerate = rate  # Matroska's default frame duration comes from it
    else:
        vs = out.add_stream(options.codec, rate=rate, options=_encoder_options(options, probe.hdr))
        vs.width = probe.width * (2 if options.compare == "side-by-side" else 1)
        vs.height, vs.pix_fmt = probe.height, f"yuv{family}p" + ("10le" if options.bit_depth == 10 else "")
    vs.time_base = vs.codec_context.time_base = src_stream.time_base
    probe.colour.tag(vs)
    if src_stream.sample_aspect_ratio:
        vs.sample_aspect_ratio = src_stream.sample_aspect_ratio
    if probe.display_matrix is not None:
        vs.set_display_matrix(probe.display_matrix)
    vs.metadata.update(_clean_tags(src_stream.metadata))
    vs.disposition = src_stream.disposition
    return vs


def _add_copies(
    out: av.container.OutputContainer,
    inp: av.container.InputContainer,
    video: av.video.stream.VideoStream,
    dst: Path,
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
            raise OutputError(  # the container chosen cannot hold it
                f"{dst}: stream #{s.index} ({s.type} {name}) cannot be stored in {out.format.name}; "
                f"try .mkv ({e})"
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

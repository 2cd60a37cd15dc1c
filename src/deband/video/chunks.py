"""Long videos in pieces: keyframes -> chunk plan -> one video-only file per chunk -> join.

The input's keyframe times are read once by demuxing the video stream (nothing is decoded).
The selected range is cut at the keyframes nearest to even steps of about `seconds`, so each
chunk decodes on its own from its first frame. A chunk is debanded and encoded into a small
MP4 holding only its video, with timestamps already shifted as the whole output's are (MP4
keeps the input's time base exactly). The join remuxes the chunks' packets in order beside
the input's other streams, copied as the single-pass path copies them: no frame is encoded
twice. Each encoder starts its chunk with a keyframe, so lossy output differs from a single
pass in its bits (not in frame count, timestamps or the copied streams); lossless output
(FFV1) decodes to the same frames.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from deband.errors import InputError
from deband.io.outputs import atomic_output
from deband.video.options import Restorer, VideoOptions, VideoReport
from deband.video.pipeline import copy_packet, encode_piece
from deband.video.streams import Probe, Span, Streams, decode_times_only, open_input, open_streams, video_stream

log = logging.getLogger(__name__)

CHUNK_SUFFIX = ".mp4"  # keeps any time base exactly and holds HEVC, H.264 and FFV1


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Keyframes:
    """Where the input's video stream can be cut, in absolute seconds, and how long each
    frame lasts (for the joined packets, which the chunk container does not keep)."""

    times: list[Fraction]  # presentation times of keyframes, sorted
    start: Fraction  # the first frame's time
    end: Fraction  # the last frame's time plus its duration
    durations: dict[Fraction, Fraction] = field(default_factory=dict)  # frame time -> duration


def scan_keyframes(src: Path, options: VideoOptions) -> tuple[Keyframes, Span]:
    """Demux (no decoding) the first video stream for its keyframe times, and the range
    `options` select. A stream without timestamps (raw .h264) gives no keyframes; one in a
    container of decode times only (AVI) is timed by them, as `FrameClock` times its frames."""
    with open_input(src) as inp:
        video = video_stream(inp)
        span = Span.select(inp, video, options)
        tb, times, first, last, durations = video.time_base, [], None, None, {}
        dts = decode_times_only(inp)
        try:
            for packet in inp.demux(video):
                ts = packet.dts if dts else packet.pts
                if ts is None:
                    continue
                t = ts * tb
                first = t if first is None else min(first, t)
                last = max(last or t, t + (packet.duration or 0) * tb)
                if packet.duration:
                    durations[t] = packet.duration * tb
                if packet.is_keyframe:
                    times.append(t)
        except av.FFmpegError as e:
            raise InputError(f"{src}: cannot read past {len(times)} keyframes ({e})") from e
    if first is None:
        return Keyframes([], Fraction(0), Fraction(0)), span
    return Keyframes(sorted(set(times)), first, last, durations), span


def plan_chunks(keys: Keyframes, span: Span, seconds: float) -> list[Span]:
    """Cut `span` into chunks of about `seconds` (0: one chunk) at the nearest keyframes.

    The range (up to the input's end) is divided into n = round(length / seconds) even steps,
    at most four per keyframe (more would find no other keyframe); each inner boundary moves
    to the nearest keyframe strictly inside the range, and boundaries that meet are merged.
    Chunks keep span's ends and zero, so their timestamps are the whole output's.
    """
    lo = span.lo if span.lo is not None else keys.start
    hi = keys.end if span.hi is None else min(span.hi, max(keys.end, lo))
    inner = [t for t in keys.times if lo < t < hi]
    n = min(round((hi - lo) / Fraction(seconds)), 4 * len(inner) + 4) if seconds > 0 and inner else 1
    edges = [span.lo, *_nearest(inner, [lo + (hi - lo) * k / n for k in range(1, n)]), span.hi]
    return [Span(a, b, _zero(span)) for a, b in zip(edges[:-1], edges[1:])]


def _nearest(keys: list[Fraction], targets: list[Fraction]) -> list[Fraction]:
    """The key nearest to each target (keys and targets sorted), each key once."""
    cuts: list[Fraction] = []
    for target in targets:
        i = bisect.bisect_left(keys, target)
        near = min(keys[max(i - 1, 0) : i + 1], key=lambda t: abs(t - target))
        if not cuts or near > cuts[-1]:
            cuts.append(near)
    return cuts


# ----------------------------------------------------------------------------- one chunk


@dataclass(frozen=True)
class ChunkResult:
    index: int
    frames: int  # video frames in the chunk file
    sha256: str  # of the chunk file
    report: VideoReport


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def encode_chunk(
    src: Path, dst: Path, index: int, restorer: Restorer, options: VideoOptions, info: Probe, span: Span
) -> ChunkResult:
    """Deband the frames of `span` into the video-only file dst, written atomically."""
    with atomic_output(dst, overwrite=True, sources=[src]) as tmp:
        report = encode_piece(src, tmp, restorer, options, info, span)
    return ChunkResult(index, report.frames_out, file_sha256(dst), report)


def encode_chunk_in_memory(
    src: Path, index: int, restorer: Restorer, options: VideoOptions, info: Probe, span: Span
) -> tuple[ChunkResult, bytes]:
    """`encode_chunk` into memory, for a process that may be killed at any moment (a Ray
    worker): nothing of the chunk is ever on disk, so nothing can be left there."""
    buf = io.BytesIO()
    buf.name = f"chunk-{index:05d}{CHUNK_SUFFIX}"  # the container format is guessed from it
    report = encode_piece(src, buf, restorer, options, info, span)
    data = buf.getvalue()
    return ChunkResult(index, report.frames_out, hashlib.sha256(data).hexdigest(), report), data


def count_frames(path: Path) -> int | None:
    """Video packets in a chunk file (demux only); None when it cannot be read."""
    try:
        with av.open(str(path)) as c:
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except (av.FFmpegError, IndexError, OSError):
        return None


# ----------------------------------------------------------------------------- join


def check_container(src: Path, dst: Path, info: Probe, options: VideoOptions) -> None:
    """Set up dst's streams without writing anything, so that a container that cannot hold
    them (OutputError) is refused now, not after the chunks. No file is created: the
    output is closed before its header is written."""
    with open_streams(src, dst.parent / f".{dst.name}.check{dst.suffix}", dst, info, options):
        pass


def join_chunks(
    src: Path, tmp: Path, dst: Path, files: list[Path], keys: Keyframes, info: Probe, options: VideoOptions
) -> int:
    """Remux the chunks' video, in order, with the input's other streams, metadata and
    chapters (as `deband_video` copies them) into tmp; each frame keeps its input
    duration. Returns the video frames written."""
    with av.open(str(files[0])) as first:
        template = first.streams.video[0]
        with open_streams(src, tmp, dst, info, options, video_from=template) as streams:
            return _mux(streams, _chunk_packets(files, streams, keys.durations))


def _chunk_packets(files: list[Path], streams: Streams, durations: dict[Fraction, Fraction]) -> Iterator[av.Packet]:
    """Every video packet of the chunks in order, bound to the output video stream. A dts
    that would not grow across a chunk boundary is raised by one tick (still <= pts)."""
    last, zero = None, _zero(streams.span)
    for path in files:
        with av.open(str(path)) as c:
            for packet in c.demux(c.streams.video[0]):
                if packet.dts is None:  # the empty flush packet
                    continue
                if last is not None and packet.dts * packet.time_base <= last:
                    packet.dts = int(last / packet.time_base) + 1
                    if packet.pts is not None and packet.dts > packet.pts:
                        raise InputError(f"{path}: chunk timestamps overlap the previous chunk")
                last = packet.dts * packet.time_base
                d = None if packet.pts is None else durations.get(packet.pts * packet.time_base + zero)
                if d is not None:
                    packet.duration = round(d / packet.time_base)
                packet.stream = streams.vout
                yield packet


def _zero(span: Span) -> Fraction:
    """The input time (seconds) that is 0 in the output."""
    return next((t for t in (span.zero, span.lo) if t is not None), Fraction(0))


def _mux(s: Streams, video: Iterator[av.Packet]) -> int:
    """Interleave chunk video with the copied packets in time order; stop reading the input
    once its video and every audio stream are past the range end (as the single pass does)."""
    written, pending = 0, next(video, None)
    zero = _zero(s.span)
    if s.span.lo is not None and s.span.lo > 0:
        s.inp.seek(int(s.span.lo / s.video.time_base), stream=s.video, backward=True)
    awaited = {s.video.index} | {i for i, o in s.copies.items() if o.type == "audio"}
    try:
        for packet in s.inp.demux([s.video] + [s.inp.streams[i] for i in s.copies]):
            if packet.dts is None:
                continue
            t = packet.dts * packet.time_base
            if packet.stream.index == s.video.index:
                if s.span.past(t):
                    awaited.discard(s.video.index)
            else:
                while pending is not None and pending.dts * pending.time_base <= t - zero:
                    s.out.mux(pending)
                    written, pending = written + 1, next(video, None)
                if copy_packet(s, packet):
                    awaited.discard(packet.stream.index)
            if not awaited:
                break
    except av.FFmpegError as e:
        raise InputError(f"{s.inp.name}: cannot read it again while joining ({e})") from e
    while pending is not None:
        s.out.mux(pending)
        written, pending = written + 1, next(video, None)
    return written

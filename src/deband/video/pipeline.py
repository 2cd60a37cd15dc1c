"""decode -> batch -> restore -> encode, with every other stream remuxed alongside.

The input is demuxed once. Video packets are decoded, frames inside the selected range are
queued, and each full batch is converted to R'G'B' and handed on as a `Work` item with the
copied packets (shifted by the range start) demuxed since the previous one. Three stages
(`deband.video.stages`) then overlap: decode in the caller's thread, restore_batch in a
"deband-model" thread, and compose + encode + mux in a "deband-writer" thread
(`overlapping`: by default only when the model runs on a GPU; otherwise they run one after
another in the caller's thread). The
queues between them hold one batch each, so at most five batches are alive at once (being
decoded, queued, in the model, queued, being written).

All muxing, copied packets included, happens on the writer stage, in demux order: an `av`
output container is not thread-safe, and a single writer muxes exactly the packet sequence
the serial path muxes, so both paths mux the same packets in the same order (a lock around
`out.mux` would let copied packets overtake the video still in the model stage). The output
is written to a temporary file beside dst (see `deband.io.outputs.atomic_output`) and renamed
when complete.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import torch
from tqdm import tqdm

from deband.errors import InputError, OutputError
from deband.io.chroma import upsample
from deband.io.outputs import atomic_output, check_output
from deband.io.planes import add_rgb_delta, codes_to_frame, planes_to_codes, planes_to_rgb
from deband.video.colour import compose, dither_patterns, frame_to_planes, native
from deband.video.options import Restorer, VideoOptions, VideoReport
from deband.video.stages import Serial, Stages
from deband.video.streams import (
    Probe,
    Span,
    Streams,
    decode_times_only,
    next_packet,
    open_streams,
    probe,
    repair_dts,
)

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """Decoded frames waiting for the restorer."""

    size: int  # frames per restore_batch call
    frames: list[av.VideoFrame] = field(default_factory=list)

    def add(self, frame: av.VideoFrame) -> bool:
        """Queue a frame; True when the batch is full."""
        self.frames.append(frame)
        return len(self.frames) >= self.size

    def take(self) -> list[av.VideoFrame]:
        frames, self.frames = self.frames, []
        return frames


@dataclass
class Work:
    """One step of the stream in demux order: copied packets to mux, then a batch of frames."""

    packets: list[av.Packet]  # copied packets (shifted, bound to their output stream)
    frames: list[av.VideoFrame]  # may be empty (packets after the last batch)
    planes: list[torch.Tensor] | None = None  # input Y'CbCr on the output chroma grid
    x: torch.Tensor | None = None  # R'G'B' (n, 3, h, w) float32 on [0, 1]
    restored: torch.Tensor | None = None  # restore_batch(x), the same


class FrameClock:
    """Times of decoded frames, from the frames and the packets fed to the decoder.

    A frame keeps its own pts, but in two cases. A stream without timestamps (raw
    .h264/.hevc) is numbered at its frame rate, and once a stream has shown timestamps, a
    frame without one is dropped. A container that stores decode times only
    (`decode_times_only`: AVI) has its pts made up by FFmpeg, out of order once the codec
    reorders frames (B-frames): there the k-th frame out of the decoder gets the k-th
    smallest decode time of the packets fed, the time of its slot in the stream."""

    def __init__(self, video: av.video.stream.VideoStream, decode_times: bool = False):
        self.video = video
        self.timed = False  # a frame with a timestamp was seen
        self.untimed = 0  # frames numbered here
        self.slots: list[int] | None = [] if decode_times else None  # heap of decode times not yet given out

    def feed(self, packet: av.Packet) -> None:
        """Note a packet about to be decoded."""
        if self.slots is not None and packet.size and packet.dts is not None:
            heapq.heappush(self.slots, packet.dts)

    def time(self, frame: av.VideoFrame) -> Fraction | None:
        """The frame's time in seconds (its pts set when rebuilt or numbered), or None: drop it."""
        if self.slots:
            frame.pts = heapq.heappop(self.slots)
        if frame.pts is None and not self.timed:
            rate = self.video.average_rate or self.video.guessed_rate or Fraction(25)
            frame.pts = self.untimed * max(1, round(1 / (rate * self.video.time_base)))
            self.untimed += 1
        elif frame.pts is None:
            log.warning("dropping a video frame without a timestamp")
            return None
        else:
            self.timed = True
        return frame.pts * self.video.time_base


class FrameWriter:
    """Restored batches -> output frames: compose, back to Y'CbCr codes, encode and mux.
    Frames keep their pts (less the range start) and duration."""

    def __init__(self, streams: Streams, probe: Probe, options: VideoOptions):
        self.out, self.vout, self.colour, self.options = streams.out, streams.vout, probe.colour, options
        self.shift = streams.span.shift(streams.video.time_base)
        self.dither: list[np.ndarray] | None = None  # 8-bit output: one static pattern per plane
        self.written = 0

    def write(
        self, frames: list[av.VideoFrame], planes: list[torch.Tensor], x: torch.Tensor, restored: torch.Tensor
    ) -> None:
        """planes: the input Y'CbCr on the output chroma grid; x, restored: (n, 3, h, w) on [0, 1]."""
        o, c = self.options, self.colour
        base, delta = compose(planes, x, restored, o.compare)
        out_planes = add_rgb_delta(base, delta, c.matrix)
        if o.bit_depth == 8 and self.dither is None:
            self.dither = dither_patterns(out_planes, o.seed)
        codes = planes_to_codes(out_planes, o.bit_depth, c.full_range, self.dither)
        vout = self.vout
        for i, src in enumerate(frames):
            frame = codes_to_frame([q[i] for q in codes], vout.pix_fmt, vout.width, vout.height)
            frame.pts, frame.time_base, frame.duration = src.pts - self.shift, src.time_base, src.duration
            c.tag(frame)
            for packet in vout.encode(frame):
                self.out.mux(packet)
            self.written += 1

    def flush(self) -> None:
        """Drain the encoder (repairing its timestamps when the whole clip comes out here)."""
        tail = self.vout.encode(None)
        if self.written == len(tail):
            repair_dts(tail)
        for packet in tail:
            self.out.mux(packet)


class VideoPath:
    """Video packets -> frames in range -> batches -> restorer -> writer, as stages."""

    def __init__(
        self, streams: Streams, restorer: Restorer, probe: Probe, options: VideoOptions, report: VideoReport, bar: tqdm
    ):
        self.name, self.streams, self.probe, self.restorer = streams.inp.name, streams, probe, restorer
        self.clock = FrameClock(streams.video, decode_times_only(streams.inp))
        self.batch = Batch(options.batch)
        self.packets: list[av.Packet] = []  # copied packets waiting for the next batch
        self.writer = FrameWriter(streams, probe, options)
        self.report, self.bar = report, bar
        steps = [("deband-model", self._restore), ("deband-writer", self._write)]
        self.stages = Stages(steps) if overlapping(options, restorer) else Serial(steps)

    def feed(self, packet: av.Packet) -> bool:
        """Decode one packet (skipping it if corrupt) and queue its frames in range; full
        batches go on to the model stage. True once a frame lies past the range end."""
        self.clock.feed(packet)
        try:
            with self.report.timing("decode_s"):
                frames = packet.decode()
        except av.FFmpegError as e:
            self.report.skipped_packets += 1
            log.warning("skipping corrupt video packet at pts %s: %s", packet.pts, e)
            return False
        past = False
        for frame in frames:
            t = self.clock.time(frame)
            if t is None:
                continue
            if self.streams.span.past(t):
                past = True
            elif self.streams.span.contains(t):
                self.report.frames_in += 1
                if self.batch.add(frame):
                    self._hand_on()
        return past

    def copy(self, packet: av.Packet) -> bool:
        """Queue a packet of a copied stream for the writer; True when past the range end."""
        return copy_packet(self.streams, packet, self.packets.append)

    def finish(self) -> None:
        """Restore and write what is queued, wait for the stages and drain the encoder."""
        self._hand_on()
        self.stages.close()
        with self.report.timing("encode_s"):
            self.writer.flush()
        self.report.frames_out = self.writer.written
        if self.writer.written == 0:
            raise InputError(f"{self.name}: no video frames in the selected range")

    def _hand_on(self) -> None:
        """The queued frames (as R'G'B') and copied packets -> the model stage."""
        work = Work(self.packets, self.batch.take())
        if not work.frames and not work.packets:
            return
        self.packets = []
        if work.frames:
            with self.report.timing("decode_s"):
                work.planes, work.x = self._to_rgb(work.frames)
        self.stages.put(work)

    def _restore(self, work: Work) -> Work:
        """The model stage."""
        if work.x is not None:
            with self.report.timing("model_s"):
                work.restored = self.restorer.restore_batch(work.x).float().cpu()
            if work.restored.shape != work.x.shape:
                raise ValueError(f"restore_batch returned {tuple(work.restored.shape)}, expected {tuple(work.x.shape)}")
        return work

    def _write(self, work: Work) -> None:
        """The writer stage: the copied packets, then the batch, into the output."""
        with self.report.timing("encode_s"):
            for packet in work.packets:
                self.streams.out.mux(packet)
            if work.frames:
                self.writer.write(work.frames, work.planes, work.x, work.restored)
        self.report.frames_out = self.writer.written
        self.bar.update(len(work.frames))

    def _to_rgb(self, frames: list[av.VideoFrame]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Frames -> (Y'CbCr planes on the output chroma grid, R'G'B' (n, 3, h, w) on [0, 1])."""
        p = self.probe
        per_frame = []
        for f in frames:
            f = native(f)
            if (f.width, f.height) != (p.width, p.height):
                raise InputError(f"{self.name}: frame size changed mid-stream to {f.width}x{f.height}")
            per_frame.append(frame_to_planes(f, p.colour))
        planes = [torch.stack(ps) for ps in zip(*per_frame)]  # [y (n, h, w), cb, cr (n, hc, wc)]
        x = planes_to_rgb(planes, p.colour.matrix)  # (n, 3, h, w)
        if p.out_family != p.family:  # 4:4:4 fallback: base chroma on the full grid
            planes = [planes[0]] + [upsample(c, p.height, p.width) for c in planes[1:]]
        return planes, x


def overlapping(options: VideoOptions, restorer: Restorer) -> bool:
    """Whether decode, model and encode overlap: as `options.pipeline` says, and when it says
    nothing (None), when the restorer runs on a GPU. On a CPU the network already uses every
    core, and overlapping it with the encoder made both wait on each other: 0.83 against
    1.50 frames/s at 1080p on 2 cores (`benchmarks/video_speed.py --serial`)."""
    if options.pipeline is not None:
        return options.pipeline
    device = getattr(restorer, "device", None)
    return device is not None and torch.device(device).type == "cuda"


def copy_packet(streams: Streams, packet: av.Packet, mux: Callable[[av.Packet], None] | None = None) -> bool:
    """Remux one packet of a copied stream, untouched but for the range shift, through `mux`
    (default: `streams.out.mux`). True when it lies past the range end (it is then dropped)."""
    if packet.dts is None:  # the empty flush packet demux yields at the end
        return False
    tb = packet.time_base
    t = (packet.pts if packet.pts is not None else packet.dts) * tb
    if streams.span.past(t):
        return True
    if not streams.span.contains(t):
        return False
    shift = streams.span.shift(tb)
    if shift:
        packet.dts -= shift
        if packet.pts is not None:
            packet.pts -= shift
    packet.stream = streams.copies[packet.stream.index]
    (mux or streams.out.mux)(packet)
    return False


def _run(streams: Streams, video: VideoPath, report: VideoReport) -> None:
    """Demux everything once: video through `video`, the rest remuxed. Stops when the video
    and every audio stream are past the range end (sparse streams are not awaited). On any
    error the stages are stopped before the containers are closed."""
    s = streams
    if s.span.lo is not None and s.span.lo > 0:
        s.inp.seek(int(s.span.lo / s.video.time_base), stream=s.video, backward=True)
    awaited = {s.video.index} | {i for i, o in s.copies.items() if o.type == "audio"}
    packets = s.inp.demux([s.video] + [s.inp.streams[i] for i in s.copies])
    with video.stages:
        while awaited:
            with report.timing("decode_s"):
                packet = next_packet(packets, s.inp.name, f"past {report.frames_in} frames")
            if packet is None:
                break
            past = video.feed(packet) if packet.stream.index == s.video.index else video.copy(packet)
            if past:
                awaited.discard(packet.stream.index)
            video.stages.check()  # a stage that failed stops the demux too
        video.finish()


def _write(
    src: Path,
    tmp: Path | BinaryIO,
    dst: Path,
    restorer: Restorer,
    options: VideoOptions,
    info: Probe,
    progress: bool,
    span: Span | None = None,
) -> VideoReport:
    """Open both containers, set up streams and run everything into `tmp` (the video of
    `span` alone when one is given)."""
    t0 = time.perf_counter()
    report = VideoReport()
    with open_streams(src, tmp, dst, info, options, span=span, video_only=span is not None) as streams:
        total = streams.span.expected_frames(streams.inp, streams.video)
        with tqdm(total=total, unit="frame", disable=not progress, desc=src.name) as bar:
            _run(streams, VideoPath(streams, restorer, info, options, report, bar), report)
    report.total_s = time.perf_counter() - t0
    return report


def encode_piece(
    src: Path, tmp: Path | BinaryIO, restorer: Restorer, options: VideoOptions, info: Probe, span: Span
) -> VideoReport:
    """Deband and encode only the video frames inside `span` into `tmp`, a file or a seekable
    file object (its container from its name's suffix), timestamps shifted by `span`'s zero;
    nothing else is copied. The caller owns tmp (see `deband.video.chunks`)."""
    return _write(src, tmp, Path(tmp if isinstance(tmp, Path) else tmp.name), restorer, options, info, False, span)


def output_error(dst: Path, error: OSError | av.FFmpegError) -> OutputError:
    """An error met while writing dst (an OSError: disk full, no permission; an FFmpeg error:
    the encoder or muxer refused what it was given) as an OutputError naming dst, not its
    temporary file."""
    why = error.strerror or error
    if isinstance(error, OSError):
        return OutputError(f"{dst}: write failed ({why})")
    return OutputError(f"{dst}: the encoder or muxer refused the video ({why})")


def check_paths(src: str | Path, dst: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Refuse, before any work, a missing input and an output that is the input, exists
    (unless `overwrite`), has no folder or no container extension. Returns both as Paths."""
    src = Path(src)
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    dst = check_output(dst, overwrite, sources=[src])
    if not dst.suffix:
        raise OutputError(f"{dst}: give the output a container extension such as .mkv or .mp4")
    return src, dst


def deband_video(
    src: str | Path, dst: str | Path, debander: Restorer, options: VideoOptions | None = None, progress: bool = True
) -> VideoReport:
    """Deband the first video stream of `src` into `dst`; every other stream is copied.

    debander: any object with `restore_batch(rgb (n, 3, h, w) float32 [0, 1]) -> same`, called
    from a "deband-model" thread, one batch at a time in order (the caller's thread when
    options.pipeline is False). An error in any stage stops them all and is raised here.
    Writes `dst` atomically (temp file beside it, renamed when complete; removed on any
    error or KeyboardInterrupt). Raises InputError (missing, unreadable, no frames),
    UnsupportedError (no video stream), OutputError (dst exists: OutputExistsError, dst is
    src: SameFileError, no such folder, a container that cannot be written or cannot hold a
    stream, writing failed).
    """
    options = options or VideoOptions()
    src, dst = check_paths(src, dst, options.overwrite)
    info = probe(src)
    try:
        with atomic_output(dst, options.overwrite, sources=[src]) as tmp:
            report = _write(src, tmp, dst, debander, options, info, progress)
    except (OSError, av.FFmpegError) as e:
        raise output_error(dst, e) from e
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

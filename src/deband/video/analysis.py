"""Looking at videos as tensors: stream frames one at a time, decode a whole clip, measure
frame-to-frame flicker.

`iter_frames` yields one R'G'B' frame at a time, exactly as `deband_video` hands them to the
restorer (same range, same colour, corrupt packets skipped), so memory stays bounded.
`read_video_rgb` holds every frame in memory: for tests, benchmarks and examples.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import torch
import torch.nn.functional as F

from deband.errors import InputError
from deband.io.planes import planes_to_rgb
from deband.video.colour import colour_of, frame_to_planes, native
from deband.video.options import VideoOptions
from deband.video.pipeline import FrameClock
from deband.video.streams import Span, decode_times_only, next_packet, open_input, probe, video_stream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """One decoded video frame."""

    index: int  # position among the frames yielded, from 0
    seconds: float  # presentation time stamp in seconds (the stream's own clock)
    duration: float  # seconds until the next frame (the frame rate's interval when untagged)
    rgb: torch.Tensor  # (3, h, w) float32 on [0, 1], R'G'B'


def expected_frames(path: str | Path, start: float | None = None, duration: float | None = None) -> int | None:
    """How many frames `iter_frames` will yield, from the container's figures; None if unknown."""
    with open_input(Path(path)) as inp:
        video = video_stream(inp)
        return Span.select(inp, video, VideoOptions(start=start, duration=duration)).expected_frames(inp, video)


def iter_frames(path: str | Path, start: float | None = None, duration: float | None = None) -> Iterator[Frame]:
    """Decode the first video stream of `path` one frame at a time, as `deband_video` does: the
    frames of [start, start + duration) seconds (None: from the first / to the last), converted
    with the colour of the stream's first frame; corrupt packets are skipped with a warning.

    Raises InputError (missing, unreadable, no frames in range), UnsupportedError (no video).
    """
    src = Path(path)
    colour = probe(src).colour
    index = 0
    with open_input(src) as inp:
        video = video_stream(inp)
        span = Span.select(inp, video, VideoOptions(start=start, duration=duration))
        if span.lo is not None and span.lo > 0:
            inp.seek(int(span.lo / video.time_base), stream=video, backward=True)
        clock, rate = FrameClock(video, decode_times_only(inp)), video.average_rate or video.guessed_rate or 25
        for frame in _decoded(inp, video, clock):
            t = clock.time(frame)
            if t is None or not span.contains(t):
                if t is not None and span.past(t):
                    break
                continue
            planes = [p[None] for p in frame_to_planes(native(frame), colour)]  # [(1, h, w), (1, hc, wc) x 2]
            step = frame.duration * video.time_base if frame.duration else 1 / rate
            yield Frame(index, float(t), float(step), planes_to_rgb(planes, colour.matrix)[0])
            index += 1
    if index == 0:
        raise InputError(f"{src}: no video frames in the selected range")


def _decoded(
    inp: av.container.InputContainer, video: av.video.stream.VideoStream, clock: FrameClock
) -> Iterator[av.VideoFrame]:
    """Every frame of `video` in presentation order (each packet fed to `clock` first),
    corrupt packets skipped with a warning."""
    packets = inp.demux(video)
    while True:
        packet = next_packet(packets, inp.name, "it to the end")
        if packet is None:
            return
        clock.feed(packet)
        try:
            frames = packet.decode()
        except av.FFmpegError as e:
            log.warning("skipping corrupt video packet at pts %s: %s", packet.pts, e)
            continue
        yield from frames


def read_video_rgb(path: str | Path, max_frames: int | None = None) -> torch.Tensor:
    """Decode the first video stream to R'G'B' (t, 3, h, w) float32 on [0, 1], with the
    same colour handling as deband_video (each frame's own tags)."""
    with open_input(Path(path)) as inp:
        frames = []
        for frame in inp.decode(video_stream(inp)):
            f = native(frame)
            colour = colour_of(f)
            planes = [p[None] for p in frame_to_planes(f, colour)]  # [(1, h, w), (1, hc, wc) x 2]
            frames.append(planes_to_rgb(planes, colour.matrix)[0])
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise InputError(f"{path}: no video frames")
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

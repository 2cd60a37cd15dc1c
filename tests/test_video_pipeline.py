"""deband.video.stages and the pipelined video path: the same output as the serial path,
failures anywhere stop every stage, and no thread outlives a run (64x48 clips, 12 frames)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import av
import pytest
import torch
import torch.nn.functional as F

from deband.errors import InputError, OutputError
from deband.video import VideoOptions, deband_video
from deband.video.pipeline import FrameWriter, VideoPath
from deband.video.stages import Serial, Stages
from helpers.clips import make_clip


def stage_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("deband-")]


def demuxed(path: Path) -> list[tuple[int, int | None, bytes]]:
    """(stream, dts, bytes) of every packet, in the order the file stores them."""
    with av.open(str(path)) as c:
        return [(p.stream.index, p.dts, bytes(p)) for p in c.demux() if p.size]


def decoded(path: Path) -> list[tuple[int, list[bytes]]]:
    """(pts, plane bytes) of every video frame."""
    with av.open(str(path)) as c:
        return [(f.pts, [bytes(p) for p in f.planes]) for f in c.decode(video=0)]


class Blur:
    """Stand-in restorer: 3x3 box blur, optionally slow, raising on batch number `fail_at`."""

    def __init__(self, delay: float = 0.0, fail_at: int | None = None):
        self.delay, self.fail_at, self.calls = delay, fail_at, 0

    def restore_batch(self, rgb: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("model failed")
        time.sleep(self.delay)
        return F.avg_pool2d(F.pad(rgb, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """H.264 + AAC in Matroska, 12 frames."""
    return make_clip(tmp_path_factory.mktemp("clips") / "in.mkv", audio=1)


# ----------------------------------------------------------------------------- same output


@pytest.mark.parametrize("codec", ["ffv1", "libx265"])
def test_pipelined_and_serial_write_the_same_streams(clip, tmp_path, codec):
    """x265 with fixed thread counts (threads=1: one pool, one frame thread) is deterministic."""
    outs = []
    for pipeline in (True, False):
        dst = tmp_path / f"{pipeline}.mkv"
        opts = VideoOptions(codec=codec, preset="ultrafast", batch=3, threads=1, pipeline=pipeline)
        report = deband_video(clip, dst, Blur(), opts, progress=False)
        assert report.frames_out == 12
        outs.append(dst)
    assert decoded(outs[0]) == decoded(outs[1])
    assert demuxed(outs[0]) == demuxed(outs[1])  # the same packets, muxed in the same order
    with av.open(str(outs[0])) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
    audio_in = [b for i, _, b in demuxed(clip) if i == 1]
    assert [b for i, _, b in demuxed(outs[0]) if i == 1] == audio_in


def test_slow_model_keeps_every_frame_in_order(clip, tmp_path):
    dst = tmp_path / "out.mkv"
    report = deband_video(clip, dst, Blur(delay=0.05), VideoOptions(codec="ffv1", batch=2, pipeline=True),
                          progress=False)
    pts = [p for p, _ in decoded(dst)]
    assert report.frames_out == len(pts) == 12
    assert all(a < b for a, b in zip(pts, pts[1:]))
    assert report.model_s >= 6 * 0.05 and report.total_s > 0


# ----------------------------------------------------------------------------- failures


@pytest.mark.parametrize("pipeline", [True, False])
def test_model_failure_on_second_batch(clip, tmp_path, pipeline):
    dst = tmp_path / "out.mkv"
    with pytest.raises(RuntimeError, match="model failed"):
        deband_video(clip, dst, Blur(fail_at=2), VideoOptions(codec="ffv1", batch=2, pipeline=pipeline), progress=False)
    assert list(tmp_path.iterdir()) == []
    assert stage_threads() == []


def test_writer_failure_stops_every_stage(clip, tmp_path, monkeypatch):
    write, calls = FrameWriter.write, []

    def failing(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        write(self, *args)

    monkeypatch.setattr(FrameWriter, "write", failing)
    dst = tmp_path / "out.mkv"
    with pytest.raises(OutputError, match="No space left"):  # an OSError names dst, as in one thread
        deband_video(clip, dst, Blur(), VideoOptions(codec="ffv1", batch=2, pipeline=True), progress=False)
    assert list(tmp_path.iterdir()) == [] and stage_threads() == []


@pytest.mark.parametrize("error", [KeyboardInterrupt(), InputError("frame size changed")])
def test_failure_in_the_decode_stage_while_others_are_busy(clip, tmp_path, monkeypatch, error):
    """The caller's thread (decode) fails, as Ctrl-C or a changed frame size would, while the
    model stage is busy with earlier batches."""
    to_rgb, calls = VideoPath._to_rgb, []

    def failing(self, frames):
        calls.append(1)
        if len(calls) == 4:
            raise error
        return to_rgb(self, frames)

    monkeypatch.setattr(VideoPath, "_to_rgb", failing)
    dst = tmp_path / "out.mkv"
    with pytest.raises(type(error)):
        deband_video(clip, dst, Blur(delay=0.2), VideoOptions(codec="ffv1", batch=1, pipeline=True), progress=False)
    assert list(tmp_path.iterdir()) == [] and stage_threads() == []


# ----------------------------------------------------------------------------- stages


def test_stages_keep_order_and_serial_matches():
    got = []
    steps = [("deband-a", lambda x: x * 2), ("deband-b", got.append)]
    with Stages(steps) as stages:
        for i in range(50):
            stages.put(i)
        stages.close()
    want = []
    with Serial([("a", lambda x: x * 2), ("b", want.append)]) as serial:
        for i in range(50):
            serial.put(i)
        serial.close()
    assert got == want == [2 * i for i in range(50)]
    assert stage_threads() == []


def test_a_late_stage_failing_frees_earlier_ones_blocked_on_full_queues():
    def boom(x):
        raise ValueError("writer failed")

    with pytest.raises(ValueError, match="writer failed"):
        with Stages([("deband-a", lambda x: x), ("deband-b", boom)]) as stages:
            for i in range(100):  # the queues fill up behind the failed stage
                stages.put(i)
            stages.close()
    assert stage_threads() == []


def test_a_stuck_stage_is_left_after_grace(caplog):
    release = threading.Event()
    caplog.set_level(logging.WARNING)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with Stages([("deband-stuck", lambda x: release.wait()), ("deband-b", lambda x: None)], grace=0.2) as stages:
            stages.put(1)
            raise KeyboardInterrupt
    assert time.monotonic() - t0 < 5
    assert "deband-stuck is still busy" in caplog.text
    release.set()
    deadline = time.monotonic() + 5
    while stage_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stage_threads() == []


def test_stages_overlap_by_default_only_when_the_model_is_on_a_gpu():
    from deband.video.pipeline import overlapping

    class OnDevice:
        def __init__(self, kind):
            self.device = torch.device(kind)

    assert overlapping(VideoOptions(), OnDevice("cuda")) and not overlapping(VideoOptions(), OnDevice("cpu"))
    assert not overlapping(VideoOptions(), Blur())  # a restorer without a device runs on the CPU
    assert overlapping(VideoOptions(pipeline=True), Blur())
    assert not overlapping(VideoOptions(pipeline=False), OnDevice("cuda"))

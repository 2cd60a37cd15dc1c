"""deband.video.chunks, resume and jobs: keyframe plans, chunked output against a single pass,
the work folder and its manifest, resuming after interrupts, workers, SIGTERM to the CLI."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest
import torch

from deband.config import ModelConfig
from deband.model.unet import UNet
from deband.restore.debander import Debander
from deband.video import VideoOptions, deband_video
from deband.video.chunks import Keyframes, plan_chunks, scan_keyframes
from deband.video.jobs import ChunkOptions, deband_video_chunked
from deband.video.resume import MANIFEST, restorer_identity
from deband.video.streams import Span
from helpers.clips import frames, make_clip, same_frames, work_folders

FFV1 = VideoOptions(codec="ffv1", batch=5)
QUARTER = ChunkOptions(seconds=0.2)  # 20 frames at 25 frames/s with keyframes every 5: 4 chunks
VFR_PTS = [0, 1, 3, 4, 5, 8, 9, 10, 12, 13, 14, 17, 18, 20, 21, 23, 26, 27, 28, 30]

# ----------------------------------------------------------------------------- helpers


class Counting:
    """Stand-in restorer: identity that counts its calls and, when asked, raises
    KeyboardInterrupt at call `stop_at` (one call per chunk at batch 5 and GOP 5)."""

    def __init__(self, stop_at: int | None = None):
        self.calls, self.stop_at = 0, stop_at

    def restore_batch(self, rgb: torch.Tensor) -> torch.Tensor:
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.calls += 1
        return rgb


def interrupted(src: Path, dst: Path, after: int, options: VideoOptions = FFV1) -> None:
    with pytest.raises(KeyboardInterrupt):
        deband_video_chunked(src, dst, Counting(stop_at=after), options, QUARTER, progress=False)


def video_pts(path: Path) -> list[Fraction]:
    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
        return [f.pts * tb for f in c.decode(video=0)]


def packets(path: Path, index: int) -> list[tuple[bytes, int | None]]:
    with av.open(str(path)) as c:
        return [(bytes(p), p.pts) for p in c.demux(c.streams[index]) if p.size]


@pytest.fixture(scope="module")
def identity() -> Debander:
    """An untrained UNet: zero-initialised heads make it exactly the identity (picklable)."""
    return Debander(model=UNet(ModelConfig(channels=(8, 8, 8), refine=0, smooth_scales=0)).eval(), steps=1)


@pytest.fixture
def gop5(tmp_path) -> Path:
    """20 frames, a keyframe every 5."""
    return make_clip(tmp_path / "gop5.mkv", n=20, codec="ffv1", gop=5)


@pytest.fixture(scope="module")
def vfr_av(tmp_path_factory) -> Path:
    """VFR H.264 (keyframe every 5), AAC + Opus, SubRip, chapters, in Matroska."""
    path = tmp_path_factory.mktemp("clips") / "vfr.mkv"
    return make_clip(path, n=20, pts=VFR_PTS, audio=2, subtitles=True, chapters=True, gop=5)


# ----------------------------------------------------------------------------- planning


@pytest.mark.parametrize("gop", [4, 5, 7])
def test_plan_cuts_at_keyframes(tmp_path, gop):
    src = make_clip(tmp_path / "in.mkv", n=23, codec="ffv1", gop=gop)
    keys, span = scan_keyframes(src, VideoOptions())
    assert keys.times == [Fraction(i, 25) for i in range(0, 23, gop)]
    assert (keys.start, keys.end) == (0, Fraction(23, 25))
    plan = plan_chunks(keys, span, 0.25)
    assert plan[0].lo is None and plan[-1].hi is None and len(plan) >= 3
    cuts = [c.lo for c in plan[1:]]
    assert cuts == [c.hi for c in plan[:-1]] and cuts == sorted(set(cuts))
    assert set(cuts) <= set(keys.times)
    n = round(Fraction(23, 25) / Fraction(1, 4))
    for k, cut in enumerate(cuts, 1):  # each the keyframe nearest its even step
        target = Fraction(23, 25) * k / n
        assert abs(cut - target) == min(abs(t - target) for t in keys.times)
    assert all(c.shift(Fraction(1, 25)) == 0 for c in plan)  # every chunk keeps time 0


def test_one_keyframe_or_no_length_is_one_chunk(tmp_path):
    src = make_clip(tmp_path / "in.mp4", n=12)  # the encoder's default GOP: one keyframe
    keys, span = scan_keyframes(src, VideoOptions())
    assert len(keys.times) == 1 and plan_chunks(keys, span, 0.1) == [Span(None, None, Fraction(0))]
    many = Keyframes([Fraction(i, 5) for i in range(10)], Fraction(0), Fraction(2))
    assert len(plan_chunks(many, Span(), 0)) == 1
    assert len(plan_chunks(many, Span(), 2)) == len(plan_chunks(many, Span(), 60)) == 1
    assert len(plan_chunks(many, Span(), 0.4)) == 5


def test_plan_of_a_vfr_range():
    times = [Fraction(t, 100) for t in (0, 7, 19, 22, 41, 43, 60, 88, 97)]
    keys = Keyframes(times, Fraction(0), Fraction(1))
    span = Span(Fraction(5, 100), Fraction(90, 100))
    plan = plan_chunks(keys, span, 0.3)  # steps at 0.333 and 0.617 -> keyframes 0.41 and 0.60
    assert [(c.lo, c.hi) for c in plan] == [
        (Fraction(5, 100), Fraction(41, 100)),
        (Fraction(41, 100), Fraction(60, 100)),
        (Fraction(60, 100), Fraction(90, 100)),
    ]
    assert all(c.zero == Fraction(5, 100) for c in plan)  # shifted as the whole range


def test_plan_past_the_end_or_below_a_keyframe_interval():
    many = Keyframes([Fraction(i, 5) for i in range(10)], Fraction(0), Fraction(2))
    far = plan_chunks(many, Span(Fraction(0), Fraction(100)), 0.5)  # a --duration far past the clip's 2 s
    assert len(far) == 4 and [c.lo for c in far] == [c.lo for c in plan_chunks(many, Span(Fraction(0)), 0.5)]
    tiny = plan_chunks(many, Span(), 1e-6)  # a chunk per keyframe interval, at once
    assert [c.lo for c in tiny] == [None, *many.times[1:]]


# ----------------------------------------------------------------------------- chunked = single pass


@pytest.mark.slow
@pytest.mark.parametrize("trim", [{}, dict(start=0.1, duration=0.9)])
def test_chunked_ffv1_equals_single_pass(vfr_av, tmp_path, identity, trim):
    opts = VideoOptions(codec="ffv1", batch=3, **trim)
    one, many = tmp_path / "one.mkv", tmp_path / "many.mkv"
    deband_video(vfr_av, one, identity, opts, progress=False)
    report = deband_video_chunked(vfr_av, many, identity, opts, ChunkOptions(seconds=0.25), progress=False)
    with av.open(str(vfr_av)) as c:
        assert len(plan_chunks(*scan_keyframes(vfr_av, opts), 0.25)) >= 3
        assert [s.type for s in c.streams] == ["video", "audio", "audio", "subtitle"]
    assert report.frames_out == len(video_pts(one)) == (20 if not trim else 14)
    assert video_pts(many) == video_pts(one)
    assert same_frames(many, one)
    for index in (1, 2, 3):  # AAC, Opus, SubRip: the same bytes at the same times
        assert packets(many, index) == packets(one, index) and packets(one, index)
    with av.open(str(one)) as a, av.open(str(many)) as b:
        assert [ch["start"] for ch in a.chapters()] == [ch["start"] for ch in b.chapters()]
        assert a.metadata.get("title") == b.metadata.get("title") == "test clip"
        assert a.streams.video[0].codec_context.color_primaries == b.streams.video[0].codec_context.color_primaries
    assert sorted(tmp_path.iterdir()) == [many, one]  # the work folder is gone


@pytest.mark.slow
def test_chunked_x264_has_the_frames_and_times_of_a_single_pass(vfr_av, tmp_path, identity):
    opts = VideoOptions(codec="libx264", preset="ultrafast")
    one, many = tmp_path / "one.mkv", tmp_path / "many.mkv"
    deband_video(vfr_av, one, identity, opts, progress=False)
    deband_video_chunked(vfr_av, many, identity, opts, ChunkOptions(seconds=0.25), progress=False)
    assert video_pts(many) == video_pts(one) and len(video_pts(one)) == 20
    assert packets(many, 1) == packets(one, 1)


# ----------------------------------------------------------------------------- resume


@pytest.mark.parametrize("after", [0, 1, 3])
def test_resume_makes_only_the_missing_chunks(gop5, tmp_path, after):
    dst, whole = tmp_path / "out.mkv", tmp_path / "whole.mkv"
    interrupted(gop5, dst, after)
    assert not dst.exists() and not list(tmp_path.glob(".*.partial-*"))
    assert len(work_folders(tmp_path)) == (1 if after else 0)  # kept only with finished chunks
    rerun = Counting()
    deband_video_chunked(gop5, dst, rerun, FFV1, QUARTER, progress=False)
    assert rerun.calls == 4 - after
    deband_video_chunked(gop5, whole, Counting(), FFV1, QUARTER, progress=False)
    assert same_frames(dst, whole) and len(frames(dst)) == 20
    assert work_folders(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_chunk_is_made_again(gop5, tmp_path, damage):
    dst = tmp_path / "out.mkv"
    interrupted(gop5, dst, 3)
    (work,) = work_folders(tmp_path)
    assert len((work / MANIFEST).read_text()) > 0 and len(list(work.glob("chunk-*.mp4"))) == 3
    chunk = work / "chunk-00001.mp4"
    data = chunk.read_bytes()
    if damage == "truncate":
        chunk.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        chunk.write_bytes(data[:-200] + bytes(b ^ 0xFF for b in data[-200:]))
    else:
        chunk.unlink()
    rerun = Counting()
    deband_video_chunked(gop5, dst, rerun, FFV1, QUARTER, progress=False)
    assert rerun.calls == 2  # chunk 1 again, and chunk 3
    assert len(frames(dst)) == 20


def test_fresh_starts_over(gop5, tmp_path):
    dst = tmp_path / "out.mkv"
    interrupted(gop5, dst, 2)
    rerun = Counting()
    deband_video_chunked(gop5, dst, rerun, FFV1, ChunkOptions(seconds=0.2, fresh=True), progress=False)
    assert rerun.calls == 4 and work_folders(tmp_path) == []


@pytest.mark.slow
def test_changed_settings_get_another_work_folder(gop5, tmp_path):
    dst = tmp_path / "out.mkv"
    interrupted(gop5, dst, 2)
    (first,) = work_folders(tmp_path)
    interrupted(gop5, dst, 1, VideoOptions(codec="ffv1", batch=5, bit_depth=8))
    assert len(work_folders(tmp_path)) == 2
    rerun = Counting()
    deband_video_chunked(gop5, dst, rerun, FFV1, QUARTER, progress=False)
    assert rerun.calls == 2 and work_folders(tmp_path) != [first]  # the first folder's 2 chunks reused


def test_fresh_removes_every_work_folder_of_the_output(gop5, tmp_path):
    dst = tmp_path / "out.mkv"
    interrupted(gop5, dst, 2, VideoOptions(codec="ffv1", batch=5, bit_depth=8))
    interrupted(gop5, dst, 1)
    assert len(work_folders(tmp_path)) == 2
    rerun = Counting()
    deband_video_chunked(gop5, dst, rerun, FFV1, ChunkOptions(seconds=0.2, fresh=True), progress=False)
    assert rerun.calls == 4 and work_folders(tmp_path) == []


def test_a_work_folder_of_other_settings_is_named_once(gop5, tmp_path, caplog):
    dst = tmp_path / "out.mkv"
    interrupted(gop5, dst, 2, VideoOptions(codec="ffv1", batch=5, bit_depth=8))
    (other,) = work_folders(tmp_path)
    with caplog.at_level(logging.WARNING, logger="deband"):
        deband_video_chunked(gop5, dst, Counting(), FFV1, QUARTER, progress=False)
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert re.fullmatch(rf"{re.escape(str(other))}: [0-9.]+ kB left by an earlier run with other settings; .*rm -r.*",
                        line), line
    assert work_folders(tmp_path) == [other]  # kept: the same settings again resume it


def test_restorer_identity_follows_weights_and_settings():
    def model(seed):
        torch.manual_seed(seed)
        return UNet(ModelConfig(channels=(8, 8, 8), refine=0, smooth_scales=0)).eval()

    a = restorer_identity(Debander(model=model(0), steps=2))
    assert a == restorer_identity(Debander(model=model(0), steps=2))
    assert a != restorer_identity(Debander(model=model(0), steps=3))
    changed = model(0)
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    assert a["weights_sha256"] != restorer_identity(Debander(model=changed, steps=2))["weights_sha256"]


# ----------------------------------------------------------------------------- workers and signals


@pytest.mark.slow
def test_two_jobs_give_the_frames_of_one(gop5, tmp_path, identity):
    one, two = tmp_path / "one.mkv", tmp_path / "two.mkv"
    deband_video_chunked(gop5, one, identity, FFV1, QUARTER, progress=False)
    deband_video_chunked(gop5, two, identity, FFV1, ChunkOptions(seconds=0.2, jobs=2), progress=False)
    assert same_frames(two, one) and video_pts(two) == video_pts(one)
    assert work_folders(tmp_path) == []


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("jobs", [1, 2])
def test_sigterm_stops_the_command_and_keeps_finished_chunks(tmp_path, tiny_weights, jobs):
    src = make_clip(tmp_path / "in.mp4", n=200, gop=5)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "out.mkv"
    cmd = [sys.executable, "-m", "deband.cli", "video", str(src), "-o", str(dst), "--weights", str(tiny_weights),
           "--chunk", "0.2", "--steps", "20", "--codec", "ffv1", "--jobs", str(jobs)]
    proc = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".*.deband-work-*/" + MANIFEST)):  # a chunk is finished and recorded
            assert proc.poll() is None, f"the command ended early: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no chunk was finished"
            time.sleep(0.02)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        stopped = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and stopped < 10, (proc.returncode, stopped, err)
    assert err.splitlines() == ["deband: interrupted; no partial output was left"]  # no leaked semaphore
    assert not dst.exists()
    (work,) = work_folders(out)
    assert list(out.iterdir()) == [work]  # nothing but the work folder
    assert not list(work.glob(".*.partial-*")) and (work / MANIFEST).exists()

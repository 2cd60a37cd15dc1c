"""deband.video.library and `deband video DIR -o OUTDIR`: every video of a folder, past bad files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from deband.cli.exits import OUTPUT, UNREADABLE
from deband.video.library import list_videos, output_paths
from helpers.clips import make_clip

ENV = dict(os.environ, OMP_NUM_THREADS="1")


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_list_videos_and_output_names(tmp_path):
    for name in ("b.mp4", "a.AVI", "a.webm", "notes.txt", ".hidden.mkv", "c.mov"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.mkv").mkdir()
    videos = list_videos(tmp_path)
    assert [p.name for p in videos] == ["a.AVI", "a.webm", "b.mp4", "c.mov"]
    out = tmp_path / "out"
    assert [p.name for p in output_paths(videos, out)] == ["a.AVI.mkv", "a.webm.mkv", "b.mp4", "c.mov"]
    assert all(p.parent == out for p in output_paths(videos, out))


@pytest.mark.slow
def test_folder_mode_goes_past_a_bad_file(tmp_path, tiny_weights):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    make_clip(src / "good.mp4", n=8, gop=4)
    make_clip(src / "done.mkv", n=4)
    (src / "broken.mp4").write_text("not a video at all\n" * 50)
    (out / "done.mkv").write_bytes(b"finished earlier")
    cmd = [sys.executable, "-m", "deband.cli", "video", str(src), "-o", str(out), "--weights", str(tiny_weights),
           "--preset", "ultrafast", "--chunk", "0.16"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == UNREADABLE, r.stderr
    rows = {line.split()[1]: line.split()[0] for line in r.stdout.splitlines()[:3]}
    assert rows == {"good.mp4": "done", "broken.mp4": "failed", "done.mkv": "skipped"}, r.stdout
    assert "1 done, 1 failed, 1 skipped of 3" in r.stdout
    assert r.stderr.count("deband: error:") == 1 and "broken.mp4: cannot read" in r.stderr
    assert frame_count(out / "good.mp4") == 8
    assert (out / "done.mkv").read_bytes() == b"finished earlier"
    assert sorted(p.name for p in out.iterdir()) == ["done.mkv", "good.mp4"]  # no work folder, no partial file
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert again.returncode == UNREADABLE and "0 done, 1 failed, 2 skipped of 3" in again.stdout


def test_folder_mode_resumes_a_partial_output(tmp_path, tiny_weights):
    """A work folder left by an interrupted run of the same command is picked up."""
    from deband.restore.debander import Debander
    from deband.video import VideoOptions
    from deband.video.jobs import ChunkOptions
    from deband.video.library import deband_library

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    make_clip(src / "clip.mkv", n=12, gop=4, codec="ffv1")
    debander = Debander.load(tiny_weights, "cpu", steps=1)
    opts, chunking = VideoOptions(codec="ffv1", batch=4), ChunkOptions(seconds=0.16)

    seen = []
    real = debander.restore_batch

    def stop_at_second_chunk(rgb):
        if len(seen) == 1:
            raise KeyboardInterrupt
        seen.append(rgb.shape[0])
        return real(rgb)

    debander.restore_batch = stop_at_second_chunk
    try:
        deband_library(src, out, debander, opts, chunking, progress=False)
    except KeyboardInterrupt:
        pass
    assert len(list(out.glob(".clip.mkv.deband-work-*/chunk-*.mp4"))) == 1
    debander.restore_batch = lambda rgb: seen.append(rgb.shape[0]) or real(rgb)
    report = deband_library(src, out, debander, opts, chunking, progress=False)
    assert [dst.name for _, dst, _ in report.done] == ["clip.mkv"] and not report.failed
    assert seen == [4, 4, 4]  # the first chunk was not made again
    assert frame_count(out / "clip.mkv") == 12 and sorted(p.name for p in out.iterdir()) == ["clip.mkv"]


@pytest.mark.slow
def test_output_folder_equal_to_the_input_folder_is_refused(tmp_path, tiny_weights):
    """Else a.mp4 would be its own output, and a rerun would take e.mkv, made from e.avi, as an input."""
    lib = tmp_path / "lib"
    lib.mkdir()
    make_clip(lib / "a.mp4", n=4)
    make_clip(lib / "e.avi", n=4, codec="mpeg4")
    before = {p.name: p.read_bytes() for p in lib.iterdir()}
    cmd = [sys.executable, "-m", "deband.cli", "video", str(lib), "-o", str(tmp_path / "." / "lib"),
           "--weights", str(tiny_weights), "--preset", "ultrafast"]
    for _ in range(2):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
        assert r.returncode == OUTPUT and "the output folder is the input folder" in r.stderr, r.stderr
        assert {p.name: p.read_bytes() for p in lib.iterdir()} == before

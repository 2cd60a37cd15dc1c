"""Hostile and odd video inputs through the real CLI: exit code, one line, nothing left behind.

Clips are made with `clips.make_clip` in tmp_path (64x48, a few frames); every run uses --preset ultrafast.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from deband.cli.exits import OUTPUT, UNREADABLE, UNSUPPORTED, USAGE
from deband.video import VideoOptions, deband_video
from helpers.clips import H, W, add_audio, encode_audio, make_clip

ENV = dict(os.environ, OMP_NUM_THREADS="1")


def deband(*args, preexec_fn=None):
    cmd = [sys.executable, "-m", "deband.cli", "video", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV, preexec_fn=preexec_fn)


def add_silence(out: av.container.OutputContainer) -> None:
    encode_audio(out, add_audio(out), 0.15, 0)  # 8 AAC packets


def frames_of(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def leftovers(folder: Path, keep: set[Path] = frozenset()) -> list[Path]:
    """Files in folder (hidden partial files included) other than `keep`."""
    return sorted(p for p in folder.iterdir() if p not in keep)


def assert_clean_failure(r: subprocess.CompletedProcess, code: int) -> None:
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deband: error:"), r.stderr
    assert "Traceback" not in r.stderr


def assert_success(r: subprocess.CompletedProcess, dst: Path, frames: int) -> None:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "error" not in r.stderr.lower(), r.stderr
    assert f"{dst}: {frames} frames" in r.stdout
    assert len(frames_of(dst)) == frames
    assert not list(dst.parent.glob(".*.partial-*")), list(dst.parent.iterdir())


# ----------------------------------------------------------------------------- bad inputs


def _zero(d: Path) -> Path:
    (d / "zero.mp4").write_bytes(b"")
    return d / "zero.mp4"


def _text(d: Path) -> Path:
    (d / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    return d / "notes.mp4"


def _truncated(d: Path) -> Path:
    data = make_clip(d / "whole.mp4", n=8).read_bytes()
    (d / "whole.mp4").unlink()
    (d / "half.mp4").write_bytes(data[: len(data) // 2])
    return d / "half.mp4"


def _audio_only(d: Path) -> Path:
    with av.open(str(d / "sound.m4a"), "w") as out:
        add_silence(out)
    return d / "sound.m4a"


def _no_frames(d: Path) -> Path:
    """A video stream that never gets a packet, beside an audio track."""
    with av.open(str(d / "empty.mkv"), "w") as out:
        vs = out.add_stream("ffv1", rate=25)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        add_silence(out)
    return d / "empty.mkv"


BAD = {  # name: (maker, exit code, words the message must hold)
    "zero-byte": (_zero, UNREADABLE, "cannot read"),
    "text-file": (_text, UNREADABLE, "cannot read"),
    "truncated": (_truncated, UNREADABLE, "cannot read"),
    "audio-only": (_audio_only, UNSUPPORTED, "no video stream"),
    "no-frames": (_no_frames, UNREADABLE, "no decodable frames"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input(tmp_path, tiny_weights, name):
    make, code, words = BAD[name]
    src = make(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    r = deband(src, "-o", out / "x.mkv", "--weights", tiny_weights, "--preset", "ultrafast")
    assert_clean_failure(r, code)
    assert words in r.stderr and src.name in r.stderr
    assert leftovers(out) == []


# ----------------------------------------------------------------------------- odd but valid inputs


@pytest.mark.slow
def test_one_frame_clip(tmp_path, tiny_weights):
    src = make_clip(tmp_path / "one.mp4", n=1)
    dst = tmp_path / "one-out.mkv"
    assert_success(deband(src, "-o", dst, "--weights", tiny_weights, "--preset", "ultrafast"), dst, 1)


@pytest.mark.slow
def test_odd_dimensions(tmp_path, tiny_weights):
    src = make_clip(tmp_path / "odd.mkv", n=4, size=(65, 33), codec="ffv1")
    dst = tmp_path / "odd-out.mkv"
    assert_success(deband(src, "-o", dst, "--weights", tiny_weights, "--preset", "ultrafast"), dst, 4)
    f = frames_of(dst)[0]
    assert (f.width, f.height) == (65, 33)


@pytest.mark.slow
def test_corrupt_packet_mid_h264_is_skipped_with_a_warning(tmp_path, tiny_weights):
    good = make_clip(tmp_path / "good.mkv", n=10)
    bad = tmp_path / "bad.mkv"
    with av.open(str(good)) as inp, av.open(str(bad), "w") as out:
        st = out.add_stream_from_template(inp.streams.video[0])
        for k, p in enumerate(q for q in inp.demux() if q.size):
            if k == 5:  # a P-frame in the middle: same timing, random payload
                junk = av.Packet(np.random.default_rng(0).integers(0, 256, p.size, np.uint8).tobytes())
                junk.pts, junk.dts, junk.time_base, junk.duration = p.pts, p.dts, p.time_base, p.duration
                p = junk
            p.stream = st
            out.mux(p)
    dst = tmp_path / "bad-out.mkv"
    r = deband(bad, "-o", dst, "--weights", tiny_weights, "--preset", "ultrafast")
    assert r.returncode == 0, r.stderr
    assert "deband: warning: skipped 1 corrupt packet(s)" in r.stderr.splitlines()
    assert f"{dst}: 9 frames" in r.stdout and len(frames_of(dst)) == 9
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_raw_h264_with_garbage_inserted(tmp_path, tiny_weights):
    """An elementary stream has no timestamps; frames are numbered at the stream's rate."""
    data = make_clip(tmp_path / "clean.h264", n=10).read_bytes()
    src = tmp_path / "garbage.h264"
    src.write_bytes(data[: len(data) // 2] + bytes(range(256)) * 3 + data[len(data) // 2 :])
    dst = tmp_path / "garbage-out.mkv"
    r = deband(src, "-o", dst, "--weights", tiny_weights, "--preset", "ultrafast")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    n = int(r.stdout.split(f"{dst}: ")[1].split()[0])
    times = [float(f.pts * f.time_base) for f in frames_of(dst)]
    assert 8 <= n <= 10 and len(times) == n
    assert times == sorted(times) and times[1] - times[0] == pytest.approx(0.04, abs=2e-3)


class Identity:
    def restore_batch(self, rgb):
        return rgb


def luma(frame: av.VideoFrame) -> np.ndarray:
    plane = frame.planes[0]
    dtype = np.uint8 if frame.format.name.endswith("p") else np.dtype("<u2")
    return np.frombuffer(plane, dtype).reshape(plane.height, -1)[:, : plane.width].astype(np.int64)


FFMPEG = ["ffmpeg", "-v", "error", "-y"]


def b_frames(path: Path) -> Path:
    """15 frames of H.264 with B-frames (a keyframe every 5) by the ffmpeg program."""
    subprocess.run([*FFMPEG, "-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate=25", "-frames:v", "15", "-c:v",
                    "libx264", "-bf", "2", "-g", "5", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg program is not installed")
def test_h264_with_b_frames_in_avi(tmp_path, identity_weights):
    """AVI stores no presentation times: FFmpeg makes them up, out of order once B-frames
    reorder the pictures. Chunked (the command) and in one pass, the identity gives back
    the pictures of the same stream in MP4, at its times."""
    mp4, avi = b_frames(tmp_path / "b.mp4"), tmp_path / "b.avi"
    subprocess.run([*FFMPEG, "-i", str(mp4), "-c", "copy", str(avi)], check=True)
    chunked, single = tmp_path / "chunked.mkv", tmp_path / "single.mkv"
    r = deband(avi, "-o", chunked, "--weights", identity_weights, "--codec", "ffv1", "--chunk", "0.2")
    assert_success(r, chunked, 15)
    deband_video(avi, single, Identity(), VideoOptions(codec="ffv1"), progress=False)
    want = frames_of(mp4)
    for out in (chunked, single):
        got = frames_of(out)
        assert [f.time for f in got] == pytest.approx([f.time for f in want])
        for a, b in zip(want, got):  # 8-bit codes at 10 bits
            np.testing.assert_array_equal(luma(b), luma(a) << 2)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg program is not installed")
def test_timestamps_a_muxer_refuses_are_one_line(tmp_path, tiny_weights):
    """Matroska with B-frames stamped in decode order (as AVI's would be): the frames come out
    of the decoder with times going back, which the output's muxer refuses."""
    src = tmp_path / "decode-order.mkv"
    with av.open(str(b_frames(tmp_path / "b.mp4"))) as inp, av.open(str(src), "w") as out:
        st = out.add_stream_from_template(inp.streams.video[0])
        for p in inp.demux(video=0):
            if p.size:
                p.pts, p.stream = p.dts + 2 * p.duration, st
                out.mux(p)
    out = tmp_path / "out"
    out.mkdir()
    r = deband(src, "-o", out / "x.mkv", "--weights", tiny_weights, "--codec", "ffv1")
    assert_clean_failure(r, OUTPUT)
    assert "x.mkv: the encoder or muxer refused the video" in r.stderr and leftovers(out) == []


@pytest.mark.slow
def test_non_ascii_and_spaces_in_paths(tmp_path, tiny_weights):
    folder = tmp_path / "dossier été 日本"
    folder.mkdir()
    src = make_clip(folder / "clip ñ 1.mp4", n=3)
    dst = folder / "sortie ü ✓.mkv"
    assert_success(deband(src, "-o", dst, "--weights", tiny_weights, "--preset", "ultrafast"), dst, 3)


# ----------------------------------------------------------------------------- output problems


@pytest.mark.parametrize("overwrite", [False, True])
def test_output_equal_to_input_is_refused(tmp_path, tiny_weights, overwrite):
    src = make_clip(tmp_path / "same.mp4", n=3)
    before = src.read_bytes()
    r = deband(src, "-o", src, "--weights", tiny_weights, "--preset", "ultrafast", *["--overwrite"] * overwrite)
    assert_clean_failure(r, OUTPUT)
    assert src.read_bytes() == before and leftovers(tmp_path, {src, tiny_weights}) == []


@pytest.mark.slow
def test_existing_output_without_overwrite(tmp_path, tiny_weights):
    src = make_clip(tmp_path / "in.mp4", n=3)
    dst = tmp_path / "out.mkv"
    dst.write_bytes(b"precious")
    r = deband(src, "-o", dst, "--weights", tiny_weights, "--preset", "ultrafast")
    assert_clean_failure(r, OUTPUT)
    assert "already exists" in r.stderr and dst.read_bytes() == b"precious"
    assert leftovers(tmp_path, {src, dst, tiny_weights}) == []


@pytest.mark.parametrize(
    "name,code",
    [("missing/deeper/x.mkv", OUTPUT), ("x.unknownext", OUTPUT), ("no-extension", OUTPUT), ("x.mkv", USAGE)],
)
def test_unwritable_output(tmp_path, tiny_weights, name, code):
    src = make_clip(tmp_path / "in.mp4", n=3)
    out = tmp_path / "out"
    out.mkdir()
    extra = ["--preset", "no-such-preset"] if code == USAGE else ["--preset", "ultrafast"]
    r = deband(src, "-o", out / name, "--weights", tiny_weights, *extra)
    assert_clean_failure(r, code)
    assert leftovers(out) == [] and not (out / "missing").exists()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE")
def test_full_disk_leaves_no_partial_file(tmp_path, tiny_weights):
    import resource

    src = make_clip(tmp_path / "in.mp4", n=6)
    out = tmp_path / "out"
    out.mkdir()

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))

    dst = out / "x.mkv"
    r = deband(src, "-o", dst, "--weights", tiny_weights, "--codec", "ffv1", preexec_fn=small_files)
    assert_clean_failure(r, OUTPUT)
    assert str(dst) in r.stderr and "partial" not in r.stderr
    assert leftovers(out) == []

"""`deband video - -o -`: YUV4MPEG2 through pipes (tiny streams made with PyAV or by hand)."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from deband.cli.exits import BROKEN_PIPE, UNREADABLE, UNSUPPORTED, USAGE
from deband.errors import InputError, UnsupportedError
from deband.io.planes import codes_to_frame
from deband.video import VideoOptions
from deband.video.y4m import Y4MHeader, deband_y4m
from helpers.clips import H, W, planes_for

ENV = dict(os.environ, OMP_NUM_THREADS="1")
RATE = Fraction(30000, 1001)


class Identity:
    def restore_batch(self, rgb):
        return rgb


def deband(data: bytes, *args, weights: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "deband.cli", "video", "-", "-o", "-", "--device", "cpu", "--steps", "1"]
    cmd += ["--weights", str(weights)] if weights else []
    return subprocess.run(cmd + list(map(str, args)), input=data, capture_output=True, timeout=300, env=ENV)


def codes8(i: int, fmt: str) -> list[np.ndarray]:
    """Frame i of the test clip as 8-bit codes (int64) on the chroma grid of `fmt`."""
    return [p.astype(np.int64) for p in planes_for(i, W, H, fmt)]


def y4m_by_pyav(fmt: str, n: int = 6, full: bool = False) -> bytes:
    """A YUV4MPEG2 stream written by FFmpeg's muxer: the test clip's 8-bit codes scaled to fmt's depth."""
    bits = int(fmt[7:9]) if len(fmt) > 7 else 8
    buf = io.BytesIO()
    with av.open(buf, "w", format="yuv4mpegpipe", options={"strict": "-1"}) as out:
        st = out.add_stream("rawvideo", rate=RATE)
        st.width, st.height, st.pix_fmt, st.color_range = W, H, fmt, 2 if full else 1
        for i in range(n):
            dt = np.uint8 if bits == 8 else np.uint16
            frame = codes_to_frame([(c << (bits - 8)).astype(dt) for c in codes8(i, fmt)], fmt, W, H)
            frame.pts = i
            for p in st.encode(frame):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return buf.getvalue()


def y4m_by_hand(header: str, frames: list[tuple[str, list[np.ndarray]]]) -> bytes:
    body = b"".join(f"FRAME{p}\n".encode() + b"".join(a.astype(a.dtype.newbyteorder("<")).tobytes() for a in planes)
                    for p, planes in frames)
    return header.encode() + b"\n" + body


def decoded(data: bytes) -> tuple[SimpleNamespace, list[list[np.ndarray]]]:
    """What FFmpeg's demuxer reads of the stream (width, height, pix_fmt, average_rate,
    color_range: read while the container is open, as PyAV requires) and every frame's code
    planes (int64)."""
    with av.open(io.BytesIO(data), format="yuv4mpegpipe") as c:
        s, frames = c.streams.video[0], []
        st = SimpleNamespace(width=s.width, height=s.height, pix_fmt=s.codec_context.pix_fmt,
                             average_rate=s.average_rate, color_range=s.codec_context.color_range)
        for f in c.decode(video=0):
            dt = np.uint8 if f.format.name.endswith("p") else np.dtype("<u2")
            frames.append([np.frombuffer(p, dt).reshape(p.height, -1)[:, : p.width].astype(np.int64) for p in f.planes])
        return st, frames


def frame_lines(data: bytes, frame_bytes: int) -> list[bytes]:
    """The FRAME line of every frame, `frame_bytes` of planes after each."""
    pos, lines = data.index(b"\n") + 1, []
    while pos < len(data):
        end = data.index(b"\n", pos)
        lines.append(data[pos:end])
        pos = end + 1 + frame_bytes
    assert pos == len(data)
    return lines


def header_of(data: bytes) -> list[str]:
    return data.split(b"\n", 1)[0].decode().split()


# ----------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    "fmt, out_tag, out_fmt",
    [
        ("yuv420p", "C420p10", "yuv420p10le"),
        ("yuv420p10le", "C420p10", "yuv420p10le"),
        ("yuv422p10le", "C422p10", "yuv422p10le"),
        ("yuv444p12le", "C444p10", "yuv444p10le"),
        ("yuv420p16le", "C420p10", "yuv420p10le"),
    ],
)
@pytest.mark.slow
def test_identity_gives_the_codes_back_at_10_bits(identity_weights, fmt, out_tag, out_fmt):
    src = y4m_by_pyav(fmt)
    r = deband(src, weights=identity_weights)
    assert r.returncode == 0, r.stderr.decode()
    assert b"Traceback" not in r.stderr and b"-: 6 frames" in r.stderr
    head = header_of(r.stdout)  # the input's, but for the bit depth in C and XYSCSS
    swap = {"C": out_tag, "X": f"XYSCSS={out_tag[1:].upper()}"}
    assert head == [swap[t[0]] if t[0] == "C" or t.startswith("XYSCSS=") else t for t in header_of(src)]
    assert "F30000:1001" in head and "XCOLORRANGE=LIMITED" in head
    st, frames = decoded(r.stdout)
    assert (st.width, st.height, st.pix_fmt, st.average_rate) == (W, H, out_fmt, RATE)
    assert len(frames) == 6
    for i, planes in enumerate(frames):
        for got, want in zip(planes, codes8(i, fmt)):
            np.testing.assert_array_equal(got, want << 2)  # the 8-bit codes at 10 bits


@pytest.mark.slow
def test_header_tokens_siting_and_frame_parameters_are_passed_on(identity_weights):
    header = f"YUV4MPEG2 W{W} H{H} F50:1 It A16:15 C420mpeg2 XYSCSS=420MPEG2 XCOLORRANGE=FULL XCUSTOM=kept"
    frames = [(p, codes8(i, "yuv420p")) for i, p in enumerate([" Ibtp", " XA=1", "", " XB=2 XC=3"])]
    src = y4m_by_hand(header, [(p, [c.astype(np.uint8) for c in cs]) for p, cs in frames])
    r10 = deband(src, weights=identity_weights)
    assert r10.returncode == 0, r10.stderr.decode()
    assert header_of(r10.stdout) == header.replace("C420mpeg2 XYSCSS=420MPEG2", "C420p10 XYSCSS=420P10").split()
    assert frame_lines(r10.stdout, W * H * 3) == [f"FRAME{p}".encode() for p, _ in frames]  # 1.5 x 2 bytes
    _, planes10 = decoded(r10.stdout)
    for (_, want), got in zip(frames, planes10):  # full range: 8 -> 10 bits is x 1023 / 255 (H.273)
        np.testing.assert_array_equal(got[0], np.round(want[0] * 1023 / 255))
        for g, w in zip(got[1:], want[1:]):  # chroma about 128 -> 512
            np.testing.assert_array_equal(g, np.round((w - 128) * 1023 / 255 + 512))
    r8 = deband(src, "--bit-depth", "8", weights=identity_weights)
    assert r8.returncode == 0, r8.stderr.decode()
    assert header_of(r8.stdout) == header.split()  # 8 bits: the 4:2:0 siting is kept
    st, planes8 = decoded(r8.stdout)
    assert st.color_range == 2 and len(planes8) == 4
    for (_, want), got in zip(frames, planes8):  # identity plus a +-1 LSB dither
        assert all(np.abs(g - w).max() <= 1 for g, w in zip(got, want))


@pytest.mark.slow
def test_start_duration_and_side_by_side(identity_weights):
    src = y4m_by_pyav("yuv420p", n=20)  # 29.97 frames/s
    r = deband(src, "--start", "0.2", "--duration", "0.2", "--batch", "3", weights=identity_weights)
    assert r.returncode == 0, r.stderr.decode()
    _, frames = decoded(r.stdout)  # frames 6..11: 6/29.97 >= 0.2 > 5/29.97, 11/29.97 < 0.4 <= 12/29.97
    assert len(frames) == 6
    for k, planes in enumerate(frames):
        np.testing.assert_array_equal(planes[0], codes8(6 + k, "yuv420p")[0] << 2)
    r = deband(src, "--duration", "0.1", "--compare", "side-by-side", weights=identity_weights)
    st, frames = decoded(r.stdout)
    assert r.returncode == 0 and (st.width, st.height, len(frames)) == (2 * W, H, 3)
    np.testing.assert_array_equal(frames[0][0], np.concatenate([codes8(0, "yuv420p")[0] << 2] * 2, axis=1))


# ----------------------------------------------------------------------------- pipes and errors


@pytest.mark.slow
def test_reader_closing_the_pipe_ends_cleanly(tmp_path, identity_weights):
    src = tmp_path / "long.y4m"
    src.write_bytes(y4m_by_pyav("yuv420p10le", n=60))  # ~1 MB out, far more than a pipe holds
    cmd = [sys.executable, "-m", "deband.cli", "video", "-", "-o", "-", "--device", "cpu", "--steps", "1",
           "--weights", str(identity_weights)]
    with src.open("rb") as stdin:
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
        with av.open(proc.stdout, format="yuv4mpegpipe") as c:  # PyAV on a pipe, not seekable
            got = [f for _, f in zip(range(2), c.decode(video=0))]
        proc.stdout.close()
        err = proc.stderr.read().decode()
        rc = proc.wait(timeout=120)
    assert len(got) == 2 and (got[0].width, got[0].height) == (W, H)
    assert rc == BROKEN_PIPE, err
    assert err.strip().splitlines() == ["deband: the reader closed the output pipe; stopped"], err


@pytest.mark.parametrize(
    "data, error, words",
    [
        (b"", InputError, "empty input"),
        (b"YUV4MPEG2 W8 H8 Cmono\nFRAME\n" + bytes(64), UnsupportedError, "Cmono is not supported"),
        (b"YUV4MPEG2 W8 H8 C420jpeg\nFRAME\n" + bytes(50), InputError, "frame 1 is truncated"),
        (b"YUV4MPEG2 W8 H8 C444\nFRAME\n" + bytes(192) + b"FRAMX\n", InputError, "frame 2 does not start"),
        (b"YUV4MPEG2 W8 H8 F25:1\n" + b"FRAME\n" + bytes(96), InputError, "no video frames in the selected range"),
    ],
)
def test_bad_streams(data, error, words):
    out = io.BytesIO()
    with pytest.raises(error, match=words):
        deband_y4m(io.BytesIO(data), out, Identity(), VideoOptions(start=1.0))
    assert out.getvalue() == b""  # the header goes out with the first frame


@pytest.mark.slow
def test_not_y4m_is_a_one_line_error(identity_weights):
    r = deband(b"RIFF\x00\x00 not a stream\n", weights=identity_weights)
    err = r.stderr.decode()
    assert r.returncode == UNREADABLE and "not a YUV4MPEG2 stream" in err and not r.stdout
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.slow
def test_one_pipe_end_alone_is_a_usage_error(tmp_path):
    cmd = [sys.executable, "-m", "deband.cli", "video", "-", "-o", str(tmp_path / "out.mkv")]
    r = subprocess.run(cmd, input=b"", capture_output=True, timeout=60, env=ENV)
    assert r.returncode == USAGE and b"needs both ends" in r.stderr and not r.stdout


@pytest.mark.parametrize(
    "line, fields",
    [
        ("YUV4MPEG2 W64 H48", ("420", 8, "jpeg", None)),  # C absent: 420jpeg
        ("YUV4MPEG2 W64 H48 F24:1 C422", ("422", 8, "", Fraction(24))),
        ("YUV4MPEG2 W64 H48 F0:0 C444p16 XCOLORRANGE=FULL", ("444", 16, "", None)),
        ("YUV4MPEG2 W64 H48 C420paldv", ("420", 8, "paldv", None)),
    ],
)
def test_header_parsing(line, fields):
    h = Y4MHeader.parse(line.encode())
    assert (h.family, h.bits, h.siting, h.rate) == fields
    assert h.line() == (line + ("" if " C" in line else " C420jpeg")).encode() + b"\n"
    assert h.full_range == ("FULL" in line)


@pytest.mark.parametrize("line", ["YUV4MPEG2 W64 H48 C411", "YUV4MPEG2 W64 H48 C444alpha", "YUV4MPEG2 W64 H48 C420p11"])
def test_unsupported_colour_formats(line):
    with pytest.raises(UnsupportedError, match="not supported"):
        Y4MHeader.parse(line.encode())


def test_header_without_size():
    with pytest.raises(InputError, match="frame size"):
        Y4MHeader.parse(b"YUV4MPEG2 W64 C420")


@pytest.mark.parametrize(
    "field", [b"W-320", b"W0", b"W+64", b"H99999999999999999999", b"F24:0", b"F-24:1", b"Anan", b"Iz", b"Q1", b"X\xff"]
)
def test_a_malformed_header_field_is_named(field):
    others = [f for f in (b"W64", b"H48") if f[:1] != field[:1]]
    with pytest.raises(InputError, match=re.escape(f"bad YUV4MPEG2 header field {field!r}")):
        Y4MHeader.parse(b" ".join([b"YUV4MPEG2", field, *others]))


def test_sizes_over_16384_and_repeated_fields():
    for line in (b"YUV4MPEG2 W65535 H65535 F24:1 C420jpeg", b"YUV4MPEG2 W64 H20000"):
        with pytest.raises(UnsupportedError, match="is over 16384 pixels"):
            Y4MHeader.parse(line)
    with pytest.raises(InputError, match="gives W twice"):
        Y4MHeader.parse(b"YUV4MPEG2 W64 H48 W32")


@pytest.mark.parametrize("fields, code", [(b"W65535 H65535 F24:1 C420jpeg", UNSUPPORTED), (b"W-320 H240", UNREADABLE)])
def test_absurd_frame_sizes_are_one_line(identity_weights, fields, code):
    r = deband(b"YUV4MPEG2 " + fields + b"\nFRAME\n" + bytes(64), weights=identity_weights)
    err = r.stderr.decode()
    assert r.returncode == code and not r.stdout, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("complete", [2, 10])
def test_frames_before_a_truncated_one_are_written(identity_weights, complete):
    src = y4m_by_pyav("yuv420p", n=complete + 1)
    r = deband(src[: len(src) - 1000], weights=identity_weights)  # the last frame lacks its end
    err = r.stderr.decode()
    assert r.returncode == UNREADABLE and f"frame {complete + 1} is truncated" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    _, frames = decoded(r.stdout)
    assert len(frames) == complete
    for i, planes in enumerate(frames):
        np.testing.assert_array_equal(planes[0], codes8(i, "yuv420p")[0] << 2)


# ----------------------------------------------------------------------------- end to end


def banded_ramp(i: int, w: int, h: int, fmt: str) -> list[np.ndarray]:
    """A smooth luma ramp on 6-bit steps (4 codes apart at 8 bits), flat chroma: plain banding."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    y = np.round((60 + 90 * (yy / h) + 20 * np.sin(xx / w * 3 + i * 0.05)) / 4) * 4
    return [y.astype(np.uint8), np.full((h // 2, w // 2), 140, np.uint8), np.full((h // 2, w // 2), 120, np.uint8)]


@pytest.mark.slow
def test_shipped_model_reduces_banding_through_the_pipe():
    from deband.metrics import cambi

    w, h = 320, 180
    frames = [("", banded_ramp(i, w, h, "yuv420p")) for i in range(2)]
    r = deband(y4m_by_hand(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg", frames), "--steps", "2")
    assert r.returncode == 0, r.stderr.decode()
    _, out = decoded(r.stdout)
    assert len(out) == 2
    before = cambi(frames[0][1][0].astype(np.int64) << 2, max_log_contrast=4)
    after = cambi(out[0][0], max_log_contrast=4)
    assert after < 0.5 * before, (before, after)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg program is not installed")
def test_readme_round_trip_with_ffmpeg(tmp_path, identity_weights):
    """ffmpeg -i in.mkv -f yuv4mpegpipe - | deband video - -o - | ffmpeg -f yuv4mpegpipe -i - out.mkv"""
    src = tmp_path / "in.mkv"
    with av.open(str(src), "w") as out:
        st = out.add_stream("ffv1", rate=24)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p10le"
        for i in range(7):
            codes = [((c << 2) + 1).astype(np.uint16) for c in codes8(i, "yuv420p")]
            frame = codes_to_frame(codes, "yuv420p10le", W, H)
            frame.pts = i
            for p in st.encode(frame):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    dst = tmp_path / "out.mkv"
    up = subprocess.Popen(["ffmpeg", "-v", "error", "-i", str(src), "-f", "yuv4mpegpipe", "-strict", "-1", "-"],
                          stdout=subprocess.PIPE)
    mid = subprocess.Popen([sys.executable, "-m", "deband.cli", "video", "-", "-o", "-", "--device", "cpu",
                            "--weights", str(identity_weights)], stdin=up.stdout, stdout=subprocess.PIPE, env=ENV)
    up.stdout.close()
    down = subprocess.run(["ffmpeg", "-v", "error", "-f", "yuv4mpegpipe", "-i", "-", "-c:v", "ffv1", str(dst)],
                          stdin=mid.stdout, capture_output=True, timeout=120)
    mid.stdout.close()
    assert (up.wait(60), mid.wait(60), down.returncode) == (0, 0, 0), down.stderr
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        fa, fb = list(a.decode(video=0)), list(b.decode(video=0))
        assert len(fb) == len(fa) == 7 and fb[0].format.name == "yuv420p10le"
        assert all(bytes(x.planes[0]) == bytes(y.planes[0]) for x, y in zip(fa, fb))  # identity: exact

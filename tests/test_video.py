"""deband.video: tiny clips made on the fly with PyAV (64x48, 10-20 frames)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deband.config import ModelConfig
from deband.errors import InputError, OutputExistsError, SameFileError, UnsupportedError
from deband.io.pixels import rgb_to_ycbcr, ycbcr_to_rgb
from deband.io.planes import codes_to_frame, planes_to_codes
from deband.model.unet import UNet
from deband.restore.debander import Debander
from deband.video import VideoOptions, deband_video, read_video_rgb, temporal_flicker
from deband.video.colour import Colour, dither_patterns, frame_to_planes
from helpers.clips import H, W, add_audio, encode_audio, make_clip, planes_for

FAST = dict(preset="ultrafast")  # x265/x264 speed for tests; quality is not under test

# ----------------------------------------------------------------------------- helpers


def video_pts(path: Path) -> list[Fraction]:
    """Presentation times (seconds) of every decoded video frame."""
    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
        return [f.pts * tb for f in c.decode(video=0)]


def packets(path: Path, index: int) -> list[tuple[bytes, Fraction]]:
    """(bytes, pts seconds) of every packet of stream `index`."""
    with av.open(str(path)) as c:
        st = c.streams[index]
        return [(bytes(p), p.pts * p.time_base) for p in c.demux(st) if p.size]


def plane_codes(path: Path) -> list[list[np.ndarray]]:
    """Integer code planes of every frame (uint8/uint16 -> int64)."""
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            dt = np.uint8 if f.format.name in ("yuv420p", "yuv422p", "yuv444p", "yuvj420p") else "<u2"
            out.append([np.frombuffer(p, dt).reshape(p.height, -1)[:, : p.width].astype(np.int64) for p in f.planes])
    return out


def stream_info(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        frame = next(c.decode(video=0))
        return dict(
            pix_fmt=v.pix_fmt,
            codec=cc.name,
            width=v.width,
            height=v.height,
            profile=v.profile,
            tags=(cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range),
            frame_tags=(frame.color_primaries, frame.color_trc, frame.colorspace, frame.color_range),
            rotation=frame.rotation,
            types=[s.type for s in c.streams],
            title=c.metadata.get("title"),
            duration=c.duration,
            chapters=[
                (ch["start"] * ch["time_base"], ch["end"] * ch["time_base"], ch["metadata"].get("title"))
                for ch in c.chapters()
            ],
            languages=[s.metadata.get("language") for s in c.streams],
        )


class Blur:
    """Stand-in restorer: 5x5 box blur (changes frames; deterministic, so no flicker)."""

    def restore_batch(self, rgb: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(rgb, (2, 2, 2, 2), mode="replicate"), 5, stride=1)


class Recorder:
    """Stand-in restorer: identity that records its batch sizes."""

    def __init__(self):
        self.sizes: list[int] = []

    def restore_batch(self, rgb: torch.Tensor) -> torch.Tensor:
        self.sizes.append(rgb.shape[0])
        return rgb


class Explode:
    """Stand-in restorer that raises `error` once more than 3 frames went through."""

    def __init__(self, error: BaseException):
        self.error, self.seen = error, 0

    def restore_batch(self, rgb: torch.Tensor) -> torch.Tensor:
        self.seen += rgb.shape[0]
        if self.seen > 3:
            raise self.error
        return rgb


@pytest.fixture(scope="module")
def identity() -> Debander:
    """An untrained UNet: zero-initialised heads make it exactly the identity."""
    return Debander(model=UNet(ModelConfig(channels=(8, 8, 8), refine=0, smooth_scales=0)).eval(), steps=1)


@pytest.fixture(scope="module")
def h264_aac(tmp_path_factory) -> Path:
    """H.264 + AAC in MP4, BT.709 limited, rotated 90 degrees."""
    return make_clip(tmp_path_factory.mktemp("clips") / "in.mp4", audio=1, rotation=90, chapters=True)


# ----------------------------------------------------------------------------- streams


def test_h264_aac_keeps_timing_audio_and_tags(h264_aac, tmp_path, identity):
    dst = tmp_path / "out.mp4"
    report = deband_video(h264_aac, dst, identity, VideoOptions(**FAST), progress=False)
    assert report.frames_in == report.frames_out == 12 and report.skipped_packets == 0
    assert video_pts(dst) == video_pts(h264_aac)
    src_audio, dst_audio = packets(h264_aac, 1), packets(dst, 1)
    assert len(src_audio) > 5 and dst_audio == src_audio  # byte-identical, same times
    i, o = stream_info(h264_aac), stream_info(dst)
    assert (o["codec"], o["pix_fmt"]) == ("hevc", "yuv420p10le")
    assert o["tags"] == i["tags"] == (1, 1, 1, 1) and o["frame_tags"] == i["frame_tags"]
    assert o["rotation"] == i["rotation"] == 90
    assert o["title"] == "test clip"
    assert o["chapters"] == i["chapters"] and len(o["chapters"]) == 2
    assert o["types"] == i["types"]  # the MP4 chapter track is rebuilt, not doubled
    assert abs(o["duration"] - i["duration"]) <= 1000  # microseconds
    assert report.fps > 0 and report.model_s > 0


def test_mkv_output_and_libx264_high10(h264_aac, tmp_path, identity):
    dst = tmp_path / "out.mkv"
    deband_video(h264_aac, dst, identity, VideoOptions(codec="libx264", **FAST), progress=False)
    o = stream_info(dst)
    assert (o["codec"], o["pix_fmt"], o["profile"]) == ("h264", "yuv420p10le", "High 10")
    assert video_pts(dst) == video_pts(h264_aac)
    assert [b for b, _ in packets(dst, 1)] == [b for b, _ in packets(h264_aac, 1)]


@pytest.mark.parametrize(
    "ext, tb",
    [("mp4", Fraction(1, 90000)), ("mkv", Fraction(1, 1000))],  # Matroska stores 1 ms ticks
)
def test_vfr_timestamps_kept(tmp_path, identity, ext, tb):
    ticks = [0, 30, 40, 90, 95, 150, 210, 220, 300, 310]  # hundredths of a second, irregular
    pts = [t * int(1 / tb) // 100 for t in ticks]
    src = make_clip(tmp_path / f"vfr.{ext}", n=10, pts=pts, time_base=tb, audio=1)
    dst = tmp_path / f"out.{ext}"
    report = deband_video(src, dst, identity, VideoOptions(**FAST), progress=False)
    assert report.frames_out == 10
    assert video_pts(dst) == video_pts(src) == [Fraction(t, 100) for t in ticks]


def test_no_audio_batches_and_progress(tmp_path, capsys):
    src = make_clip(tmp_path / "in.mkv", n=11)
    model = Recorder()
    report = deband_video(src, tmp_path / "out.mkv", model, VideoOptions(batch=4, **FAST))
    assert report.frames_out == 11 and model.sizes == [4, 4, 3]  # bounded batches
    assert stream_info(tmp_path / "out.mkv")["types"] == ["video"]
    assert "11/11" in capsys.readouterr().err  # tqdm bar with a known total


def test_two_audio_tracks_and_subtitles_are_copied(tmp_path, identity):
    src = make_clip(tmp_path / "in.mkv", n=12, audio=2, subtitles=True)
    dst = tmp_path / "out.mkv"
    deband_video(src, dst, identity, VideoOptions(**FAST), progress=False)
    i, o = stream_info(src), stream_info(dst)
    assert o["types"] == i["types"] == ["video", "audio", "audio", "subtitle"]
    assert o["languages"][1:] == ["eng", "deu", "fra"]
    for index in (1, 2, 3):
        assert packets(dst, index) == packets(src, index)
    assert packets(dst, 3)[0][0] == b"first line"


def test_corrupt_packet_is_skipped(tmp_path, identity, caplog):
    good = make_clip(tmp_path / "good.mkv", n=10, codec="ffv1")
    bad = tmp_path / "bad.mkv"
    with av.open(str(good)) as inp, av.open(str(bad), "w") as out:
        st = out.add_stream_from_template(inp.streams.video[0])
        for k, p in enumerate(q for q in inp.demux() if q.size):
            if k == 5:  # same timing, random payload
                junk = av.Packet(np.random.default_rng(0).integers(0, 256, p.size, np.uint8).tobytes())
                junk.pts, junk.dts, junk.time_base, junk.duration = p.pts, p.dts, p.time_base, p.duration
                p = junk
            p.stream = st
            out.mux(p)
    report = deband_video(bad, tmp_path / "out.mkv", identity, VideoOptions(**FAST), progress=False)
    assert report.skipped_packets == 1 and report.frames_out == 9
    assert "corrupt" in caplog.text


# ----------------------------------------------------------------------------- colour


def encode_rgb(rgb: tuple[float, float, float], matrix: str, full: bool) -> list[int]:
    """Oracle: 8-bit Y'CbCr codes of one R'G'B' colour (H.273 levels)."""
    y, cb, cr = rgb_to_ycbcr(torch.tensor(rgb)[:, None, None], matrix).flatten().tolist()
    if full:
        return [round(255 * y), round(128 + 255 * cb), round(128 + 255 * cr)]
    return [round(16 + 219 * y), round(128 + 224 * cb), round(128 + 224 * cr)]


def decode_codes(codes: list[int], matrix: str, full: bool) -> torch.Tensor:
    """Oracle: R'G'B' of 8-bit Y'CbCr codes."""
    y, cb, cr = codes
    if full:
        ycc = [y / 255, (cb - 128) / 255, (cr - 128) / 255]
    else:
        ycc = [(y - 16) / 219, (cb - 128) / 224, (cr - 128) / 224]
    return ycbcr_to_rgb(torch.tensor(ycc)[:, None, None], matrix).flatten()


@pytest.mark.parametrize(
    "size, tags, matrix, full",
    [
        ((W, H), (1, 1, 1, 1), "bt709", False),  # tagged BT.709 limited
        ((W, H), (2, 2, 2, 0), "bt601", False),  # untagged SD -> BT.601
        ((1280, 720), (2, 2, 2, 0), "bt709", False),  # untagged HD -> BT.709
        ((W, H), (1, 1, 1, 2), "bt709", True),  # tagged full range
        ((W, H), (5, 6, 6, 1), "bt601", False),  # tagged BT.601 (smpte170m)
    ],
)
def test_known_colour_round_trips(tmp_path, identity, size, tags, matrix, full):
    # saturated, and its 8-bit codes land within 1 code of it in every case (a generic
    # colour can be 1.5 codes off after 8-bit Y'CbCr rounding)
    colour = (235 / 255, 25 / 255, 155 / 255)
    codes = encode_rgb(colour, matrix, full)

    def flat(i, w, h, fmt):
        return [np.full((h, w), codes[0], np.uint8)] + [np.full((h // 2, w // 2), c, np.uint8) for c in codes[1:]]

    src = make_clip(tmp_path / "flat.mkv", n=2, size=size, codec="ffv1", tags=tags, planes=flat)
    got = read_video_rgb(src, max_frames=1)[0, :, 0, 0]
    assert torch.allclose(got, decode_codes(codes, matrix, full), atol=1e-5)  # exact maths
    assert torch.allclose(got, torch.tensor(colour), atol=1 / 255)  # within 1 code
    if size == (W, H):  # through the whole pipeline at 10 bits: the same colour
        dst = tmp_path / "out.mkv"
        deband_video(src, dst, identity, VideoOptions(codec="ffv1"), progress=False)
        out = read_video_rgb(dst)[:, :, 0, 0]
        exact = 2 / 1023 if full else 1e-5  # full range: 1023/255 is no integer ratio
        assert torch.allclose(out, got.expand_as(out), atol=exact)
        assert stream_info(dst)["tags"][2:] == ((tags[2] if tags[2] != 2 else 6), 2 if full else 1)


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p", "yuv444p"])
def test_identity_is_bit_exact_at_10_bits(tmp_path, identity, pix_fmt):
    src = make_clip(tmp_path / "in.mkv", n=5, codec="ffv1", pix_fmt=pix_fmt)
    dst = tmp_path / "out.mkv"
    deband_video(src, dst, identity, VideoOptions(codec="ffv1", batch=2), progress=False)
    assert stream_info(dst)["pix_fmt"] == pix_fmt + "10le"
    for a, b in zip(plane_codes(src), plane_codes(dst), strict=True):
        for pa, pb in zip(a, b, strict=True):
            np.testing.assert_array_equal(pa * 4, pb)  # limited range: 10-bit = 4 x 8-bit


@pytest.mark.parametrize("bits, full", [(8, False), (8, True), (10, False), (10, True)])
def test_codes_to_planes_and_back_is_exact(bits, full):
    fmt = "yuv420p" if bits == 8 else "yuv420p10le"
    top = 2**bits - 1
    rng = np.random.default_rng(0)
    dtype = np.uint8 if bits == 8 else np.uint16
    codes = [rng.integers(0, top + 1, s).astype(dtype) for s in [(H, W), (H // 2, W // 2), (H // 2, W // 2)]]
    colour = Colour("bt709", full, 1, 1, 1)
    planes = [p[None] for p in frame_to_planes(codes_to_frame(codes, fmt, W, H), colour)]
    for a, b in zip(codes, planes_to_codes(planes, bits, full), strict=True):
        np.testing.assert_array_equal(a, b[0])


def test_dither_patterns_are_static_tpdf_and_independent_per_plane():
    planes = [torch.zeros(2, 32, 32), torch.zeros(2, 16, 16), torch.zeros(2, 16, 16)]
    a, b = dither_patterns(planes, seed=3), dither_patterns(planes, seed=3)
    assert [p.shape for p in a] == [(32, 32), (16, 16), (16, 16)]
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)  # seeded: the same pattern every frame and run
        assert np.abs(p).max() < 1 and abs(p.mean()) < 0.1
    assert not np.array_equal(a[1], a[2])  # Cb and Cr get their own noise
    assert not np.array_equal(a[0], dither_patterns(planes, seed=4)[0])


def test_eight_bit_output_is_dithered_without_flicker(tmp_path, identity):
    def static(i, w, h, fmt):
        return planes_for(0, w, h, fmt)

    src = make_clip(tmp_path / "in.mkv", n=6, codec="ffv1", planes=static)
    dst = tmp_path / "out.mkv"
    deband_video(src, dst, identity, VideoOptions(codec="ffv1", bit_depth=8), progress=False)
    assert stream_info(dst)["pix_fmt"] == "yuv420p"
    a, b = plane_codes(src), plane_codes(dst)
    diff = b[0][0] - a[0][0]
    assert np.abs(diff).max() <= 1 and (diff != 0).mean() > 0.1  # TPDF: +-1 LSB
    assert abs(diff.mean()) < 0.05
    for frame in b[1:]:  # the same pattern every frame: no flicker
        for p0, p in zip(b[0], frame):
            np.testing.assert_array_equal(p0, p)


def test_blur_stand_in_changes_frames_without_flicker(tmp_path):
    src = make_clip(tmp_path / "in.mkv", n=8, codec="ffv1")
    dst = tmp_path / "out.mkv"
    deband_video(src, dst, Blur(), VideoOptions(codec="ffv1"), progress=False)
    x, y = read_video_rgb(src), read_video_rgb(dst)
    assert x.shape == y.shape and (x - y).abs().mean() > 0.002
    assert temporal_flicker(y, reference=x) == temporal_flicker(x) == 0.0


def test_temporal_flicker_sees_noise():
    g = torch.Generator().manual_seed(0)
    still = torch.full((5, 3, 8, 8), 0.5)
    assert temporal_flicker(still) == 0.0
    noisy = still + 0.01 * torch.randn(still.shape, generator=g)
    assert temporal_flicker(noisy, reference=still) > 0.005


# ----------------------------------------------------------------------------- pieces, sizes


def test_start_and_duration_trim_every_stream(tmp_path, identity):
    src = make_clip(tmp_path / "in.mkv", n=20, audio=1)
    dst = tmp_path / "out.mkv"
    opts = VideoOptions(start=0.2, duration=0.32, **FAST)
    report = deband_video(src, dst, identity, opts, progress=False)
    want = [t - Fraction(1, 5) for t in video_pts(src) if Fraction(1, 5) <= t < Fraction(13, 25)]
    assert report.frames_out == 8 and video_pts(dst) == want
    src_audio = {b: t for b, t in packets(src, 1)}
    out_audio = packets(dst, 1)
    assert 5 <= len(out_audio) < len(src_audio)
    for data, t in out_audio:  # the same packets, shifted by the start
        assert abs(src_audio[data] - Fraction(1, 5) - t) <= Fraction(1, 1000)
        assert 0 <= t < Fraction(8, 25)


@pytest.mark.parametrize("mode, width", [("split", W), ("side-by-side", 2 * W)])
def test_compare_modes(tmp_path, mode, width):
    src = make_clip(tmp_path / "in.mkv", n=3, codec="ffv1", pix_fmt="yuv444p")
    plain, dst = tmp_path / "plain.mkv", tmp_path / "out.mkv"
    deband_video(src, plain, Blur(), VideoOptions(codec="ffv1"), progress=False)
    deband_video(src, dst, Blur(), VideoOptions(codec="ffv1", compare=mode), progress=False)
    assert (stream_info(dst)["width"], stream_info(dst)["height"]) == (width, H)
    a, p, b = plane_codes(src)[0][0], plane_codes(plain)[0][0], plane_codes(dst)[0][0]  # Y
    assert (p != a * 4).any()
    if mode == "split":  # input | white line | restored
        np.testing.assert_array_equal(b[:, : W // 2 - 1], a[:, : W // 2 - 1] * 4)
        assert (b[:, W // 2 - 1 : W // 2 + 1] == 940).all()
        np.testing.assert_array_equal(b[:, W // 2 + 1 :], p[:, W // 2 + 1 :])
    else:  # input | restored
        np.testing.assert_array_equal(b[:, :W], a * 4)
        np.testing.assert_array_equal(b[:, W:], p)


def test_one_frame(tmp_path, identity):
    src = make_clip(tmp_path / "one.mkv", n=1, codec="ffv1")
    report = deband_video(src, tmp_path / "out.mp4", identity, VideoOptions(**FAST), progress=False)
    assert report.frames_out == 1 and len(video_pts(tmp_path / "out.mp4")) == 1


def test_odd_size_falls_back_to_444(tmp_path, identity):
    src = make_clip(tmp_path / "odd.mkv", n=4, size=(65, 33), codec="ffv1")
    dst = tmp_path / "out.mkv"
    deband_video(src, dst, identity, VideoOptions(**FAST), progress=False)
    o = stream_info(dst)
    assert (o["width"], o["height"], o["pix_fmt"]) == (65, 33, "yuv444p10le")
    assert len(video_pts(dst)) == 4
    x, y = read_video_rgb(src), read_video_rgb(dst)
    assert (x - y).abs().mean() < 4 / 255


# ----------------------------------------------------------------------------- errors, safety


def test_zero_frames_is_an_error(tmp_path, identity):
    src = tmp_path / "empty.mkv"
    with av.open(str(src), "w") as out:  # a video stream with no frames, plus audio
        vs = out.add_stream("ffv1", rate=25)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        encode_audio(out, add_audio(out), 0.2, 440)
    with pytest.raises(InputError, match="no decodable frames"):
        deband_video(src, tmp_path / "out.mkv", identity, progress=False)
    assert list(tmp_path.iterdir()) == [src]


def test_no_video_stream_and_unreadable_file(tmp_path, identity):
    audio_only = tmp_path / "a.mka"
    with av.open(str(audio_only), "w") as out:
        encode_audio(out, add_audio(out), 0.2, 440)
    with pytest.raises(UnsupportedError, match="no video stream"):
        deband_video(audio_only, tmp_path / "out.mkv", identity, progress=False)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InputError, match="junk.mp4: cannot read"):
        deband_video(junk, tmp_path / "out.mkv", identity, progress=False)
    with pytest.raises(InputError, match="missing.mp4: no such file"):
        deband_video(tmp_path / "missing.mp4", tmp_path / "out.mkv", identity, progress=False)


def test_existing_dst_and_same_file_are_refused(h264_aac, tmp_path, identity):
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="already exists"):
        deband_video(h264_aac, dst, identity, VideoOptions(**FAST), progress=False)
    assert dst.read_bytes() == b"precious"
    with pytest.raises(SameFileError, match="would replace the input"):
        deband_video(h264_aac, h264_aac, identity, VideoOptions(overwrite=True), progress=False)
    deband_video(h264_aac, dst, identity, VideoOptions(overwrite=True, **FAST), progress=False)
    assert len(video_pts(dst)) == 12


@pytest.mark.parametrize("error", [RuntimeError("model failed"), KeyboardInterrupt()])
def test_failure_midway_leaves_nothing(h264_aac, tmp_path, error):
    dst = tmp_path / "out.mkv"
    with pytest.raises(type(error)):
        deband_video(h264_aac, dst, Explode(error), VideoOptions(batch=2, **FAST), progress=False)
    assert list(tmp_path.iterdir()) == []


STALL = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from deband.io.outputs import terminate_as_interrupt
    from deband.video import VideoOptions, deband_video

    src, dst, ready = sys.argv[1:]

    class Stall:  # stand-in restorer: identity for 3 frames, then says so and waits to be killed
        seen = 0

        def restore_batch(self, rgb):
            self.seen += rgb.shape[0]
            if self.seen > 3:
                Path(ready).touch()
                while True:
                    time.sleep(0.05)
            return rgb

    with terminate_as_interrupt():  # as the deband command does
        deband_video(src, dst, Stall(), VideoOptions(batch=1, preset="ultrafast"), progress=False)
""")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_process_leaves_no_output(h264_aac, tmp_path, sig):
    out, ready = tmp_path / "out", tmp_path / "ready"
    out.mkdir()
    dst = out / "out.mkv"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-c", STALL, str(h264_aac), str(dst), str(ready)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():  # 3 frames went through; the restorer now waits
            assert proc.poll() is None, f"the script ended early: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "the restorer never got a 4th frame"
            time.sleep(0.02)
        partial = list(out.glob(".out.partial-*.mkv"))
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert partial and not dst.exists()
    if sig == signal.SIGKILL:  # no chance to clean up: only the hidden partial file is left
        assert list(out.iterdir()) == partial
    else:  # SIGTERM becomes KeyboardInterrupt: the partial file is removed
        assert proc.returncode != 0 and list(out.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(codec="mpeg4"),
        dict(bit_depth=12),
        dict(crf=60),
        dict(compare="top-bottom"),
        dict(batch=0),
        dict(start=-1.0),
        dict(duration=0.0),
    ],
)
def test_bad_options(kwargs):
    with pytest.raises(ValueError):
        VideoOptions(**kwargs)


# ----------------------------------------------------------------------------- the shipped model, end to end


def banded_sky(i: int, w: int, h: int, fmt: str) -> list[np.ndarray]:
    """A smooth sky whose luma sits on 6-bit steps (4 codes apart at 8 bits): plain banding."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    y = 60 + 90 * (yy / h) + 20 * np.sin(xx / w * 3 + i * 0.05)
    y = np.round(y / 4) * 4
    cb = np.full((h // 2, w // 2), 140.0)
    cr = np.full((h // 2, w // 2), 120.0)
    return [a.round().astype(np.uint8) for a in (y, cb, cr)]


@pytest.mark.slow
def test_cli_1080p_h264_aac_with_the_shipped_model(tmp_path):
    from deband.metrics import cambi_rgb

    src = make_clip(tmp_path / "in.mp4", n=3, size=(1920, 1080), audio=1, planes=banded_sky)
    dst = tmp_path / "out.mp4"  # MP4 keeps the audio's own 1/48000 clock (Matroska rounds to ms)
    cmd = [sys.executable, "-m", "deband.cli", "video", str(src), "-o", str(dst), "--preset", "ultrafast",
           "--steps", "2", "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert video_pts(dst) == video_pts(src) and len(video_pts(dst)) == 3
    assert packets(dst, 1) == packets(src, 1)  # audio byte-identical, at the same times
    i, o = stream_info(src), stream_info(dst)
    assert o["pix_fmt"] == "yuv420p10le" and o["tags"] == i["tags"]
    before, after = read_video_rgb(src, 1)[0], read_video_rgb(dst, 1)[0]
    to_np = lambda t: t.permute(1, 2, 0).numpy().astype(np.float64)  # noqa: E731
    assert cambi_rgb(to_np(after), max_log_contrast=4) < cambi_rgb(to_np(before), max_log_contrast=4)

"""HDR video: PQ and HLG tags, mastering display and content light level survive `deband video`."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from deband.io.planes import codes_to_frame
from deband.video import VideoOptions, deband_video
from deband.video.hdr import HdrMetadata

W, H = 64, 48
BT2020, PQ, HLG, BT2020NC = 9, 16, 18, 9  # AVColorPrimaries / AVColorTransferCharacteristic / AVColorSpace
MASTER = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"  # P3 D65, 1000 / 0.005 nits
FAST = dict(preset="ultrafast")


class Identity:
    def restore_batch(self, rgb):
        return rgb


def pq_planes(i: int) -> list[np.ndarray]:
    """10-bit limited-range codes: a luma ramp on 6-bit steps (16 codes apart), neutral chroma."""
    y = np.tile(np.linspace(200, 700, W), (H, 1)) + 2 * i
    y = (np.round(y / 16) * 16).astype(np.uint16)
    c = np.full((H // 2, W // 2), 512, np.uint16)
    return [y, c, c.copy()]


def hdr_clip(path: Path, trc: int = PQ, sei: str | None = f"master-display={MASTER}:max-cll=1000,400") -> Path:
    """3 frames of 10-bit 4:2:0 HEVC with BT.2020 tags, `trc`, and x265's HDR10 SEI when `sei`."""
    params = ":".join(["log-level=error", *([sei] if sei else [])])
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx265", rate=25, options={"preset": "ultrafast", "x265-params": params})
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p10le"
        vs.color_primaries, vs.color_trc, vs.colorspace, vs.color_range = BT2020, trc, BT2020NC, 1
        for i in range(3):
            frame = codes_to_frame(pq_planes(i), "yuv420p10le", W, H)
            frame.pts = i
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    return path


def described(path: Path) -> tuple[tuple, list[tuple], list[tuple[bytes | None, bytes | None]]]:
    """Stream tags, every frame's tags, and every frame's raw mastering display / light level."""
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        tags = (cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range)
        frame_tags, side = [], []
        for f in c.decode(video=0):
            frame_tags.append((f.color_primaries, f.color_trc, f.colorspace, f.color_range))
            sd = [f.side_data.get(k) for k in ("MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL")]
            side.append(tuple(None if s is None else bytes(s) for s in sd))
        return tags, frame_tags, side


@pytest.fixture(scope="module")
def pq(tmp_path_factory) -> Path:
    return hdr_clip(tmp_path_factory.mktemp("hdr") / "pq.mkv")


def test_the_test_clip_is_hdr10(pq):
    tags, frame_tags, side = described(pq)
    assert tags == (BT2020, PQ, BT2020NC, 1) and frame_tags == [tags] * 3
    assert all(md is not None and cll is not None for md, cll in side)


@pytest.mark.parametrize("codec, ext", [("libx265", ".mkv"), ("libx265", ".mp4"), ("libx264", ".mkv")])
def test_pq_tags_and_hdr10_side_data_survive(pq, tmp_path, codec, ext):
    dst = tmp_path / f"out{ext}"
    report = deband_video(pq, dst, Identity(), VideoOptions(codec=codec, **FAST), progress=False)
    assert report.frames_out == 3
    src_tags, src_frames, src_side = described(pq)
    tags, frame_tags, side = described(dst)
    assert tags == src_tags and frame_tags == src_frames
    # byte for byte the same ST 2086 and CTA-861.3 values; x264 sends them with keyframes
    # only, and FFmpeg's H.264 decoder attaches them to those frames alone
    assert side == src_side if codec == "libx265" else side[0] == src_side[0]


def test_hlg_tags_survive_without_side_data(tmp_path):
    src = hdr_clip(tmp_path / "hlg.mkv", trc=HLG, sei=None)
    dst = tmp_path / "out.mkv"
    deband_video(src, dst, Identity(), VideoOptions(**FAST), progress=False)
    tags, frame_tags, side = described(dst)
    assert tags == (BT2020, HLG, BT2020NC, 1) and frame_tags == [tags] * 3
    assert side == [(None, None)] * 3


def test_ffv1_keeps_the_tags_and_says_it_drops_the_side_data(pq, tmp_path, caplog):
    dst = tmp_path / "out.mkv"
    with caplog.at_level(logging.WARNING):
        deband_video(pq, dst, Identity(), VideoOptions(codec="ffv1"), progress=False)
    assert described(dst)[0] == (BT2020, PQ, BT2020NC, 1)
    assert "cannot carry the HDR mastering display" in caplog.text


def test_metadata_read_from_a_frame(pq):
    with av.open(str(pq)) as c:
        meta = HdrMetadata.of_frame(next(c.decode(video=0)))
    assert meta.master_display() == MASTER  # the string x265 was given, back from the SEI
    assert (meta.max_cll, meta.max_fall) == (1000, 400)
    assert meta.luminance == (Fraction("0.005"), 1000) and meta.white == (Fraction("0.3127"), Fraction("0.329"))
    assert meta.encoder_params("libx264") == [f"mastering-display={MASTER}", "cll=1000,400"]
    assert meta.encoder_params("ffv1") == []
    assert HdrMetadata(max_cll=500, max_fall=100).encoder_params("libx265") == ["max-cll=500,100"]


def test_sdr_frame_has_no_hdr_metadata():
    assert HdrMetadata.of_frame(av.VideoFrame(16, 16, "yuv420p")) is None

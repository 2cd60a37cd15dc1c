"""deband.video.timeline and deband.video.timelinereport: CAMBI over time, scene cuts, banded scenes,
the CSV/HTML reports, and restoring only banded scenes (library and CLI)."""

from __future__ import annotations

import base64
import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from deband.cli import main
from deband.cli.exits import OUTPUT, UNREADABLE, UNSUPPORTED, USAGE
from deband.errors import InputError, OutputExistsError
from deband.video import VideoOptions, deband_video, read_video_rgb
from deband.video.analysis import iter_frames
from deband.video.timeline import (
    FrameScore,
    OnlyBanded,
    TimelineOptions,
    cut_distance,
    only_banded,
    scan,
    scenes_of,
    thumbnail,
)
from deband.video.timelinereport import scenes_path, write_report
from helpers.clips import make_clip

SIZE = (160, 120)  # CAMBI's window at this size is 3 pixels; at 64x48 it is 1 and scores 0
SCENE = 6  # frames per scene: banded, clean, banded
BANDED = [True] * SCENE + [False] * SCENE + [True] * SCENE


def three_scenes(i: int, w: int, h: int, fmt: str) -> list[np.ndarray]:
    """Frame i as 8-bit codes: a horizontal luma ramp quantised to steps of 4 codes (6 bits)
    in scenes 0 and 2 (different ranges), a grainy, striped brighter texture in scene 1
    (new grain every frame); neutral chroma."""
    x = np.linspace(0, 1, w)[None].repeat(h, 0)
    if i // SCENE == 1:
        rng = np.random.default_rng(i)
        y = 150 + 40 * x + rng.normal(0, 6, (h, w)) + 12 * np.sin(np.arange(h)[:, None] / 2)
    else:
        y = np.floor((60 + 30 * (i // SCENE) + 60 * x) / 4) * 4
    c = np.full((-(-h // 2), -(-w // 2)), 128.0)
    return [np.clip(a, 16, 235).round().astype(np.uint8) for a in (y, c, c)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("timeline") / "scenes.mkv"
    return make_clip(path, n=3 * SCENE, size=SIZE, codec="ffv1", planes=three_scenes)


def luma_codes_of(path: Path) -> list[np.ndarray]:
    """Every frame's planes as int64 codes (8-bit or 16-bit little-endian words)."""
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            dt = np.uint8 if f.format.name == "yuv420p" else "<u2"
            out.append([np.frombuffer(p, dt).reshape(p.height, -1)[:, : p.width].astype(np.int64) for p in f.planes])
    return out


class Brighten:
    """A restorer that visibly changes every frame it is given, and counts them."""

    def __init__(self):
        self.seen = 0

    def restore_batch(self, rgb: torch.Tensor) -> torch.Tensor:
        self.seen += rgb.shape[0]
        return (rgb + 0.05).clamp(0, 1)


# ----------------------------------------------------------------------------- the timeline


def test_scan_finds_the_cuts_and_the_banded_scenes(clip):
    line = scan(clip)
    assert [(s.first, s.last) for s in line.scenes] == [(0, 5), (6, 11), (12, 17)]
    assert [s.banded for s in line.scenes] == [True, False, True]
    assert line.scenes[1].max < 1 < 10 < min(line.scenes[0].mean, line.scenes[2].mean)
    assert [f.scene for f in line.frames] == [i // SCENE for i in range(3 * SCENE)]
    assert all(f.cambi is not None for f in line.frames)
    assert line.scenes[1].start == pytest.approx(0.24) and line.scenes[2].end == pytest.approx(0.72)
    assert line.banded_frames().tolist() == BANDED


def test_every_scores_every_nth_frame_and_each_scene_start(clip):
    line = scan(clip, TimelineOptions(every=4))
    assert [f.index for f in line.frames if f.cambi is not None] == [0, 4, 6, 8, 12, 16]
    assert [s.scored for s in line.scenes] == [2, 2, 2]
    assert [s.banded for s in line.scenes] == [True, False, True]


def test_threshold_decides_banded(clip):
    line = scan(clip, TimelineOptions(threshold=1000))
    assert not any(s.banded for s in line.scenes)


def test_a_moving_bar_over_one_picture_is_one_scene(tmp_path):
    # the default test clip: a ramp with a bar moving 3 px a frame, H.264 (lossy)
    line = scan(make_clip(tmp_path / "bar.mp4", n=12))
    assert len(line.scenes) == 1 and len(line.frames) == 12


def test_cut_distance_ignores_grain_and_sees_a_new_picture():
    rng = np.random.default_rng(0)
    base = np.linspace(0.2, 0.6, 200, dtype=np.float32)[None, None].repeat(3, 0).repeat(150, 1)  # (3, 150, 200)

    def grainy() -> torch.Tensor:
        return torch.from_numpy(np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1).astype(np.float32))

    same = cut_distance(thumbnail(grainy()), thumbnail(grainy()))
    other = cut_distance(thumbnail(grainy()), thumbnail(grainy().flip(-1)))  # the ramp reversed
    assert same < 0.01 and other > 0.15
    assert same < TimelineOptions().cut_threshold < other


def test_scenes_of_pools_scored_frames_and_times():
    frames = [FrameScore(0, 0.0, 2.0, 0), FrameScore(1, 0.5, None, 0), FrameScore(2, 1.0, 6.0, 0),
              FrameScore(3, 1.5, 8.0, 1), FrameScore(4, 2.0, None, 2)]
    a, b, c = scenes_of(frames, threshold=3.5, end=2.5)
    assert (a.first, a.last, a.start, a.end, a.mean, a.max, a.scored, a.banded) == (0, 2, 0.0, 1.5, 4.0, 6.0, 2, True)
    assert (b.mean, b.banded, b.end) == (8.0, True, 2.0)
    assert (c.scored, c.mean, c.banded, c.end) == (0, 0.0, False, 2.5)


@pytest.mark.parametrize("bad", [dict(every=0), dict(threshold=-1), dict(cut_threshold=0), dict(max_log_contrast=6)])
def test_options_are_checked(bad):
    with pytest.raises(ValueError):
        TimelineOptions(**bad)


# ----------------------------------------------------------------------------- reports


def test_csv_report(clip, tmp_path):
    written = write_report(scan(clip, TimelineOptions(every=2)), tmp_path / "t.csv")
    assert written == [tmp_path / "t.csv", tmp_path / "t-scenes.csv"]
    with open(tmp_path / "t.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["frame"]) for r in rows] == [0, 2, 4, 6, 8, 10, 12, 14, 16]
    assert [int(r["scene"]) for r in rows] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert float(rows[3]["pts_s"]) == pytest.approx(0.24)
    assert float(rows[0]["cambi"]) > 10 and float(rows[3]["cambi"]) < 1
    with open(tmp_path / "t-scenes.csv", newline="") as f:
        scenes = list(csv.DictReader(f))
    assert [(r["first_frame"], r["last_frame"], r["banded"]) for r in scenes] == [
        ("0", "5", "yes"), ("6", "11", "no"), ("12", "17", "yes")]
    assert [float(r["start_s"]) for r in scenes] == pytest.approx([0, 0.24, 0.48])


def test_html_report_is_self_contained(clip, tmp_path):
    (dst,) = write_report(scan(clip), tmp_path / "t.html")
    page = dst.read_text()
    rows = re.findall(r'<tr class="(banded|clean)"><td>(\d+)</td><td>(\d+)&ndash;(\d+)</td>', page)
    assert rows == [("banded", "0", "0", "5"), ("clean", "1", "6", "11"), ("banded", "2", "12", "17")]
    (png,) = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    picture = av.open(io.BytesIO(base64.b64decode(png)))
    frame = next(picture.decode(video=0))
    assert (frame.width, frame.height) == (1000, 320)
    assert not re.search(r"<(script|link)|(src|href)=\"(?!data:)", page)


def test_report_checks_outputs_before_writing(clip, tmp_path):
    line = scan(clip)
    scenes_path(tmp_path / "t.csv").write_text("keep")
    with pytest.raises(OutputExistsError):
        write_report(line, tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists() and (tmp_path / "t-scenes.csv").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t-scenes.csv"]  # no temporary left


# ----------------------------------------------------------------------------- only banded scenes


def test_only_banded_keeps_clean_frames_bit_identical(clip, tmp_path):
    inner = Brighten()
    dst = tmp_path / "out.mkv"
    deband_video(clip, dst, OnlyBanded(inner, scan(clip)), VideoOptions(codec="ffv1", batch=4), progress=False)
    assert inner.seen == 2 * SCENE
    src_codes, out_codes = luma_codes_of(clip), luma_codes_of(dst)
    assert len(out_codes) == 3 * SCENE
    for i, (a, b) in enumerate(zip(src_codes, out_codes)):
        if BANDED[i]:
            assert (b[0] != a[0] * 4).mean() > 0.9  # restored: luma changed nearly everywhere
        else:
            for pa, pb in zip(a, b):
                np.testing.assert_array_equal(pa * 4, pb)  # limited range: 10-bit = 4 x 8-bit


def test_only_banded_with_a_range(clip, tmp_path):
    inner = Brighten()
    wrapped = only_banded(inner, clip, threshold=5, start=0.2, duration=0.4)  # frames 5..14
    assert wrapped.banded.tolist() == BANDED[5:15]
    dst = tmp_path / "part.mkv"
    deband_video(clip, dst, wrapped, VideoOptions(codec="ffv1", start=0.2, duration=0.4, batch=3), progress=False)
    assert inner.seen == 1 + 3
    out = luma_codes_of(dst)
    for a, b, banded in zip(luma_codes_of(clip)[5:15], out, BANDED[5:15], strict=True):
        assert (b[0] != a[0] * 4).any() == banded


def test_only_banded_refuses_frames_out_of_step(clip):
    wrapped = OnlyBanded(Brighten(), scan(clip))
    frames = torch.rand(2, 3, SIZE[1], SIZE[0])
    with pytest.raises(InputError, match="frame 0 differs from the first pass"):
        wrapped.restore_batch(frames)


# ----------------------------------------------------------------------------- command line


def deband(*args):
    """The command in a fresh interpreter, as users run it."""
    cmd = [sys.executable, "-m", "deband.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def deband_here(capsys, *args) -> tuple[int, str, str]:
    """The command in this process (faster): (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_cli_inspect_video_csv_and_html(clip, tmp_path):
    r = deband("inspect", clip, "-o", tmp_path / "r.csv", "--every", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == [str(tmp_path / "r.csv"), str(tmp_path / "r-scenes.csv")]
    assert "3 scenes, 2 banded" in r.stdout
    with open(tmp_path / "r.csv", newline="") as f:
        assert [row["frame"] for row in csv.DictReader(f)] == ["0", "3", "6", "9", "12", "15"]
    r = deband("inspect", clip, "-o", tmp_path / "r.html", "--threshold", "1000")
    assert r.returncode == 0, r.stderr
    assert "0 banded" in r.stdout and "data:image/png;base64," in (tmp_path / "r.html").read_text()


def test_cli_inspect_image_still_writes_a_heat_map(tmp_path, capsys):
    from deband.io.files import read_image, write_image

    ramp = np.floor(np.linspace(0, 63, 200))[None, :, None].repeat(120, 0).repeat(3, 2) * 4
    write_image(tmp_path / "ramp.png", ramp.astype(np.uint8))
    code, out, err = deband_here(capsys, "inspect", tmp_path / "ramp.png", "-o", tmp_path / "map.png")
    assert code == 0, err
    assert float(re.search(r"CAMBI ([\d.]+)", out).group(1)) > 5
    assert read_image(tmp_path / "map.png").pixels.shape == (120, 200, 3)


@pytest.mark.parametrize("case", ["missing", "not a video", "exists", "bad option"])
def test_cli_inspect_video_bad_input(case, clip, tmp_path, capsys):
    src, out = clip, tmp_path / "r.html"
    if case == "missing":
        src = tmp_path / "nope.mkv"
    elif case == "not a video":
        src = tmp_path / "notes.mkv"
        src.write_text("just text, no video here\n" * 10)
    elif case == "exists":
        out.write_text("keep")
    extra = ["--every", "0"] if case == "bad option" else []
    code, _, err = deband_here(capsys, "inspect", src, "-o", out, *extra)
    assert code == {"missing": UNREADABLE, "not a video": UNREADABLE, "exists": OUTPUT, "bad option": USAGE}[case]
    assert len(err.strip().splitlines()) == 1 and err.startswith("deband"), err
    assert (out.read_text() == "keep") if case == "exists" else not out.exists()
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.slow
def test_cli_video_only_banded(clip, tmp_path, tiny_weights):
    dst = tmp_path / "out.mkv"
    r = deband("video", clip, "-o", dst, "--codec", "ffv1", "--only-banded", "5", "--weights", tiny_weights)
    assert r.returncode == 0, r.stderr
    assert "2 of 3 scenes banded" in r.stderr
    for i, (a, b) in enumerate(zip(luma_codes_of(clip), luma_codes_of(dst), strict=True)):
        if BANDED[i]:
            assert (b[0] != a[0] * 4).any()
        else:
            for pa, pb in zip(a, b):
                np.testing.assert_array_equal(pa * 4, pb)


def test_cli_video_only_banded_bad_input(tmp_path, capsys):
    code, _, err = deband_here(capsys, "video", tmp_path / "nope.mkv", "-o", tmp_path / "o.mkv", "--only-banded", "5")
    assert code == UNREADABLE and len(err.strip().splitlines()) == 1, err
    code, _, err = deband_here(capsys, "video", tmp_path / "nope.mkv", "-o", tmp_path / "o.mkv", "--only-banded", "-1")
    assert code == USAGE and len(err.strip().splitlines()) == 1, err


def test_cli_inspect_video_to_an_image_says_how(clip, tmp_path, capsys):
    code, _, err = deband_here(capsys, "inspect", clip, "-o", tmp_path / "r.png")
    assert code == UNSUPPORTED and ".html or" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.png").exists()


def test_iter_frames_streams_what_read_video_rgb_holds(clip):
    frames = list(iter_frames(clip))
    assert [f.index for f in frames] == list(range(3 * SCENE))
    assert [f.seconds for f in frames] == pytest.approx([i / 25 for i in range(3 * SCENE)])
    assert all(f.duration == pytest.approx(1 / 25) for f in frames)
    torch.testing.assert_close(torch.stack([f.rgb for f in frames]), read_video_rgb(clip), rtol=0, atol=0)
    part = list(iter_frames(clip, start=0.2, duration=0.4))
    assert [round(f.seconds * 25) for f in part] == list(range(5, 15))

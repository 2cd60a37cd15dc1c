import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deband.evaluation.baselines import FILTERS, ffmpeg_filter
from deband.evaluation.evalreport import crop_panels, detail_window
from deband.evaluation.evalsets import Pair, synthetic_set
from deband.evaluation.scoring import Row, identity, markdown, score, smooth_reference


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_ffmpeg_filters_run_on_odd_sizes(name):
    x = np.linspace(0, 1, 33 * 17 * 3, dtype=np.float32).reshape(33, 17, 3)
    out = ffmpeg_filter(np.round(x * 63) / 63, name)
    assert out.shape == x.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


def test_unknown_filter():
    with pytest.raises(ValueError):
        ffmpeg_filter(np.zeros((4, 4, 3), np.float32), "median")


def test_synthetic_set_is_reproducible_and_banded():
    a, b = synthetic_set("rgb-6bit", 2, 64), synthetic_set("rgb-6bit", 2, 64)
    assert all(np.array_equal(p.degraded, q.degraded) for p, q in zip(a, b))
    assert np.unique(a[0].degraded).size <= 64 * 3


def test_synthetic_pairs_carry_their_scene_without_grain_or_texture():
    pairs = synthetic_set("rgb-6bit", 12, 64)
    same = [np.array_equal(p.smooth, p.clean) for p in pairs]
    assert any(same) and not all(same)  # about 30 % of scenes get grain or texture
    for p in pairs:
        if not np.array_equal(p.smooth, p.clean):  # the detail is fine: its local mean is ~0
            assert np.abs(p.clean - p.smooth).max() > 1e-3
            assert np.abs(p.clean - p.smooth).mean(axis=(0, 1)).max() < 0.02


def test_smooth_reference_scores_the_scene_under_the_grain():
    x = np.linspace(0.05, 0.1, 256, dtype=np.float32)[None, :, None].repeat(96, 0).repeat(3, 2)
    steps = np.round(x * 255) / 255  # dark 8-bit bands, 20 px wide
    grainy = steps + np.random.default_rng(0).normal(0, 0.01, steps.shape).astype(np.float32)
    pair = Pair(grainy, grainy, "p", smooth=steps)
    row, clean = smooth_reference([pair], "s"), score(identity, [Pair(grainy, grainy)], "s", "clean")
    assert row.method == "clean without grain/texture" and np.isnan(row.psnr)
    assert clean.cambi < 0.5 and row.cambi > 5  # the grain hid the bands from CAMBI


def test_score_identity_on_clean_is_perfect():
    clean = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    row = score(identity, [Pair(clean, clean)], "s", "id")
    assert row.psnr > 150 and row.ssim == pytest.approx(1.0) and row.cambi >= 0


def test_markdown_marks_missing_values():
    table = markdown([Row("m", "s", psnr=40.123)])
    assert "40.12" in table and "–" in table


@pytest.mark.slow
def test_eval_without_a_corpus_says_how_to_make_one_and_runs_the_rest(tmp_path, tiny_weights):
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "deband.cli", "eval", "--n", "1", "--size", "64", "--steps", "1",
           "--weights", str(tiny_weights), "--json", str(out)]
    env = os.environ | {"DEBAND_CORPUS": str(tmp_path / "no-corpus")}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    hint = [line for line in r.stderr.splitlines() if "real-content sets skipped" in line]
    assert len(hint) == 1 and f"deband corpus build {tmp_path / 'no-corpus'}" in hint[0]
    assert "ffmpeg-deband" in r.stdout and "clean reference" in r.stdout and "clean without grain" in r.stdout
    data = json.loads(out.read_text())
    assert {"rgb-6bit", "unbanded photos", "all synthetic (mean)", "faint detail"} <= set(data)
    assert not any(name.startswith("real ") for name in data)


@pytest.mark.slow
def test_inspect_command(tmp_path):
    from deband.io.files import write_image

    x = np.linspace(0, 1, 256, dtype=np.float32)[None, :, None].repeat(64, 0).repeat(3, 2)
    write_image(tmp_path / "g.png", (np.round(x * 63) / 63 * 255).astype(np.uint8))
    r = subprocess.run([sys.executable, "-m", "deband.cli", "inspect", str(tmp_path / "g.png"), "-o",
                        str(tmp_path / "map.png")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "CAMBI" in r.stdout and (tmp_path / "map.png").is_file()


def test_detail_window_finds_the_edges_and_stays_inside():
    img = np.full((120, 200, 3), 0.5, np.float32)
    img[70:100, 20:50] = np.indices((30, 30)).sum(0)[..., None] % 2  # a checkerboard patch
    ys, xs = detail_window(img, 40)
    assert ys.stop - ys.start == 40 and xs.stop - xs.start == 40
    assert 0 <= ys.start and ys.stop <= 120 and 0 <= xs.start and xs.stop <= 200
    assert ys.start <= 70 and 100 <= ys.stop and xs.start <= 20 and 50 <= xs.stop
    panels = crop_panels({"in": identity}, [Pair(None, img)], 40, detail_window)
    assert [t for t, _ in panels[0]] == ["in"] and np.array_equal(panels[0][0][1], img[ys, xs])


def test_summary_gives_each_set_its_gain_and_skips_sets_without_our_rows():
    from deband.evaluation.evalreport import summary

    rows = [Row("clean reference", "s", psnr=200, cambi4=2.0, detail=100.0),
            Row("banded input", "s", psnr=40.0, psnr_y=45.0, psnr_cb=50.0, psnr_cr=48.0, cambi4=9.0, detail=80.0),
            Row("ffmpeg-deband", "s", psnr=39.5),
            Row("deband 1 step", "s", psnr=41.0, cambi4=3.0, detail=70.0, steps=1, strength=1.0),
            Row("deband 2 steps", "s", psnr=42.5, psnr_y=46.0, psnr_cb=53.5, psnr_cr=48.5, cambi4=2.5, detail=75.0,
                steps=2, strength=1.0),
            Row("deband 2 steps, strength 0.5", "s", psnr=45.0, steps=2, strength=0.5)]
    text = summary({"s": rows, "no ours": rows[:3]}, steps=2)
    lines = text.splitlines()
    assert len(lines) == 3 and "ffmpeg-gradfun-strong" in lines[0]
    assert lines[2] == ("| s | 40.00 | 39.50 | – | – | – | **42.50 (+2.50)** | +1.00 / +3.50 / +0.50 "
                        "| 80.0 → 75.0 | 9.00 → 2.50 (2.00) |")
    assert summary({"no ours": rows[:3]}) == ""

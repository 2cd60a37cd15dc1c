"""Real-content and faint-detail evaluation on a tiny fake corpus: held-out images only,
deterministic crops, every delivery applied, the detail-kept metric, the CLI's order."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deband.data.manifest import corpus_folder, split_files
from deband.errors import InputError
from deband.evaluation.faintsets import FAINT_KINDS, faint_scene, faint_set
from deband.evaluation.realsets import (
    CODECS,
    COLOUR,
    REQUANTISATIONS,
    colour_set_names,
    corpus_crops,
    corpus_problem,
    faint_map,
    gentle_map,
    load_held_out,
    ranked_windows,
    real_set,
    real_set_names,
    texture_map,
)
from deband.evaluation.scoring import detail_kept, detail_region, identity, local_rms
from deband.evaluation.scoring import score as score_method
from deband.io.files import write_image
from deband.io.pixels import quantise


def _picture(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth gradient on the left half, fine texture (a few codes) on the right. (h, w, 3)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.1 + 0.1 * seed, 0.3 + 0.1 * seed, w, dtype=np.float32)[None, :, None]
    img = np.repeat(np.repeat(x, h, 0), 3, 2) * np.array([1.0, 0.9, 0.8], np.float32)
    img[:, w // 2 :] += rng.normal(0, 2 / 255, (h, w - w // 2, 1)).astype(np.float32)
    return img.clip(0, 1)


def make_corpus(folder: Path, splits: list[str], h: int = 96, w: int = 160, picture=_picture) -> Path:
    """16-bit PNGs named img-K.png (`picture(h, w, K)`) and a manifest giving each its split."""
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for k, split in enumerate(splits):
        name = f"img-{k}.png"
        write_image(folder / name, np.round(picture(h, w, k) * 65535).astype(np.uint16))
        images.append({"file": name, "package": "fake", "licence": "CC0", "sha256": f"{k:064x}",
                       "size": [w, h], "split": split})
    (folder / "manifest.json").write_text(json.dumps({"images": images}))
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "corpus", ["train", "held-out", "train", "held-out", "train"])


def test_only_held_out_images_are_read(corpus: Path) -> None:
    assert [p.name for p in split_files(corpus, "held-out")] == ["img-1.png", "img-3.png"]
    images = load_held_out(corpus)
    assert [name for name, _ in images] == ["img-1.png", "img-3.png"]
    train = {_key(np.round(_picture(96, 160, k) * 65535) / 65535) for k in (0, 2, 4)}
    for label, crop in corpus_crops(images, 6, 64, gentle_map):
        assert label.startswith(("img-1@", "img-3@")) and crop.shape == (64, 64, 3)
        source = dict(images)[label.split("@")[0] + ".png"]
        t, x = (int(v) for v in label.split("@")[1].split(","))
        assert np.array_equal(crop, source[t : t + 64, x : x + 64])
        assert _key(crop) not in train


def _key(img: np.ndarray) -> float:
    return round(float(img[..., 0].mean()), 2)


def test_crops_take_images_in_turn_and_shrink_to_small_images(corpus: Path) -> None:
    crops = corpus_crops(load_held_out(corpus), 3, 500, gentle_map)
    names = [label.split("@")[0] for label, _ in crops]
    assert sorted(names[:2]) == ["img-1", "img-3"] and names[2] == names[0]  # in turn
    assert all(c.shape == (96, 96, 3) for _, c in crops)  # the shorter side
    assert crops[0][0] != crops[2][0]  # another window of the same image


def test_crops_come_from_windows_that_hold_what_the_set_is_about() -> None:
    rng = np.random.default_rng(0)
    gradient = np.repeat(np.repeat(np.linspace(0.2, 0.4, 192, dtype=np.float32)[None, :, None], 128, 0), 3, 2)
    faint = (0.5 + rng.normal(0, 0.7 / 255, (128, 192, 1))).astype(np.float32).repeat(3, 2)
    images = [("a-gradient.png", gradient), ("b-faint.png", faint)]
    for score, wanted in ((gentle_map, "a-gradient"), (faint_map, "b-faint")):
        crops = corpus_crops(images, 3, 64, score)
        assert [label.split("@")[0] for label, _ in crops] == [wanted] * 3, score.__name__
        assert len({label for label, _ in crops}) == 3  # three windows of the one image
        # asked for more than qualify: only those that do, never the other image's
        labels = [label.split("@")[0] for label, _ in corpus_crops(images, 60, 64, score)]
        assert 3 < len(labels) < 60 and set(labels) == {wanted}
    assert corpus_crops([("b-faint.png", faint)], 3, 64, gentle_map) == []


def test_sets_are_deterministic_and_apply_each_delivery(corpus: Path) -> None:
    crops = corpus_crops(load_held_out(corpus), 2, 64, gentle_map)
    assert [c for _, c in crops] and all(np.array_equal(a, b) for (_, a), (_, b)
                                         in zip(crops, corpus_crops(load_held_out(corpus), 2, 64, gentle_map)))
    names = real_set_names()
    assert list(REQUANTISATIONS) == names[: len(REQUANTISATIONS)] and set(names) <= set(REQUANTISATIONS) | set(CODECS)
    degraded = {}
    for name in names:
        pairs, again = real_set(name, crops), real_set(name, crops)
        for p, q, (_, c) in zip(pairs, again, crops):
            assert p.clean is c and np.array_equal(p.degraded, q.degraded)
            assert p.degraded.shape == c.shape and p.degraded.dtype == np.float32
            assert not np.array_equal(p.degraded, c)
            if name in REQUANTISATIONS:
                expected = REQUANTISATIONS[name](torch.from_numpy(c).permute(2, 0, 1)).permute(1, 2, 0).numpy()
                assert np.array_equal(p.degraded, expected)
        degraded[name] = pairs[0].degraded
    keys = list(degraded)
    assert all(not np.array_equal(degraded[a], degraded[b]) for a in keys for b in keys if a < b)


def test_windows_prefer_smooth_gradients_and_faint_detail() -> None:
    img = _picture(128, 256, 1)
    g = torch.Generator().manual_seed(0)
    (top, left, _), *_ = ranked_windows(gentle_map(img), 64, 3, g)
    assert left + 64 <= 128  # the smooth half
    faint = img.copy()
    faint[:, :128] += np.random.default_rng(1).normal(0, 0.7 / 255, (128, 128, 1)).astype(np.float32)
    faint[:, 128:] = _picture(128, 128, 1) + np.random.default_rng(2).normal(0, 8 / 255, (128, 128, 1))
    (top, left, _), *_ = ranked_windows(faint_map(faint), 64, 3, torch.Generator().manual_seed(0))
    assert left + 64 <= 128  # faint noise, not the strong one


def test_missing_or_broken_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "no manifest.json" in corpus_problem(tmp_path / "none")
    train_only = make_corpus(tmp_path / "t", ["train"], 64, 64)
    assert "no held-out image" in corpus_problem(train_only)
    broken = make_corpus(tmp_path / "b", ["held-out"], 64, 64)
    (broken / "img-0.png").unlink()
    with pytest.raises(InputError, match="img-0.png"):
        split_files(broken, "held-out")
    (broken / "manifest.json").write_text("{")
    with pytest.raises(InputError, match="not a corpus manifest"):
        split_files(broken, "held-out")
    monkeypatch.setenv("DEBAND_CORPUS", str(tmp_path / "env"))
    assert corpus_folder() == tmp_path / "env" and corpus_folder(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("DEBAND_CORPUS")
    assert corpus_folder() == Path("~/.cache/deband/corpus").expanduser()


# --- the detail-kept metric ------------------------------------------------------------


def _textured(seed: int = 0) -> np.ndarray:
    """A gradient (no detail) over 128 x 128 px, with blurred noise of ~1.5 codes RMS added
    on the right half."""
    img = np.repeat(np.repeat(np.linspace(0.2, 0.3, 128, dtype=np.float32)[None, :, None], 128, 0), 3, 2)
    tex = cv2.GaussianBlur(np.random.default_rng(seed).normal(0, 1, (128, 64)).astype(np.float32), (0, 0), 1.0)
    img[:, 64:] += (tex / tex.std() * 1.5 / 255)[..., None]
    return img


def test_detail_kept_by_identity_is_100_and_by_blur_far_less() -> None:
    clean = _textured()
    region = detail_region(clean)
    assert region[:, 72:].all() and not region[:, :48].any()
    assert detail_kept(clean, clean) == pytest.approx(100)
    assert detail_kept(cv2.GaussianBlur(clean, (0, 0), 2), clean) < 40
    assert detail_kept(cv2.GaussianBlur(clean, (0, 0), 1), clean) < 80
    assert np.isnan(detail_kept(clean, _picture(128, 128, 0) * 0 + 0.5))  # nothing to keep


def test_detail_kept_ignores_banded_regions_and_is_not_raised_by_noise() -> None:
    clean = _textured()
    flattened = clean.copy()
    flattened[:, :40] = clean[:, :40].mean(axis=(0, 1))  # the smooth part changed: not counted
    assert detail_kept(flattened, clean) == pytest.approx(100)
    blurred = cv2.GaussianBlur(clean, (0, 0), 2)
    rng = np.random.default_rng(5)
    for sigma in (0.25, 1.0, 4.0):
        noise = rng.normal(0, sigma / 255, clean.shape).astype(np.float32)
        assert detail_kept(clean + noise, clean) < 100
        assert detail_kept(blurred + noise, clean) <= detail_kept(blurred, clean) + 0.5
    assert detail_kept(clean + 0.5 * (clean - blurred), clean) < 100  # over-sharpened


def test_faint_scenes_have_faint_detail_that_8_bits_partly_keep() -> None:
    g = torch.Generator().manual_seed(3)
    for kind in FAINT_KINDS:
        clean = faint_scene(kind, 96, g).permute(1, 2, 0).numpy()
        assert clean.shape == (96, 96, 3) and 0 <= clean.min() and clean.max() <= 1
        assert detail_region(clean).mean() > 0.3, kind
        assert np.median(local_rms(clean)) * 255 < 2.0, kind  # at most a few codes
        delivered = quantise(clean, 8)
        assert 20 < detail_kept(delivered, clean) < 100, kind
        assert detail_kept(cv2.GaussianBlur(delivered, (0, 0), 3), clean) < detail_kept(delivered, clean)
    with pytest.raises(ValueError):
        faint_scene("clouds", 32, g)


def test_faint_set_is_corpus_crops_and_scenes_at_8_bits(corpus: Path) -> None:
    pairs = faint_set(load_held_out(corpus), 2, 64)
    again = faint_set(load_held_out(corpus), 2, 64)
    # no window of these images is mostly faint detail (their texture is stronger): scenes only
    assert [p.name for p in pairs] == ["faint: terrain 0", "faint: fog 1"] and len(faint_set([], 3, 64)) == 3
    faint = (0.5 + np.random.default_rng(0).normal(0, 0.7 / 255, (96, 160, 1))).astype(np.float32).repeat(3, 2)
    with_crops = faint_set([("faint.png", faint)], 2, 64)
    assert [p.name.split("@")[0] for p in with_crops[:2]] == ["faint: faint"] * 2 and len(with_crops) == 4
    for p, q in zip(pairs, again):
        assert np.array_equal(p.clean, q.clean) and np.array_equal(p.degraded, quantise(p.clean, 8))


# --- the command -----------------------------------------------------------------------


def _eval(args: list[str], weights: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "deband.cli", "eval", "--n", "1", "--size", "64", "--steps", "1",
           "--weights", str(weights), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_eval_prints_real_content_tables_first(corpus: Path, tiny_weights: Path, tmp_path: Path) -> None:
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    r = _eval(["--corpus", str(corpus), "--json", str(out), "--markdown", str(md)], tiny_weights)
    assert r.returncode == 0, r.stderr
    headings = [line[4:] for line in r.stdout.splitlines() if line.startswith("### ")]
    assert headings[: len(real_set_names())] == real_set_names()
    assert headings.index("faint detail") < headings.index("rgb-6bit")
    assert "all real-content (mean)" in headings and "skipped" not in r.stderr
    data = json.loads(out.read_text())
    assert set(real_set_names()) | {"faint detail", "rgb-6bit"} <= set(data)
    rows = {row["method"]: row for row in data["real 4:2:0 8-bit"]}
    assert {"clean reference", "banded input", "ffmpeg-deband", "deband 1 step"} <= set(rows)
    assert rows["clean reference"]["detail"] == pytest.approx(100) or np.isnan(rows["clean reference"]["detail"])
    text = md.read_text()
    assert "## Summary" in text and "| real 4:2:0 8-bit |" in text and "Measured on 20" in text


@pytest.mark.slow
def test_eval_skips_real_sets_when_no_window_is_smooth_gradient(tiny_weights: Path, tmp_path: Path) -> None:
    def noise(h: int, w: int, k: int) -> np.ndarray:
        return np.random.default_rng(k).uniform(0.2, 0.8, (h, w, 3))

    folder = make_corpus(tmp_path / "textured", ["held-out"], picture=noise)
    r = _eval(["--corpus", str(folder)], tiny_weights)
    assert r.returncode == 0, r.stderr
    assert "real-content sets skipped: no window of" in r.stderr and "mostly smooth gradient" in r.stderr
    headings = [line[4:] for line in r.stdout.splitlines() if line.startswith("### ")]
    assert "all real-content (mean)" not in headings and not set(real_set_names()) & set(headings)
    assert "faint detail" in headings
    assert "all colour (mean)" in headings and set(colour_set_names()) <= set(headings)  # noise is all texture


def test_colour_sets_band_textured_windows_in_colour() -> None:
    rng = np.random.default_rng(5)
    gradient = np.repeat(np.repeat(np.linspace(0.2, 0.4, 192, dtype=np.float32)[None, :, None], 128, 0), 3, 2)
    hair = (0.4 + rng.normal(0, 8 / 255, (128, 192, 3))).astype(np.float32).clip(0, 1)
    crops = corpus_crops([("a-gradient.png", gradient), ("b-hair.png", hair)], 2, 64, texture_map)
    assert [label.split("@")[0] for label, _ in crops] == ["b-hair"] * 2
    assert set(colour_set_names()) <= set(COLOUR) and len(colour_set_names()) >= 4
    for name in colour_set_names():
        pairs = real_set(name, crops)
        assert all(np.array_equal(p.degraded, q.degraded) for p, q in zip(pairs, real_set(name, crops)))
        row = score_method(identity, pairs, name, "input", with_cambi=False)
        planes = [row.psnr_y, row.psnr_cb, row.psnr_cr]
        assert all(np.isfinite(planes)) and row.psnr < 50
        if "chroma" in name:  # Y' kept at 8 bits: its error is far smaller than Cb's and Cr's
            assert row.psnr_y > max(row.psnr_cb, row.psnr_cr) + 6
        if name == "textured rgb 6-bit":  # 8-bit codes, each the nearest to a 6-bit level
            codes = np.round(pairs[0].degraded * 255)
            assert np.array_equal(codes, np.round(np.round(codes * 63 / 255) * 255 / 63))

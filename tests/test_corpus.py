"""The corpus builder on a tiny fake package tree: packages, licences, duplicates, exclusions, splits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from deband.data.corpus import CorpusConfig, area_downscale, build_corpus, excluded, pixel_sha256, split_of
from deband.data.corpus_packages import PackageIndex, licence_from_copyright
from deband.errors import InputError
from deband.io.files import read_image
from deband.io.pixels import from_codes

CONFIG = CorpusConfig(scale=2, min_side=8, held_out=0.5, min_bytes=0)


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth (h, w, 3) uint8 picture: a colour gradient plus a soft blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    a, b, c = rng.uniform(0.2, 0.8, (3, 3))
    blob = np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) * 8)
    rgb = a * 0.6 + np.stack([yy, xx, 1 - yy], -1) * b * 0.3 + blob[..., None] * 0.2
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def _png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> dict:
    """Two fake packages under tmp/root with a fake dpkg database and copyright files."""
    root = tmp_path / "root"
    big = _smooth(96, 128, 0)
    files = {
        "a": _png(root / "pkga/backgrounds/a.png", big),
        "b": root / "pkga/backgrounds/b.jpg",
        "copy": root / "pkgb/copy/a-copy.png",
        "small": _png(root / "pkgb/small/a-small.png", cv2.resize(big, (64, 48), interpolation=cv2.INTER_AREA)),
        "tiny": _png(root / "pkgb/tiny.png", _smooth(10, 12, 2)),
        "mpl": _png(root / "pkgb/matplotlib/mpl-data/sample_data/grace.png", _smooth(64, 64, 3)),
        "stray": _png(root / "stray/unowned.png", _smooth(64, 64, 4)),
        "overlay": _png(root / "pkga/overlay.png", np.dstack([_smooth(64, 64, 5), np.full((64, 64), 100, np.uint8)])),
        "opaque": _png(root / "pkga/opaque.png", np.dstack([_smooth(40, 60, 6), np.full((40, 60), 250, np.uint8)])),
    }
    Image.fromarray(_smooth(80, 80, 1)).save(files["b"], quality=95)
    files["copy"].parent.mkdir(parents=True)
    shutil.copyfile(files["a"], files["copy"])
    info = tmp_path / "dpkg/info"
    info.mkdir(parents=True)
    (info / "pkga.list").write_text("\n".join(str(files[k]) for k in ("a", "b", "overlay", "opaque")) + "\n")
    (info / "pkgb:amd64.list").write_text("\n".join(str(files[k]) for k in ("copy", "small", "tiny", "mpl")) + "\n")
    status = tmp_path / "dpkg/status"
    status.write_text("Package: pkga\nStatus: install ok installed\nVersion: 1.0-1\n\n"
                      "Package: pkgb\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2:3.4\n")
    docs = tmp_path / "doc"
    (docs / "pkga").mkdir(parents=True)
    (docs / "pkga/copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: someone\nLicense: GPL-2+\n\n"
        "Files: backgrounds/b.jpg\n       backgrounds/other.jpg\nCopyright: another\nLicense: CC-BY-SA-4.0\n"
        " Full text follows.\n")
    (docs / "pkgb").mkdir()
    (docs / "pkgb/copyright").write_text("These pictures are released under the Creative Commons "
                                         "Attribution-ShareAlike 3.0 licence.\n")
    packages = PackageIndex(dpkg_info=info, dpkg_status=status, doc_root=docs, python=False)
    return {"root": root, "files": files, "packages": packages}


def _build(tree: dict, out: Path, config: CorpusConfig = CONFIG) -> dict:
    return build_corpus(out, [tree["root"]], config, tree["packages"])


def test_manifest_lists_the_right_images(tree: dict, tmp_path: Path) -> None:
    m = _build(tree, tmp_path / "out")
    f = tree["files"]
    by_source = {r["source"]: r for r in m["images"]}
    assert set(by_source) == {str(f["a"]), str(f["b"]), str(f["opaque"])}
    a, b = by_source[str(f["a"])], by_source[str(f["b"])]
    assert (a["package"], a["version"], a["licence"], a["origin"]) == ("pkga", "1.0-1", "GPL-2+", "debian")
    assert (b["package"], b["licence"]) == ("pkga", "CC-BY-SA-4.0")  # its own DEP-5 stanza
    assert a["original_size"] == [128, 96] and a["size"] == [64, 48] and a["scale"] == 2
    assert a["sha256"] == pixel_sha256(read_image(f["a"]).pixels)
    reasons = {r["source"]: r["reason"] for r in m["skipped"]}
    assert reasons[str(f["copy"])] == f"duplicate of {a['file']}"
    assert reasons[str(f["small"])] == f"near-duplicate of {a['file']}"
    assert "under 8" in reasons[str(f["tiny"])]
    assert reasons[str(f["mpl"])] == "excluded: matplotlib sample data"
    assert "no installed package" in reasons[str(f["stray"])]
    assert reasons[str(f["overlay"])] == "has transparent pixels"
    assert m["counts"]["images"] == 3 and m["counts"]["skipped"] == 6
    assert json.loads((tmp_path / "out/manifest.json").read_text()) == m


def test_outputs_are_16_bit_pngs_at_the_right_size(tree: dict, tmp_path: Path) -> None:
    m = _build(tree, tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(["manifest.json"] + [r["file"] for r in m["images"]])
    for r in m["images"]:
        arr = cv2.imread(str(tmp_path / "out" / r["file"]), cv2.IMREAD_UNCHANGED)
        assert arr.dtype == np.uint16 and arr.shape == (r["size"][1], r["size"][0], 3)
    a = next(r for r in m["images"] if r["source"] == str(tree["files"]["a"]))
    written = read_image(tmp_path / "out" / a["file"]).pixels
    src = read_image(tree["files"]["a"]).pixels.astype(np.float64)
    exact = (src[0::2, 0::2] + src[0::2, 1::2] + src[1::2, 0::2] + src[1::2, 1::2]) * 257 / 4  # 2x2 mean, 16-bit
    assert np.abs(written - exact).max() <= 0.5 + 1e-3


def test_split_is_deterministic_by_hash(tree: dict, tmp_path: Path) -> None:
    m = _build(tree, tmp_path / "out")
    for r in m["images"]:
        assert r["split"] == ("held-out" if int(r["sha256"][:8], 16) % 100 < 50 else "train")
    assert split_of("00000000ff", 0.0) == "train" and split_of("ffffffff00", 1.0) == "held-out"
    assert split_of("00000031", 0.5) == "held-out" and split_of("00000032", 0.5) == "train"  # 49 and 50


def test_rerun_is_idempotent(tree: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _build(tree, out)
    text = (out / "manifest.json").read_text()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert _build(tree, out) == first
    assert (out / "manifest.json").read_text() == text
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == stamps


def test_area_downscale_of_a_constant_image_is_exact() -> None:
    for codes in (np.full((9, 12, 3), 137, np.uint8), np.full((8, 8), 40001, np.uint16)):
        for f in (2, 3, 4):
            x = area_downscale(codes, f)
            assert x.shape[:2] == (codes.shape[0] // f, codes.shape[1] // f) and x.dtype == np.float32
            assert np.array_equal(x, from_codes(codes[: x.shape[0], : x.shape[1]]))
    block = np.array([[0, 1], [2, 4]], np.uint8)  # mean 7/4 codes: more than 8 bits kept
    assert area_downscale(block, 2)[0, 0] == np.float32(7 / (4 * 255))


@pytest.mark.parametrize("path", ["/data/Kodak/kodim01.png", "/x/BAND-2k/1.png", "/x/deepDeband/a.png",
                                  "/x/hd_banding/a.png", "/usr/lib/python3/matplotlib/x.png",
                                  "/x/mpl-data/sample_data/a.png", "/src/deband/examples/sunset-banded.png",
                                  str(Path(__file__).resolve().parents[1] / "examples/sunset-banded.png")])
def test_excluded_paths(path: str) -> None:
    assert excluded(path) is not None
    assert excluded("/usr/share/backgrounds/gnome/adwaita-d.webp") is None


def test_packages_in_a_virtualenv_inside_the_checkout_are_not_our_examples() -> None:
    checkout = Path(__file__).resolve().parents[1]
    assert excluded(checkout / ".venv/lib/python3.11/site-packages/skimage/data/astronaut.png") is None
    assert excluded(checkout / "examples/sunset-banded.png") == "deband examples"


def test_licence_from_copyright_falls_back_to_first_license_line() -> None:
    text = "Files: *\nLicense: GPL-3+\n\nFiles: art/sky.png\nLicense: CC0-1.0\n"
    assert licence_from_copyright(text, "/usr/share/backgrounds/sky.png") == "CC0-1.0"
    assert licence_from_copyright(text, "/usr/share/backgrounds/sea.png") == "GPL-3+"
    assert licence_from_copyright("No licence named here.", "/x.png") == ""


def test_missing_source_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nowhere"):
        build_corpus(tmp_path / "out", [tmp_path / "nowhere"], CONFIG, PackageIndex(python=False))


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    return subprocess.run([sys.executable, "-m", "deband.cli", "corpus", "build", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_builds_a_manifest_and_refuses_a_missing_folder(tree: dict, tmp_path: Path) -> None:
    done = _cli(str(tmp_path / "out"), "--source", str(tree["root"]), "--min-side", "8")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["roots"] == [str(tree["root"])] and manifest["config"]["min_side"] == 8
    assert "manifest.json" in done.stdout
    bad = _cli(str(tmp_path / "out2"), "--source", str(tmp_path / "missing"))
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines() == [f"deband: error: {tmp_path / 'missing'}: no such folder"]

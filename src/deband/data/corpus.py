"""A corpus of real clean images from installed packages, downscaled to 16-bit PNGs.

`build_corpus` scans folders of images installed by Debian packages (wallpapers,
backgrounds, desktop artwork) and scikit-image's sample data, finds each file's package,
version and licence (`deband.data.corpus_packages`), decodes it, averages it down by an integer
factor (an 8-bit source averaged over 2x2 pixels reaches 10 bits of precision, over 4x4 12
bits), and writes it as a 16-bit PNG with a `manifest.json` beside it. Images smaller than
`min_side` after downscaling, exact duplicates (the same decoded pixels) and near-duplicates
(the same picture at another resolution: equal aspect ratio and 8x8 RGB thumbnails within a
small tolerance; the largest is kept) are skipped, and the manifest says why. The split into
train and held-out follows each image's content hash, so it never changes between runs, and
a rerun writes the same manifest and leaves images already written alone.

Never included, wherever found (matched on the lower-cased path, `EXCLUDED`): the Kodak set,
BAND-2k, deepDeband and other HD banding data sets (they are evaluation material),
matplotlib's sample data (any path with `matplotlib` or `mpl-data/sample_data`), and
deband's own examples (the project's checkout and any `deband/examples` folder).

The packages were installed with::

    apt-get update
    apt-get install -y --no-install-recommends gnome-backgrounds plasma-workspace-wallpapers \\
        mate-backgrounds ukui-wallpapers lomiri-wallpapers lomiri-wallpapers-16.04 \\
        lomiri-wallpapers-20.04 debian-edu-artwork debian-edu-artwork-buster \\
        debian-edu-artwork-emerald debian-edu-artwork-homeworld debian-edu-artwork-softwaves \\
        debian-edu-artwork-spacefun desktop-base sway-backgrounds xfdesktop4-data opencv-doc

and built with the folders named in `corpus/README.md` (OpenCV's `examples/data` among them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from deband.data.corpus_packages import IMAGE_SUFFIXES, Owner, PackageIndex
from deband.errors import DebandError, InputError
from deband.io.files import read_image, write_image
from deband.io.outputs import atomic_output
from deband.io.pixels import bits_of, peak, to_codes

log = logging.getLogger(__name__)

DEFAULT_ROOTS = ("/usr/share/backgrounds", "/usr/share/wallpapers", "/usr/share/images/desktop-base",
                 "/usr/share/desktop-base")

# Paths never taken (lower-cased, searched anywhere in the path): evaluation sets and examples.
EXCLUDED = (
    ("Kodak set", r"kodak|kodim\d"),
    ("BAND-2k", r"band[-_ ]?2k"),
    ("deepDeband", r"deep[-_ ]?deband"),
    ("HD banding data set", r"hd[-_ ]?banding|banding[-_ ]?(data|set)"),
    ("matplotlib sample data", r"matplotlib|mpl-data/sample_data"),
    ("deband examples", r"(^|/)deband[^/]*/examples/"),
    # OpenCV samples: a forensics edit of ela_original, and a second view of the graf3 wall
    ("an edited copy or another view of another image", r"opencv[^/]*/.*(ela_modified|graf1)"),
)
_PROJECT = Path(__file__).resolve().parents[3]  # the checkout holding src/deband (its examples)


@dataclass(frozen=True)
class CorpusConfig:
    """How images become corpus entries."""

    scale: int = 2  # integer area-downscale factor, 2..4
    min_side: int = 256  # skip images whose shorter side is smaller after downscaling
    held_out: float = 0.1  # fraction of images in the held-out split (by content hash)
    min_bytes: int = 16_384  # skip smaller files (icons, thumbnails)
    near_tolerance: float = 0.02  # max |difference| of 8x8 thumbnails for a near-duplicate

    def __post_init__(self) -> None:
        if not 2 <= self.scale <= 4:
            raise ValueError(f"scale must be 2, 3 or 4, got {self.scale}")
        if not 0 <= self.held_out <= 1:
            raise ValueError(f"held_out must be in [0, 1], got {self.held_out}")


@dataclass
class _Kept:
    sha: str
    aspect: float
    thumb: np.ndarray  # (8, 8, 3) float32
    file: str


def default_roots() -> list[Path]:
    """The package folders that exist on this machine, and scikit-image's data folder."""
    roots = [Path(r) for r in DEFAULT_ROOTS if Path(r).is_dir()]
    try:
        import skimage.data

        roots.append(Path(skimage.data.__file__).parent)
    except ImportError:
        pass
    return roots


def excluded(path: str | Path) -> str | None:
    """Why `path` is never taken (see `EXCLUDED`), or None."""
    path = Path(path)
    text = path.as_posix().lower()
    for reason, rx in EXCLUDED:
        if re.search(rx, text):
            return reason
    inside = path.resolve().is_relative_to(_PROJECT) and (_PROJECT / "src" / "deband").is_dir()
    if inside and "site-packages" not in path.resolve().parts:  # a virtualenv in the checkout is not ours
        return "deband examples"
    return None


def scan(roots: list[Path], min_bytes: int) -> tuple[list[Path], list[dict]]:
    """Image files under `roots` (links resolved, each once) and the files skipped on the way."""
    found: dict[Path, None] = {}
    skipped = []
    for root in roots:
        for folder, dirs, files in os.walk(root, followlinks=True):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                if not name.lower().endswith(IMAGE_SUFFIXES) or not path.is_file():
                    continue
                reason = excluded(path)
                reason = f"excluded: {reason}" if reason else None
                if reason is None and path.stat().st_size < min_bytes:
                    reason = f"file under {min_bytes} bytes"
                if reason:
                    skipped.append({"source": str(path), "reason": reason})
                else:
                    found.setdefault(path.resolve(), None)
    return list(found), skipped


def area_downscale(codes: np.ndarray, factor: int) -> np.ndarray:
    """Average `factor` x `factor` blocks of integer codes, exactly.

    codes: (h, w) or (h, w, c) uint8/uint16. Rows and columns past a multiple of `factor`
    are dropped. Returns (h // factor, w // factor[, c]) float32 on [0, 1]: each block's sum
    (exact in uint32) divided by factor**2 * peak, so a constant image stays exact.
    """
    f = factor
    h, w = codes.shape[0] // f * f, codes.shape[1] // f * f
    blocks = codes[:h, :w].reshape(h // f, f, w // f, f, *codes.shape[2:])  # (h/f, f, w/f, f[, c])
    sums = blocks.sum(axis=(1, 3), dtype=np.uint32)
    return (sums / np.float32(f * f * peak(bits_of(codes.dtype)))).astype(np.float32)


def pixel_sha256(pixels: np.ndarray) -> str:
    """sha256 of decoded pixels: "HxWxC:dtype:" then the raw row-major bytes."""
    h, w = pixels.shape[:2]
    c = pixels.shape[2] if pixels.ndim == 3 else 1
    digest = hashlib.sha256(f"{h}x{w}x{c}:{pixels.dtype.str}:".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def split_of(sha: str, held_out: float) -> str:
    """"held-out" when int(sha[:8], 16) % 100 < held_out * 100, else "train"."""
    return "held-out" if int(sha[:8], 16) % 100 < round(held_out * 100) else "train"


def _opaque(pixels: np.ndarray) -> np.ndarray | None:
    """Pixels without their alpha channel when every pixel is (nearly) opaque, alpha >= 95 %;
    None when some pixel is see-through (an overlay, an icon)."""
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        if pixels[..., -1].min() < 0.95 * peak(bits_of(pixels.dtype)):
            return None
        pixels = pixels[..., :-1]
    return pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels


def _thumb(x: np.ndarray) -> np.ndarray:
    """(8, 8, 3) float32 area-averaged thumbnail of a (h, w[, c]) float32 image."""
    rgb = np.repeat(x[..., None], 3, axis=2) if x.ndim == 2 else x
    return cv2.resize(rgb, (8, 8), interpolation=cv2.INTER_AREA)


def _near(kept: list[_Kept], aspect: float, thumb: np.ndarray, tol: float) -> _Kept | None:
    for k in kept:
        if abs(k.aspect / aspect - 1) < 0.01 and float(np.abs(k.thumb - thumb).max()) <= tol:
            return k
    return None


def _slug(text: str, n: int) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n] or "image"


def _title(path: Path) -> str:
    """A readable name: the file's stem, after its theme's folder when the stem is only a
    resolution (`Altai/contents/images/5120x2880.png` -> "Altai-5120x2880")."""
    if not re.fullmatch(r"\d+x\d+", path.stem):
        return path.stem
    theme = next((p for p in reversed(path.parent.parts) if p.lower() not in ("contents", "images", "wallpaper")), "")
    return f"{theme}-{path.stem}"


def _by_size(paths: list[Path]) -> list[Path]:
    """Largest first (by the header's pixel count), then by path: a near-duplicate group keeps
    the first it meets, its largest."""
    def pixels(p: Path) -> int:
        try:
            with Image.open(p) as im:
                return im.size[0] * im.size[1]
        except Exception:  # noqa: BLE001 - unreadable files are reported when decoded
            return 0

    return sorted(paths, key=lambda p: (-pixels(p), str(p)))


@dataclass
class _Builder:
    """The state of one build: what is kept so far, and the manifest being assembled."""

    out: Path
    config: CorpusConfig
    packages: PackageIndex
    kept: list[_Kept] = field(default_factory=list)
    by_sha: dict[str, str] = field(default_factory=dict)
    images: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def skip(self, source: Path, reason: str) -> None:
        self.skipped.append({"source": str(source), "reason": reason})

    def add(self, source: Path) -> None:
        """Decode, check, downscale and write one image (or record why it is skipped)."""
        owner = self.packages.owner(source)
        if owner is None:
            return self.skip(source, "no installed package owns it (licence unknown)")
        try:
            pixels = read_image(source).pixels
        except DebandError as e:
            return self.skip(source, f"unreadable: {e}")
        sha = pixel_sha256(pixels)
        if sha in self.by_sha:
            return self.skip(source, f"duplicate of {self.by_sha[sha]}")
        pixels = _opaque(pixels)
        if pixels is None:
            return self.skip(source, "has transparent pixels")
        s = self.config.scale
        h, w = pixels.shape[0] // s, pixels.shape[1] // s
        if min(h, w) < self.config.min_side:
            return self.skip(source, f"{w}x{h} after downscaling by {s}, under {self.config.min_side}")
        x = area_downscale(pixels, s)  # (h, w[, 3]) float32
        thumb = _thumb(x)
        near = _near(self.kept, w / h, thumb, self.config.near_tolerance)
        if near is not None:
            return self.skip(source, f"near-duplicate of {near.file}")
        name = f"{_slug(owner.package, 40)}-{_slug(_title(source), 40)}-{sha[:10]}-x{s}.png"
        if not (self.out / name).is_file():
            write_image(self.out / name, to_codes(x, 16))
            log.info("%s <- %s", name, source)
        self.kept.append(_Kept(sha, w / h, thumb, name))
        self.by_sha[sha] = name
        self.images.append(_record(name, source, owner, sha, pixels.shape, s, (h, w), self.config.held_out))
        return None


def _record(name: str, source: Path, owner: Owner, sha: str, shape: tuple, scale: int,
            size: tuple[int, int], held_out: float) -> dict:
    return {"file": name, "source": str(source), "package": owner.package, "version": owner.version,
            "origin": owner.origin, "licence": owner.licence, "sha256": sha,
            "original_size": [shape[1], shape[0]], "scale": scale, "size": [size[1], size[0]],
            "split": split_of(sha, held_out)}


def build_corpus(out: str | Path, roots: list[Path] | None = None, config: CorpusConfig = CorpusConfig(),
                 packages: PackageIndex | None = None) -> dict:
    """Write the corpus into folder `out` (made if missing) and return its manifest.

    roots: folders to scan (default `default_roots()`); each must exist (InputError).
    packages: where owners and licences are looked up (default: this machine's dpkg and pip).
    The manifest (also written to `out/manifest.json`) holds the config, the counts, the
    images sorted by file name and the skipped files sorted by path, with reasons.
    """
    out = Path(out)
    roots = default_roots() if roots is None else [Path(r) for r in roots]
    for root in roots:
        if not root.is_dir():
            raise InputError(f"{root}: no such folder")
    out.mkdir(parents=True, exist_ok=True)
    paths, skipped = scan(roots, config.min_bytes)
    builder = _Builder(out, config, packages or PackageIndex(), skipped=skipped)
    for path in _by_size(paths):
        builder.add(path)
    manifest = _manifest(builder, roots)
    with atomic_output(out / "manifest.json", overwrite=True) as tmp:
        tmp.write_text(re.sub(r"\[\s+(\d+),\s+(\d+)\s+\]", r"[\1, \2]", json.dumps(manifest, indent=1)) + "\n")
    return manifest


def _manifest(builder: _Builder, roots: list[Path]) -> dict:
    images = sorted(builder.images, key=lambda r: r["file"])
    counts: dict[str, dict[str, int]] = {}
    for r in images:
        per = counts.setdefault(r["package"], {"train": 0, "held-out": 0})
        per[r["split"]] += 1
    return {"config": asdict(builder.config), "roots": [str(r) for r in roots],
            "counts": {"images": len(images), "skipped": len(builder.skipped),
                       "train": sum(r["split"] == "train" for r in images),
                       "held-out": sum(r["split"] == "held-out" for r in images),
                       "per_package": dict(sorted(counts.items()))},
            "images": images, "skipped": sorted(builder.skipped, key=lambda r: r["source"])}

"""A training pack: pre-cut clean 16-bit crops of a corpus's train images in one compressed
.npz, small enough to carry to a machine that cannot see the corpus.

`build_pack` cuts n square crops, spread over the train images in turn (never a held-out
one). Each crop is the smoothest of a few random candidate regions (where banding shows), or
a share `detailed` of them the most detailed (so the restorer also sees real structure).
Every crop is stored as its own array of uint16 codes, differenced along each row (smooth
regions turn into runs of small numbers that deflate well), so a reader decodes one crop at a
time (`Pack.crop`). The pack's "meta" entry (JSON) names each crop's source file, content
hash, split ("train"), position and choice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deband.data.manifest import split_files
from deband.errors import InputError
from deband.io.outputs import atomic_output
from deband.io.pixels import from_codes, to_codes
from deband.synthesis.sources import load_clean, pad_to

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackConfig:
    size: int = 512  # crop side in pixels
    n: int = 40  # crops in the pack
    detailed: float = 0.25  # share of crops chosen as the most detailed candidate, the rest the smoothest
    candidates: int = 8  # random regions scored per crop
    seed: int = 0  # where the crops fall


def detail_score(x: torch.Tensor) -> float:
    """Mean absolute luma gradient of x (3, h, w) on a 4x area-downscaled copy: low on smooth regions."""
    y = F.avg_pool2d(x.mean(0, keepdim=True)[None], 4)[0, 0]  # (h/4, w/4)
    return (y.diff(dim=0).abs().mean() + y.diff(dim=1).abs().mean()).item()


def choose_crop(img: torch.Tensor, cfg: PackConfig, g: torch.Generator) -> tuple[int, int, str]:
    """(top, left, choice) of one crop of img (3, h, w), h and w >= cfg.size: the smoothest or,
    a share cfg.detailed of the time, the most detailed of cfg.candidates random regions."""
    _, h, w = img.shape
    s = cfg.size
    spots = [(int(torch.randint(0, h - s + 1, (), generator=g)), int(torch.randint(0, w - s + 1, (), generator=g)))
             for _ in range(cfg.candidates)]
    scores = [detail_score(img[:, t : t + s, le : le + s]) for t, le in spots]
    detailed = torch.rand((), generator=g).item() < cfg.detailed
    pick = int(np.argmax(scores) if detailed else np.argmin(scores))
    return (*spots[pick], "detailed" if detailed else "smooth")


def encode(crop: torch.Tensor) -> np.ndarray:
    """(3, s, s) float on [0, 1] -> 16-bit codes differenced along rows, uint16 (wrapping)."""
    codes = to_codes(crop.numpy(), 16).astype(np.int32)
    return np.diff(codes, axis=-1, prepend=0).astype(np.uint16)


def decode(stored: np.ndarray) -> torch.Tensor:
    """Inverse of `encode`: (3, s, s) float32 on [0, 1]."""
    return torch.from_numpy(from_codes(np.cumsum(stored, axis=-1, dtype=np.uint16)))


def _shares(n: int, images: int, g: torch.Generator) -> list[int]:
    """How many of n crops each image gives: in turn over a random order of the images."""
    counts = [0] * images
    order = torch.randperm(images, generator=g).tolist()
    for k in range(n):
        counts[order[k % images]] += 1
    return counts


def build_pack(corpus: str | Path, out: str | Path, cfg: PackConfig = PackConfig(), overwrite: bool = False) -> dict:
    """Write the pack of corpus (a `deband corpus build` folder) to out (.npz). Returns its meta."""
    corpus = Path(corpus)
    files = split_files(corpus, "train")
    if not files:
        raise InputError(f"{corpus}: no train images in its manifest")
    entries = {e["file"]: e for e in json.loads((corpus / "manifest.json").read_text())["images"]}
    g = torch.Generator().manual_seed(cfg.seed)
    arrays, crops = {}, []
    for path, count in zip(files, _shares(cfg.n, len(files), g)):
        if count == 0:
            continue
        img = pad_to(load_clean(path), cfg.size)
        for _ in range(count):
            top, left, choice = choose_crop(img, cfg, g)
            arrays[f"crop{len(crops):05d}"] = encode(img[:, top : top + cfg.size, left : left + cfg.size])
            entry = entries[path.name]
            crops.append({"file": path.name, "sha256": entry.get("sha256"), "split": entry["split"],
                          "top": top, "left": left, "choice": choice})
    meta = {"size": cfg.size, "config": asdict(cfg), "crops": crops}
    with atomic_output(out, overwrite) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
    log.info("%s: %d crops of %d px", out, len(crops), cfg.size)
    return meta


class Pack:
    """A training pack read back: len(pack) crops, `crop(i)` -> (3, s, s) float32 on [0, 1].
    Only crops of train images are served (a pack is built of nothing else)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._npz = np.load(self.path, allow_pickle=False)
            self.meta = json.loads(str(self._npz["meta"]))
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"{self.path}: not a training pack ({e})") from None
        self.keys = [f"crop{i:05d}" for i, c in enumerate(self.meta["crops"]) if c["split"] == "train"]

    def __len__(self) -> int:
        return len(self.keys)

    def crop(self, i: int) -> torch.Tensor:
        return decode(self._npz[self.keys[i]])

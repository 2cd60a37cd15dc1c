"""The benchmark sets of `deband eval`: images to restore, with their clean reference when known.

Set (a) is paired: procedural scenes generated reproducibly with seeds unlike training's,
banded four ways (`DEGRADATIONS`). Set (b) has nothing to deband (`unbanded_set`). Set (c)
is a folder of real banded frames given by the user, with no clean reference (`folder_set`),
optionally with another restorer's outputs beside them (`files_method`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deband.io.pixels import quantise
from deband.synthesis.degrade import dark_stretch, requantize_ycbcr, video_codec
from deband.synthesis.sources import bundled_photos, procedural_scene, procedural_scene_layers

SYNTHETIC_SEED = 20_000  # the banded scenes: seeds no training run or validation set uses
UNBANDED_SEED = 30_000  # the grain and texture scenes of the unbanded set
REFERENCE_PATTERN = "banded-*.png"  # real banded frames in a reference folder

# set name -> degradation of a clean (3, h, w) tensor on [0, 1]
DEGRADATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "rgb-6bit": lambda x: quantise(x, 6),
    "luma6-chroma5": lambda x: requantize_ycbcr(x, 6, 5),
    "dark-8bit-x4": lambda x: dark_stretch(x, 8, 4.0),
    "h264-crf34": lambda x: video_codec(x, "libx264", 34),
}


@dataclass
class Pair:
    clean: np.ndarray | None  # (h, w, 3) float32 on [0, 1]; None when there is no reference
    degraded: np.ndarray  # (h, w, 3) float32 on [0, 1]
    name: str = ""
    smooth: np.ndarray | None = None  # the clean image without its grain or fine texture, when known


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy().copy()


def synthetic_set(name: str, n: int = 12, size: int = 384, seed: int = SYNTHETIC_SEED) -> list[Pair]:
    """n procedural scenes (held out: seeds unlike training's) banded by DEGRADATIONS[name]."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for i in range(n):
        smooth, clean = procedural_scene_layers(size, size, g)
        pairs.append(Pair(_hwc(clean), _hwc(DEGRADATIONS[name](clean)), f"{name}-{i}", _hwc(smooth)))
    return pairs


def unbanded_set(size: int = 384, textures: int = 6, seed: int = UNBANDED_SEED) -> list[Pair]:
    """Images with nothing to deband, delivered at 8 bits: the bundled photos (downscaled, so
    high precision) and scenes under film grain and fine texture. A restorer must leave them be."""
    clean = [photo[:, :size, :size] for photo in bundled_photos()]
    g = torch.Generator().manual_seed(seed)
    for _ in range(textures):
        scene = procedural_scene(size, size, g)
        grain = torch.randn((1, size, size), generator=g) * (0.01 + 0.02 * torch.rand((), generator=g))
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        grating = 0.03 * torch.sin((xx * 0.9 + yy * 0.4) * (1.0 + torch.rand((), generator=g)))
        clean.append((scene + grain + grating).clamp(0, 1))
    return [Pair(_hwc(c), quantise(_hwc(c), 8), f"unbanded-{i}") for i, c in enumerate(clean)]


def has_frames(folder: Path | None) -> bool:
    """Whether `folder` holds real banded frames for `folder_set`."""
    return folder is not None and any(folder.glob(REFERENCE_PATTERN))


def folder_set(folder: Path, pattern: str = REFERENCE_PATTERN) -> list[Pair]:
    """Real banded frames with no clean reference, read exactly."""
    from deband.io.files import read_image

    return [Pair(None, read_image(p).rgb(), p.name) for p in sorted(folder.glob(pattern), key=_natural)]


def _natural(p: Path) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def files_method(folder: Path, rename: Callable[[str], str]) -> Callable[[Pair], np.ndarray]:
    """A 'method' that returns another restorer's saved output for each input (by file name)."""
    from deband.io.files import read_image

    return lambda p: read_image(folder / rename(p.name)).rgb()


def seed_restored(folder: Path) -> Callable[[Pair], np.ndarray]:
    """The original implementation's outputs beside the frames: banded-N.png -> seed-restored-N.png."""
    return files_method(folder, lambda s: s.replace("banded", "seed-restored"))

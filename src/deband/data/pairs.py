"""Paired (clean, banded) patches, synthesised on the fly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from deband.config import DataConfig
from deband.data.manifest import split_files
from deband.data.pack import Pack
from deband.errors import InputError
from deband.io.pixels import quantise
from deband.restore.letterbox import add_bars
from deband.synthesis.degrade import randint, uniform
from deband.synthesis.delivery import random_banding, random_colour_banding
from deband.synthesis.faint import faint_pair
from deband.synthesis.sources import (
    add_detail,
    bundled_photos,
    crop_pair,
    folder_images,
    load_clean,
    pad_to,
    procedural_scene,
    random_crop,
    random_region,
)

RANK_STRIDE = 1000  # run seeds of one run's ranks: seed * RANK_STRIDE + rank (up to 1000 ranks)
STEP_STRIDE = 1_000_003  # a prime: step seeds of different ranks never meet within a million steps
VALIDATION_SEED = 10_000  # the held-out scenes: a seed no run's training data uses


@dataclass(frozen=True)
class RunSeeds:
    """Every generator seed of a training run, derived from its `TrainConfig.seed`.

    model: the initial weights (the same on every rank). generator(rank): that rank's run
    generator (training times, noise, and the batches when synthesised in-process; saved in
    checkpoints). step(rank, step): one step's batch when data workers synthesise it, so the
    data depends on neither the worker count nor where a run resumed. validation: the fixed
    held-out set, the same for every run.
    """

    seed: int = 0  # TrainConfig.seed

    @property
    def model(self) -> int:
        return self.seed

    def generator(self, rank: int) -> int:
        return self.seed * RANK_STRIDE + rank

    def step(self, rank: int, step: int) -> int:
        return self.generator(rank) * STEP_STRIDE + step

    @property
    def validation(self) -> int:
        return VALIDATION_SEED


class CorpusImages:
    """The train images of a corpus folder (with manifest.json) or the crops of a training pack
    (a .npz file, `deband.data.pack`), by index, decoded on first use. The last `cache` images
    decoded stay in memory. Each image: (3, h, w) float32 on [0, 1]."""

    def __init__(self, path: str | Path, cache: int = 8):
        path = Path(path)
        self.pack = Pack(path) if path.suffix == ".npz" else None
        self.files = [] if self.pack is not None else split_files(path, "train")
        self.cache, self._decoded = cache, {}

    def __len__(self) -> int:
        return len(self.pack) if self.pack is not None else len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        if i not in self._decoded:
            if len(self._decoded) >= self.cache:
                self._decoded.pop(next(iter(self._decoded)))  # the oldest entry
            self._decoded[i] = self.pack.crop(i) if self.pack is not None else load_clean(self.files[i])
        return self._decoded[i]


class PairSampler:
    """Draws batches of (clean, banded) patches, deterministic given the generator.

    A share `faint_fraction` of the pairs are detail-safety pairs (`faint.faint_pair`: faint
    real detail delivered at 8 bits, target the clean scene). Of the rest, a share
    `corpus_fraction` come from the corpus's train images (`corpus_pair`), and the others from
    procedural scenes, bundled photos and user folders (`synthetic_pair`); both are banded by
    `delivery.random_banding`. Any pair may then be framed by letterbox bars. With the
    corpus and faint fields at their defaults the draws are those of the procedural sampler alone.
    """

    def __init__(self, config: DataConfig, generator: torch.Generator):
        self.config = config
        self.g = generator
        self.photos = bundled_photos() if config.natural_fraction > 0 else []
        self.files = [p for folder in config.folders for p in folder_images(folder)]
        uses_corpus = config.corpus is not None and (config.corpus_fraction > 0 or config.faint_fraction > 0)
        self.corpus = CorpusImages(config.corpus) if uses_corpus else None
        if self.corpus is not None and len(self.corpus) == 0:
            raise InputError(f"{config.corpus}: no train images to draw from")

    def clean(self, size: int) -> torch.Tensor:
        """One clean patch, shape (3, size, size), float32 on [0, 1]."""
        u = torch.rand((), generator=self.g).item()
        if u < self.config.natural_fraction and (self.photos or self.files):
            pool_size = len(self.photos) + len(self.files)
            i = int(torch.randint(0, pool_size, (), generator=self.g))
            img = self.photos[i] if i < len(self.photos) else load_clean(self.files[i - len(self.photos)])
            return random_crop(img, size, self.g)
        return procedural_scene(size, size, self.g)

    def corpus_image(self) -> torch.Tensor:
        """A random train image of the corpus, (3, h, w)."""
        return self.corpus[randint(self.g, 0, len(self.corpus) - 1)]

    def corpus_crop(self, size: int) -> torch.Tensor:
        """A random size x size crop of a random corpus image."""
        return random_crop(self.corpus_image(), size, self.g)

    def corpus_pair(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A region of a corpus image `corpus_region` px high (or the whole image) banded as a
        whole, so chroma subsampling, codec blocks and dither act as on a delivered frame, then
        clean and banded cropped to size at the same place. A share `colour_fraction` is banded
        in colour (`delivery.random_colour_banding`). Each (3, size, size)."""
        cfg = self.config
        region = pad_to(random_region(self.corpus_image(), cfg.corpus_region, self.g), size)
        if cfg.colour_fraction > 0 and uniform(self.g, 0, 1) < cfg.colour_fraction:
            banded = random_colour_banding(region, self.g)
        else:
            banded = random_banding(region, self.g, cfg.codec_probability, cfg.delivery_probability)
        return crop_pair(region, banded, size, self.g)

    def synthetic_pair(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A (clean, banded) pair of a procedural scene or photo, each (3, size, size). A share
        `unbanded_fraction` has nothing to deband: a clean patch under grain or texture,
        delivered at 8 bits, so the restorer learns to leave detail alone."""
        clean = self.clean(size)
        share = self.config.unbanded_fraction
        if share > 0 and torch.rand((), generator=self.g).item() < share:
            span = (clean.amax() - clean.amin()).item()
            clean = add_detail(clean, self.g, span, p=1.0, grain_max=0.04).clamp(0, 1)
            return clean, quantise(clean, 8)
        return clean, random_banding(clean, self.g, self.config.codec_probability, self.config.delivery_probability)

    def pair(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One (clean, banded) pair, each shape (3, size, size), float32 on [0, 1]."""
        cfg = self.config
        if cfg.faint_fraction > 0 and uniform(self.g, 0, 1) < cfg.faint_fraction:
            clean, banded = faint_pair(size, self.g, self.corpus_crop if self.corpus is not None else None)
        elif self.corpus is not None and cfg.corpus_fraction > 0 and uniform(self.g, 0, 1) < cfg.corpus_fraction:
            clean, banded = self.corpus_pair(size)
        else:
            clean, banded = self.synthetic_pair(size)
        if torch.rand((), generator=self.g).item() < cfg.letterbox_fraction:
            clean, banded = add_bars(clean, banded, self.g)
        return clean, banded

    def batch(self, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (clean, banded), each shape (n, 3, size, size), float32 on [0, 1]."""
        pairs = [self.pair(size) for _ in range(n)]
        return torch.stack([c for c, _ in pairs]), torch.stack([b for _, b in pairs])


class PairStream(torch.utils.data.IterableDataset):
    """The batches of steps start, start + 1, ... stop - 1, for a DataLoader's workers.

    Worker w of n synthesises steps start + w, start + w + n, ... (the DataLoader hands out
    its workers' batches in turn, so they arrive in step order). Each step's batch is drawn
    with a generator seeded by `seeds.step(rank, step)`, so the data does not depend on the
    number of workers and a resumed run sees the batches an unbroken one would have.
    `shape` maps a step to its (patch side, batch size).
    """

    def __init__(self, config: DataConfig, seeds: RunSeeds, rank: int, start: int, stop: int,
                 shape: Callable[[int], tuple[int, int]]):
        super().__init__()
        self.config, self.seeds, self.rank = config, seeds, rank
        self.start, self.stop, self.shape = start, stop, shape

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        g = torch.Generator()
        sampler = PairSampler(self.config, g)
        for step in range(self.start + worker, self.stop, workers):
            g.manual_seed(self.seeds.step(self.rank, step))
            patch, batch = self.shape(step)
            yield sampler.batch(batch, patch)


VALIDATION_BITS = 6  # the held-out scenes are re-quantised to this many bits per channel


def validation_set(
    n: int, size: int, seed: int = VALIDATION_SEED, bits: int = VALIDATION_BITS
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed held-out set: n procedural scenes (seeds unlike training's) re-quantised to `bits`.

    Returns (clean, banded), each shape (n, 3, size, size), float32 on [0, 1].
    """
    g = torch.Generator().manual_seed(seed)
    clean = torch.stack([procedural_scene(size, size, g) for _ in range(n)])
    return clean, quantise(clean, bits)

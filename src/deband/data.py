"""Paired (clean, banded) patches, synthesised on the fly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from deband.config import DataConfig
from deband.degrade import random_degrade
from deband.letterbox import add_bars
from deband.pixels import quantise
from deband.sources import add_detail, bundled_photos, folder_images, load_clean, procedural_scene, random_crop

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


class PairSampler:
    """Draws batches of (clean, banded) patches from procedural scenes, bundled photos and
    user folders, banded by `random_degrade`. Deterministic given the generator.
    """

    def __init__(self, config: DataConfig, generator: torch.Generator):
        self.config = config
        self.g = generator
        self.photos = bundled_photos() if config.natural_fraction > 0 else []
        self.files = [p for folder in config.folders for p in folder_images(folder)]

    def clean(self, size: int) -> torch.Tensor:
        """One clean patch, shape (3, size, size), float32 on [0, 1]."""
        u = torch.rand((), generator=self.g).item()
        if u < self.config.natural_fraction and (self.photos or self.files):
            pool_size = len(self.photos) + len(self.files)
            i = int(torch.randint(0, pool_size, (), generator=self.g))
            img = self.photos[i] if i < len(self.photos) else load_clean(self.files[i - len(self.photos)])
            return random_crop(img, size, self.g)
        return procedural_scene(size, size, self.g)

    def pair(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One (clean, banded) pair, each shape (3, size, size). A share `unbanded_fraction`
        has nothing to deband: a clean patch under grain or texture, delivered at 8 bits,
        so the restorer learns to leave detail alone."""
        clean = self.clean(size)
        share = self.config.unbanded_fraction
        if share > 0 and torch.rand((), generator=self.g).item() < share:
            span = (clean.amax() - clean.amin()).item()
            clean = add_detail(clean, self.g, span, p=1.0, grain_max=0.04).clamp(0, 1)
            banded = quantise(clean, 8)
        else:
            banded = random_degrade(clean, self.g, self.config.codec_probability)
        if torch.rand((), generator=self.g).item() < self.config.letterbox_fraction:
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

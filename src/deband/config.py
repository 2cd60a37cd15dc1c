"""Configuration as frozen dataclasses, saved and loaded as JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# INDI steps when the user names none: 1080p in under 10 s on a 2-core CPU; more steps
# raised PSNR by under 0.2 dB on the validation scenes (see benchmarks/quality.md).
DEFAULT_STEPS = 2


@dataclass(frozen=True)
class ModelConfig:
    in_channels: int = 3  # RGB in, RGB out
    unshuffle: int = 4  # space-to-depth factor of the stem (full-res detail enters as channels)
    channels: tuple[int, ...] = (32, 64, 96, 128, 128)  # one entry per level; each level halves H, W
    blocks: int = 1  # residual blocks per level, in the encoder and in the decoder
    time_dim: int = 64  # width of the sinusoidal time embedding
    refine: int = 8  # width of the full-resolution refinement convs (0: none)
    detail_gain: float = 32.0  # local detail enters, and the correction leaves, scaled by this
    smooth_scales: int = 6  # blend candidates: the input smoothed at 2, 4, ... 2**smooth_scales pixels
    # Cb/Cr stage (0: none): the output's chroma, at 1/unshuffle resolution, blended again with
    # copies smoothed at 2, 4, ... 2**chroma_scales steps of that resolution (8 ... 512 px at 4x)
    chroma_scales: int = 0
    grid_width: int = 0  # width of the R'G'B' grid stage (`deband.model.grid`; 0: none)
    planes_width: int = 0  # width of the Y'CbCr grid stage (0: none)

    @property
    def multiple(self) -> int:
        """Input H and W are padded to a multiple of this."""
        return max(self.unshuffle * 2 ** (len(self.channels) - 1), 2**self.smooth_scales)


@dataclass(frozen=True)
class DataConfig:
    patch: int = 256  # training patch side in pixels
    natural_fraction: float = 0.15  # share of patches cut from bundled natural photos
    folders: tuple[str, ...] = ()  # extra folders of clean images (8/16-bit PNG/TIFF/JPEG)
    codec_probability: float = 0.1  # share of pairs banded by a real codec (JPEG/H.264/H.265)
    unbanded_fraction: float = 0.2  # share of pairs with nothing to deband: grain/texture at 8 bits in, clean out
    letterbox_fraction: float = 0.15  # share of pairs framed by flat near-black bars, the same in input and target
    delivery_probability: float = 0.0  # share of banded pairs banded as delivered video (delivery.random_delivery)
    corpus: str | None = None  # real clean images: a corpus folder (manifest.json; train split only) or a .npz pack
    corpus_fraction: float = 0.0  # share of the non-faint pairs cut from `corpus` images rather than synthesised
    corpus_region: int = 720  # corpus pairs are banded as a whole region this high (16:9), then cropped
    faint_fraction: float = 0.0  # share of detail-safety pairs: faint real detail (faint.py) at 8 bits in, clean out
    colour_fraction: float = 0.0  # share of corpus pairs banded in colour (delivery.random_colour_banding)


@dataclass(frozen=True)
class LossConfig:
    pixel: str = "l2"  # "l1" | "l2" | "charbonnier"
    pixel_weight: float = 1.0
    fft: str = "magphase"  # "magphase" | "reim" (L1 on raw real/imag parts) | "none"
    fft_weight: float = 5e-5  # FFT term ~1000x the pixel MSE at identity: this makes it ~6 % of the loss
    phase_weight: float = 1.0  # weight of the phase term inside the magphase loss
    normalise: bool = True  # divide each sample's loss by its banded input's pixel error (6-bit counts like 3-bit)
    # the divisor is at least this: pairs whose input is almost clean (faint detail, grain at
    # 8 bits) otherwise weigh 5-20x a banded pair per unit of error (1e-6: no floor in effect)
    normalise_floor: float = 1e-6
    guard: bool = False  # score the prediction after the detail guard (deband.restore.guard), as inference outputs it


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    steps: int = 6000  # optimiser steps
    batch: int = 8  # patches per step per process
    lr: float = 5e-4  # peak AdamW learning rate (2e-3 and 1e-3 blew up: no normalisation layers)
    chroma_lr: float = 1.0  # the Cb/Cr stage's learning rate as a multiple of lr (it starts from a zero gate)
    lr_floor: float = 0.01  # the cosine decay ends at this share of `lr`
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    warmup: int = 300  # linear warm-up steps before cosine decay
    grad_clip: float = 1.0  # gradients are clipped to this global L2 norm
    ema: float = 0.999  # EMA decay of the exported weights
    spike_factor: float = 20.0  # a loss above this many times the recent median is skipped as a blow-up
    spike_window: int = 200  # recent losses whose median the spike guard compares against
    spike_min_history: int = 20  # losses recorded before the spike guard skips anything
    t_one_fraction: float = 0.3  # share of training t set exactly to 1 (one-step restoration)
    eps: float = 0.0  # INDI noise level epsilon (0: deterministic)
    curriculum: tuple[tuple[float, int], ...] = ((0.0, 256),)  # (progress, patch side) from then on
    val_every: int = 500  # steps between validations
    val_images: int = 12  # fixed held-out synthetic images
    val_size: int = 384  # side of each validation image
    val_steps: tuple[int, ...] = (1, 4)  # INDI step counts scored at each validation
    ckpt_every: int = 250  # steps between checkpoints
    seed: int = 0  # every generator of the run derives its seed from this (see data.RunSeeds)
    bf16: bool = False  # bf16 autocast (slower than fp32 on CPUs without native bf16)


@dataclass(frozen=True)
class GridTrainConfig:
    """Training the grid stage alone (`deband.training.grid`), the U-Net frozen."""

    pack: str = ""  # a training pack (`deband corpus pack`) of clean real crops
    space: str = "rgb"  # "rgb": channels re-quantised alone; "planes": Y'CbCr planes (`ModelConfig.planes_width`)
    variants: int = 2  # grid-quantised versions of each crop (`delivery.random_grid_quantise`)
    clean_share: float = 0.0  # share of those versions left at 8 bits (any grid found there is false)
    val_crops: int = 24  # the pack's last crops, kept for validation
    width: int = 32  # the stage's width (`ModelConfig.grid_width`)
    patch: int = 128  # training patch side in pixels
    batch: int = 16  # patches per step
    steps: int = 4000  # optimiser steps
    lr: float = 1e-3  # peak Adam learning rate
    lr_floor: float = 0.01  # the cosine decay ends at this share of `lr`
    warmup: int = 100  # linear warm-up steps
    val_every: int = 250  # steps between validations
    ckpt_minutes: float = 5.0  # minutes between checkpoints
    seed: int = 0


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _build(cls: type[T], data: dict) -> T:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in _NESTED:
            value = _build(_NESTED[f.name], value)
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[f.name] = value
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    return cls(**kwargs)


_NESTED = {"model": ModelConfig, "data": DataConfig, "loss": LossConfig}


def model_config_from_dict(data: dict) -> ModelConfig:
    return _build(ModelConfig, data)


def train_config_from_dict(data: dict) -> TrainConfig:
    return _build(TrainConfig, data)


def save_json(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2) + "\n")


def load_train_config(path: str | Path) -> TrainConfig:
    return train_config_from_dict(json.loads(Path(path).read_text()))

"""Training a grid stage (`deband.model.grid`) alone, the U-Net frozen, on two CPU cores.

`GridTrainConfig.space` picks the stage: "rgb" (`ModelConfig.grid_width`), for channels
re-quantised alone, or "planes" (`ModelConfig.planes_width`), for Y'CbCr planes stored at
fewer bits. Examples are made once per run and kept in the run folder: each clean crop of a
training pack, quantised `variants` times (`delivery.random_grid_quantise` or
`random_plane_quantise`; a `clean_share` of them left at 8 bits, where a grid found is false
and the target is the input itself), with the frozen restorer's output on it (the default
sampling and detail guard, on whole 512 px crops so wide bands have their context), which the
stage starts from, and the grid the guard finds in it where its cell is wider than the
guard's bound (`Guard.wider`: texture; the loss and the validation count those pixels, though
the restorer uses a stage on every grid it finds). Steps then cost only the small stage. The
pack's last `val_crops` crops are never trained on: the validation scores them whole.

    deband train-stage --out RUN --config CONFIG.json --init default.safetensors [--minutes M] [--resume]

A checkpoint (`state.pt`: the stage, the optimiser, the step and the sampler's generator)
is written every `ckpt_minutes` and at the end; `--resume` continues the schedule exactly.
`log.csv` holds the loss and the validation (R'G'B' PSNR of the input, of the restorer's
output kept in its cell, and of the stage, over the pixels on a grid); `model.safetensors`
is the U-Net with the stage (and any stage of the other space that `--init` has), written
at every checkpoint.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch

from deband.config import GridTrainConfig, save_json, to_dict
from deband.data.pack import Pack
from deband.io.outputs import atomic_output
from deband.io.pixels import rgb_to_ycbcr, ycbcr_to_rgb
from deband.model.checkpoint import load_model, save_weights
from deband.model.grid import GridStage
from deband.model.unet import UNet
from deband.restore.debander import Debander
from deband.restore.guard import Guard, plane_levels
from deband.synthesis.delivery import random_grid_quantise, random_plane_quantise

LOG_FIELDS = ("step", "loss", "lr", "seconds", "val_input", "val_restorer_in_cell", "val_stage")


def make_examples(pack: Pack, model: UNet, cfg: GridTrainConfig) -> dict[str, torch.Tensor]:
    """Every crop of `pack`, quantised `cfg.variants` times for `cfg.space`: x (uint8 codes),
    out (the restorer's output, the detail guard on, float16), half (the guard's half step per channel or plane,
    float16), clean (float16) and index (which crop), each (N, 3, s, s) but index (N,)."""
    debander = Debander(model=model, guard=Guard(), bars=False, grid=False)
    guard = Guard()
    degrade, find = DEGRADE[cfg.space], FIND[cfg.space]
    n, size = len(pack) * cfg.variants, pack.crop(0).shape[-1]
    ex = {"x": torch.empty(n, 3, size, size, dtype=torch.uint8), "index": torch.empty(n, dtype=torch.long)}
    ex |= {k: torch.empty(n, 3, size, size, dtype=torch.float16) for k in ("out", "half", "clean")}
    for i in range(len(pack)):  # written in place: the examples fill memory once, not twice
        clean = pack.crop(i)
        for v in range(cfg.variants):
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + i * 101 + v)
            if cfg.clean_share > 0 and torch.rand((), generator=g) < cfg.clean_share:  # at 8 bits: a grid is false
                x = (clean[None] * 255).round() / 255
            else:
                x = degrade(clean, g)[None]
            row = i * cfg.variants + v
            ex["x"][row] = (x[0] * 255).round().to(torch.uint8)
            ex["out"][row] = debander.restore_batch(x)[0].half()
            ex["half"][row] = find(guard, x)[0].half()
            ex["clean"][row] = clean.half()
            ex["index"][row] = i
        if i % 50 == 0:
            print(f"examples: crop {i + 1} of {len(pack)}", flush=True)
    return ex


def _unpack(ex: dict[str, torch.Tensor], rows: torch.Tensor, top: int, left: int, size: int):
    sl = (rows, slice(None), slice(top, top + size), slice(left, left + size))
    return (ex["x"][sl].float() / 255, ex["out"][sl].float(), ex["half"][sl].float(), ex["clean"][sl].float())


def batch(ex: dict[str, torch.Tensor], train: torch.Tensor, cfg: GridTrainConfig, g: torch.Generator):
    """cfg.batch patches of cfg.patch px from the training rows, flipped at random."""
    rows = train[torch.randint(len(train), (cfg.batch,), generator=g)]
    s = ex["x"].shape[-1]
    top, left = (int(v) for v in torch.randint(s - cfg.patch + 1, (2,), generator=g))
    parts = _unpack(ex, rows, top, left, cfg.patch)
    flips = [d for d, f in ((-1, torch.rand((), generator=g) < 0.5), (-2, torch.rand((), generator=g) < 0.5)) if f]
    return tuple(p.flip(flips) if flips else p for p in parts)


DEGRADE = {"rgb": random_grid_quantise, "planes": random_plane_quantise}
FIND = {"rgb": lambda guard, x: guard.wider(x, guard.grid_bound(x)),  # texture: where what a stage learns matters
        "planes": lambda guard, x: guard.wider(x, guard.plane_grid(x))}


def stage_inputs(space: str, x: torch.Tensor, out: torch.Tensor, half: torch.Tensor):
    """What the stage of `space` takes (x, out, half), from R'G'B' x and out: as they are,
    or as Y'CbCr planes, x's moved onto their grid's levels (as the restorer does)."""
    if space == "rgb":
        return x, out, half
    return plane_levels(x, half), rgb_to_ycbcr(out), half


def error(space: str, pred: torch.Tensor, clean: torch.Tensor, half: torch.Tensor):
    """The R'G'B' error of the stage's output `pred` where something was on a grid (0 elsewhere),
    and where that is (n, 1, h, w)."""
    found = half > 0
    if space == "rgb":
        return torch.where(found, pred - clean, 0), found.any(1, keepdim=True)
    return ycbcr_to_rgb(torch.where(found, pred - rgb_to_ycbcr(clean), 0)), found.any(1, keepdim=True)


def loss_fn(space: str, pred: torch.Tensor, clean: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """Mean squared R'G'B' error in 8-bit codes over the pixels with something on a grid."""
    e, where = error(space, pred, clean, half)
    return (e * 255).square().sum() / (3 * where.sum()).clamp(min=1)


def _psnr(space: str, pred: torch.Tensor, clean: torch.Tensor, half: torch.Tensor) -> float:
    mse = loss_fn(space, pred, clean, half) / 255**2
    return float(10 * torch.log10(1 / mse.clamp(min=1e-12)))


@torch.no_grad()
def validate(
    space: str, stage: torch.nn.Module, ex: dict[str, torch.Tensor], rows: torch.Tensor
) -> tuple[float, float, float]:
    """R'G'B' PSNR over the grid pixels of the validation rows: the input (on its grid's
    levels), the restorer's output kept in its cell, the stage."""
    stage.eval()
    parts: dict[str, list[torch.Tensor]] = {"pred": [], "cell": [], "x": [], "clean": [], "half": []}
    for r in rows.tolist():
        x, out, half, clean = _unpack(ex, torch.tensor([r]), 0, 0, ex["x"].shape[-1])
        x, out, half = stage_inputs(space, x, out, half)
        parts["pred"].append(stage(x, out, half))
        parts["cell"].append(x + torch.minimum(torch.maximum(out - x, -half), half))
        parts["x"].append(x), parts["clean"].append(clean), parts["half"].append(half)
    stage.train()
    p = {k: torch.cat(v) for k, v in parts.items()}
    return tuple(_psnr(space, p[k], p["clean"], p["half"]) for k in ("x", "cell", "pred"))


def lr_at(step: int, cfg: GridTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.lr * (cfg.lr_floor + (1 - cfg.lr_floor) * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


STAGE = {"rgb": ("grid", "grid_width"), "planes": ("planes", "planes_width")}  # space -> UNet attribute, config field


def _without(base: UNet, space: str) -> UNet:
    """base with no stage of `space` (in place)."""
    attr, field = STAGE[space]
    setattr(base, attr, None)
    base.config = replace(base.config, **{field: 0})
    return base


def _with_stage(base: UNet, stage: GridStage, space: str) -> UNet:
    """The U-Net `base` with `stage` as its stage of `space` (a new model; base is unchanged)."""
    attr, field = STAGE[space]
    model = UNet(replace(base.config, **{field: stage.stem.out_channels}))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if unexpected or not all(k.startswith(attr + ".") for k in missing):
        raise ValueError(f"the stage does not fit the model: {unexpected or missing}")
    getattr(model, attr).load_state_dict(stage.state_dict())
    return model


def train(
    run: Path, cfg: GridTrainConfig, init: Path | None, minutes: float | None, resume: bool, until: int | None = None
) -> None:
    """Train (or, with `resume`, go on training) the stage in `run`; stop, with a
    checkpoint, after `minutes` or at step `until`, whichever comes first. A finished run
    resumed writes its model again from `init`: how the stages of two runs (on the same
    frozen network) come to share one file."""
    start = time.monotonic()
    run.mkdir(parents=True, exist_ok=True)
    state_path, examples_path, log_path = run / "state.pt", run / "examples.pt", run / "log.csv"
    if resume:
        cfg = GridTrainConfig(**json.loads((run / "config.json").read_text()))
    else:
        save_json(cfg, run / "config.json")
    base = _without(load_model(init), cfg.space).eval()
    if examples_path.is_file():
        ex = torch.load(examples_path)
    else:
        ex = make_examples(Pack(cfg.pack), base, cfg)
        with atomic_output(examples_path, overwrite=True) as tmp:
            torch.save(ex, tmp)
    n_crops = int(ex["index"].max()) + 1
    is_val = ex["index"] >= n_crops - cfg.val_crops
    train_rows, val_rows = (~is_val).nonzero()[:, 0], is_val.nonzero()[:, 0]
    torch.manual_seed(cfg.seed)
    stage = GridStage(cfg.width)
    opt = torch.optim.Adam(stage.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed + 17)
    step = 0
    if resume and state_path.is_file():
        st = torch.load(state_path)
        stage.load_state_dict(st["stage"]), opt.load_state_dict(st["opt"]), g.set_state(st["rng"])
        step = st["step"]
    if step >= cfg.steps:  # finished: write the model again, on --init's network and other stage
        _checkpoint(run, stage, opt, g, step, base, cfg)
        return
    new_log = not log_path.is_file() or log_path.stat().st_size == 0
    with open(log_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        if new_log:
            writer.writeheader()
        last_ckpt, total, count = time.monotonic(), 0.0, 0
        while step < cfg.steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            x, out, half, clean = batch(ex, train_rows, cfg, g)
            x, out, half = stage_inputs(cfg.space, x, out, half)
            loss = loss_fn(cfg.space, stage(x, out, half), clean, half)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            total, count = total + loss.item(), count + 1
            row = None
            if step % cfg.val_every == 0 or step == cfg.steps:
                row = dict(zip(LOG_FIELDS[4:], validate(cfg.space, stage, ex, val_rows)))
            elif step % 50 == 0:
                row = {}
            if row is not None:
                row |= {"step": step, "loss": total / count, "lr": lr_at(step - 1, cfg),
                        "seconds": round(time.monotonic() - start, 1)}
                writer.writerow(row), f.flush()
                print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                      flush=True)
                total, count = 0.0, 0
            out_of_time = minutes is not None and time.monotonic() - start > minutes * 60 or step == until
            if time.monotonic() - last_ckpt > cfg.ckpt_minutes * 60 or step == cfg.steps or out_of_time:
                _checkpoint(run, stage, opt, g, step, base, cfg)
                last_ckpt = time.monotonic()
            if out_of_time:
                break


def _checkpoint(run: Path, stage: GridStage, opt, g, step: int, base: UNet, cfg: GridTrainConfig) -> None:
    with atomic_output(run / "state.pt", overwrite=True) as tmp:
        torch.save({"stage": stage.state_dict(), "opt": opt.state_dict(), "rng": g.get_state(), "step": step}, tmp)
    save_weights(_with_stage(base, stage, cfg.space), run / "model.safetensors",
                 extra={"grid_step": step, "grid_config": json.dumps(to_dict(cfg))})

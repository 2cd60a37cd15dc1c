"""Training loop for the INDI restorer, assembled from small helpers.

Single process: `deband train --out runs/x`. Data-parallel: `torchrun --nproc_per_node N
-m deband.train --out runs/x` (gloo on CPU, nccl on CUDA). Rank 0 logs, validates and saves.
"""

from __future__ import annotations

import argparse
import copy
import csv
import itertools
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from deband.checkpoint import WeightsError, load_model, load_training_state, save_training_state, save_weights, unwrap
from deband.config import TrainConfig, load_train_config, save_json
from deband.data import PairSampler, PairStream, validation_set
from deband.errors import UNREADABLE, USAGE, DebandError
from deband.indi import interpolate, sample, sample_t
from deband.losses import RestorationLoss
from deband.metrics import psnr
from deband.model import UNet, count_parameters, grow_smooth_scales

log = logging.getLogger(__name__)


# --- set-up --------------------------------------------------------------------------------


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); joins the process group when run under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to 1 % of it."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def patch_at(step: int, cfg: TrainConfig) -> tuple[int, int]:
    """(patch side, batch) for this step: the curriculum grows patches, keeping pixels per step."""
    progress = step / max(1, cfg.steps)
    patch = cfg.curriculum[0][1]
    for start, size in cfg.curriculum:
        if progress >= start:
            patch = size
    batch = max(1, round(cfg.batch * (cfg.data.patch / patch) ** 2))
    return patch, batch


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """EMA of the weights, its decay warming up as (1 + step) / (10 + step) towards `decay`."""
    d = min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), unwrap(model).parameters()):
        pe.lerp_(pm.detach(), 1 - d)


class SpikeGuard:
    """Flags losses far above the recent median (or non-finite): one bad batch must not wreck
    the weights of a network without normalisation layers."""

    def __init__(self, factor: float = 20.0, window: int = 200):
        self.factor, self.window, self.history, self.skipped = factor, window, [], 0

    @property
    def limit(self) -> float:
        if len(self.history) < 20:
            return math.inf
        return self.factor * float(sorted(self.history)[len(self.history) // 2])

    def record(self, loss: float, skipped: bool) -> None:
        """Skipped losses enter the history too, so a lasting change of level is soon accepted."""
        self.skipped += skipped
        if math.isfinite(loss):
            self.history = (self.history + [loss])[-self.window :]


# --- one step, validation ------------------------------------------------------------------


def train_step(
    model, opt, loss_fn, clean, banded, cfg: TrainConfig, g: torch.Generator, device, spike_limit: float = math.inf
) -> tuple[float, bool]:
    """One optimiser step; returns (mean loss over ranks, whether it was skipped as a blow-up)."""
    t = sample_t(clean.shape[0], g, cfg.t_one_fraction)
    noise = torch.randn(clean.shape, generator=g) if cfg.eps > 0 else None
    clean, banded, t, noise = (v if v is None else v.to(device, non_blocking=True) for v in (clean, banded, t, noise))
    x_t = interpolate(clean, banded, t, cfg.eps, noise).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        pred = model(x_t, t)
    loss = loss_fn(pred.float(), clean, banded).mean()
    opt.zero_grad(set_to_none=True)
    mean = loss.detach().clone()
    if dist.is_initialized():  # every rank decides on the same number, or DDP would hang
        dist.all_reduce(mean)
        mean /= dist.get_world_size()
    if not torch.isfinite(mean) or mean.item() > spike_limit:  # a blow-up: skip rather than learn it
        return mean.item(), True
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return mean.item(), False


@torch.no_grad()
def validate(model, val: tuple[torch.Tensor, torch.Tensor], device, steps=(1, 4)) -> dict[str, float]:
    """Mean PSNR (dB) of the banded input and of INDI restorations on the fixed set."""
    clean, banded = val
    out = {"psnr_input": psnr(banded, clean).mean().item()}
    for n in steps:
        restored = torch.cat(
            [sample(model, b[None].to(device), n).cpu().clamp(0, 1) for b in banded]
        )
        out[f"psnr_{n}step"] = psnr(restored, clean).mean().item()
    return out


# --- state -------------------------------------------------------------------------------


def _state(model, ema, opt, step: int, g: torch.Generator) -> dict:
    return {
        "model": unwrap(model).state_dict(),
        "ema": ema.state_dict(),
        "opt": opt.state_dict(),
        "step": step,
        "rng": g.get_state(),
    }


def _restore(path: Path, model, ema, opt, g: torch.Generator) -> int:
    state = load_training_state(path)
    unwrap(model).load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["opt"])
    g.set_state(state["rng"])
    return int(state["step"])


def _initial_weights(path: str | Path, cfg: TrainConfig) -> dict:
    try:
        start = load_model(path)
    except WeightsError as e:
        raise DebandError(str(e), UNREADABLE) from None
    if start.config == cfg.model:
        return start.state_dict()
    try:  # a run may add wider smoothing scales to an existing model
        return grow_smooth_scales(start.state_dict(), start.config, cfg.model)
    except ValueError:
        raise DebandError(f"{path}: its model config differs from the run's; pass a matching --config", USAGE) from None


class Logger:
    """CSV log (and TensorBoard when installed) written by rank 0 only."""

    def __init__(self, out: Path, enabled: bool, start_step: int = 0):
        self.enabled, self.path, self.tb = enabled, out / "log.csv", None
        if not enabled:
            return
        if self.path.exists():  # a resumed run rewrites what came after its checkpoint
            rows = self.path.read_text().splitlines()
            kept = rows[:1] + [r for r in rows[1:] if int(r.split(",", 1)[0]) <= start_step]
            self.path.write_text("\n".join(kept) + "\n")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))
        except Exception:  # noqa: BLE001 - TensorBoard is optional
            self.tb = None

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "key", "value"])
            for k, v in values.items():
                w.writerow([step, k, f"{v:.6g}"])
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)


# --- data and time budget ------------------------------------------------------------------

PREFETCH = 2  # batches each data worker keeps ready


def batches(cfg: TrainConfig, g: torch.Generator, rank: int, start: int, workers: int, pin: bool) -> Iterator:
    """(clean, banded) batches for steps start, start + 1, ... in order.

    workers 0: synthesised in this process from the run's generator `g` (saved in checkpoints).
    workers > 0: synthesised by that many DataLoader processes, each step's batch from its own
    seed (`PairStream`): a different stream from workers 0, the same for any worker count.
    """
    shape = partial(patch_at, cfg=cfg)
    if workers > 0:
        stream = PairStream(cfg.data, cfg.seed * 1000 + rank, start, cfg.steps, shape)
        loader = DataLoader(stream, None, num_workers=workers, pin_memory=pin, prefetch_factor=PREFETCH)
        yield from loader
        return
    sampler = PairSampler(cfg.data, g)
    for step in itertools.count(start):
        patch, batch = shape(step)
        yield sampler.batch(batch, patch)


class Budget:
    """Fits the step count to a wall-clock budget: the speed is measured over the warm-up,
    then `steps` is fixed for good. The first steps are not timed: they include start-up and
    draw on batches the data workers queued meanwhile (`queued`), faster than they can last."""

    def __init__(self, minutes: float, start: int, fit_at: int, queued: int = 0):
        self.deadline = time.time() + 60 * minutes
        self.skip = 5 + queued
        self.start, self.fit_at, self.t_skip = start, max(fit_at, start + self.skip + 20), None

    def tick(self, step: int) -> int | None:
        """Call after each step; returns the fitted total step count once, else None."""
        if step == self.start + self.skip:
            self.t_skip = time.time()
        if step != self.fit_at or self.t_skip is None:
            return None
        now = time.time()
        rate = (step - self.start - self.skip) / (now - self.t_skip)  # steps per second
        steps = step + max(1, int(0.97 * rate * (self.deadline - now)))  # 3 %: validation, checkpoints
        if dist.is_initialized():  # every rank must stop at the same step
            agreed = torch.tensor(steps)
            dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
            steps = int(agreed)
        return steps


# --- the loop ------------------------------------------------------------------------------


def train(
    cfg: TrainConfig,
    out: str | Path,
    resume: bool = False,
    device: str = "auto",
    init: str | Path | None = None,
    workers: int = 0,
    minutes: float | None = None,
) -> Path:
    """Train a model; returns the path of the exported EMA weights (rank 0's view).

    `init` starts from existing inference weights (same architecture) with a fresh optimiser.
    `workers` synthesises data in that many processes (see `batches`). `minutes` fits
    `cfg.steps` to a wall-clock budget at the end of the warm-up (see `Budget`); the fitted
    count is written to OUT/config.json, so `resume` continues the same schedule.
    """
    rank, world, dev = setup_distributed(device)
    if dev.type == "cuda":  # full fp32 as on the CPU: TF32 rounds inputs to 10 bits, coarser than a band step
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    out = Path(out)
    main = rank == 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_json(cfg, out / "config.json")
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = UNet(cfg.model)
    if init is not None and not resume:
        model.load_state_dict(_initial_weights(init, cfg))
    model = model.to(dev).to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    step = _restore(out / "state.pt", model, ema, opt, g) if resume and (out / "state.pt").exists() else 0
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    loss_fn = RestorationLoss(cfg.loss)
    val = validation_set(cfg.val_images, cfg.val_size) if main else None
    logger = Logger(out, main, step)
    if main:
        log.info("model: %d parameters; %d process(es) on %s", count_parameters(model), world, dev)
    pin = dev.type == "cuda"
    data = batches(cfg, g, rank, step, workers, pin)
    queued = workers * PREFETCH
    budget = Budget(minutes, step, cfg.warmup, queued) if minutes is not None and step < cfg.warmup else None
    bar = tqdm(total=cfg.steps, initial=step, disable=not main, desc="train", dynamic_ncols=True)
    guard = SpikeGuard()
    t0, seen = time.time(), 0
    while step < cfg.steps:
        patch = patch_at(step, cfg)[0]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        clean, banded = next(data)
        loss, skipped = train_step(ddp, opt, loss_fn, clean, banded, cfg, g, dev, guard.limit)
        guard.record(loss, skipped)
        ema_update(ema, model, step, cfg.ema)
        step, seen = step + 1, seen + clean.shape[0] * world
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3g}", patch=patch, rate=f"{seen / (time.time() - t0):.1f}/s", skip=guard.skipped)
        fitted = budget.tick(step) if budget is not None else None
        if fitted is not None:  # the schedule (and the curriculum) now end at `fitted`
            cfg, bar.total = replace(cfg, steps=fitted), fitted
            data.close()
            data = batches(cfg, g, rank, step, workers, pin)
            if main:
                save_json(cfg, out / "config.json")
                log.info("step %d: %d steps fit the %g-minute budget", step, fitted, minutes)
        _periodic(step, cfg, out, main, model, ema, opt, g, val, dev, logger, loss, patch)
    data.close()
    bar.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out / "model.safetensors"


def _periodic(step, cfg, out, main, model, ema, opt, g, val, dev, logger, loss, patch) -> None:
    if not main:
        return
    logger.write(step, {"loss": loss, "lr": lr_at(step, cfg), "patch": patch})
    if step % cfg.val_every == 0 or step == cfg.steps:
        metrics = validate(ema, val, dev)
        logger.write(step, metrics)
        log.info("step %d: %s", step, ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    if step % cfg.ckpt_every == 0 or step == cfg.steps:
        save_training_state(out / "state.pt", _state(model, ema, opt, step, g))
        save_weights(ema, out / "model.safetensors", {"step": step})


# --- command line (also used by torchrun) -------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run folder: config, log, checkpoints, weights")
    p.add_argument("--config", help="JSON TrainConfig to start from (defaults otherwise)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    p.add_argument("--init", help="start from these .safetensors weights (fresh optimiser and schedule)")
    p.add_argument("--steps", type=int, help="override the number of optimiser steps")
    p.add_argument("--batch", type=int, help="override patches per step per process")
    p.add_argument("--loss", choices=["magphase", "reim", "none"], help="override the FFT loss")
    p.add_argument("--folder", action="append", default=[], help="extra folder of clean images (repeatable)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--workers", type=int, default=0, help="processes synthesising training pairs (0: this one)")
    p.add_argument("--minutes", type=float, help="fit the step count to this wall-clock budget (measured over warm-up)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.workers < 0 or (args.minutes is not None and not args.minutes > 0):
        raise DebandError("--workers must be >= 0 and --minutes > 0", USAGE)
    resumed = Path(args.out) / "config.json"
    if args.config:
        cfg = load_train_config(args.config)
    elif args.resume and resumed.exists():
        cfg = load_train_config(resumed)
    else:
        cfg = TrainConfig()
    if args.steps is not None:
        cfg = replace(cfg, steps=args.steps)
    if args.batch is not None:
        cfg = replace(cfg, batch=args.batch)
    if args.loss is not None:
        cfg = replace(cfg, loss=replace(cfg.loss, fft=args.loss))
    if args.folder:
        cfg = replace(cfg, data=replace(cfg.data, folders=tuple(cfg.data.folders) + tuple(args.folder)))
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deband.train", description=__doc__)
    add_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train(config_from_args(args), args.out, args.resume, args.device, args.init, args.workers, args.minutes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training loop for the INDI restorer, assembled from small helpers.

Single process: `deband train --out runs/x`. Data-parallel: `torchrun --nproc_per_node N
-m deband.cli train --out runs/x` (gloo on CPU, nccl on CUDA). Rank 0 logs, validates and saves.
Every number of a run is in `TrainConfig`; the constants below only steer the machinery.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import itertools
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from deband.config import TrainConfig, save_json
from deband.data.pairs import PairSampler, PairStream, RunSeeds, validation_set
from deband.errors import InputError, OutputError
from deband.metrics import psnr
from deband.model.checkpoint import load_model, load_training_state, save_training_state, save_weights, unwrap
from deband.model.indi import interpolate, sample, sample_t
from deband.model.unet import UNet, add_chroma_stage, count_parameters, grow_smooth_scales
from deband.training.losses import RestorationLoss

log = logging.getLogger(__name__)

PREFETCH = 2  # batches each data worker keeps ready
WORKER_START = "spawn"  # how data workers start (see `batches`)
EMA_RAMP = 10  # the EMA decay warms up as (1 + step) / (EMA_RAMP + step): early weights fade fast
BUDGET_UNTIMED = 5  # first steps the time budget does not time (start-up), besides queued batches
BUDGET_MIN_TIMED = 20  # steps timed at least before the step count is fitted to the budget
BUDGET_SHARE = 0.97  # share of the remaining time given to steps; the rest: validation, checkpoints


class ConfigMismatchError(ValueError):
    """Initial weights whose model config the run's config cannot be grown from."""


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


@contextlib.contextmanager
def exact_arithmetic(device: torch.device) -> Iterator[None]:
    """While inside, CUDA computes in full fp32 as the CPU does (TF32 rounds inputs to 10 bits,
    coarser than a band step) and cuDNN picks its fastest kernels; the flags are put back on
    exit. Nothing changes on other devices."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved[:2]
        torch.backends.cudnn.benchmark = saved[2]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.lr_floor of it."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    floor = cfg.lr_floor
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


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
    """EMA of the weights, its decay warming up as (1 + step) / (EMA_RAMP + step) towards `decay`."""
    d = min(decay, (1 + step) / (EMA_RAMP + step))
    for pe, pm in zip(ema.parameters(), unwrap(model).parameters()):
        pe.lerp_(pm.detach(), 1 - d)


class SpikeGuard:
    """Flags losses far above the recent median (or non-finite): one bad batch must not wreck
    the weights of a network without normalisation layers. The defaults are TrainConfig's."""

    def __init__(self, factor: float = 20.0, window: int = 200, min_history: int = 20):
        self.factor, self.window, self.min_history = factor, window, min_history
        self.history: list[float] = []
        self.skipped = 0

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> SpikeGuard:
        return cls(cfg.spike_factor, cfg.spike_window, cfg.spike_min_history)

    @property
    def limit(self) -> float:
        if len(self.history) < self.min_history:
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
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
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


@dataclass
class Run:
    """What the loop and its periodic work share: the run's config, where it writes, the
    networks, the optimiser and the run generator (saved in checkpoints)."""

    cfg: TrainConfig
    out: Path
    main: bool  # rank 0: logs, validates and saves
    device: torch.device
    model: torch.nn.Module  # the trained network, unwrapped
    ema: torch.nn.Module  # its EMA, exported as the weights
    opt: torch.optim.Optimizer
    g: torch.Generator  # the run generator of this rank
    logger: Logger
    val: tuple[torch.Tensor, torch.Tensor] | None  # the held-out (clean, banded) set, rank 0 only

    def state(self, step: int) -> dict:
        return {
            "model": unwrap(self.model).state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "step": step,
            "rng": self.g.get_state(),
        }


def restore_state(path: Path, model, ema, opt, g: torch.Generator) -> int:
    """Loads a training state into the run's pieces; returns its step. Raises InputError
    when the file is unreadable or does not fit them."""
    try:
        state = load_training_state(path)
        unwrap(model).load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        g.set_state(state["rng"])
        return int(state["step"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: not a training state of this run ({reason})") from None


def _initial_weights(path: str | Path, cfg: TrainConfig) -> dict:
    start = load_model(path)  # InputError when unreadable
    if start.config == cfg.model:
        return start.state_dict()
    for grow in (grow_smooth_scales, add_chroma_stage):  # a run may add wider smoothing or a Cb/Cr stage
        try:
            return grow(start.state_dict(), start.config, cfg.model)
        except ValueError:
            pass
    raise ConfigMismatchError(f"{path}: its model config differs from the run's")


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


def batches(cfg: TrainConfig, g: torch.Generator, rank: int, start: int, workers: int, pin: bool) -> Iterator:
    """(clean, banded) batches for steps start, start + 1, ... in order.

    workers 0: synthesised in this process from the run's generator `g` (saved in checkpoints).
    workers > 0: synthesised by that many DataLoader processes, each step's batch from its own
    seed (`PairStream`): a different stream from workers 0, the same for any worker count.
    The workers are spawned, never forked: a fork copies whatever threads and locks the caller
    holds (a Ray client's, a thread pool's) and can hang the child.
    """
    shape = partial(patch_at, cfg=cfg)
    if workers > 0:
        stream = PairStream(cfg.data, RunSeeds(cfg.seed), rank, start, cfg.steps, shape)
        loader = DataLoader(stream, None, num_workers=workers, pin_memory=pin, prefetch_factor=PREFETCH,
                            multiprocessing_context=WORKER_START)
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
        self.skip = BUDGET_UNTIMED + queued
        self.start, self.t_skip = start, None
        self.fit_at = max(fit_at, start + self.skip + BUDGET_MIN_TIMED)

    def tick(self, step: int) -> int | None:
        """Call after each step; returns the fitted total step count once, else None."""
        if step == self.start + self.skip:
            self.t_skip = time.time()
        if step != self.fit_at or self.t_skip is None:
            return None
        now = time.time()
        rate = (step - self.start - self.skip) / (now - self.t_skip)  # steps per second
        steps = step + max(1, int(BUDGET_SHARE * rate * (self.deadline - now)))
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
    Raises InputError (unreadable `init` or training state), ConfigMismatchError (`init` of
    another architecture) or OutputError (OUT cannot be made a folder).
    """
    rank, world, dev = setup_distributed(device)
    with exact_arithmetic(dev):
        run, step = _start(cfg, Path(out), rank, world, dev, init if not resume else None, resume)
        _loop(run, step, rank, world, workers, minutes)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return run.out / "model.safetensors"


def _start(
    cfg: TrainConfig, out: Path, rank: int, world: int, dev: torch.device, init: str | Path | None, resume: bool
) -> tuple[Run, int]:
    """The run's state at its first step (restored from OUT/state.pt when resuming)."""
    main = rank == 0
    if main:
        _make_folder(out)
        save_json(cfg, out / "config.json")
    seeds = RunSeeds(cfg.seed)
    with torch.random.fork_rng(devices=[]):  # identical initial weights on every rank, globals untouched
        torch.manual_seed(seeds.model)
        model = UNet(cfg.model)
    if init is not None:
        model.load_state_dict(_initial_weights(init, cfg))
    model = model.to(dev).to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(seeds.generator(rank))
    step = restore_state(out / "state.pt", model, ema, opt, g) if resume and (out / "state.pt").exists() else 0
    val = validation_set(cfg.val_images, cfg.val_size, seeds.validation) if main else None
    run = Run(cfg, out, main, dev, model, ema, opt, g, Logger(out, main, step), val)
    if main:
        log.info("model: %d parameters; %d process(es) on %s", count_parameters(model), world, dev)
    return run, step


def param_groups(model: UNet, cfg: TrainConfig) -> list[dict]:
    """The optimiser's parameter groups: the Cb/Cr stage's (when the model has one) learns at
    `chroma_lr` times the schedule's rate, everything else at the rate itself."""
    chroma = [p for name, p in model.named_parameters() if name.startswith("chroma.")]
    rest = [p for name, p in model.named_parameters() if not name.startswith("chroma.")]
    return [{"params": rest, "lr_share": 1.0}] + ([{"params": chroma, "lr_share": cfg.chroma_lr}] if chroma else [])


def _make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{out}: exists and is not a folder") from None
    except OSError as e:
        raise OutputError(f"{out}: cannot make the run folder ({e.strerror or e})") from None


def _loop(run: Run, step: int, rank: int, world: int, workers: int, minutes: float | None) -> None:
    """Steps until run.cfg.steps, with the periodic logging, validation and checkpoints."""
    ddp = torch.nn.parallel.DistributedDataParallel(run.model) if world > 1 else run.model
    loss_fn = RestorationLoss(run.cfg.loss)
    pin = run.device.type == "cuda"
    data = batches(run.cfg, run.g, rank, step, workers, pin)
    fit = minutes is not None and step < run.cfg.warmup
    budget = Budget(minutes, step, run.cfg.warmup, workers * PREFETCH) if fit else None
    bar = tqdm(total=run.cfg.steps, initial=step, disable=not run.main, desc="train", dynamic_ncols=True)
    guard = SpikeGuard.from_config(run.cfg)
    t0, seen = time.time(), 0
    while step < run.cfg.steps:
        patch = patch_at(step, run.cfg)[0]
        for group in run.opt.param_groups:
            group["lr"] = lr_at(step, run.cfg) * group["lr_share"]
        clean, banded = next(data)
        loss, skipped = train_step(ddp, run.opt, loss_fn, clean, banded, run.cfg, run.g, run.device, guard.limit)
        guard.record(loss, skipped)
        ema_update(run.ema, run.model, step, run.cfg.ema)
        step, seen = step + 1, seen + clean.shape[0] * world
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3g}", patch=patch, rate=f"{seen / (time.time() - t0):.1f}/s", skip=guard.skipped)
        fitted = budget.tick(step) if budget is not None else None
        if fitted is not None:  # the schedule (and the curriculum) now end at `fitted`
            run.cfg, bar.total = replace(run.cfg, steps=fitted), fitted
            data.close()
            data = batches(run.cfg, run.g, rank, step, workers, pin)
            if run.main:
                save_json(run.cfg, run.out / "config.json")
                log.info("step %d: %d steps fit the %g-minute budget", step, fitted, minutes)
        _periodic(run, step, loss, patch)
    data.close()
    bar.close()


def _periodic(run: Run, step: int, loss: float, patch: int) -> None:
    """Rank 0, after each step: log; validate and checkpoint when due and at the end."""
    if not run.main:
        return
    cfg = run.cfg
    run.logger.write(step, {"loss": loss, "lr": lr_at(step, cfg), "patch": patch})
    if step % cfg.val_every == 0 or step == cfg.steps:
        metrics = validate(run.ema, run.val, run.device, cfg.val_steps)
        run.logger.write(step, metrics)
        log.info("step %d: %s", step, ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    if step % cfg.ckpt_every == 0 or step == cfg.steps:
        save_training_state(run.out / "state.pt", run.state(step))
        save_weights(run.ema, run.out / "model.safetensors", {"step": step})


"""Does the FFT magnitude+phase loss help? Three losses x three seeds at equal budget, on real content.

Trains nine models from scratch: (a) pixel L2 + FFT magnitude/phase (the default), (b) pixel
L2 only, (c) pixel L2 + the original L1 on raw FFT real/imaginary parts, each with seeds 0,
1 and 2. A seed fixes the initial weights and the data stream, so the three losses of one
seed see the same pairs in the same order; everything else (the shipped U-Net's
architecture, `DataConfig` defaults: the shipped model's data mix, the schedule, the step
budget) is the same for all nine. Each run checkpoints every 25 steps (a few minutes on two
shared cores): `--train-only` continues unfinished runs exactly and skips finished ones, so
it may be stopped at any time.

Without it, it scores each finished model with the default settings (2 INDI steps, the detail guard on),
image by image: the real-content sets (`deband eval`'s held-out corpus crops, n per set,
each under the eight deliveries; PSNR of R'G'B' and of Y', Cb, Cr), the faint-detail set and
the procedural sets (n scenes each). Scores are kept per run (`OUT/<run>/scores.json`), and
it prints:

- per loss, the mean gain over the banded input on each group of sets, as mean ± standard
  deviation over the three seeds;
- per pair of losses, the paired difference on the same images (each image's PSNR averaged
  over the seeds first): its mean, a 95 % interval (Student's t over the images) and how
  many images it helps, then its real-content mean seed by seed (the interval is over
  images; this shows whether the sign holds from one initialisation and data stream to the next);

and writes every number to `OUT/results.json` (and, with `--plot`, a figure).

    python benchmarks/ablation.py --out runs/ablation --train-only [--steps 1000]   # the nine runs (hours)
    python benchmarks/ablation.py --out runs/ablation --corpus CORPUS [--n 8] [--plot PNG]
    python benchmarks/ablation.py --out runs/ablation --corpus CORPUS --seeds 0   # seed 0's runs alone
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from indi_sweep import interval, scores  # the same per-image scores and intervals (benchmarks/ is on sys.path)

from deband.config import DEFAULT_STEPS, LossConfig, TrainConfig
from deband.evaluation.evalsets import synthetic_set
from deband.evaluation.faintsets import faint_set
from deband.evaluation.realsets import corpus_crops, gentle_map, load_held_out, real_set, real_set_names
from deband.model.checkpoint import read_metadata
from deband.restore.debander import Debander
from deband.training.loop import train

LOSSES = {
    "a": ("pixel + FFT mag/phase", LossConfig(fft="magphase")),
    "b": ("pixel only", LossConfig(fft="none")),
    "c": ("pixel + FFT re/im L1", LossConfig(fft="reim", fft_weight=1e-5)),  # the same share of the loss as (a)
}
SEEDS = (0, 1, 2)
PROCEDURAL = ("rgb-6bit", "luma6-chroma5", "dark-8bit-x4", "h264-crf34")
COLUMNS = ["psnr", "psnr_y", "psnr_cb", "psnr_cr"]


def budget(steps: int, seed: int, loss: LossConfig) -> TrainConfig:
    """From scratch: AdamW with a tenth of the steps (at most 300) of warm-up and cosine decay,
    batches of 8 patches of 128 px for the first 30 % of the steps, then 256 px."""
    return TrainConfig(loss=loss, steps=steps, warmup=min(300, steps // 10), val_every=steps, ckpt_every=25,
                       curriculum=((0.0, 128), (0.3, 256)), seed=seed)


def run_name(loss: str, seed: int) -> str:
    return f"{loss}-seed{seed}"


def finished(out: Path, loss: str, seed: int, steps: int) -> bool:
    weights = out / run_name(loss, seed) / "model.safetensors"
    return weights.exists() and int(read_metadata(weights).get("step", 0)) >= steps


def train_run(out: Path, loss: str, seed: int, steps: int) -> None:
    """Train the run (or go on with it from its last checkpoint) unless it reached `steps`."""
    if not finished(out, loss, seed, steps):
        train(budget(steps, seed, LOSSES[loss][1]), out / run_name(loss, seed), resume=True, device="cpu")


def score_sets(corpus: Path, n: int, size: int) -> dict[str, list]:
    """Group name -> the pairs scored: real content, faint detail, procedural."""
    images = load_held_out(corpus)
    crops = corpus_crops(images, n, size, gentle_map)
    return {"real content": [p for name in real_set_names() for p in real_set(name, crops)],
            "faint detail": faint_set(images, n, size),
            "procedural": [p for name in PROCEDURAL for p in synthetic_set(name, n, size)]}


def scored(weights: Path, sets: dict[str, list]) -> dict[str, list[list[float]]]:
    """Per group, each image's [PSNR, Y', Cb, Cr] with the default settings; kept beside the
    weights (and used again while the weights and the sets' sizes are the same)."""
    path = weights.parent / "scores.json"
    key = {"weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
           "images": {g: len(p) for g, p in sets.items()}}
    if path.exists() and json.loads(path.read_text())["key"] == key:
        return json.loads(path.read_text())["scores"]
    restore = Debander.load(weights, "cpu", steps=DEFAULT_STEPS).restore
    result = {g: [scores(restore(p.degraded), p.clean) for p in pairs] for g, pairs in sets.items()}
    path.write_text(json.dumps({"key": key, "scores": result}))
    return result


def _mean_sd(v: np.ndarray) -> str:
    return f"{v.mean():+.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():+.2f}"


def report(inputs: dict[str, np.ndarray], runs: dict[tuple[str, int], dict[str, np.ndarray]], seeds: list[int]) -> dict:
    """Print the two tables; return their numbers."""
    groups = list(inputs)
    gains = {(k, s): {g: (runs[k, s][g] - inputs[g]).mean(0) for g in groups} for k, s in runs}  # per run
    table = {}
    print("Gain over the banded input (dB), mean ± standard deviation over seeds "
          f"{', '.join(map(str, seeds))}; real content also per plane (Y' / Cb / Cr):\n")
    print("| loss | " + " | ".join(groups) + " | real content Y' / Cb / Cr |")
    print("|---" * (len(groups) + 2) + "|")
    for k, (name, _) in LOSSES.items():
        per_seed = {g: np.array([gains[k, s][g] for s in seeds]) for g in groups}  # (seeds, 4)
        table[k] = {g: {"mean": per_seed[g].mean(0).tolist(),
                        "std": per_seed[g].std(0, ddof=1).tolist() if len(seeds) > 1 else None} for g in groups}
        cells = [_mean_sd(per_seed[g][:, 0]) for g in groups]
        planes = " / ".join(_mean_sd(per_seed["real content"][:, i]) for i in (1, 2, 3))
        print(f"| {k}: {name} | " + " | ".join(cells) + f" | {planes} |")
    pairs = {}
    print("\nPaired differences (dB; each image's PSNR averaged over the seeds, then the mean over "
          "images with a 95 % interval, and the images it helps):\n")
    print("| pair | " + " | ".join(groups) + " | real content, seed by seed |")
    print("|---" * (len(groups) + 2) + "|")
    by_seed = {}
    for x, y in [("a", "b"), ("a", "c"), ("c", "b")]:
        cells = []
        for g in groups:
            d = np.mean([runs[x, s][g][:, 0] - runs[y, s][g][:, 0] for s in seeds], axis=0)
            m, lo, hi = interval(d)
            pairs[f"{x}-{y}", g] = [m, lo, hi, int((d > 0).sum()), len(d)]
            cells.append(f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}], {int((d > 0).sum())} of {len(d)}")
        by_seed[f"{x}-{y}"] = [float((runs[x, s]["real content"][:, 0] - runs[y, s]["real content"][:, 0]).mean())
                               for s in seeds]
        seed_cell = " / ".join(f"{v:+.3f}" for v in by_seed[f"{x}-{y}"])
        print(f"| {x} − {y} | " + " | ".join(cells) + f" | {seed_cell} |")
    return {"gain": table, "paired": {f"{p} {g}": v for (p, g), v in pairs.items()}, "paired_by_seed": by_seed}


def plot(inputs: dict[str, np.ndarray], runs: dict, seeds: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(inputs)
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.4))
    for ax, g in zip(axes, groups):
        for i, (k, (name, _)) in enumerate(LOSSES.items()):
            per_seed = np.array([(runs[k, s][g][:, 0] - inputs[g][:, 0]).mean() for s in seeds])
            sd = per_seed.std(ddof=1) if len(seeds) > 1 else 0.0
            ax.bar(i, per_seed.mean(), yerr=sd, capsize=4, color=f"C{i}", label=f"{k}: {name}")
            ax.plot([i] * len(per_seed), per_seed, "k.", ms=4)
        ax.set_title(g)
        ax.set_xticks(range(len(LOSSES)), list(LOSSES))
        ax.set_ylabel("gain over banded input (dB)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(LOSSES), fontsize=8)
    fig.suptitle(f"three losses, {len(seeds)} seed(s) each (bars: mean, whiskers: sd, dots: seeds)", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--corpus", type=Path, help="a corpus folder (`deband corpus build`): its held-out images")
    p.add_argument("--steps", type=int, default=1000, help="training steps per run (default 1000)")
    p.add_argument("--n", type=int, default=8, help="crops per real-content set, faint crops and scenes per set")
    p.add_argument("--size", type=int, default=384, help="crop and scene side (default 384)")
    p.add_argument("--train-only", action="store_true", help="train the runs (resuming any unfinished), score nothing")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds to train and score (default 0 1 2)")
    p.add_argument("--plot", type=Path, help="write the figure here")
    args = p.parse_args()
    if not args.train_only and args.corpus is None:
        p.error("--corpus is needed to score (or --train-only to train)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.train_only:
        for seed in args.seeds:  # seed by seed: a partial ablation already pairs the three losses
            for loss in LOSSES:
                train_run(args.out, loss, seed, args.steps)  # its folder keeps config.json and log.csv
        return
    todo = [run_name(k, s) for s in args.seeds for k in LOSSES if not finished(args.out, k, s, args.steps)]
    if todo:
        p.error(f"not trained to {args.steps} steps yet: {', '.join(todo)} (run with --train-only first)")
    sets = score_sets(args.corpus, args.n, args.size)
    inputs = {g: np.array([scores(p.degraded, p.clean) for p in pairs]) for g, pairs in sets.items()}
    runs = {(k, s): {g: np.array(v) for g, v in scored(args.out / run_name(k, s) / "model.safetensors", sets).items()}
            for s in args.seeds for k in LOSSES}
    print(f"{args.steps} steps per run; {', '.join(f'{g}: {len(v)} images' for g, v in sets.items())}\n")
    numbers = report(inputs, runs, args.seeds)
    numbers["images"], numbers["seeds"], numbers["steps"] = {g: len(v) for g, v in sets.items()}, args.seeds, args.steps
    (args.out / "results.json").write_text(json.dumps(numbers, indent=1))
    if args.plot:
        plot(inputs, runs, args.seeds, args.plot)


if __name__ == "__main__":
    main()

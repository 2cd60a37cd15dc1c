"""Does the FFT magnitude+phase loss help? Equal-budget runs, one per loss, then scores.

Trains three models with the same data, seeds, schedule and step budget, differing only
in the loss: (a) pixel L2 + FFT magnitude/phase, (b) pixel L2 only, (c) pixel L2 + the
original L1 on raw FFT real/imaginary parts. Then scores each on the held-out synthetic
sets and on unbanded photos, and prints a Markdown table.

    python benchmarks/ablation.py --out runs/ablation [--steps 1000]
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

from deband.config import LossConfig, TrainConfig
from deband.evaluation.evalsets import synthetic_set, unbanded_set
from deband.evaluation.scoring import identity, score
from deband.model.checkpoint import read_metadata
from deband.restore.debander import Debander
from deband.training.loop import train

LOSSES = {
    "a: pixel + FFT mag/phase": LossConfig(fft="magphase"),
    "b: pixel only": LossConfig(fft="none"),
    "c: pixel + FFT re/im L1": LossConfig(fft="reim", fft_weight=1e-5),  # same share of the loss as (a)
}


def budget(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, warmup=min(300, steps // 10), val_every=steps, ckpt_every=100,
                       curriculum=((0.0, 128), (0.3, 256)))


def run_one(name: str, loss: LossConfig, out: Path, steps: int) -> Path:
    folder = out / name.split(":")[0]
    weights = folder / "model.safetensors"
    done = weights.exists() and int(read_metadata(weights).get("step", 0)) >= steps
    if not done:
        train(replace(budget(steps), loss=loss), folder, resume=True, device="cpu")
    return weights


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--n", type=int, default=12, help="images per evaluation set")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    weights = {name: run_one(name, loss, out, args.steps) for name, loss in LOSSES.items()}
    sets = {s: synthetic_set(s, args.n) for s in ("rgb-6bit", "luma6-chroma5", "dark-8bit-x4")}
    sets["unbanded photos"] = unbanded_set()
    methods = {"banded input": identity}
    for name, w in weights.items():
        for steps in (1, 4):
            restore = Debander.load(w, "cpu", steps=steps).restore
            methods[f"{name} ({steps} step{'s' * (steps > 1)})"] = lambda p, r=restore: r(p.degraded)
    results = {label: {s: score(m, pairs, s, label, with_cambi=False).psnr for s, pairs in sets.items()}
               for label, m in methods.items()}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"equal budget: {args.steps} steps each; mean PSNR (dB) against clean\n")
    print("| model | " + " | ".join(sets) + " |")
    print("|---" * (len(sets) + 1) + "|")
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{row[s]:.2f}" for s in sets) + " |")


if __name__ == "__main__":
    main()

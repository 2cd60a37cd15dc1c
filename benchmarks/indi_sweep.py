"""INDI's sampling on real content: steps, strength and the detail guard, image by image.

Restores every real-content set of `deband eval` (the corpus's held-out images, n crops per
set, each delivered as the set says) with each combination of INDI steps (1, 2, 4, 8),
strength (the start time t: 0.5, 0.7, 1.0) and the detail guard (on, off), and prints:

- per combination, the mean PSNR gain over the banded input (and per plane, Y'/Cb/Cr);
- per combination, the paired difference against the default (2 steps, strength 1, guard
  on) over the same images: its mean, a 95 % interval (Student's t over the images) and how
  many images it helps.

Sampling is deterministic (the default `eps` is 0: no noise enters), so one run is the
result; there is no seed to vary. `--json` keeps every image's PSNR.

    python benchmarks/indi_sweep.py --corpus CORPUS [--n 8] [--size 384] [--weights W] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import product
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from deband.config import DEFAULT_STEPS
from deband.evaluation.realsets import corpus_crops, gentle_map, load_held_out, real_set, real_set_names
from deband.io.pixels import rgb_to_ycbcr
from deband.metrics import psnr
from deband.restore.debander import Debander

STEPS = (1, 2, 4, 8)
STRENGTHS = (0.5, 0.7, 1.0)
GUARDS = (True, False)
DEFAULT = (DEFAULT_STEPS, 1.0, True)


def label(steps: int, strength: float, guard: bool) -> str:
    return f"{steps} step{'s' * (steps > 1)}, strength {strength:g}, guard {'on' if guard else 'off'}"


def scores(out: np.ndarray, clean: np.ndarray) -> list[float]:
    """PSNR of R'G'B', then of Y', Cb and Cr (dB)."""
    a, b = (torch.from_numpy(np.ascontiguousarray(v)).permute(2, 0, 1) for v in (out, clean))
    return [psnr(a, b).item()] + [v.item() for v in psnr(rgb_to_ycbcr(a)[:, None], rgb_to_ycbcr(b)[:, None])]


def interval(d: np.ndarray) -> tuple[float, float, float]:
    """Mean of d and its 95 % Student's t interval."""
    m = float(d.mean())
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return m, m - half, m + half


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, required=True, help="a corpus folder (`deband corpus build`)")
    p.add_argument("--n", type=int, default=8, help="crops per real-content set (default 8)")
    p.add_argument("--size", type=int, default=384, help="crop side (default 384)")
    p.add_argument("--weights", help="a .safetensors model (default: the shipped one)")
    p.add_argument("--json", type=Path, help="write every image's scores here")
    args = p.parse_args()
    torch.set_num_threads(2)
    crops = corpus_crops(load_held_out(args.corpus), args.n, args.size, gentle_map)
    pairs = [(name, pair) for name in real_set_names() for pair in real_set(name, crops)]
    combos = list(product(STEPS, STRENGTHS, GUARDS))
    restorers = {c: Debander.load(args.weights, "cpu", steps=c[0], strength=c[1], **({} if c[2] else {"guard": None}))
                 for c in combos}  # the guard on is the default Guard()
    t0 = time.perf_counter()
    inputs = np.array([scores(p.degraded, p.clean) for _, p in pairs])  # (images, 4)
    results = {c: np.array([scores(restorers[c].restore(p.degraded), p.clean) for _, p in pairs]) for c in combos}
    print(f"{len(pairs)} images ({len(crops)} crops x {len(real_set_names())} real-content sets), "
          f"{len(combos)} settings, {time.perf_counter() - t0:.0f} s\n")
    base = results[DEFAULT][:, 0]
    print("| steps | strength | guard | gain dB | Y' / Cb / Cr gain | vs default: mean [95 % interval] "
          "| images helped |")
    print("|---|---|---|---|---|---|---|")
    for c in combos:
        gain = (results[c] - inputs).mean(0)
        d = results[c][:, 0] - base
        m, lo, hi = interval(d) if c != DEFAULT else (0.0, 0.0, 0.0)
        vs = "(the default)" if c == DEFAULT else f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        helped = "–" if c == DEFAULT else f"{int((d > 0).sum())} of {len(d)}"
        print(f"| {c[0]} | {c[1]:g} | {'on' if c[2] else 'off'} | {gain[0]:+.2f} | "
              f"{gain[1]:+.2f} / {gain[2]:+.2f} / {gain[3]:+.2f} | {vs} | {helped} |")
    if args.json:
        data = {"images": [p.name for _, p in pairs], "input": inputs.tolist(),
                "settings": {label(*c): results[c].tolist() for c in combos},
                "columns": ["psnr", "psnr_y", "psnr_cb", "psnr_cr"]}
        args.json.write_text(json.dumps(data))


if __name__ == "__main__":
    main()

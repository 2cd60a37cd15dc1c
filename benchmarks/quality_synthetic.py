"""Fidelity on held-out synthetic banding and on unbanded photos: ours vs FFmpeg's filters.

Prints a Markdown table of mean PSNR (dB, against the clean image) per set and method,
and the change on clean 8-bit photos (it must not smear detail). All methods run here,
in the same process, on the same images.

    python benchmarks/quality_synthetic.py [--weights W] [--n 12] [--size 384]
"""

from __future__ import annotations

import argparse

import torch

from deband.baselines import FILTERS
from deband.evaluate import DEGRADATIONS, baseline, identity, score, synthetic_set, unbanded_set
from deband.restore import Debander


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="model to score (default: the shipped one)")
    p.add_argument("--n", type=int, default=12, help="images per set")
    p.add_argument("--size", type=int, default=384, help="image side")
    p.add_argument("--steps", default="1,4", help="comma-separated INDI step counts")
    args = p.parse_args()
    methods = {"input": identity} | {name: baseline(name) for name in FILTERS}
    for steps in map(int, args.steps.split(",")):
        methods[f"deband {steps} step(s)"] = Debander.load(args.weights, "cpu", steps=steps).restore
    sets = {name: synthetic_set(name, args.n, args.size) for name in DEGRADATIONS}
    sets["unbanded photos (8-bit)"] = unbanded_set(args.size)
    print(f"torch threads: {torch.get_num_threads()}; {args.n} images of {args.size}^2 per synthetic set\n")
    print("| method | " + " | ".join(sets) + " | s/MP |")
    print("|---" * (len(sets) + 2) + "|")
    for name, method in methods.items():
        results = [score(method, pairs) for pairs in sets.values()]
        cells = " | ".join(f"{r['psnr']:.2f}" for r in results)
        print(f"| {name} | {cells} | {sum(r['s_per_mp'] for r in results) / len(results):.3f} |", flush=True)


if __name__ == "__main__":
    main()

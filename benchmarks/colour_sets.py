"""Quick per-plane scores of one or more models on the colour, real-content and faint-detail
sets of `deband eval` (no FFmpeg rows, no CAMBI): for comparing training runs.

    python benchmarks/colour_sets.py --corpus CORPUS --n 6 --size 256 default.safetensors run/model.safetensors

Prints, per set, PSNR and Y'/Cb/Cr PSNR of the banded input and each model's gain (default
settings: 2 steps, detail guard on), and the same means `deband eval` prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from deband.evaluation.faintsets import faint_set
from deband.evaluation.realsets import (
    colour_set_names,
    corpus_crops,
    gentle_map,
    load_held_out,
    real_set,
    real_set_names,
    texture_map,
)
from deband.evaluation.scoring import identity, score
from deband.restore.debander import Debander
from deband.restore.guard import Guard

COLUMNS = ("psnr", "psnr_y", "psnr_cb", "psnr_cr", "detail")


def whole(images: list, side: int) -> list:
    """Each held-out image whole, area-downscaled to at most `side` pixels wide and high."""
    import cv2

    out = []
    for label, img in images:
        f = min(1.0, side / max(img.shape[:2]))
        size = (round(img.shape[1] * f), round(img.shape[0] * f))
        out.append((label, cv2.resize(img, size, interpolation=cv2.INTER_AREA).astype(np.float32)))
    return out


def sets(corpus: Path, n: int, size: int) -> dict[str, list]:
    """name -> pairs: the colour sets, the R'G'B' 6-bit set on whole held-out images (at most
    2 * size px), the real-content sets, the faint-detail set."""
    images = load_held_out(corpus)
    textured, gentle = corpus_crops(images, n, size, texture_map), corpus_crops(images, n, size, gentle_map)
    out = {name: real_set(name, textured) for name in colour_set_names()}
    out["whole images rgb 6-bit"] = real_set("textured rgb 6-bit", whole(images, 2 * size))  # the same delivery
    out |= {name: real_set(name, gentle) for name in real_set_names()}
    return out | {"faint detail": faint_set(images, n, size)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", nargs="+", help=".safetensors models ('default' for the shipped one)")
    ap.add_argument("--corpus", type=Path, required=True, help="a corpus folder (`deband corpus build`)")
    ap.add_argument("--n", type=int, default=6, help="crops per set (default 6)")
    ap.add_argument("--size", type=int, default=256, help="crop side (default 256)")
    ap.add_argument("--wide-guard", action="store_true", help="also score each model with the guard's widenings on")
    args = ap.parse_args()
    torch.set_num_threads(2)
    methods = {}
    for w in args.weights:
        path = None if w == "default" else w
        methods[w] = Debander.load(path, "cpu").restore
        if args.wide_guard:
            methods[w + " (wide guard)"] = Debander.load(path, "cpu", guard=Guard(grid=True, chroma=True)).restore
    groups: dict[str, list[list[float]]] = {}
    print("| set | method | " + " | ".join(COLUMNS) + " |\n|---|---|" + "---|" * len(COLUMNS))
    for name, pairs in sets(args.corpus, args.n, args.size).items():
        base = score(identity, pairs, name, "input", with_cambi=False)
        rows = [("input", [getattr(base, c) for c in COLUMNS])]
        for label, fn in methods.items():
            r = score(lambda p, fn=fn: fn(p.degraded), pairs, name, label, with_cambi=False)
            rows.append((label, [getattr(r, c) - getattr(base, c) for c in COLUMNS]))
        for label, values in rows:
            cells = [f"{v:+.2f}" if label != "input" else f"{v:.2f}" for v in values]
            print(f"| {name} | {label} | " + " | ".join(cells) + " |", flush=True)
            group = "colour" if name.startswith("textured") else "real" if name.startswith("real") else name
            groups.setdefault(f"{group} mean | {label}", []).append(values)
    for key, values in groups.items():
        mean = np.nanmean(np.array(values), axis=0)
        print(f"| {key} | " + " | ".join(f"{v:+.2f}" if "input" not in key else f"{v:.2f}" for v in mean) + " |")


if __name__ == "__main__":
    main()

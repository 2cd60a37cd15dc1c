"""How much room the detail guard leaves a perfect restorer: the guard applied to the clean
image itself (as if the network had returned it), per set and per plane, for each of the
guard's widenings. A gain here is the most any model can gain with that guard.

    python benchmarks/guard_room.py --corpus CORPUS [--n 6] [--size 256]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from colour_sets import sets

from deband.io.pixels import rgb_to_ycbcr
from deband.metrics import psnr
from deband.restore.guard import Guard

GUARDS = {  # label -> guard
    "today": Guard(),
    "grid": Guard(grid=True),
    "chroma": Guard(chroma=True),
    "both": Guard(grid=True, chroma=True),
}


def planes(out: torch.Tensor, clean: torch.Tensor) -> list[float]:
    """PSNR and Y'/Cb/Cr PSNR in dB of (1, 3, h, w) out against clean."""
    a, b = rgb_to_ycbcr(out), rgb_to_ycbcr(clean)
    return [psnr(out, clean).item()] + [psnr(a[:, i : i + 1], b[:, i : i + 1]).item() for i in range(3)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="a corpus folder (`deband corpus build`)")
    ap.add_argument("--n", type=int, default=6, help="crops per set (default 6)")
    ap.add_argument("--size", type=int, default=256, help="crop side (default 256)")
    args = ap.parse_args()
    print("PSNR gain over the banded input of the clean image through each guard, dB: all / Y' / Cb / Cr\n")
    print("| set | input | " + " | ".join(GUARDS) + " |\n|---|---|" + "---|" * len(GUARDS))
    for name, pairs in sets(args.corpus, args.n, args.size).items():
        scores: dict[str, list[list[float]]] = {k: [] for k in ["input", *GUARDS]}
        for p in pairs:
            x, c = (torch.from_numpy(np.ascontiguousarray(v)).permute(2, 0, 1)[None] for v in (p.degraded, p.clean))
            scores["input"].append(planes(x, c))
            for label, guard in GUARDS.items():
                scores[label].append(planes(guard(x, c), c))
        base = np.mean(scores["input"], axis=0)
        cells = [" / ".join(f"{v:+.2f}" for v in np.mean(scores[k], axis=0) - base) for k in GUARDS]
        print(f"| {name} | {base[0]:.2f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

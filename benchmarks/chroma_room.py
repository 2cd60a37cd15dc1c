"""How much of a chroma plane cut to 4-5 bits can be brought back over texture, and by what:
fixed estimators of Cb/Cr, each kept within the quantisation cell, on training crops.

    python benchmarks/chroma_room.py --pack PACK.npz [--crops 24] [--size 256]

PACK is a training pack (`deband corpus pack`, made of the corpus's training images only: a
design is measured here, not scored). Each crop's centre is stored as Y'CbCr with Y' at 8 bits and
Cb/Cr at 4 or 5 bits (`delivery.store_ycbcr`, from a 10-bit master, rounded), 4:4:4 and
4:2:0, and delivered as 8-bit R'G'B'. Cb/Cr PSNR (on `rgb_to_ycbcr`'s scale) of:

- the input, and "input at 8 bits": the image stored with the same subsampling at 8 bits
  (what 4:2:0 alone costs);
- the input's Cb/Cr smoothed (Gaussian, sigma in px), kept in the cell;
- the smoothest values in the cells (projections: smooth at sigma 1 px, clamp to the cell, 10 times);
- a guided filter of the input's Cb/Cr by Y' (window k px), kept in the cell: a local linear
  prediction of chroma from luma texture, fitted to the quantised chroma;
- alternating projections (`deband.restore.cells.place_chroma`, which `deband image` runs
  where it finds such a grid): the values made locally linear in Y' (a guided filter of the
  estimate over 5 px windows), then moved back into their cells (for 4:2:0: each
  2x2 block shifted until its mean is in its cell, so the estimate is at full resolution,
  guided by the full-resolution Y'), `iterations` times from the input;
- (after the table) how many 4:2:0 samples are found on their grid: the delivered planes'
  2 x 2 means, and the samples recovered from them;
- an oracle: the clean Cb/Cr's own best local linear fit on the clean Y' (window k px), kept
  in the cell: what a predictor from luma could reach if it knew each window's fit.

For 4:2:0 the cells are those of the subsampled planes (the samples recovered from the
input, `cells.samples`, moved onto their grid), and every estimate but the
alternating projections is made at that resolution and upsampled bilinearly.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from deband.data.pack import Pack
from deband.io.pixels import quantise, rgb_to_ycbcr
from deband.restore.cells import linear_fit, on_levels, place_chroma, samples
from deband.synthesis.delivery import store_ycbcr

Estimator = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x Cb/Cr, Y', clean Cb/Cr) -> Cb/Cr


def gaussian(a: torch.Tensor, sigma: float) -> torch.Tensor:
    """a (n, c, h, w) blurred per plane, edges replicated."""
    r = int(3 * sigma) + 1
    t = torch.arange(-r, r + 1, dtype=a.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    n, c, h, w = a.shape
    a = a.reshape(n * c, 1, h, w)
    a = F.conv2d(F.pad(a, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    a = F.conv2d(F.pad(a, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return a.reshape(n, c, h, w)


def estimators() -> dict[str, Estimator]:
    out: dict[str, Estimator] = {"input": lambda c, y, clean: c}
    for s in (1, 2, 4, 8):
        out[f"smoothed, sigma {s}"] = lambda c, y, clean, s=s: gaussian(c, s)
    out["smoothest in the cells"] = None  # made in `restore`: it needs the cells at every iteration
    for k in (9, 17):
        out[f"guided by Y', k {k}"] = lambda c, y, clean, k=k: linear_fit(y, c, k)
    for k in (5, 17):
        out[f"oracle: clean linear fit on Y', k {k}"] = lambda c, y, clean, k=k: linear_fit(y, clean, k, eps=1e-6)
    return out


def project(levels: torch.Tensor, y: torch.Tensor, half: float, iterations: int) -> torch.Tensor:
    """Alternating projections: `cells.place_chroma` for 4:2:0 (levels at half resolution), and
    its 4:4:4 form (every pixel its own cell) otherwise."""
    if levels.shape[-1] != y.shape[-1]:
        start = F.interpolate(levels, scale_factor=2.0, mode="bilinear", align_corners=False)
        return place_chroma(levels, torch.full_like(levels, half), y, start, iterations)
    est = levels
    for _ in range(iterations):
        est = levels + (linear_fit(y, est) - levels).clamp(-half, half)
    return est


def restore(name: str, fn: Estimator | None, c: torch.Tensor, y: torch.Tensor, clean: torch.Tensor, half: float):
    """The estimate of `name`, kept within half a step of the levels c."""
    if fn is None:
        est = c
        for _ in range(10):
            est = c + (gaussian(est, 1.0) - c).clamp(-half, half)
        return est
    return c + (fn(c, y, clean) - c).clamp(-half, half)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).square().mean()))


def measure(crops: list[torch.Tensor], bits: int, subsampled: bool) -> dict[str, float]:
    """Mean Cb/Cr PSNR of each estimate over the crops cut to `bits` of chroma."""
    step = 2.0 ** (8 - bits)
    half = step / 2 / 224
    scores: dict[str, list[float]] = {}
    for clean in crops:
        x = quantise(store_ycbcr(clean[None], 8, bits, 10, subsampled=subsampled), 8)
        eight = quantise(store_ycbcr(clean[None], 8, 8, 10, subsampled=subsampled), 8)
        ycc, truth = rgb_to_ycbcr(x), rgb_to_ycbcr(clean[None])
        y, c, clean_c = ycc[:, :1], ycc[:, 1:], truth[:, 1:]
        if subsampled:  # the cells are the subsampled planes'; estimates at that resolution
            y, c, clean_c = F.avg_pool2d(y, 2), samples(F.avg_pool2d(c, 2)), F.avg_pool2d(clean_c, 2)
        c = (on_levels(c * 224 + 128, step) - 128) / 224
        for name, fn in estimators().items():
            est = ycc[:, 1:] if name == "input" else restore(name, fn, c, y, clean_c, half)
            if subsampled and name != "input":
                est = F.interpolate(est, scale_factor=2.0, mode="bilinear", align_corners=False)
            scores.setdefault(name, []).append(psnr(est, truth[:, 1:]))
        for n in (30, 100):  # at full resolution, guided by the full-resolution Y'
            scores.setdefault(f"projections, {n} times", []).append(psnr(project(c, ycc[:, :1], half, n), truth[:, 1:]))
        scores.setdefault("input at 8 bits", []).append(psnr(rgb_to_ycbcr(eight)[:, 1:], truth[:, 1:]))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def on_grid(crops: list[torch.Tensor], bits: int) -> tuple[float, float]:
    """The share of 4:2:0 Cb/Cr within 0.75 code of their grid, cut to `bits`: the delivered
    planes' 2 x 2 block means, and the samples recovered from them (`cells.samples`)."""
    step, shares = 2.0 ** (8 - bits), []
    for clean in crops:
        x = quantise(store_ycbcr(clean[None], 8, bits, 10), 8)
        means = F.avg_pool2d(rgb_to_ycbcr(x)[:, 1:], 2)
        row = []
        for c in (means, samples(means)):
            codes = c * 224 + 128
            row.append(float(((codes - (codes / step).round() * step).abs() < 0.75).float().mean()))
        shares.append(row)
    return tuple(float(v) for v in np.mean(shares, 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pack", required=True, help="a training pack (deband corpus pack)")
    ap.add_argument("--crops", type=int, default=16, help="crops, spread over the pack")
    ap.add_argument("--size", type=int, default=256, help="side of each crop's centre window")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    pack = Pack(args.pack)
    every = max(len(pack) // args.crops, 1)
    crops = []
    for i in range(0, every * args.crops, every):
        full = pack.crop(i).float()
        t, s = (full.shape[-1] - args.size) // 2, args.size
        crops.append(full[:, t : t + s, t : t + s])
    cases = [(5, False), (5, True), (4, False), (4, True)]
    results = {case: measure(crops, *case) for case in cases}
    names = list(results[cases[0]])
    heads = [f"Cb/Cr {b}-bit {'4:2:0' if sub else '4:4:4'}" for b, sub in cases]
    print("| estimate (kept in the cell) | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(cases))
    for name in names:
        base = [results[case]["input"] for case in cases]
        cells = [f"{results[case][name]:.2f}" + ("" if name == "input" else f" ({results[case][name] - b:+.2f})")
                 for case, b in zip(cases, base)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for bits in (5, 4):
        means, recovered = on_grid(crops, bits)
        print(f"\n4:2:0 Cb/Cr at {bits} bits within 0.75 code of their grid: block means {100 * means:.1f} %, "
              f"recovered samples {100 * recovered:.1f} %")


if __name__ == "__main__":
    main()

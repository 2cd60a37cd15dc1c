"""Truncation against rounding: how much of a bit-shifted delivery's error is an offset?

A master cut to fewer bits by truncation (a bit shift) lies below the truth by about half a
step; one cut by rounding does not. Both give codes on the same grid, and a truncated image
is exactly the rounded image of a source half a step darker, so nothing in a delivered
image says which cut made it. This prints, on the windows `deband eval` crops from the
corpus's held-out images (mostly smooth gradient), each delivery cut both ways: the banded
input's PSNR, `deband`'s gain at default settings, and the gain of the best constant offset
added to Y', Cb and Cr (an oracle: it is chosen with the clean image, per set, from 0 to
half a step), and `deband --truncated SOURCE:BITS`'s gain (the user says the source was
bit-shifted; said of a rounded source too, it shows what a wrong claim costs).

    python benchmarks/truncation.py --corpus CORPUS [--weights W] [--n 8]
"""

from __future__ import annotations

from dataclasses import replace

import corpus_windows
import numpy as np
import torch

from deband.io.pixels import rgb_to_ycbcr, ycbcr_to_rgb
from deband.metrics import psnr
from deband.restore.debander import Debander, Truncation
from deband.synthesis.delivery import requantise, ten_to_eight

# name -> (delivery given the cut, step in 8-bit codes, the cut as `deband --truncated` names it)
DELIVERIES = {
    "10-to-8 Y'CbCr 4:2:0": (lambda x, mode: ten_to_eight(x, mode), 1, (10, 8)),
    "luma 6 / chroma 6 bits": (lambda x, mode: requantise(x, 6, 6, mode), 4, (8, 6)),
}
FRACTIONS = (0.0, 0.125, 0.25, 0.375, 0.5)  # offsets tried, in steps


def offset(x: torch.Tensor, codes: float) -> torch.Tensor:
    """x (3, h, w) R'G'B' with `codes` 8-bit limited-range codes added to Y', Cb and Cr."""
    ycc = rgb_to_ycbcr(x, "bt709") + torch.tensor([codes / 219, codes / 224, codes / 224])[:, None, None]
    return ycbcr_to_rgb(ycc, "bt709").clamp(0, 1)


def mean_psnr(images: list[torch.Tensor], cleans: list[torch.Tensor]) -> float:
    """Mean PSNR in dB of (3, h, w) images against their clean crops."""
    return float(np.mean([psnr(x, c).item() for x, c in zip(images, cleans)]))


def restored(deb: Debander | None, x: torch.Tensor) -> torch.Tensor:
    """x (3, h, w) restored by `deb` (None: x as it is)."""
    return x if deb is None else torch.from_numpy(deb.restore(x.permute(1, 2, 0).numpy())).permute(2, 0, 1)


def main() -> None:
    ap = corpus_windows.parser(__doc__)
    args = ap.parse_args()
    crops = corpus_windows.windows(args)
    cleans = [torch.from_numpy(np.ascontiguousarray(c)).permute(2, 0, 1) for _, c in crops]
    deb = Debander.load(args.weights, device="cpu")
    print(f"{len(cleans)} crops of {args.size} px from {args.corpus}; PSNR dB against the clean crop\n")
    print("| delivery | cut | input | deband (gain) | best offset (gain) | deband --truncated (gain) |")
    print("|---|---|---|---|---|---|")
    for name, (deliver, step, cut) in DELIVERIES.items():
        told = replace(deb, truncation=Truncation(*cut, "ycbcr"))
        for mode in ("round", "trunc"):
            banded = [deliver(c, mode) for c in cleans]
            base, ours, lifted = (mean_psnr([restored(d, b) for b in banded], cleans) for d in (None, deb, told))
            shifted = {f: mean_psnr([offset(b, f * step) for b in banded], cleans) for f in FRACTIONS}
            best = max(shifted, key=shifted.get)
            print(
                f"| {name} | {mode} | {base:.2f} | {ours:.2f} ({ours - base:+.2f}) "
                f"| {shifted[best]:.2f} ({shifted[best] - base:+.2f}) at {best:g} step "
                f"| {lifted:.2f} ({lifted - base:+.2f}) |"
            )


if __name__ == "__main__":
    main()

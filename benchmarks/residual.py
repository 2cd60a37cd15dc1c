"""Where the error left after debanding lies: coarse or fine, luma or chroma.

For each real-content set of `deband eval` (the held-out corpus windows, delivered as named)
this prints the banded input's PSNR, `deband`'s at default settings, and two oracles that
each replace one band of spatial frequencies of the output with the clean image's (split by
a Gaussian of `--sigma` pixels): the PSNR the output would have with its coarse part right
(`coarse fixed`), and with its fine part right (`fine fixed`). The last column is the share of
the output's remaining squared error that is in Y' (the rest is in Cb and Cr).

A large `coarse fixed` gain says the error is wide and smooth (bands, offsets, colour casts):
what a restorer that sees far enough could still fix. A large `fine fixed` gain says it is
texture the delivery destroyed.

    python benchmarks/residual.py --corpus CORPUS [--weights W] [--n 8] [--sigma 8]
"""

from __future__ import annotations

import corpus_windows
import cv2
import numpy as np
import torch

from deband.evaluation.realsets import real_set, real_set_names
from deband.io.pixels import rgb_to_ycbcr
from deband.metrics import psnr
from deband.restore.debander import Debander


def coarse_part(img: np.ndarray, sigma: float) -> np.ndarray:
    """img (h, w, 3) blurred by a Gaussian of `sigma` pixels, edges replicated."""
    return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)


def db(img: np.ndarray, clean: np.ndarray) -> float:
    return psnr(torch.from_numpy(img), torch.from_numpy(clean)).item()


def main() -> None:
    ap = corpus_windows.parser(__doc__)
    ap.add_argument("--sigma", type=float, default=8.0, help="pixels: the split between coarse and fine")
    args = ap.parse_args()
    crops = corpus_windows.windows(args)
    deb = Debander.load(args.weights, device="cpu")
    print(f"{len(crops)} crops of {args.size} px from {args.corpus}; PSNR dB; split at a Gaussian of {args.sigma:g} px")
    print()
    print("| set | input | deband | coarse fixed | fine fixed | Y' share of the error |")
    print("|---|---|---|---|---|---|")
    for name in real_set_names():
        rows = []
        for pair in real_set(name, crops):
            clean, out = pair.clean, deb.restore(pair.degraded)
            coarse_out, coarse_clean = coarse_part(out, args.sigma), coarse_part(clean, args.sigma)
            err = ((rgb_to_ycbcr(out, axis=-1) - rgb_to_ycbcr(clean, axis=-1)) ** 2).mean((0, 1))
            rows.append(
                [
                    db(pair.degraded, clean),
                    db(out, clean),
                    db(out - coarse_out + coarse_clean, clean),
                    db(coarse_out + clean - coarse_clean, clean),
                    err[0] / err.sum(),
                ]
            )
        base, ours, coarse, fine, y_share = np.mean(rows, axis=0)
        print(
            f"| {name} | {base:.2f} | {ours:.2f} ({ours - base:+.2f}) | {coarse:.2f} ({coarse - ours:+.2f}) "
            f"| {fine:.2f} ({fine - ours:+.2f}) | {y_share:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

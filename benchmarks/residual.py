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

    python benchmarks/residual.py --corpus /work/corpus [--weights W] [--n 8] [--sigma 8]
"""

from __future__ import annotations

import corpus_windows
import numpy as np
import torch
import torch.nn.functional as F

from deband.metrics import psnr
from deband.pixels import rgb_to_ycbcr
from deband.realsets import real_set, real_set_names
from deband.restore import Debander


def gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x (c, h, w) blurred by a separable Gaussian of `sigma` pixels, edges replicated."""
    r = int(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[0]
    y = F.pad(x[None], (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]


def hwc_to_chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)


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
            clean, banded = hwc_to_chw(pair.clean), hwc_to_chw(pair.degraded)
            out = hwc_to_chw(deb.restore(pair.degraded))
            coarse_out, coarse_clean = gaussian(out, args.sigma), gaussian(clean, args.sigma)
            err = ((rgb_to_ycbcr(out) - rgb_to_ycbcr(clean)) ** 2).mean((1, 2))
            rows.append(
                [
                    psnr(banded, clean).item(),
                    psnr(out, clean).item(),
                    psnr(out - coarse_out + coarse_clean, clean).item(),
                    psnr(coarse_out + clean - coarse_clean, clean).item(),
                    (err[0] / err.sum()).item(),
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

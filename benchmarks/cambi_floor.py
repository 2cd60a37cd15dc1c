"""What CAMBI sees in a debanded frame: the bands, or the 10 bits it is written at?

CAMBI scores 10-bit luma codes. `deband` restores in floating point and writes 16-bit PNGs
or 10-bit video, undithered; a smooth gradient rounded to 10 bits keeps steps of one code,
and with `max_log_contrast 4` CAMBI counts those too. This prints CAMBI mlc4 (and the
default CAMBI) of the same pictures written five ways:

* rounded to 10 bits (what `deband eval` scores);
* with a TPDF dither of +-1 and +-0.5 LSB at 10 bits before rounding;
* as `deband video` would deliver it: Y'CbCr 4:2:0 at 10 bits through libx265 at its
  default CRF 18, preset medium, rounded and dithered (one intra frame each).

The pictures: the reference frames as delivered and restored at default settings (no clean
image exists), and, as a floor, procedural clean scenes: made in floating point, they hold no
steps of their own, so the steps CAMBI finds in them after rounding are the 10-bit grid's.

    python benchmarks/cambi_floor.py [--reference FRAMES] [--weights W] [--n 12]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from deband.evaluation.evalsets import folder_set, synthetic_set
from deband.io.chroma import subsample_420
from deband.io.pixels import rgb_to_ycbcr, tpdf_pattern, ycbcr_codes
from deband.io.planes import codes_to_frame
from deband.metrics import cambi
from deband.restore.debander import Debander
from deband.synthesis.encoders import available, round_trip

CRF, PRESET = 18, "medium"  # deband video's defaults


def planes_420(rgb: np.ndarray) -> list[torch.Tensor]:
    """(h, w, 3) R'G'B' on [0, 1] (h, w even) -> normalised BT.709 [y, cb, cr] planes, chroma 4:2:0."""
    ycc = rgb_to_ycbcr(torch.from_numpy(np.ascontiguousarray(rgb, np.float32)).permute(2, 0, 1))
    return [ycc[0], subsample_420(ycc[1]), subsample_420(ycc[2])]


def codes(planes: list[torch.Tensor], dither: float, seed: int) -> list[np.ndarray]:
    """10-bit limited-range codes, with a TPDF dither of +-`dither` LSB (0: rounded)."""
    out = []
    for i, p in enumerate(planes):
        noise = dither * tpdf_pattern(tuple(p.shape), seed + i) if dither else None
        out.append(ycbcr_codes(p, 10, False, chroma=i > 0, dither=noise))
    return out


def through_x265(c: list[np.ndarray]) -> np.ndarray:
    """10-bit 4:2:0 codes through libx265 (CRF 18, medium) and back: the decoded luma codes."""
    h, w = c[0].shape
    frame = round_trip([codes_to_frame(c, "yuv420p10le", w, h)], "libx265", CRF, PRESET, "yuv420p10le")[0]
    luma = frame.reformat(format="yuv420p10le").planes[0]
    return np.frombuffer(luma, "<u2").reshape(luma.height, -1)[:, : luma.width].copy()


def ways() -> dict[str, Callable[[list[torch.Tensor], int], np.ndarray]]:
    """Name -> (4:2:0 planes, seed) -> 10-bit luma codes as CAMBI scores them."""
    out: dict[str, Callable[[list[torch.Tensor], int], np.ndarray]] = {
        "rounded": lambda planes, s: codes(planes[:1], 0, s)[0],
        "TPDF +-1 LSB": lambda planes, s: codes(planes[:1], 1.0, s)[0],
        "TPDF +-0.5 LSB": lambda planes, s: codes(planes[:1], 0.5, s)[0],
    }
    if available("libx265"):
        out["x265 CRF 18, rounded"] = lambda planes, s: through_x265(codes(planes, 0, s))
        out["x265 CRF 18, TPDF +-1 LSB"] = lambda planes, s: through_x265(codes(planes, 1.0, s))
    return out


def even(rgb: np.ndarray) -> np.ndarray:
    return rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, help="a folder of real banded-N.png frames (FRAMES)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--n", type=int, default=12, help="procedural clean scenes (default 12)")
    args = ap.parse_args()
    pictures: dict[str, list[np.ndarray]] = {}
    if args.reference is not None and args.reference.is_dir():
        deb = Debander.load(args.weights, device="cpu")
        frames = folder_set(args.reference)
        pictures[f"reference frames, banded ({len(frames)})"] = [even(p.degraded) for p in frames]
        pictures[f"reference frames, debanded ({len(frames)})"] = [even(deb.restore(p.degraded)) for p in frames]
    else:
        print(f"no reference frames ({args.reference or 'no --reference'}); procedural scenes only\n")
    scenes = synthetic_set("rgb-6bit", args.n)
    pictures[f"procedural clean scenes ({args.n}, 6-bit set's)"] = [even(p.clean) for p in scenes]
    print("CAMBI mlc4 (default CAMBI in brackets), mean over the pictures\n")
    table = ways()
    print("| pictures | " + " | ".join(table) + " |")
    print("|---|" + "---|" * len(table))
    for name, images in pictures.items():
        planes = [planes_420(rgb) for rgb in images]
        cells = []
        for way in table.values():
            lumas = [way(p, 17 * i) for i, p in enumerate(planes)]
            mlc4 = np.mean([cambi(y, max_log_contrast=4) for y in lumas])
            default = np.mean([cambi(y) for y in lumas])
            cells.append(f"{mlc4:.2f} ({default:.3f})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

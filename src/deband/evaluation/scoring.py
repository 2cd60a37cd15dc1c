"""Scoring for `deband eval`: the methods compared, one row of mean metrics per method and set,
and the Markdown tables. CAMBI is always scored on the output rounded to 10-bit luma *without*
dither.

"Detail kept" (`detail_kept`) is the share of the clean image's fine detail that an output
keeps outside the regions where 8-bit delivery bands. High-pass: an image minus its Gaussian
blur (sigma `HIGHPASS_SIGMA` = 2 px), per R'G'B' channel. Detail region: the pixels where the
clean high-pass RMS, averaged over a Gaussian window (sigma `LOCAL_SIGMA` = 4 px), reaches
`DETAIL_FLOOR`, a quarter of an 8-bit code (the RMS of a sinusoid 0.7 codes peak to peak).
Elsewhere the clean image is smooth enough for 8-bit rounding to turn its variation into
steps: there is no detail to keep there, and smoothing is the debander's job. Over the
detail region, with o and c the output's and the clean image's high-pass:

    kept = 100 * <o, c> / max(|o|^2, |c|^2)   (percent)

By Cauchy-Schwarz it is at most 100, reached only when o == c. Blurring the output lowers
<o, c> (a Gaussian blur of sigma 2 keeps under half); adding noise or over-sharpening raises
|o|^2 without raising <o, c>, so neither can push it up: the score cannot be gamed by noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

from deband.evaluation.baselines import FILTERS, ffmpeg_filter
from deband.evaluation.evalsets import Pair
from deband.io.pixels import rgb_to_ycbcr
from deband.metrics import cambi_rgb, psnr, ssim

CLEAN_REFERENCE = "clean reference"  # the clean images' own scores: the floor
SMOOTH_REFERENCE = "clean without grain/texture"  # the clean scenes without grain or texture
BANDED_INPUT = "banded input"  # the degraded images as they are

METRICS = ("psnr", "psnr_y", "psnr_cb", "psnr_cr", "ssim", "cambi", "cambi4", "detail", "s_per_mp")
HEADINGS = {"psnr": "PSNR dB", "psnr_y": "Y' dB", "psnr_cb": "Cb dB", "psnr_cr": "Cr dB", "ssim": "SSIM",
            "cambi": "CAMBI", "cambi4": "CAMBI mlc4", "detail": "detail kept %", "s_per_mp": "s/MP"}
DECIMALS = {"psnr": 2, "psnr_y": 2, "psnr_cb": 2, "psnr_cr": 2, "ssim": 4, "detail": 1}  # digits shown; the others 3
PLANES = ("psnr_y", "psnr_cb", "psnr_cr")  # PSNR of Y', Cb and Cr (BT.709, full range; peak 1)

HIGHPASS_SIGMA = 2.0  # px: high-pass = image minus its Gaussian blur of this sigma
LOCAL_SIGMA = 4.0  # px: the window over which the clean image's high-pass energy is measured
DETAIL_FLOOR = 0.25 / 255  # high-pass RMS under which 8-bit delivery bands rather than keeps detail


@dataclass(frozen=True)
class Ours:
    """Our restorer as a method: restores a pair's degraded image with `steps` INDI steps
    from time `strength`."""

    restore: Callable[[np.ndarray], np.ndarray]
    steps: int
    strength: float = 1.0
    guard: bool = True  # the detail guard (`deband.restore.guard`) is on

    def __call__(self, p: Pair) -> np.ndarray:
        return self.restore(p.degraded)

    @property
    def label(self) -> str:
        text = f"deband {self.steps} step{'s' * (self.steps > 1)}"
        text += f", strength {self.strength:g}" if self.strength != 1 else ""
        return text + ("" if self.guard else ", no guard")


Method = Callable[[Pair], np.ndarray] | Ours  # a pair -> (h, w, 3) float32 on [0, 1]


@dataclass
class Row:
    method: str  # the label shown in tables
    set: str
    psnr: float = float("nan")
    psnr_y: float = float("nan")
    psnr_cb: float = float("nan")
    psnr_cr: float = float("nan")
    ssim: float = float("nan")
    cambi: float = float("nan")
    cambi4: float = float("nan")  # CAMBI with max_log_contrast 4 (sees 6-7-bit steps)
    detail: float = float("nan")  # % of the clean high-pass kept outside banded regions (detail_kept)
    s_per_mp: float = float("nan")
    steps: int | None = None  # INDI steps, for our restorer's rows
    strength: float | None = None  # start time t, for our restorer's rows
    guard: bool | None = None  # whether the detail guard was on, for our restorer's rows

    @property
    def ours(self) -> bool:
        return self.steps is not None

    @property
    def ours_full(self) -> bool:
        """Our restorer at full strength with its guard: the rows that trade steps."""
        return self.ours and self.strength == 1.0 and self.guard is not False


def highpass(img: np.ndarray) -> np.ndarray:
    """img minus its Gaussian blur (sigma HIGHPASS_SIGMA, edges reflected).
    img: (h, w, 3) float32 on [0, 1]; returns the same shape, float32, about [-1, 1]."""
    img = np.ascontiguousarray(img, dtype=np.float32)
    return img - cv2.GaussianBlur(img, (0, 0), HIGHPASS_SIGMA, borderType=cv2.BORDER_REFLECT)


def local_rms(img: np.ndarray) -> np.ndarray:
    """The high-pass RMS around each pixel: mean over channels of highpass(img)**2, averaged
    over a Gaussian window (sigma LOCAL_SIGMA), square-rooted. img: (h, w, 3) float on
    [0, 1]; returns (h, w) float32 in the same units (1 / 255 is one 8-bit code)."""
    energy = (highpass(img) ** 2).mean(axis=2)
    return np.sqrt(cv2.GaussianBlur(energy, (0, 0), LOCAL_SIGMA, borderType=cv2.BORDER_REFLECT).clip(0))


def detail_region(clean: np.ndarray) -> np.ndarray:
    """Where the clean image has detail that 8-bit delivery does not turn into bands: its
    `local_rms` is at least DETAIL_FLOOR. clean: (h, w, 3) float on [0, 1]. Returns an
    (h, w) bool mask."""
    return local_rms(clean) >= DETAIL_FLOOR


def detail_kept(out: np.ndarray, clean: np.ndarray) -> float:
    """Percent of the clean image's high-pass kept by `out` over `detail_region(clean)`:
    100 * <o, c> / max(|o|^2, |c|^2) (see the module docstring); at most 100, 100 only
    when the output's detail there equals the clean image's. NaN when the clean image has
    no detail region. out, clean: (h, w, 3) float on [0, 1]."""
    mask = detail_region(clean)
    if not mask.any():
        return float("nan")
    o, c = highpass(out)[mask].astype(np.float64), highpass(clean)[mask].astype(np.float64)  # (k, 3)
    return float(100 * (o * c).sum() / max((o * o).sum(), (c * c).sum()))


def score(method: Method, pairs: list[Pair], set_name: str, label: str, with_cambi: bool = True) -> Row:
    """Mean PSNR/SSIM and detail kept (when there is a clean reference), CAMBI both ways,
    seconds per megapixel."""
    cols: dict[str, list[float]] = {k: [] for k in METRICS if k != "s_per_mp"}
    seconds, pixels = 0.0, 0
    for p in pairs:
        t0 = time.perf_counter()
        out = method(p)
        seconds += time.perf_counter() - t0
        pixels += out.shape[0] * out.shape[1]
        if p.clean is not None:
            a, b = (torch.from_numpy(np.ascontiguousarray(v)).permute(2, 0, 1) for v in (out, p.clean))
            cols["psnr"].append(psnr(a, b).item())
            for key, value in zip(PLANES, psnr(rgb_to_ycbcr(a)[:, None], rgb_to_ycbcr(b)[:, None])):
                cols[key].append(value.item())
            cols["ssim"].append(ssim(a, b).item())
            cols["detail"].append(detail_kept(out, p.clean))
        if with_cambi:
            cols["cambi"].append(cambi_rgb(out))
            cols["cambi4"].append(cambi_rgb(out, max_log_contrast=4))
    means = {k: finite_mean(v) for k, v in cols.items()}
    kind = {}
    if isinstance(method, Ours):
        kind = {"steps": method.steps, "strength": method.strength, "guard": method.guard}
    return Row(label, set_name, s_per_mp=seconds / (pixels / 1e6), **means, **kind)


def finite_mean(values: list[float]) -> float:
    """The mean of the finite values; NaN when there are none."""
    kept = [v for v in values if np.isfinite(v)]
    return float(np.mean(kept)) if kept else float("nan")


def baseline(name: str) -> Method:
    return lambda p: ffmpeg_filter(p.degraded, name)


def identity(p: Pair) -> np.ndarray:
    return p.degraded


def clean_reference(pairs: list[Pair], set_name: str) -> Row:
    """The clean images' own CAMBI: the floor a restorer can reach (not 0: see the README)."""
    clean = [Pair(p.clean, p.clean, p.name) for p in pairs if p.clean is not None]
    return score(identity, clean, set_name, CLEAN_REFERENCE)


def smooth_reference(pairs: list[Pair], set_name: str) -> Row:
    """CAMBI of the clean images without their grain or texture. Grain hides steps from CAMBI as
    dither does, so a grainy clean image can score far below its own smooth scene; where a codec
    has erased the grain, this is the floor for an output that does not invent grain."""
    smooth = [Pair(None, p.smooth, p.name) for p in pairs if p.smooth is not None]
    return score(identity, smooth, set_name, SMOOTH_REFERENCE)


def our_methods(
    weights: str | None, steps: list[int], strengths: list[float], device: str = "cpu", guard: bool = True
) -> dict:
    """label -> `Ours` for every strength and step count, in that order (with the detail
    guard, or without it when `guard` is False)."""
    from deband.restore.debander import Debander
    from deband.restore.guard import Guard

    methods: dict[str, Method] = {}
    for s in strengths:
        for n in steps:
            debander = Debander.load(weights, device, steps=n, strength=s, guard=Guard() if guard else None)
            method = Ours(debander.restore, n, s, guard)
            methods[method.label] = method
    return methods


def baseline_methods() -> dict[str, Method]:
    return {BANDED_INPUT: identity} | {name: baseline(name) for name in FILTERS}


def markdown(rows: list[Row], columns: tuple[str, ...] = METRICS) -> str:
    lines = ["| method | " + " | ".join(HEADINGS[c] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for r in rows:
        cells = [_fmt(getattr(r, c), c) for c in columns]
        lines.append(f"| {r.method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v: float, column: str) -> str:
    if np.isnan(v):
        return "–"
    return f"{v:.{DECIMALS.get(column, 3)}f}"


def as_dicts(rows: list[Row]) -> list[dict]:
    """The rows as printed in JSON: label, set and metrics."""
    return [{k: v for k, v in asdict(r).items() if k not in ("steps", "strength")} for r in rows]


def mean_rows(tables: list[list[Row]], set_name: str) -> list[Row]:
    """Row-wise mean over tables with the same methods in the same order."""
    out = []
    for rows in zip(*tables):
        values = {f: finite_mean([getattr(r, f) for r in rows]) for f in METRICS}
        out.append(Row(rows[0].method, set_name, **values, steps=rows[0].steps, strength=rows[0].strength))
    return out

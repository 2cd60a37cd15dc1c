"""The quality report of `deband eval --report`: quality.md from its template
(templates/quality.md), one table per set, and figures beside it (the steps trade-off,
zoomed crops of the most banded synthetic images, the most detailed parts of real frames).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from string import Template

import numpy as np

from deband.config import DEFAULT_STEPS
from deband.evaluation.baselines import FILTERS
from deband.evaluation.evalsets import Pair, folder_set, has_frames, seed_restored, synthetic_set
from deband.evaluation.scoring import (
    BANDED_INPUT,
    CLEAN_REFERENCE,
    PLANES,
    Method,
    Row,
    baseline,
    identity,
    markdown,
    our_methods,
)
from deband.io.outputs import atomic_output
from deband.metrics import cambi_rgb

TEMPLATE = Path(__file__).parents[1] / "templates" / "quality.md"
CROP_SETS = ("rgb-6bit", "luma6-chroma5")  # synthetic sets whose most banded images are cropped
CROP_POOL = 12  # images drawn from each of those sets
CROP_IMAGES = 3  # the most banded ones shown
CROP = 128  # side of a synthetic crop, pixels
REFERENCE_CROP = 160  # side of a real frame's crop, pixels

Window = tuple[slice, slice]


def centre_window(img: np.ndarray, crop: int) -> Window:
    h, w, _ = img.shape
    return slice((h - crop) // 2, (h + crop) // 2), slice((w - crop) // 2, (w + crop) // 2)


def detail_window(img: np.ndarray, crop: int) -> Window:
    """The crop x crop window with the most local contrast (edges, faces, text) in an image:
    where smearing would show first. img: (h, w, 3) float on [0, 1]."""
    import cv2

    luma = img.mean(axis=2).astype(np.float32)
    edges = np.abs(cv2.Sobel(luma, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(luma, cv2.CV_32F, 0, 1))
    energy = cv2.boxFilter(edges, -1, (crop, crop), normalize=True, borderType=cv2.BORDER_CONSTANT)
    h, w = luma.shape
    half = crop // 2
    inner = energy[half : h - crop + half + 1, half : w - crop + half + 1]  # windows wholly inside
    y, x = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return slice(y, y + crop), slice(x, x + crop)


def crop_panels(
    methods: dict[str, Method], pairs: list[Pair], crop: int = CROP, window: Callable[..., Window] = centre_window
) -> list[list[tuple[str, np.ndarray]]]:
    """For each pair: one window (chosen on the degraded image) of every method's output,
    then of the clean image when there is one."""
    panels = []
    for p in pairs:
        win = window(p.degraded, crop)
        row = [(label, m(p)[win]) for label, m in methods.items()]
        panels.append(row + ([("clean", p.clean[win])] if p.clean is not None else []))
    return panels


def default_row(rows: list[Row], steps: int = DEFAULT_STEPS) -> Row | None:
    """Our restorer's row at full strength and `steps` steps (else its first full-strength row)."""
    full = [r for r in rows if r.ours_full]
    return next((r for r in full if r.steps == steps), full[0] if full else None)


def summary(results: dict[str, list[Row]], steps: int = DEFAULT_STEPS) -> str:
    """One line per set with a banded input and our restorer: PSNR of the banded input, of
    each FFmpeg filter and ours (its gain over the input, and per plane), detail kept and CAMBI mlc4 from
    the input to ours, with the clean image's own. Empty when no set has both."""
    lines = []
    for name, rows in results.items():
        by = {r.method: r for r in rows}
        ours = default_row(rows, steps)
        if BANDED_INPUT not in by or ours is None:
            continue
        banded, clean = by[BANDED_INPUT], by.get(CLEAN_REFERENCE)
        filters = " | ".join(_num(by[f].psnr) if f in by else "–" for f in FILTERS)
        mlc4 = f"{_num(banded.cambi4)} → {_num(ours.cambi4)}" + (f" ({_num(clean.cambi4)})" if clean else "")
        gain = f"**{_num(ours.psnr)} ({_num(ours.psnr - banded.psnr, '+.2f')})**"
        planes = " / ".join(_num(getattr(ours, k) - getattr(banded, k), "+.2f") for k in PLANES)
        lines.append(f"| {name} | {_num(banded.psnr)} | {filters} | {gain} | {planes} "
                     f"| {_num(banded.detail, '.1f')} → {_num(ours.detail, '.1f')} | {mlc4} |")
    if not lines:
        return ""
    head = ["| set | banded input | " + " | ".join(FILTERS) + f" | **deband {steps} steps** (gain) "
            "| Y′ / Cb / Cr gain | detail kept %: input → deband | CAMBI mlc4: input → deband (clean) |",
            "|---" * (len(FILTERS) + 6) + "|"]
    return "\n".join(head + lines)


def _num(v: float, spec: str = ".2f") -> str:
    return "–" if np.isnan(v) else format(v, spec)


def report_text(results: dict[str, list[Row]], command: str, figures: dict[str, str], date: str | None = None) -> str:
    """quality.md's text: the template filled with the command, its date (default today),
    a summary of every set, the tables and the figures."""
    import datetime

    table = summary(results)
    lines = ["## Summary: PSNR dB against the clean image", "", table, ""] if table else []
    for name, rows in results.items():
        lines += [f"## {name}", "", markdown(rows), ""]
    for title, path in figures.items():
        lines += [f"## {title}", "", f"![{title}]({path})", ""]
    template = Template(TEMPLATE.read_text(encoding="utf-8").removesuffix("\n"))
    date = date or datetime.date.today().isoformat()
    return template.substitute(command=command, date=date, sections="\n".join(lines))


def write_report(results: dict[str, list[Row]], folder: Path, command: str, figures: dict[str, str]) -> Path:
    """folder/quality.md: the command, one table per set, and the figures beside it."""
    return write_markdown(results, folder / "quality.md", command, figures)


def write_markdown(
    results: dict[str, list[Row]], path: Path, command: str, figures: dict[str, str] | None = None
) -> Path:
    """The report's text (`report_text`) written to `path`, replacing it."""
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(report_text(results, command, figures or {}), encoding="utf-8")
    return Path(path)


def make_report(results: dict[str, list[Row]], folder: Path, command: str, weights: str | None,
                default_steps: int = DEFAULT_STEPS, reference: Path | None = None) -> Path:
    """quality.md plus its figures in `folder`: the steps trade-off, zoomed crops of the most
    banded synthetic images and, given real frames in `reference`, their most detailed parts."""
    from deband.evaluation.report import crops_figure, steps_plot

    folder.mkdir(parents=True, exist_ok=True)
    steps_plot(results, folder / "quality-steps.png")
    ours = next(iter(our_methods(weights, [default_steps], [1.0]).values()))
    methods = {"banded": identity, "ffmpeg deband": baseline("ffmpeg-deband"),
               "ffmpeg gradfun": baseline("ffmpeg-gradfun"), "deband (ours)": ours}
    pool = [p for name in CROP_SETS for p in synthetic_set(name, CROP_POOL)]
    pairs = sorted(pool, key=lambda p: -cambi_rgb(p.degraded, max_log_contrast=4))[:CROP_IMAGES]  # most banded
    crops_figure(crop_panels(methods, pairs), folder / "quality-crops.png")
    figures = {"Steps: distortion vs perception": "quality-steps.png", "Zoomed crops": "quality-crops.png"}
    if has_frames(reference):
        real = folder_set(reference)
        seeds = {"original implementation": seed_restored(reference)}
        picked = {"banded": identity} | (seeds if any(reference.glob("seed-restored-*.png")) else {})
        panels = crop_panels(picked | {"deband (ours)": ours}, real, REFERENCE_CROP, detail_window)
        crops_figure(panels, folder / "quality-reference-crops.png", boost=1.0)
        figures["Real frames: their most detailed parts, unboosted"] = "quality-reference-crops.png"
    return write_report(results, folder, command, figures)

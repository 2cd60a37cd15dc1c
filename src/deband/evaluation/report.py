"""Pictures people would rather look at than tables: training curves, crops."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from deband.io.outputs import atomic_output


def read_log(path: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """log.csv (step, key, value rows) -> key -> (steps, values)."""
    series: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            steps, values = series[row["key"]]
            steps.append(int(row["step"]))
            values.append(float(row["value"]))
    return dict(series)


def plot_training_log(log_csv: str | Path, out_png: str | Path) -> None:
    """Loss (smoothed) and validation PSNR against steps, as a small PNG."""
    plt = _plt()
    series = read_log(log_csv)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    steps, loss = map(np.asarray, series["loss"])
    k = max(1, len(loss) // 100)
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    ax1.semilogy(steps, loss, color="0.8", lw=0.5)
    ax1.semilogy(steps[k - 1 :], smooth, color="C0")
    ax1.set(xlabel="step", ylabel="training loss", title="loss")
    for key in sorted(k for k in series if k.startswith("psnr_")):
        ax2.plot(*series[key], marker=".", label=key.removeprefix("psnr_"))
    ax2.set(xlabel="step", ylabel="PSNR (dB)", title="held-out 6-bit scenes")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out_png)


def _save(fig, out_png: str | Path) -> None:
    """Write the figure as a PNG through `atomic_output` (replacing one there), then close it."""
    try:
        with atomic_output(out_png, overwrite=True) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        _plt().close(fig)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def steps_plot(results: dict, out_png: str | Path, set_name: str = "all synthetic (mean)") -> None:
    """INDI's distortion-perception trade-off as a PNG (see `steps_figure`)."""
    _save(steps_figure(results, set_name), out_png)


def steps_figure(results: dict, set_name: str = "all synthetic (mean)"):
    """PSNR (left) and CAMBI (right) of our restorer at full strength against its INDI steps,
    with the banded input and the clean floors as horizontal lines. results: set name -> rows
    (`deband.evaluation.scoring.Row`). Returns the matplotlib Figure."""
    from deband.evaluation.scoring import BANDED_INPUT, CLEAN_REFERENCE, SMOOTH_REFERENCE

    plt = _plt()
    table = results[set_name]
    rows = sorted((r for r in table if r.ours_full), key=lambda r: r.steps)
    steps = [r.steps for r in rows]
    clean = next((r for r in table if r.method == CLEAN_REFERENCE), None)
    smooth = next((r for r in table if r.method == SMOOTH_REFERENCE), None)
    banded = next(r for r in table if r.method == BANDED_INPUT)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    a1.semilogx(steps, [r.psnr for r in rows], "o-", label="deband")
    a1.axhline(banded.psnr, color="0.5", ls="--", label="banded input")
    a1.set(xlabel="INDI steps", ylabel="PSNR (dB)", title=f"fidelity, {set_name}")
    a2.semilogx(steps, [r.cambi for r in rows], "o-", label="CAMBI")
    a2.semilogx(steps, [r.cambi4 for r in rows], "s-", label="CAMBI mlc4")
    if clean is not None:
        a2.axhline(clean.cambi, color="C0", ls=":", label="clean (CAMBI)")
        a2.axhline(clean.cambi4, color="C1", ls=":", label="clean (mlc4)")
    if smooth is not None:
        a2.axhline(smooth.cambi, color="C0", ls="-.", lw=0.8, label="clean without grain (CAMBI)")
    a2.set(xlabel="INDI steps", ylabel="CAMBI (lower: less banding)", title="banding")
    for a in (a1, a2):
        a.set_xticks(steps, [str(s) for s in steps])
        a.legend(fontsize=7)
    fig.tight_layout()
    return fig


def crops_figure(panels: list[list[tuple[str, np.ndarray]]], out_png: str | Path, boost: float = 3.0) -> None:
    """The grid of `crops_grid` as a PNG."""
    _save(crops_grid(panels, boost), out_png)


def crops_grid(panels: list[list[tuple[str, np.ndarray]]], boost: float = 3.0):
    """A grid of zoomed crops: one row per image, one column per method, contrast x`boost`
    around each row's mean so that bands are visible (1: as they are).
    panels[i] = [(title, (h, w, 3) float on [0, 1])]. Returns the matplotlib Figure."""
    plt = _plt()
    rows, cols = len(panels), len(panels[0])
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), dpi=110, squeeze=False)
    for i, row in enumerate(panels):
        mean = row[0][1].mean(axis=(0, 1), keepdims=True)
        for j, (title, img) in enumerate(row):
            shown = np.clip(img if boost == 1 else (img - mean) * boost + 0.5, 0, 1)
            axes[i, j].imshow(shown, interpolation="nearest")
            axes[i, j].set_axis_off()
            if i == 0:
                axes[i, j].set_title(title, fontsize=8)
    fig.suptitle(f"zoomed crops, contrast x{boost:g}" if boost != 1 else "zoomed crops", fontsize=9)
    fig.tight_layout()
    return fig

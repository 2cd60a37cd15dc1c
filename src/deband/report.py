"""Pictures people would rather look at than tables: training curves, crops."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

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
    fig.savefig(out_png)
    plt.close(fig)

"""A tiny fake corpus for the data and pack tests: three train images and one held-out image
whose colour no train image comes near, so a test can tell whether it was ever drawn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from deband.io.files import write_image

HELD_OUT_RGB = (0.95, 0.05, 0.95)  # magenta: far from every train image's colours


def _smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth greenish-grey gradient with a little structure, (h, w, 3) uint16."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.2 + 0.5 * rng.random(3) * 0.5
    img = base + 0.2 * (xx[..., None] * rng.random(3) + yy[..., None] * rng.random(3))
    img[h // 3 : h // 2, w // 4 : w // 2] += 0.05  # a sharp-edged patch of real structure
    return np.round(np.clip(img, 0, 0.7) * 65535).astype(np.uint16)


def make_corpus(folder: Path, sizes: tuple[tuple[int, int], ...] = ((80, 120), (96, 64), (70, 90))) -> Path:
    """Write the fake corpus (16-bit PNGs and manifest.json) into folder; returns folder."""
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for i, (h, w) in enumerate(sizes):
        write_image(folder / f"train-{i}.png", _smooth_image(h, w, i))
        images.append({"file": f"train-{i}.png", "sha256": f"{i:064x}", "split": "train", "size": [w, h]})
    held = np.broadcast_to(np.round(np.array(HELD_OUT_RGB) * 65535).astype(np.uint16), (100, 100, 3))
    write_image(folder / "held-0.png", np.ascontiguousarray(held))
    images.insert(1, {"file": "held-0.png", "sha256": "f" * 64, "split": "held-out", "size": [100, 100]})
    (folder / "manifest.json").write_text(json.dumps({"images": images}))
    return folder

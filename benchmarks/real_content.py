"""Real content and faint detail: does a model leave faint detail alone and deband real frames?

Prints Markdown tables (PSNR in dB against the clean image; gain = output - input) for each
model given:

(a) faint detail, delivered as rounded 8-bit R'G'B' with nothing to deband: colour noise of
    2, 3 and 4 codes std, luma grain of 2 and 3 codes, a +-4-code grating of period 6 px and a
    terrain-like field (fractal height through a colormap, 1-px rivers 3 codes darker). These
    are built here, independently of the training generators (`deband.synthesis.faint`).
(b) held-out corpus images (split "held-out" of a `deband corpus build` manifest, never trained
    on), each banded as a whole by four delivery mechanisms, then the smoothest of eight
    384-px crops scored.
(c) with --validation, the trainer's procedural validation (12 scenes at 6 bits, 1 and 4 INDI
    steps).

    PYTHONPATH=src python benchmarks/real_content.py src/deband/weights/default.safetensors \
        runs/real1/model.safetensors --corpus CORPUS --validation
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from deband.data.pack import PackConfig, choose_crop
from deband.io.pixels import quantise
from deband.metrics import psnr
from deband.restore.debander import Debander
from deband.synthesis.delivery import dark_lift, requantise, ten_to_eight, through_codec
from deband.synthesis.sources import fractal_noise, load_clean

SIZE = 256
C = 1 / 255


def _base(tone: tuple[float, float, float], size: int = SIZE) -> torch.Tensor:
    """A flat tone with a gentle 6-code ramp, (3, size, size)."""
    ramp = torch.linspace(0, 6 * C, size)[None, None, :].expand(3, size, size)
    return torch.tensor(tone)[:, None, None] + ramp


def _terrain(size: int = SIZE) -> torch.Tensor:
    g = torch.Generator().manual_seed(77)
    h = fractal_noise(size, size, g, octaves=5, base=3)[0]
    h = (h - h.min()) / (h.max() - h.min())
    stops = torch.tensor([[0.30, 0.42, 0.28], [0.45, 0.47, 0.30], [0.52, 0.45, 0.36], [0.60, 0.58, 0.55]])
    pos = h * 3
    i = pos.floor().long().clamp(max=2)
    t = (pos - i)[None]
    base = stops[i].permute(2, 0, 1) * (1 - t) + stops[i + 1].permute(2, 0, 1) * t
    n = fractal_noise(size, size, g, octaves=4, base=4)[0]
    line = ((n[:, 1:] > 0) != (n[:, :-1] > 0)).float()  # 1-px lines where the field changes sign
    river = torch.nn.functional.pad(line, (0, 1))[None]
    return base + river * torch.tensor([-3.0, -2.0, 0.5])[:, None, None] * C


def faint_probe() -> dict[str, torch.Tensor]:
    """name -> clean (3, SIZE, SIZE) on [0, 1]."""
    g = torch.Generator().manual_seed(5)
    out = {}
    for std in (2, 3, 4):  # on a skin tone
        noise = torch.randn(3, SIZE, SIZE, generator=g) * std * C
        out[f"colour noise {std} codes std"] = _base((0.62, 0.48, 0.40)) + noise
    for std in (2, 3):  # in the dark
        grain = torch.randn(1, SIZE, SIZE, generator=g) * std * C
        out[f"luma grain {std} codes std"] = _base((0.12, 0.13, 0.12)) + grain
    axis = torch.arange(SIZE, dtype=torch.float32)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    grating = torch.sin((xx * math.cos(0.5) + yy * math.sin(0.5)) * 2 * math.pi / 6)
    out["grating +-4 codes, 6 px"] = _base((0.75, 0.76, 0.78)) + 4 * C * grating[None]
    out["terrain with 1-px rivers, 3 codes"] = _terrain()
    return {k: v.clamp(0, 1) for k, v in out.items()}


MECHANISMS = {
    "4:2:0, Y' 6 bits Cb/Cr 6 bits (trunc)": lambda x: requantise(x, 6, 6, "trunc"),
    "10 -> 8 bits (trunc, 4:2:0)": lambda x: ten_to_eight(x, "trunc"),
    "dark lift (white 0.25, gamma 1.4)": lambda x: dark_lift(x, 0.25, 1.4),
    "H.264 CRF 36": lambda x: through_codec(x, "libx264", 36, "medium"),
}


def corpus_crops(corpus: Path) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """mechanism -> [(clean, banded) crops of the held-out images], each (3, 384, 384)."""
    entries = json.loads((corpus / "manifest.json").read_text())["images"]
    held = [corpus / e["file"] for e in entries if e["split"] == "held-out"]
    cfg = PackConfig(size=384, candidates=8, detailed=0.0)
    out = {name: [] for name in MECHANISMS}
    for k, path in enumerate(held):
        img = load_clean(path)
        img = img[:, : min(img.shape[1], 720), : min(img.shape[2], 1280)]
        if min(img.shape[1:]) < 384:
            continue
        top, left, _ = choose_crop(img, cfg, torch.Generator().manual_seed(k))
        for name, band in MECHANISMS.items():
            banded = band(img)
            out[name].append(tuple(x[:, top : top + 384, left : left + 384] for x in (img, banded)))
    return out


def _db(x: torch.Tensor, clean: torch.Tensor) -> float:
    return psnr(x[None], clean[None]).item()


def run(weights: list[str], corpus: Path | None, validation: bool, steps: int) -> None:
    models = {w: Debander.load(w, device="cpu", steps=steps) for w in weights}
    names = [Path(w).parent.name + "/" + Path(w).name for w in weights]
    print(f"\n### (a) faint detail, rounded 8-bit input ({steps} INDI steps)\n")
    print("| scene | input | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names))
    gains = {w: [] for w in weights}
    for scene, clean in faint_probe().items():
        x = quantise(clean, 8)
        row = []
        for w, m in models.items():
            out = m.restore_batch(x[None])[0]
            gains[w].append(_db(out, clean) - _db(x, clean))
            row.append(f"{_db(out, clean):.2f} ({gains[w][-1]:+.2f})")
        print(f"| {scene} | {_db(x, clean):.2f} | " + " | ".join(row) + " |")
    print("| mean gain | | " + " | ".join(f"{np.mean(gains[w]):+.2f}" for w in weights) + " |")
    if corpus is not None:
        print(f"\n### (b) held-out corpus crops, delivery banding ({steps} INDI steps)\n")
        print("| mechanism | n | input | " + " | ".join(names) + " |\n|---|---|---|" + "---|" * len(names))
        gains = {w: [] for w in weights}
        for name, pairs in corpus_crops(corpus).items():
            ins = [_db(b, c) for c, b in pairs]
            row = []
            for w, m in models.items():
                g = [_db(m.restore_batch(b[None])[0], c) - i for (c, b), i in zip(pairs, ins)]
                gains[w] += g
                row.append(f"{np.mean(g):+.2f}")
            print(f"| {name} | {len(pairs)} | {np.mean(ins):.2f} | " + " | ".join(row) + " |")
        print("| mean gain | | | " + " | ".join(f"{np.mean(gains[w]):+.2f}" for w in weights) + " |")
    if validation:
        from deband.data.pairs import validation_set
        from deband.training.loop import validate

        print("\n### (c) procedural validation (12 scenes, 6 bits)\n")
        val = validation_set(12, 384)
        for w, name in zip(weights, names):
            print(name, {k: round(v, 3) for k, v in validate(models[w].model, val, torch.device("cpu")).items()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+", help=".safetensors models to compare")
    p.add_argument("--corpus", type=Path, help="a corpus folder whose held-out images to band")
    p.add_argument("--validation", action="store_true", help="also run the trainer's procedural validation")
    p.add_argument("--steps", type=int, default=2, help="INDI steps (default 2, as deband)")
    a = p.parse_args()
    torch.set_grad_enabled(False)
    run(a.weights, a.corpus, a.validation, a.steps)


if __name__ == "__main__":
    main()

"""Benchmark sets and scoring: ours against FFmpeg's debanders on the same images.

Set (a) is paired: procedural scenes generated reproducibly with seeds unlike training's,
banded four ways. Set (b) is the folder of real banded frames given by the user (no clean
reference: CAMBI only), optionally with another restorer's outputs as a method.
CAMBI is always scored on the output rounded to 10-bit luma *without* dither.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from deband.baselines import FILTERS, ffmpeg_filter
from deband.config import DEFAULT_STEPS
from deband.degrade import dark_stretch, requantize_ycbcr, video_codec
from deband.metrics import cambi_rgb, psnr, ssim
from deband.pixels import quantise
from deband.sources import bundled_photos, procedural_scene, procedural_scene_layers

Method = Callable[["Pair"], np.ndarray]  # a pair's degraded image -> (h, w, 3) float32 on [0, 1]

# set name -> degradation of a clean (3, h, w) tensor
DEGRADATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "rgb-6bit": lambda x: quantise(x, 6),
    "luma6-chroma5": lambda x: requantize_ycbcr(x, 6, 5),
    "dark-8bit-x4": lambda x: dark_stretch(x, 8, 4.0),
    "h264-crf34": lambda x: video_codec(x, "libx264", 34),
}


@dataclass
class Pair:
    clean: np.ndarray | None  # (h, w, 3) float32 on [0, 1]; None when there is no reference
    degraded: np.ndarray  # (h, w, 3) float32 on [0, 1]
    name: str = ""
    smooth: np.ndarray | None = None  # the clean image without its grain or fine texture, when known


@dataclass
class Row:
    method: str
    set: str
    psnr: float = float("nan")
    ssim: float = float("nan")
    cambi: float = float("nan")
    cambi4: float = float("nan")  # CAMBI with max_log_contrast 4 (sees 6-7-bit steps)
    s_per_mp: float = float("nan")


METRICS = ("psnr", "ssim", "cambi", "cambi4", "s_per_mp")


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy().copy()


def synthetic_set(name: str, n: int = 12, size: int = 384, seed: int = 20_000) -> list[Pair]:
    """n procedural scenes (held out: seeds unlike training's) banded by DEGRADATIONS[name]."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for i in range(n):
        smooth, clean = procedural_scene_layers(size, size, g)
        pairs.append(Pair(_hwc(clean), _hwc(DEGRADATIONS[name](clean)), f"{name}-{i}", _hwc(smooth)))
    return pairs


def unbanded_set(size: int = 384, textures: int = 6, seed: int = 30_000) -> list[Pair]:
    """Images with nothing to deband, delivered at 8 bits: the bundled photos (downscaled, so
    high precision) and scenes under film grain and fine texture. A restorer must leave them be."""
    clean = [photo[:, :size, :size] for photo in bundled_photos()]
    g = torch.Generator().manual_seed(seed)
    for _ in range(textures):
        scene = procedural_scene(size, size, g)
        grain = torch.randn((1, size, size), generator=g) * (0.01 + 0.02 * torch.rand((), generator=g))
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        grating = 0.03 * torch.sin((xx * 0.9 + yy * 0.4) * (1.0 + torch.rand((), generator=g)))
        clean.append((scene + grain + grating).clamp(0, 1))
    return [Pair(_hwc(c), quantise(_hwc(c), 8), f"unbanded-{i}") for i, c in enumerate(clean)]


def folder_set(folder: Path, pattern: str = "banded-*.png") -> list[Pair]:
    """Real banded frames with no clean reference, read exactly."""
    from deband.io import read_image

    return [Pair(None, read_image(p).rgb(), p.name) for p in sorted(folder.glob(pattern), key=_natural)]


def _natural(p: Path) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def files_method(folder: Path, rename: Callable[[str], str]) -> Method:
    """A 'method' that returns another restorer's saved output for each input (by file name)."""
    from deband.io import read_image

    return lambda p: read_image(folder / rename(p.name)).rgb()


def score(method: Method, pairs: list[Pair], set_name: str, label: str, with_cambi: bool = True) -> Row:
    """Mean PSNR/SSIM (when there is a clean reference), CAMBI both ways, seconds per megapixel."""
    cols: dict[str, list[float]] = {"psnr": [], "ssim": [], "cambi": [], "cambi4": []}
    seconds, pixels = 0.0, 0
    for p in pairs:
        t0 = time.perf_counter()
        out = method(p)
        seconds += time.perf_counter() - t0
        pixels += out.shape[0] * out.shape[1]
        if p.clean is not None:
            a, b = (torch.from_numpy(np.ascontiguousarray(v)).permute(2, 0, 1) for v in (out, p.clean))
            cols["psnr"].append(psnr(a, b).item())
            cols["ssim"].append(ssim(a, b).item())
        if with_cambi:
            cols["cambi"].append(cambi_rgb(out))
            cols["cambi4"].append(cambi_rgb(out, max_log_contrast=4))
    means = {k: float(np.mean(v)) if v else float("nan") for k, v in cols.items()}
    return Row(label, set_name, s_per_mp=seconds / (pixels / 1e6), **means)


def baseline(name: str) -> Method:
    return lambda p: ffmpeg_filter(p.degraded, name)


def identity(p: Pair) -> np.ndarray:
    return p.degraded


def clean_reference(pairs: list[Pair], set_name: str) -> Row:
    """The clean images' own CAMBI: the floor a restorer can reach (not 0: see the README)."""
    clean = [Pair(p.clean, p.clean, p.name) for p in pairs if p.clean is not None]
    return score(identity, clean, set_name, "clean reference")


def smooth_reference(pairs: list[Pair], set_name: str) -> Row:
    """CAMBI of the clean images without their grain or texture. Grain hides steps from CAMBI as
    dither does, so a grainy clean image can score far below its own smooth scene; where a codec
    has erased the grain, this is the floor for an output that does not invent grain."""
    smooth = [Pair(None, p.smooth, p.name) for p in pairs if p.smooth is not None]
    return score(identity, smooth, set_name, "clean without grain/texture")


def our_methods(weights: str | None, steps: list[int], strengths: list[float], device: str = "cpu") -> dict:
    from deband.restore import Debander

    methods: dict[str, Method] = {}
    for s in strengths:
        for n in steps:
            label = f"deband {n} step{'s' * (n > 1)}" + (f", strength {s:g}" if s != 1 else "")
            restore = Debander.load(weights, device, steps=n, strength=s).restore
            methods[label] = lambda p, restore=restore: restore(p.degraded)
    return methods


def baseline_methods() -> dict[str, Method]:
    return {"banded input": identity} | {name: baseline(name) for name in FILTERS}


def markdown(rows: list[Row], columns: tuple[str, ...] = METRICS) -> str:
    heads = {"psnr": "PSNR dB", "ssim": "SSIM", "cambi": "CAMBI", "cambi4": "CAMBI mlc4", "s_per_mp": "s/MP"}
    lines = ["| method | " + " | ".join(heads[c] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for r in rows:
        cells = [_fmt(getattr(r, c), c) for c in columns]
        lines.append(f"| {r.method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v: float, column: str) -> str:
    if np.isnan(v):
        return "–"
    return f"{v:.{ {'psnr': 2, 'ssim': 4}.get(column, 3) }f}"


def as_dicts(rows: list[Row]) -> list[dict]:
    return [asdict(r) for r in rows]


def run_eval(
    weights: str | None = None,
    n: int = 12,
    size: int = 384,
    steps: tuple[int, ...] = (1, 2, 4, 8, 30),
    strengths: tuple[float, ...] = (1.0, 0.7, 0.5),
    reference: Path | None = None,
    device: str = "cpu",
    default_steps: int = DEFAULT_STEPS,
) -> dict[str, list[Row]]:
    """Every method on every set. Returns set name -> rows (the clean reference's rows first)."""
    ours = our_methods(weights, list(steps), [1.0], device)
    ours |= {k: v for s in strengths if s != 1.0 for k, v in our_methods(weights, [default_steps], [s], device).items()}
    methods = baseline_methods() | ours
    results: dict[str, list[Row]] = {}
    for name in DEGRADATIONS:
        pairs = synthetic_set(name, n, size)
        floors = [clean_reference(pairs, name), smooth_reference(pairs, name)]
        results[name] = floors + [score(m, pairs, name, k) for k, m in methods.items()]
    results["all synthetic (mean)"] = _mean_rows([results[name] for name in DEGRADATIONS], "all synthetic (mean)")
    photos = unbanded_set(size)
    results["unbanded photos"] = [score(m, photos, "unbanded photos", k, with_cambi=False) for k, m in methods.items()]
    if reference is not None and any(reference.glob("banded-*.png")):
        real = folder_set(reference)
        seeds = {"original implementation": files_method(reference, lambda s: s.replace("banded", "seed-restored"))}
        picked = {k: m for k, m in methods.items() if "strength" not in k} | seeds
        results["reference examples"] = [score(m, real, "reference examples", k) for k, m in picked.items()]
    return results


def _mean_rows(tables: list[list[Row]], set_name: str) -> list[Row]:
    """Row-wise mean over tables with the same methods in the same order."""
    out = []
    for rows in zip(*tables):
        values = {f: float(np.mean([getattr(r, f) for r in rows])) for f in METRICS}
        out.append(Row(rows[0].method, set_name, **values))
    return out


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
    methods: dict[str, Method], pairs: list[Pair], crop: int = 128, window: Callable[..., Window] = centre_window
) -> list[list[tuple[str, np.ndarray]]]:
    """For each pair: one window (chosen on the degraded image) of every method's output,
    then of the clean image when there is one."""
    panels = []
    for p in pairs:
        win = window(p.degraded, crop)
        row = [(label, m(p)[win]) for label, m in methods.items()]
        panels.append(row + ([("clean", p.clean[win])] if p.clean is not None else []))
    return panels


def write_report(results: dict[str, list[Row]], folder: Path, command: str, figures: dict[str, str]) -> Path:
    """benchmarks/quality.md: the command, one table per set, and the figures beside it."""
    lines = ["# Quality report", "", "Generated by:", "", "```sh", command, "```", ""]
    lines += [
        "PSNR/SSIM are against the clean image; CAMBI (libvmaf's banding index, lower is less banding)",
        "is scored on each output rounded to 10-bit luma without dither, with default parameters and",
        "with max_log_contrast 4, which also sees coarse 6-7-bit steps. The clean reference's own",
        "CAMBI is the floor (a smooth 16-bit image rounded to 10 bits still has one-code steps).",
        "Grain hides steps from CAMBI as dither does, so the same scenes without their grain or",
        "texture are scored too: where a codec erases the grain (H.264), that is the floor for an",
        "output that does not invent grain.",
        "s/MP is wall time per megapixel on this machine's CPU, in the same run for every method.",
        "",
    ]
    for name, rows in results.items():
        lines += [f"## {name}", "", markdown(rows), ""]
    for title, path in figures.items():
        lines += [f"## {title}", "", f"![{title}]({path})", ""]
    out = folder / "quality.md"
    out.write_text("\n".join(lines))
    return out


def make_report(results: dict[str, list[Row]], folder: Path, command: str, weights: str | None,
                default_steps: int = DEFAULT_STEPS, reference: Path | None = None) -> Path:
    """quality.md plus its figures in `folder`: the steps trade-off, zoomed crops of the most
    banded synthetic images and, given real frames in `reference`, their most detailed parts."""
    from deband.report import crops_figure, steps_plot

    folder.mkdir(parents=True, exist_ok=True)
    steps_plot(results, folder / "quality-steps.png")
    ours = our_methods(weights, [default_steps], [1.0])
    methods = {"banded": identity, "ffmpeg deband": baseline("ffmpeg-deband"),
               "ffmpeg gradfun": baseline("ffmpeg-gradfun")} | {"deband (ours)": next(iter(ours.values()))}
    pool = synthetic_set("rgb-6bit", 12) + synthetic_set("luma6-chroma5", 12)
    pairs = sorted(pool, key=lambda p: -cambi_rgb(p.degraded, max_log_contrast=4))[:3]  # the most banded
    crops_figure(crop_panels(methods, pairs), folder / "quality-crops.png")
    figures = {"Steps: distortion vs perception": "quality-steps.png", "Zoomed crops": "quality-crops.png"}
    if reference is not None and any(reference.glob("banded-*.png")):
        real = folder_set(reference)
        seeds = {"original implementation": files_method(reference, lambda s: s.replace("banded", "seed-restored"))}
        picked = {"banded": identity} | (seeds if any(reference.glob("seed-restored-*.png")) else {})
        panels = crop_panels(picked | {"deband (ours)": methods["deband (ours)"]}, real, 160, detail_window)
        crops_figure(panels, folder / "quality-reference-crops.png", boost=1.0)
        figures["Real frames: their most detailed parts, unboosted"] = "quality-reference-crops.png"
    return write_report(results, folder, command, figures)

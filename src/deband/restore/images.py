"""The image job: read, restore, write (atomically), and an optional comparison picture;
a batch of files and folders; the banding map of `deband inspect`. Every front end that
restores an image file (the CLI, the web page, Ray tasks) reads and restores it through
`restore_file` and makes its codes with `output_codes`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from deband.errors import DebandError, InputError, ResourceError
from deband.io.files import DEFAULT_MAX_PIXELS, READ_SUFFIXES, Picture, check_image_path, read_image, write_image
from deband.io.folders import FolderReport, Job, gather, output_folder, plan
from deband.io.outputs import check_output
from deband.io.pixels import from_codes, to_codes
from deband.restore.debander import Debander


@dataclass(frozen=True)
class ImageOptions:
    bit_depth: int = 16  # 16 keeps the restored gradient; 8 is dithered
    suffix: str = ".png"  # output format when writing into a folder
    overwrite: bool = False
    compare: bool = False  # also write NAME-compare.png: before | after, and contrast-boosted
    max_pixels: int | None = DEFAULT_MAX_PIXELS


@dataclass
class BatchReport(FolderReport):
    """What a batch made (`written`), and what it refused, skipped or left out."""

    written: list[Path] = field(default_factory=list)


def compare_path(dst: Path) -> Path:
    """Where the comparison picture of dst goes: NAME-compare.png beside it."""
    return dst.with_name(dst.stem + "-compare.png")


def image_job(src: Path, dst: Path, opts: ImageOptions) -> Job:
    """The files restoring src into dst writes: dst, and its comparison picture if asked for."""
    return Job(src, (dst, compare_path(dst)) if opts.compare else (dst,))


def plan_batch(paths: list[Path], out: Path, opts: ImageOptions) -> tuple[list[tuple[Path, Path]], BatchReport]:
    """The (input, output) pairs to make from image files and folders, and a report of what
    was left out, skipped or refused before any work (the policy of `deband.io.folders`).

    One file goes to `out` itself when that is not a folder and has a suffix (which must be
    one `write_image` writes); otherwise `out` is a folder, made if missing, that gets
    NAME + opts.suffix for each input, and images already there are skipped. Raises
    InputError (no image), OutputError (bad output name, two inputs onto one output).
    """
    out, report = Path(out), BatchReport()
    inputs = gather(paths, READ_SUFFIXES, report)
    if not inputs:
        raise InputError("no images found in the given folders")
    folders = [p for p in map(Path, paths) if p.is_dir()]
    into_folder = bool(folders) or len(inputs) > 1 or out.is_dir() or not out.suffix
    if into_folder:
        output_folder(out, folders)
        jobs = [image_job(src, out / (src.stem + opts.suffix), opts) for src in inputs]
    else:
        check_image_path(out, opts.bit_depth)
        jobs = [image_job(inputs[0], out, opts)]
    todo = plan(jobs, opts.overwrite, into_folder, report)
    return [(job.src, job.dst) for job in todo], report


def process_image(src: Path, dst: Path, debander: Debander, opts: ImageOptions, progress: bool = False) -> None:
    """Restore one file into dst (and its comparison picture). Raises a DebandError subclass
    on any user-facing failure.

    Every output is checked before the work starts (SameFileError, OutputExistsError, OutputError).
    """
    outputs = image_job(src, dst, opts).outputs
    for path in outputs:
        check_output(path, opts.overwrite, sources=[src])
    pic, restored = restore_file(src, debander, opts.max_pixels, progress)
    write_image(dst, output_codes(restored, opts.bit_depth, debander.seed), pic.icc, opts.overwrite, sources=[src])
    if opts.compare:
        write_image(outputs[1], comparison(from_codes(pic.pixels), restored), None, opts.overwrite, sources=[src])


def restore_file(
    src: Path, debander: Debander, max_pixels: int | None, progress: bool = False
) -> tuple[Picture, np.ndarray]:
    """Read src (refused over `max_pixels`) and restore it: the picture as read, and the
    restored pixels, float32 on [0, 1] in its shape. Raises InputError, UnsupportedError,
    TooManyPixelsError, or ResourceError when out of memory, naming src."""
    pic = read_image(src, max_pixels)
    bar = tqdm(total=None, unit="tile", desc=src.name, leave=False, disable=not progress)
    try:
        restored = debander.restore(pic.pixels, on_tile=_follow(bar))
    except MemoryError:
        raise ResourceError(f"{src}: out of memory") from None
    finally:
        bar.close()
    return pic, restored


def output_codes(restored: np.ndarray, bit_depth: int, seed: int) -> np.ndarray:
    """The codes written for restored pixels (float32 on [0, 1]): 16 bits rounded, or 8 bits
    with the seeded ±1 LSB dither, so the bands do not come back."""
    return to_codes(restored, bit_depth, dither=bit_depth == 8, seed=seed)


def _follow(bar: tqdm):
    """An on_tile callback that moves a progress bar."""

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.reset(total)
        bar.n = done
        bar.refresh()

    return update


def run_batch(
    inputs: list[Path], out: Path, debander: Debander, opts: ImageOptions, progress: bool = True
) -> BatchReport:
    """Restore every input (image files and folders, see `plan_batch`); failures are
    collected, not raised, so the batch goes on."""
    pairs, report = plan_batch(inputs, out, opts)
    bar = tqdm(pairs, disable=not progress, unit="image")
    for src, dst in bar:
        bar.set_postfix_str(src.name)
        try:
            process_image(src, dst, debander, opts, progress)
            report.written.append(dst)
        except DebandError as e:
            report.failed.append((src, e))
    return report


def inspect_image(src: Path, dst: Path, max_log_contrast: int = 4, overwrite: bool = False) -> float:
    """Write `banding_map`'s picture of src to dst; returns the CAMBI score. dst is checked
    before the work: never src, and an existing file only when `overwrite`."""
    check_image_path(dst)
    check_output(dst, overwrite, sources=[src])
    heat, score = banding_map(read_image(src).rgb(), max_log_contrast)
    write_image(dst, heat, overwrite=overwrite, sources=[src])
    return score


def comparison(before: np.ndarray, after: np.ndarray, max_width: int = 2400) -> np.ndarray:
    """An 8-bit picture: before | after on top, the same with contrast x4 below (bands show).

    before, after: (h, w[, c]) float32 on [0, 1]. Returns (H, W, 3) uint8.
    """
    def rgb(x: np.ndarray) -> np.ndarray:
        x = x[..., None] if x.ndim == 2 else x
        return np.repeat(x[..., :1], 3, 2) if x.shape[2] < 3 else x[..., :3]

    a, b = rgb(before), rgb(after)
    mean = a.mean(axis=(0, 1), keepdims=True)
    boost = lambda x: np.clip((x - mean) * 4 + 0.5, 0, 1)  # noqa: E731
    gap = np.ones((a.shape[0], max(2, a.shape[1] // 200), 3), np.float32)
    top = np.concatenate([a, gap, b], axis=1)
    bottom = np.concatenate([boost(a), gap, boost(b)], axis=1)
    grid = np.concatenate([top, np.ones((gap.shape[1], top.shape[1], 3), np.float32), bottom], axis=0)
    scale = min(1.0, max_width / grid.shape[1])
    if scale < 1:
        grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return to_codes(grid, 8, dither=True)


def banding_map(rgb: np.ndarray, max_log_contrast: int = 4) -> tuple[np.ndarray, float]:
    """Where CAMBI finds banding, drawn over a dimmed gray copy of the image.

    rgb: (h, w, 3) float32 on [0, 1]. Returns ((h, w, 3) uint8 picture, CAMBI score).
    """
    from deband.metrics import cambi_rgb

    score, heat = cambi_rgb(rgb, max_log_contrast=max_log_contrast, return_map=True)
    heat = np.clip(heat / max(float(heat.max()), 1e-6), 0, 1)
    inferno = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]  # (h, w, 3) uint8
    colour = from_codes(inferno, dtype=np.float64)
    gray = rgb.mean(axis=2, keepdims=True) * 0.6
    alpha = np.clip(heat * 1.5, 0, 0.85)[..., None]
    picture = gray * (1 - alpha) + colour * alpha
    return to_codes(picture.astype(np.float32), 8), float(score)

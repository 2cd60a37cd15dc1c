"""Wall time and peak memory of `deband image` (default settings) on huge banded PNGs.

For each size N it writes an N x N 8-bit RGB PNG of smooth gradients quantised to 6 bits
(generated in horizontal strips: the only full-size array is the uint8 image itself), runs
`deband image` on it in a child process and prints the child's wall time and peak RSS,
also per megapixel above a 64 x 64 baseline run (interpreter, torch and the model), so you
can see whether memory grows linearly with the image and by how much.

    python benchmarks/huge_image.py                       # 4096, 8192, 16384 (minutes; ~14 GB RAM at 16K)
    python benchmarks/huge_image.py --sizes 512,1024      # a quick check
    python benchmarks/huge_image.py --sizes 8192 -- --bit-depth 8 --tile 1024   # extra CLI options

Without --weights it uses the shipped model, or, when none is shipped yet, an untrained
model of the default architecture (the same speed and memory; the output is not debanded).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

STRIP = 256  # rows generated at a time


def banded_png(path: Path, h: int, w: int) -> None:
    """An h x w sky-like gradient with 6-bit steps, written as 8-bit RGB PNG (fast zlib)."""
    img = np.empty((h, w, 3), np.uint8)  # BGR, as cv2 writes it
    fx = np.linspace(0, 1, w, dtype=np.float32)[None]  # (1, w)
    for top in range(0, h, STRIP):
        fy = (np.arange(top, min(top + STRIP, h), dtype=np.float32) / max(h - 1, 1))[:, None]  # (s, 1)
        b = 0.55 + 0.35 * (1 - fy)  # (s, 1): broadcast along the row when stored
        g = 0.35 + 0.15 * (fx + fy) + 0.05 * np.sin(2 * np.pi * fx) * (1 - fy)
        r = 0.25 + 0.35 * fy + 0.15 * fx
        for c, v in enumerate((b, g, r)):
            img[top : top + STRIP, :, c] = np.round(np.round(v * 63) * (255 / 63)).astype(np.uint8)  # 6-bit steps
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"could not write {path}")


def run_cli(src: Path, dst: Path, weights: Path | None, extra: list[str]) -> tuple[float, float, int, str]:
    """(seconds, peak RSS in GiB, exit code, stderr) of one `deband image` child process."""
    cmd = [sys.executable, "-m", "deband.cli", "image", str(src), "-o", str(dst), "--overwrite", *extra]
    cmd += ["--weights", str(weights)] if weights else []
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return seconds, usage.ru_maxrss / 2**20, proc.returncode, stderr  # ru_maxrss: KiB on Linux


def default_weights(folder: Path) -> Path | None:
    """None (the shipped model) if there is one, else an untrained default-architecture model."""
    from deband.model.checkpoint import DEFAULT_WEIGHTS, save_weights
    from deband.model.unet import UNet

    if DEFAULT_WEIGHTS.is_file():
        return None
    path = folder / "untrained-default.safetensors"
    save_weights(UNet(), path)
    print(f"note: no shipped weights at {DEFAULT_WEIGHTS}; using an untrained default-architecture model")
    return path


def available_gib() -> float:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="4096,8192,16384", help="comma-separated square sides (default 4096,8192,16384)")
    p.add_argument("--weights", type=Path, help="a .safetensors model (default: the shipped one)")
    p.add_argument("--tmp", type=Path, help="folder for the PNGs (default: a temporary folder; 16K needs ~3 GB)")
    p.add_argument("cli_args", nargs=argparse.REMAINDER, help="after --: extra `deband image` options")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    extra = args.cli_args[1:] if args.cli_args[:1] == ["--"] else args.cli_args
    print(
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs, "
        f"{available_gib():.1f} GiB available, deband image {' '.join(extra) or '(defaults)'}"
    )
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        weights = args.weights or default_weights(tmp)
        banded_png(tmp / "base.png", 64, 64)
        base_s, base_gib, code, err = run_cli(tmp / "base.png", tmp / "base-out.png", weights, extra)
        if code:
            sys.exit(f"baseline run failed (exit {code}): {err.strip()}")
        print(f"baseline 64x64: {base_s:.1f} s, peak RSS {base_gib:.2f} GiB (interpreter, torch, model)\n")
        print("| input | MP | PNG in (MB) | PNG out (MB) | wall (s) | peak RSS (GiB) | (RSS - baseline) / MP (MB) |")
        print("|---|---|---|---|---|---|---|")
        for n in sizes:
            src, dst = tmp / f"in{n}.png", tmp / f"out{n}.png"
            banded_png(src, n, n)
            seconds, gib, code, err = run_cli(src, dst, weights, extra)
            mp = n * n / 1e6
            if code:
                print(f"| {n}x{n} | {mp:.1f} | failed (exit {code}): {err.strip().splitlines()[-1:]} |")
                continue
            per_mp = (gib - base_gib) * 1024 / mp
            print(
                f"| {n}x{n} | {mp:.1f} | {src.stat().st_size / 1e6:.1f} | {dst.stat().st_size / 1e6:.1f} "
                f"| {seconds:.1f} | {gib:.2f} | {per_mp:.1f} |",
                flush=True,
            )
            src.unlink()
            dst.unlink()


if __name__ == "__main__":
    main()

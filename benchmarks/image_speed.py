"""Speed and memory of `deband image` with default settings, run as a user would run it.

Prints wall time and peak RSS (of the child process) for a 1920x1080 banded PNG and a
7680x4320 one, plus ffmpeg's `deband` filter (through PyAV) on the same 1080p frame as a
baseline measured in the same run.

    python benchmarks/image_speed.py [--8k] [--16k]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from deband.degrade import requantize_ycbcr
from deband.io import write_image
from deband.pixels import to_codes
from deband.sources import procedural_scene


def banded_png(path: Path, h: int, w: int) -> None:
    """A smooth procedural scene at h x w with 6-bit luma, written as 8-bit PNG."""
    small = procedural_scene(h // 4, w // 4, torch.Generator().manual_seed(1))
    clean = torch.nn.functional.interpolate(small[None], size=(h, w), mode="bicubic", align_corners=False)[0]
    banded = requantize_ycbcr(clean.clamp(0, 1), 6, 6).permute(1, 2, 0).numpy()
    write_image(path, to_codes(banded, 8), overwrite=True)


def run_cli(src: Path, dst: Path, *extra: str) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of one `deband image` run in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "deband.cli", "image", str(src), "-o", str(dst), "--overwrite", *extra]
    subprocess.run(cmd, check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 2**20  # ru_maxrss is in KiB on Linux


def ffmpeg_deband_seconds(src: Path) -> float:
    """Seconds for ffmpeg's `deband` filter (defaults) on one frame via PyAV's filter graph."""
    import av
    import cv2

    rgb = cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    t0 = time.perf_counter()
    graph = av.filter.Graph()
    src_node = graph.add_buffer(width=frame.width, height=frame.height, format="rgb24", time_base="1/25")
    deband = graph.add("deband")
    sink = graph.add("buffersink")
    src_node.link_to(deband)
    deband.link_to(sink)
    graph.configure()
    graph.push(frame)
    graph.pull().to_ndarray()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--8k", dest="big", action="store_true", help="also 7680x4320")
    p.add_argument("--16k", dest="huge", action="store_true", help="also 16384x16384 (minutes)")
    args = p.parse_args()
    sizes = [(1080, 1920)] + [(4320, 7680)] * args.big + [(16384, 16384)] * args.huge
    print(f"torch threads: {torch.get_num_threads()}")
    print("| input | deband image (s) | peak RSS (GB) | ffmpeg deband (s) | ratio |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in sizes:
            src, dst = Path(tmp) / f"in{w}.png", Path(tmp) / f"out{w}.png"
            banded_png(src, h, w)
            seconds, rss = run_cli(src, dst)
            ff = ffmpeg_deband_seconds(src) if h * w <= 40e6 else float("nan")
            print(f"| {w}x{h} | {seconds:.2f} | {rss:.2f} | {ff:.3f} | {seconds / ff:.0f}x |")


if __name__ == "__main__":
    main()

"""Speed and memory of `deband image` with default settings, run as a user would run it.

Prints wall time and peak RSS (of the child process) for a 1920x1080 banded PNG (and
7680x4320, 16384x16384 on request), beside ffmpeg's `deband` filter on the same file in
the same run: the `ffmpeg` command (PNG decode, filter, PNG encode: the same job as ours)
when the binary is installed, and the filter alone through PyAV's filter graph. Then the
split of one 1080p run, done in a child process step by step as `deband image` does it:
imports, model load, PNG read, each network call (and the output blend inside it), the
conversion to 16-bit codes, PNG write.

    python benchmarks/image_speed.py [--8k] [--16k] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def banded_frame(h: int, w: int):
    """A smooth procedural scene at h x w with 6-bit luma: (3, h, w) float32 tensor on [0, 1]."""
    import torch

    from deband.synthesis.degrade import requantize_ycbcr
    from deband.synthesis.sources import procedural_scene

    small = procedural_scene(h // 4, w // 4, torch.Generator().manual_seed(1))
    clean = torch.nn.functional.interpolate(small[None], size=(h, w), mode="bicubic", align_corners=False)[0]
    return requantize_ycbcr(clean.clamp(0, 1), 6, 6)


def banded_png(path: Path, h: int, w: int) -> None:
    """`banded_frame` written as an 8-bit PNG."""
    from deband.io.files import write_image
    from deband.io.pixels import to_codes

    write_image(path, to_codes(banded_frame(h, w).permute(1, 2, 0).numpy(), 8), overwrite=True)


def timed_child(cmd: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in GiB, stdout) of one child process."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.stdout.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            raise RuntimeError(f"{cmd[:4]} failed: {err.read().decode()[-500:]}")
    return seconds, usage.ru_maxrss / 2**20, out.decode()  # ru_maxrss is in KiB on Linux


def run_cli(src: Path, dst: Path) -> tuple[float, float]:
    """(seconds, peak RSS in GiB) of one `deband image` run in a child process."""
    cmd = [sys.executable, "-m", "deband.cli", "image", str(src), "-o", str(dst), "--overwrite"]
    seconds, rss, _ = timed_child(cmd)
    return seconds, rss


def ffmpeg_command_seconds(src: Path, dst: Path) -> float:
    """Wall seconds of `ffmpeg -i src -vf deband dst` (defaults), or nan without the binary."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return float("nan")
    return timed_child([exe, "-v", "error", "-y", "-i", str(src), "-vf", "deband", str(dst)])[0]


def ffmpeg_filter_seconds(src: Path) -> float:
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


def split(src: Path, dst: Path) -> None:
    """The child: `deband image`'s default job step by step, printing the times as JSON."""
    t0 = time.perf_counter()
    from deband.cli import yielding_threads  # as the command does, before torch is imported

    yielding_threads()
    import torch

    t_torch = time.perf_counter()
    import deband.model.unet
    import deband.restore.debander
    from deband.io.files import read_image, write_image
    from deband.io.pixels import to_codes
    from deband.restore.debander import Debander
    from deband.restore.images import ImageOptions

    times: dict = {"import torch": t_torch - t0, "import deband": time.perf_counter() - t_torch,
                   "network calls": [], "blends": [], "guard": [], "grid": []}

    def clocked(fn, key):
        def run(*a):
            start = time.perf_counter()
            out = fn(*a)
            times[key].append(time.perf_counter() - start)
            return out

        return run

    t = time.perf_counter()
    getattr(deband.restore.debander, "keep_freed_memory", lambda: None)()  # as the CLI does (where it exists)
    debander = Debander.load(device="cpu")
    times["load model"] = time.perf_counter() - t
    if hasattr(deband.model.unet, "blend"):
        deband.model.unet.blend = clocked(deband.model.unet.blend, "blends")
    else:  # the model code before the blend had a module of its own, to measure it the same way
        deband.model.unet.UNet._blend = clocked(deband.model.unet.UNet._blend, "blends")
    debander._denoiser = clocked(debander._denoiser, "network calls")
    if getattr(debander, "guard", None) is not None:  # on the class: the grid stages use the guard's other methods
        type(debander.guard).__call__ = clocked(type(debander.guard).__call__, "guard")
    if hasattr(debander, "_on_grid"):  # the grid stages, where the model has them and a grid is found
        debander._on_grid = clocked(debander._on_grid, "grid")
    opts = ImageOptions()
    t = time.perf_counter()
    pic = read_image(src, opts.max_pixels)
    times["read PNG"] = time.perf_counter() - t
    t = time.perf_counter()
    restored = debander.restore(pic.pixels)
    times["restore"] = time.perf_counter() - t
    t = time.perf_counter()
    codes = to_codes(restored, opts.bit_depth, dither=False)
    times["to 16-bit codes"] = time.perf_counter() - t
    t = time.perf_counter()
    write_image(dst, codes, pic.icc, overwrite=True)
    times["write PNG"] = time.perf_counter() - t
    times["threads"] = torch.get_num_threads()
    print(json.dumps(times))


def print_split(src: Path, dst: Path) -> None:
    seconds, rss, out = timed_child([sys.executable, __file__, "--split-child", str(src), str(dst)])
    t = json.loads(out)
    calls, blends, guard, grid = t.pop("network calls"), t.pop("blends"), sum(t.pop("guard", [])), t.pop("grid", [])
    print(f"\nsplit of one 1080p run in a child ({t.pop('threads')} torch threads): "
          f"{seconds:.2f} s wall, peak RSS {rss:.2f} GiB")
    print("| step | s |\n|---|---|")
    for k in ("import torch", "import deband", "load model", "read PNG"):
        print(f"| {k} | {t[k]:.2f} |")
    for i, (c, b) in enumerate(zip(calls, blends)):
        print(f"| network call {i + 1} (of which output blend) | {c:.2f} ({b:.2f}) |")
    print(f"| detail guard | {guard:.2f} |")
    print(f"| grid stages (finding the grids, and the stages where one is found) | {sum(grid):.2f} |" if grid else
          "| grid stages | not in this model |")
    rest = t["restore"] - sum(calls) - guard - sum(grid)
    print(f"| rest of restore (tiling, INDI update, clamp, conversions) | {rest:.2f} |")
    for k in ("to 16-bit codes", "write PNG"):
        print(f"| {k} | {t[k]:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--8k", dest="big", action="store_true", help="also 7680x4320")
    p.add_argument("--16k", dest="huge", action="store_true", help="also 16384x16384 (minutes)")
    p.add_argument("--runs", type=int, default=3, help="runs per size, taking turns with ffmpeg; the best is shown")
    p.add_argument("--split-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.split_child:
        return split(*args.split_child)
    sizes = [(1080, 1920)] + [(4320, 7680)] * args.big + [(16384, 16384)] * args.huge
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; best of {args.runs} runs")
    print("| input | deband image (s) | peak RSS (GiB) | ffmpeg -vf deband command (s) | filter only (s) | ratio |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in sizes:
            src, dst, ff_dst = (Path(tmp) / f"{n}{w}.png" for n in ("in", "out", "ffmpeg"))
            banded_png(src, h, w)
            runs, ff, ff_filter = [], [], []
            for _ in range(args.runs if h * w <= 40e6 else 1):
                runs.append(run_cli(src, dst))
                ff.append(ffmpeg_command_seconds(src, ff_dst))
                ff_filter.append(ffmpeg_filter_seconds(src) if h * w <= 40e6 else float("nan"))
            seconds, rss = min(runs)
            print(f"| {w}x{h} | {seconds:.2f} | {rss:.2f} | {min(ff):.2f} | {min(ff_filter):.3f} "
                  f"| {seconds / min(ff):.0f}x |")
        src, dst = Path(tmp) / "in1920.png", Path(tmp) / "split.png"
        print_split(src, dst)


if __name__ == "__main__":
    main()

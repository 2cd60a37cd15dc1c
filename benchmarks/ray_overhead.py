"""What Ray costs: starting a local cluster, a job's first task (worker start-up and imports),
and the overhead of one task through `deband.cluster.tasks.Tasks` (an empty task, and a chunk of a
tiny clip against the same chunk made in this process).

    python benchmarks/ray_overhead.py [--cpus 2] [--tasks 100]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))  # the shared test-clip maker

from deband.cluster.tasks import ClusterOptions, Tasks, TaskShape, input_ref, remote  # noqa: E402
from deband.cluster.video import deband_video_ray  # noqa: E402
from deband.model.unet import UNet  # noqa: E402
from deband.restore.debander import Debander  # noqa: E402
from deband.video import VideoOptions  # noqa: E402
from deband.video.jobs import ChunkOptions, deband_video_chunked  # noqa: E402
from helpers.clips import make_clip  # noqa: E402


def _empty(inp, i: int) -> int:
    return i


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    import ray

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--tasks", type=int, default=100)
    args = p.parse_args()
    start = _timed(lambda: ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING))
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        inp, fn = input_ref(Path(__file__)), remote(_empty, TaskShape(cpus=1, gpus=0), retries=0)

        def run(n: int) -> None:
            with Tasks() as tasks:
                for i in range(n):
                    tasks.submit(i, fn, inp, i)
                assert sorted(v for _, v, _ in tasks.gather()) == list(range(n))

        first = _timed(lambda: run(1))
        many = _timed(lambda: run(args.tasks))
        clip = make_clip(here / "clip.mkv", n=100, codec="ffv1", gop=5)  # 20 chunks of 5 frames at 64x48
        torch.manual_seed(0)
        debander = Debander.on_device(UNet().eval(), torch.device("cpu"), steps=2)
        opts, chunks = VideoOptions(codec="ffv1", batch=5), ChunkOptions(seconds=0.2)
        deband_video_ray(clip, here / "warm.mkv", debander, opts, chunks, ClusterOptions(), progress=False)
        local = _timed(lambda: deband_video_chunked(clip, here / "a.mkv", debander, opts, chunks, progress=False))
        on_ray = _timed(lambda: deband_video_ray(clip, here / "b.mkv", debander, opts, chunks, progress=False))
    ray.shutdown()
    print(f"ray.init (a new local cluster, {args.cpus} CPUs): {start:.2f} s")
    print(f"first task of the job (worker start-up and imports): {first:.2f} s")
    print(f"an empty task through Tasks: {many / args.tasks * 1000:.1f} ms ({args.tasks} tasks, {args.cpus} CPUs)")
    print(f"20 chunks of 5 frames (64x48, default model, 2 steps): here {local:.2f} s, on Ray {on_ray:.2f} s "
          f"({(on_ray - local) / 20 * 1000:+.0f} ms a chunk)")


if __name__ == "__main__":
    main()

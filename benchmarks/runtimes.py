"""One network call at 1080p on the CPU, per runtime: milliseconds, and distance to PyTorch.

Runs the shipped model on the same banded 1920x1080 frame (t = 1, the first INDI step) in:
PyTorch eager fp32 (NCHW and channels-last weights; inference_mode and no_grad), the plain
forward the tests hold as the reference (what the network computed before its full-resolution
work was streamed), ONNX Runtime at each graph optimisation level and OpenVINO's CPU plugin
in fp32; PyTorch also with one thread. The runtimes take turns, round after round, and each row gives the best and the
median time; "max |diff|" is the largest per-pixel difference, on [0, 1], from the default
path (PyTorch eager, channels-last, inference_mode). On a shared machine expect spread.

ONNX Runtime and OpenVINO run a graph exported with `torch.onnx.export` (dynamo) for inputs
whose sides are multiples of the model's padding multiple; the frame is padded (edge
replicated) before the call and cropped after, inside the timed region.

    pip install -e '.[runtimes]'    # onnxruntime, onnxscript, openvino
    python benchmarks/runtimes.py [--rounds 5] [--threads 2] [--size 1080x1920]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from deband.model.checkpoint import load_model
from deband.restore.debander import keep_freed_memory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from image_speed import banded_frame  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

Call = Callable[[np.ndarray], np.ndarray]  # (1, 3, h, w) float32 -> (1, 3, h, w) float32


def torch_call(model: torch.nn.Module, mode: str, threads: int, forward: Callable | None = None) -> Call:
    """A network call through PyTorch eager; forward(model, x, t) replaces model(x, t) if given."""
    context = torch.inference_mode if mode == "inference_mode" else torch.no_grad

    def call(x: np.ndarray) -> np.ndarray:
        torch.set_num_threads(threads)
        with context():
            xt = torch.from_numpy(x)
            return (forward(model, xt, 1.0) if forward else model(xt, 1.0)).numpy()

    return call


def padded_call(run: Callable[[np.ndarray], np.ndarray], multiple: int) -> Call:
    """Pad h, w up to `multiple` (edge replicated, as the model pads), run, crop back."""

    def call(x: np.ndarray) -> np.ndarray:
        h, w = x.shape[2:]
        xp = np.pad(x, ((0, 0), (0, 0), (0, -h % multiple), (0, -w % multiple)), mode="edge")
        return run(xp)[:, :, :h, :w]

    return call


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    """The network as ONNX, dynamic in H and W (multiples of the padding multiple)."""
    m = model.config.multiple
    hb, wb = torch.export.Dim("hb", min=1, max=256), torch.export.Dim("wb", min=1, max=256)
    x, t = torch.rand(1, 3, 2 * m, 3 * m), torch.ones(1)
    torch.onnx.export(model, (x, t), str(path), dynamo=True, input_names=["x_t", "t"], output_names=["x0"],
                      dynamic_shapes={"x_t": {2: m * hb, 3: m * wb}, "t": None}, verbose=False)


def ort_call(path: Path, level: str, threads: int, multiple: int) -> Call:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    t = np.ones(1, np.float32)
    return padded_call(lambda x: session.run(None, {"x_t": x, "t": t})[0], multiple)


def openvino_call(path: Path, threads: int, multiple: int, shape: tuple[int, int]) -> Call:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    h, w = (-(-s // multiple) * multiple for s in shape)
    model.reshape({"x_t": [1, 3, h, w], "t": [1]})  # static shapes compile to faster code
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
              "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(model, "CPU", config)
    t = np.ones(1, np.float32)
    return padded_call(lambda x: compiled({"x_t": x, "t": t})[compiled.output(0)], multiple)


def build(args: argparse.Namespace, tmp: Path) -> dict[str, Call]:
    """Every runtime that is installed here, by name; the first is the reference row."""
    from test_model import reference_forward

    cl = load_model(None).eval().to(memory_format=torch.channels_last)
    nchw = load_model(None).eval()
    n = args.threads
    calls = {
        "torch eager, channels-last, inference_mode (default)": torch_call(cl, "inference_mode", n),
        "torch eager, channels-last, no_grad": torch_call(cl, "no_grad", n),
        "torch eager, NCHW, inference_mode": torch_call(nchw, "inference_mode", n),
        "torch eager, channels-last, inference_mode, 1 thread": torch_call(cl, "inference_mode", 1),
        "torch eager, plain forward (before), channels-last": torch_call(cl, "inference_mode", n, reference_forward),
    }
    try:
        onnx = tmp / "deband.onnx"
        export_onnx(nchw, onnx)
    except ImportError as e:
        print(f"skipped ONNX Runtime and OpenVINO: {e}")
        return calls
    m = nchw.config.multiple
    for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
        try:
            calls[f"onnxruntime, {level}"] = ort_call(onnx, level, args.threads, m)
        except ImportError as e:
            print(f"skipped ONNX Runtime: {e}")
            break
    try:
        calls["openvino CPU, f32"] = openvino_call(onnx, args.threads, m, args.size)
    except ImportError as e:
        print(f"skipped OpenVINO: {e}")
    return calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="times each runtime runs, taking turns (default 5)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every runtime (default 2)")
    p.add_argument("--size", type=lambda s: tuple(map(int, s.split("x"))), default=(1080, 1920), help="HxW")
    args = p.parse_args()
    keep_freed_memory()  # as the CLI does
    x = banded_frame(*args.size)[None].numpy()  # (1, 3, h, w) float32 on [0, 1]
    with tempfile.TemporaryDirectory() as tmp:
        calls = build(args, Path(tmp))
        outputs = {name: call(x) for name, call in calls.items()}  # warm-up, and the outputs compared
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.rounds):
            for name, call in calls.items():
                t0 = time.perf_counter()
                call(x)
                times[name].append(time.perf_counter() - t0)
    ref = next(iter(outputs.values()))
    print(f"{args.size[1]}x{args.size[0]}, batch 1, {args.threads} threads, best / median of {args.rounds}")
    print("| runtime | best ms | median ms | max abs diff vs default |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        diff = float(np.abs(outputs[name] - ref).max())
        print(f"| {name} | {min(ts) * 1e3:.0f} | {statistics.median(ts) * 1e3:.0f} | {diff:.1e} |")


if __name__ == "__main__":
    main()

"""Video pipeline speed and flicker on a generated 1080p H.264 clip.

    python benchmarks/video_speed.py                 # 72 frames, CPU (+ CUDA when present)
    python benchmarks/video_speed.py --frames 8      # quick check
    python benchmarks/video_speed.py --device cuda --batch 8
    python benchmarks/video_speed.py --frames 24 --serial   # pipelined and serial, and the ratio

Uses the shipped model (src/deband/weights/default.safetensors) when it exists, else an
untrained UNet with the default ModelConfig: the same speed, but it is the identity, so the
flicker numbers then only check the pipeline. Prints end-to-end frames/s, the split into
decode / model / encode seconds, and the temporal flicker of output and input on static
regions (mean |Y[t+1] - Y[t]|, in 8-bit code values). decode / model / encode are the
seconds spent in each stage; the stages overlap (VideoOptions.pipeline), so they may add up
to more than total_s. --serial also times the serial path and prints the fps ratio.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from deband.config import DEFAULT_STEPS, ModelConfig
from deband.io.planes import codes_to_frame
from deband.model.checkpoint import DEFAULT_WEIGHTS
from deband.model.unet import UNet
from deband.restore.debander import Debander, keep_freed_memory
from deband.video import VideoOptions, VideoReport, deband_video, temporal_flicker


def clip_planes(i: int, w: int, h: int) -> list[np.ndarray]:
    """8-bit Y'CbCr of frame i: dark smooth gradients (they band at 8 bits), a static
    vignette, and a bright disc moving left to right."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    y = 30 + 40 * (xx / w) + 15 * (yy / h)  # a shallow ramp: wide flat bands at 8 bits
    y -= 10 * ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2)
    cx, cy, r = w * (0.2 + 0.6 * ((i * 0.013) % 1)), h * 0.6, h * 0.12
    disc = np.clip(1 - np.hypot(xx - cx, yy - cy) / r, 0, 1)
    y += 120 * disc**0.5
    cb = 128 + 10 * (xx[::2, ::2] / w) - 5 * disc[::2, ::2]
    cr = 128 - 6 * (yy[::2, ::2] / h) + 12 * disc[::2, ::2]
    return [np.clip(p, 0, 255).round().astype(np.uint8) for p in (y, cb, cr)]


def make_clip(path: Path, frames: int, width: int, height: int, rate: int = 24) -> Path:
    """A BT.709-tagged 8-bit H.264 clip of `frames` frames."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=rate, options={"crf": "16", "preset": "veryfast"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.color_primaries = vs.color_trc = vs.colorspace = vs.color_range = 1
        for i in range(frames):
            frame = codes_to_frame(clip_planes(i, width, height), "yuv420p", width, height)
            frame.pts = i
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
    return path


def luma(path: Path, scale: int = 2) -> torch.Tensor:
    """Y' of every frame, (t, h/scale, w/scale) float32 on about [0, 1] (code / max code;
    the range offset is left in, which does not matter for frame-to-frame differences)."""
    frames = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            p = f.planes[0]
            deep = f.format.name.endswith("le")
            y = np.frombuffer(p, "<u2" if deep else np.uint8).reshape(p.height, -1)[:, : p.width]
            y = torch.from_numpy(y.astype(np.float32) / (1023 if deep else 255))
            frames.append(F.avg_pool2d(y[None, None], scale)[0, 0])
    return torch.stack(frames)


def debander(device: str, steps: int) -> tuple[Debander, str]:
    """The shipped model on `device`, or an untrained default UNet when none is shipped; the
    C library keeps freed memory, as `deband` itself has it (`restore.keep_freed_memory`)."""
    keep_freed_memory()
    if DEFAULT_WEIGHTS.exists():
        return Debander.load(device=device, steps=steps), "shipped default model"
    dev = torch.device(device)
    model = UNet(ModelConfig()).eval().to(dev).to(memory_format=torch.channels_last)
    return Debander(model=model, device=dev, steps=steps), "untrained UNet (no shipped weights)"


def run(src: Path, dst: Path, device: str, args: argparse.Namespace, pipeline: bool) -> tuple[VideoReport, str]:
    model, what = debander(device, args.steps)
    opts = VideoOptions(
        codec=args.codec, preset=args.preset, crf=args.crf, batch=args.batch, overwrite=True, pipeline=pipeline
    )
    return deband_video(src, dst, model, opts, progress=args.progress), what


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=72, help="clip length (24 frames/s)")
    p.add_argument("--size", default="1920x1080", help="WxH of the generated clip")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CPU, and CUDA too when available"
    )
    p.add_argument("--batch", type=int, default=4, help="frames per restore_batch call")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"INDI steps (default {DEFAULT_STEPS})")
    p.add_argument("--codec", default="libx265", choices=["libx265", "libx264", "ffv1"])
    p.add_argument("--preset", default="medium")
    p.add_argument("--crf", type=int, default=18)
    p.add_argument("--progress", action="store_true", help="show the tqdm bar")
    p.add_argument("--serial", action="store_true", help="also time the serial path and print the fps ratio")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    width, height = (int(v) for v in args.size.lower().split("x"))
    devices = [args.device] if args.device != "auto" else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    with tempfile.TemporaryDirectory() as tmp:
        src = make_clip(Path(tmp) / "clip.mp4", args.frames, width, height)
        y_in = luma(src)
        flicker_in = temporal_flicker(y_in) * 255
        print(
            f"clip: {args.frames} frames {width}x{height} H.264 8-bit; codec {args.codec} "
            f"preset {args.preset}, batch {args.batch}, {args.steps} step(s), "
            f"torch threads {torch.get_num_threads()}"
        )
        print(
            f"{'device':6} {'path':9} {'frames':>6} {'fps':>7} {'decode_s':>9} {'model_s':>8} "
            f"{'encode_s':>9} {'total_s':>8} {'flicker_in':>10} {'flicker_out':>11}  model"
        )
        for device in devices:
            fps = {}
            for path in ["pipelined"] + (["serial"] if args.serial else []):
                dst = Path(tmp) / f"out-{device}-{path}.mkv"
                report, what = run(src, dst, device, args, pipeline=path == "pipelined")
                flicker_out = temporal_flicker(luma(dst), reference=y_in) * 255
                fps[path] = report.fps
                print(
                    f"{device:6} {path:9} {report.frames_out:6d} {report.fps:7.2f} {report.decode_s:9.2f} "
                    f"{report.model_s:8.2f} {report.encode_s:9.2f} {report.total_s:8.2f} "
                    f"{flicker_in:10.3f} {flicker_out:11.3f}  {what}"
                )
            if args.serial:
                print(f"{device}: pipelined / serial fps = {fps['pipelined'] / fps['serial']:.2f}")


if __name__ == "__main__":
    main()

"""Looking at videos as tensors: decode a whole clip, measure frame-to-frame flicker.

For tests, benchmarks and examples: `read_video_rgb` holds every frame in memory.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from deband.errors import InputError
from deband.video.colour import colour_of, frame_to_planes, native, planes_to_rgb
from deband.video.streams import open_input, video_stream


def read_video_rgb(path: str | Path, max_frames: int | None = None) -> torch.Tensor:
    """Decode the first video stream to R'G'B' (t, 3, h, w) float32 on [0, 1], with the
    same colour handling as deband_video (each frame's own tags)."""
    with open_input(Path(path)) as inp:
        frames = []
        for frame in inp.decode(video_stream(inp)):
            f = native(frame)
            colour = colour_of(f)
            planes = [p[None] for p in frame_to_planes(f, colour)]  # [(1, h, w), (1, hc, wc) x 2]
            frames.append(planes_to_rgb(planes, colour.matrix)[0])
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise InputError(f"{path}: no video frames")
    return torch.stack(frames)


def temporal_flicker(
    frames: torch.Tensor, reference: torch.Tensor | None = None, threshold: float = 1.5 / 255, margin: int = 4
) -> float:
    """Mean |frame[t+1] - frame[t]| over pixels that are static in `reference`.

    frames, reference (Tensor): shape (t, 3, h, w) or (t, h, w), range [0, 1], t >= 2.
    A pixel is static when every frame-to-frame change of the reference (default: frames)
    within `margin` pixels of it stays below `threshold` (the margin keeps a restorer's
    spatial support around moving content out). Compare temporal_flicker(out, ref=in)
    with temporal_flicker(in): a restorer that adds no flicker keeps them about equal.
    Returns nan when nothing is static.
    """
    ref = frames if reference is None else reference
    if frames.shape[0] < 2 or frames.shape != ref.shape:
        raise ValueError("need two or more frames, and a reference of the same shape")
    d_ref = (ref[1:] - ref[:-1]).abs()  # (t-1, ...)
    d_ref = d_ref.amax(dim=1) if d_ref.ndim == 4 else d_ref  # (t-1, h, w)
    moving = (d_ref >= threshold).any(dim=0).float()  # (h, w)
    moving = F.max_pool2d(moving[None, None], 2 * margin + 1, stride=1, padding=margin)[0, 0]
    static = moving == 0  # (h, w)
    if not static.any():
        return float("nan")
    d = (frames[1:] - frames[:-1]).abs()
    d = d.mean(dim=1) if d.ndim == 4 else d  # (t-1, h, w)
    return float(d[:, static].mean())

"""Banding synthesis: turn a clean image into a banded one the way banding really arises.

Every degradation is a deterministic function of a clean image, plus a `random_*` wrapper
drawing its parameters from a `torch.Generator`. Images are (c, h, w) or (b, c, h, w)
float32 tensors on [0, 1], RGB (c = 3). Plain per-channel re-quantisation is
`deband.io.pixels.quantise`.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from deband.io.pixels import from_codes, quantise, rgb_to_ycbcr, to_codes, ycbcr_to_rgb
from deband.synthesis.encoders import through_codec


def requantize_ycbcr(
    x: torch.Tensor, luma_bits: float | None, chroma_bits: float | None, matrix: str = "bt709", passes: int = 1
) -> torch.Tensor:
    """Re-quantise Y' and/or CbCr (None leaves a component alone), `passes` times."""
    for _ in range(passes):
        ycc = rgb_to_ycbcr(x, matrix)
        y, cb, cr = ycc.unbind(-3)
        if luma_bits is not None:
            y = quantise(y, luma_bits)
        if chroma_bits is not None:
            cb, cr = (quantise(c + 0.5, chroma_bits) - 0.5 for c in (cb, cr))
        x = ycbcr_to_rgb(torch.stack([y, cb, cr], dim=-3), matrix).clamp(0, 1)
    return x


def dark_stretch(x: torch.Tensor, bits: int, gain: float) -> torch.Tensor:
    """A dark capture quantised to `bits` then brightened by `gain`: steps grow `gain` times."""
    return (quantise(x / gain, bits) * gain).clamp(0, 1)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip through Pillow (4:2:0). x: shape (3, h, w)."""
    buf = io.BytesIO()
    Image.fromarray(to_codes(x.permute(1, 2, 0).numpy(), 8)).save(buf, format="JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))  # (h, w, 3) uint8
    return torch.from_numpy(from_codes(decoded)).permute(2, 0, 1)


def video_codec(x: torch.Tensor, codec: str, crf: int) -> torch.Tensor:
    """One frame through H.264 ("libx264") or H.265 ("libx265") at `crf`, the ultrafast
    preset, converted by FFmpeg's swscale (`encoders.through_codec`).

    x: shape (3, h, w); h and w are cropped to even sizes for 4:2:0 and padded back.
    """
    if codec not in ("libx264", "libx265"):
        raise ValueError(f"unsupported codec {codec!r}")
    _, h, w = x.shape
    y = through_codec([x[:, : h - h % 2, : w - w % 2]], codec, crf, "ultrafast", swscale=True)
    return torch.nn.functional.pad(y[None], (0, w % 2, 0, h % 2), mode="replicate")[0]


# --- random wrappers -------------------------------------------------------------------


def uniform(g: torch.Generator, lo: float, hi: float) -> float:
    """Float in [lo, hi)."""
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def randint(g: torch.Generator, lo: int, hi: int) -> int:
    """Integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (), generator=g).item())


def random_quantize(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return quantise(x, randint(g, 3, 8))


def random_requantize_ycbcr(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Luma 5-7 bits and chroma 5-6 bits (sometimes only one of them), sometimes twice."""
    choice = randint(g, 0, 3)
    luma_bits = None if choice == 0 else float(randint(g, 5, 7))
    chroma_bits = None if choice == 1 else float(randint(g, 5, 6))
    matrix = "bt601" if uniform(g, 0, 1) < 0.3 else "bt709"
    return requantize_ycbcr(x, luma_bits, chroma_bits, matrix, passes=1 + int(uniform(g, 0, 1) < 0.3))


def random_dark_stretch(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return dark_stretch(x, 8, uniform(g, 2.0, 6.0))


def random_codec(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """x: shape (3, h, w). JPEG q 30-85, or H.264/H.265 at CRF 28-40."""
    choice = randint(g, 0, 2)
    if choice == 0:
        return jpeg(x, randint(g, 30, 85))
    return video_codec(x, "libx264" if choice == 1 else "libx265", randint(g, 28, 40))


def random_degrade(x: torch.Tensor, g: torch.Generator, codec_probability: float = 0.1) -> torch.Tensor:
    """One banded version of a clean image x of shape (3, h, w), with a random mechanism."""
    u = uniform(g, 0, 1)
    if u < codec_probability:
        return random_codec(x, g)
    u = (u - codec_probability) / (1 - codec_probability)
    if u < 0.4:
        return random_quantize(x, g)
    if u < 0.8:
        return random_requantize_ycbcr(x, g)
    return random_dark_stretch(x, g)

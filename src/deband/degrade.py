"""Banding synthesis: turn a clean image into a banded one the way banding really arises.

Every degradation is a deterministic function of a clean image, plus a `random_*` wrapper
drawing its parameters from a `torch.Generator`. Images are (c, h, w) or (b, c, h, w)
float32 tensors on [0, 1], RGB (c = 3). Plain per-channel re-quantisation is
`deband.pixels.quantise`.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import torch
from PIL import Image

from deband.pixels import from_codes, quantise, rgb_to_ycbcr, to_codes, ycbcr_to_rgb


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
    """One frame through H.264 ("libx264") or H.265 ("libx265") at `crf`, via PyAV.

    x: shape (3, h, w); h and w are cropped to even sizes for 4:2:0 and padded back.
    """
    if codec not in ("libx264", "libx265"):
        raise ValueError(f"unsupported codec {codec!r}")
    _, h, w = x.shape
    he, we = h - h % 2, w - w % 2
    # one thread and no container: the same bits every time (threaded x265 and the Matroska
    # muxer both failed now and then on tiny frames)
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = we, he, "yuv420p"
    enc.time_base, enc.framerate, enc.thread_count = Fraction(1, 25), Fraction(25), 1
    opts = {"crf": str(crf), "preset": "ultrafast"}
    if codec == "libx265":
        opts["x265-params"] = "log-level=none:pools=none:frame-threads=1"
    else:
        opts["threads"] = "1"
    enc.options = opts
    rgb24 = to_codes(x[:, :he, :we].permute(1, 2, 0).numpy(), 8)  # (he, we, 3) uint8
    frame = av.VideoFrame.from_ndarray(rgb24, format="rgb24").reformat(format="yuv420p")
    frame.pts, frame.time_base = 0, Fraction(1, 25)
    packets = list(enc.encode(frame)) + list(enc.encode(None))
    dec = av.CodecContext.create("h264" if codec == "libx264" else "hevc", "r")
    dec.thread_count = 1
    frames = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
    y = torch.from_numpy(from_codes(frames[0].to_ndarray(format="rgb24"))).permute(2, 0, 1)
    return torch.nn.functional.pad(y[None], (0, w - we, 0, h - he), mode="replicate")[0]


# --- random wrappers -------------------------------------------------------------------


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """Integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (), generator=g).item())


def random_quantize(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return quantise(x, _randint(g, 3, 8))


def random_requantize_ycbcr(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Luma 5-7 bits and chroma 5-6 bits (sometimes only one of them), sometimes twice."""
    choice = _randint(g, 0, 3)
    luma_bits = None if choice == 0 else float(_randint(g, 5, 7))
    chroma_bits = None if choice == 1 else float(_randint(g, 5, 6))
    matrix = "bt601" if _uniform(g, 0, 1) < 0.3 else "bt709"
    return requantize_ycbcr(x, luma_bits, chroma_bits, matrix, passes=1 + int(_uniform(g, 0, 1) < 0.3))


def random_dark_stretch(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return dark_stretch(x, 8, _uniform(g, 2.0, 6.0))


def random_codec(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """x: shape (3, h, w). JPEG q 30-85, or H.264/H.265 at CRF 28-40."""
    choice = _randint(g, 0, 2)
    if choice == 0:
        return jpeg(x, _randint(g, 30, 85))
    return video_codec(x, "libx264" if choice == 1 else "libx265", _randint(g, 28, 40))


def random_degrade(x: torch.Tensor, g: torch.Generator, codec_probability: float = 0.1) -> torch.Tensor:
    """One banded version of a clean image x of shape (3, h, w), with a random mechanism."""
    u = _uniform(g, 0, 1)
    if u < codec_probability:
        return random_codec(x, g)
    u = (u - codec_probability) / (1 - codec_probability)
    if u < 0.4:
        return random_quantize(x, g)
    if u < 0.8:
        return random_requantize_ycbcr(x, g)
    return random_dark_stretch(x, g)

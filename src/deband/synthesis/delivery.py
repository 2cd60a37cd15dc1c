"""Banding the way delivered video makes it: Y'CbCr 4:2:0 at 8 bits, bit depth cut by
rounding or truncation, 10-bit masters taken to 8 bits without dither, H.264/HEVC/AV1 at
the rates where flat areas break into steps (over film grain), and dark scenes lifted
after capture.

Like `deband.synthesis.degrade`, every degradation is a deterministic function of a clean image
plus a `random_*` wrapper drawing its parameters from a `torch.Generator`. Images are
R'G'B' float32 tensors on [0, 1], shape (3, h, w) (or (b, 3, h, w) where a function says
so); meant for whole frames (720p and up) that the caller crops afterwards, but any size
works, odd ones included. Y'CbCr is limited range (16-235 / 16-240 at 8 bits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deband.io.pixels import from_signal, quantise, to_signal
from deband.io.planes import planes_to_rgb, rgb_to_planes
from deband.synthesis import encoders
from deband.synthesis.degrade import randint, random_degrade, uniform

# --- Y'CbCr 4:2:0 codes ----------------------------------------------------------------


def _cut(signal: torch.Tensor, source_bits: int, bits: int, mode: str, chroma: bool) -> torch.Tensor:
    """Codes at source_bits (as a signal, see `pixels.to_signal`) -> codes at bits: "trunc"
    shifts the low bits out (code >> (source_bits - bits)), "round" takes the nearest code
    at bits of the same Y' or Cb/Cr value (about (code + half) >> (source_bits - bits))."""
    if mode == "trunc":
        return quantise(signal, bits, "trunc")
    if mode == "round":
        return quantise(to_signal(from_signal(signal, source_bits, False, chroma), bits, False, chroma), bits)
    raise ValueError(f"unknown mode {mode!r}; expected 'round' or 'trunc'")


def _to_signals(
    x: torch.Tensor,
    matrix: str,
    bits: int,
    chroma_bits: int,
    source_bits: int | None,
    mode: str,
    subsampled: bool = True,
) -> list[torch.Tensor]:
    """R'G'B' (..., 3, h, w) -> [Y' (..., h, w), Cb, Cr (..., ceil(h/2), ceil(w/2))] as
    limited-range codes over 2**bits - 1 (see `pixels.to_signal`), on the code grid: the
    nearest codes at bits, or those of a source_bits master cut to bits by `mode`. Without
    `subsampled`, Cb and Cr keep full resolution (4:4:4)."""
    h, w = x.shape[-2:]
    out = []
    for i, v in enumerate(rgb_to_planes(x, matrix, (-(-h // 2), -(-w // 2)) if subsampled else None)):
        b = bits if i == 0 else chroma_bits
        if source_bits is None:
            out.append(quantise(to_signal(v, b, False, chroma=i > 0), b))
        else:
            master = quantise(to_signal(v, source_bits, False, chroma=i > 0), source_bits)
            out.append(_cut(master, source_bits, b, mode, chroma=i > 0))
    return out


def _from_signals(signals: list[torch.Tensor], matrix: str, bits: int, chroma_bits: int) -> torch.Tensor:
    """Inverse of `_to_signals`: chroma upsampled bilinearly, R'G'B' clamped to [0, 1]."""
    planes = [from_signal(s, bits if i == 0 else chroma_bits, False, i > 0) for i, s in enumerate(signals)]
    return planes_to_rgb(planes, matrix)


def store_ycbcr(
    x: torch.Tensor,
    bits: int = 8,
    chroma_bits: int | None = None,
    source_bits: int | None = None,
    mode: str = "round",
    matrix: str = "bt709",
    subsampled: bool = True,
) -> torch.Tensor:
    """x stored as limited-range Y'CbCr 4:2:0 (4:4:4 without `subsampled`) and shown again.

    R'G'B' -> Y'CbCr (`matrix`) -> chroma box-averaged onto the 4:2:0 grid -> Y' codes at
    `bits` and Cb/Cr codes at `chroma_bits` (default `bits`), rounded; or, with
    `source_bits`, the rounded codes of a source_bits master cut down to those depths by
    `mode` ("trunc": a bit shift; "round": the nearest code). Then back, chroma upsampled
    bilinearly. x: shape (..., 3, h, w), float32 on [0, 1].
    """
    chroma_bits = bits if chroma_bits is None else chroma_bits
    signals = _to_signals(x, matrix, bits, chroma_bits, source_bits, mode, subsampled)
    return _from_signals(signals, matrix, bits, chroma_bits)


def ycbcr420(x: torch.Tensor, matrix: str = "bt709") -> torch.Tensor:
    """x as delivered video: limited-range 8-bit Y'CbCr 4:2:0, rounded. x: (..., 3, h, w)."""
    return store_ycbcr(x, 8, matrix=matrix)


def requantise(
    x: torch.Tensor, luma_bits: int, chroma_bits: int, mode: str = "round", passes: int = 1, matrix: str = "bt709"
) -> torch.Tensor:
    """8-bit delivered Y' and Cb/Cr codes cut to luma_bits / chroma_bits (5-8) by rounding or
    truncation (a bit shift, `mode` "trunc"), `passes` times over (each pass a full
    R'G'B' -> 4:2:0 -> R'G'B' trip). x: (..., 3, h, w)."""
    for _ in range(passes):
        x = store_ycbcr(x, luma_bits, chroma_bits, source_bits=8, mode=mode, matrix=matrix)
    return x


def ten_to_eight(x: torch.Tensor, mode: str = "trunc", matrix: str | None = "bt709") -> torch.Tensor:
    """A 10-bit master taken to 8 bits without dither, by truncation (code >> 2) or rounding.

    With `matrix` the master is limited-range Y'CbCr 4:2:0 (a video mezzanine); with None
    it is R'G'B' (a 10-bit still or intermediate), cut per channel. x: (..., 3, h, w).
    """
    if matrix is None:  # full-range codes: trunc is code >> 2, round is round(code * 255 / 1023)
        return quantise(quantise(x, 10), 8, mode)
    return store_ycbcr(x, 8, source_bits=10, mode=mode, matrix=matrix)


def dark_lift(x: torch.Tensor, white: float, gamma: float, black: float = 0.0, bits: int = 8) -> torch.Tensor:
    """A dark capture quantised at `bits`, then lifted by levels and gamma to look like x.

    The capture holds black + (white - black) * x**gamma (shadows squeezed into few codes);
    the lift maps black..white back onto 0..1 with gamma 1/gamma, so the steps grow most in
    the shadows. gamma 1 and black 0 is the linear gain of `degrade.dark_stretch`.
    x: (..., 3, h, w), float32 on [0, 1].
    """
    capture = quantise(black + (white - black) * x.clamp(0, 1) ** gamma, bits)
    return ((capture - black) / (white - black)).clamp(0, 1) ** (1 / gamma)


# --- codecs ----------------------------------------------------------------------------


def add_grain(x: torch.Tensor, sigma: float, coarse: bool, g: torch.Generator) -> torch.Tensor:
    """x plus monochrome Gaussian grain of standard deviation `sigma` (values on [0, 1]);
    `coarse` grain is blurred over 3 x 3 pixels and renormalised. x: (3, h, w); clamped."""
    noise = torch.randn((1, 1, *x.shape[-2:]), generator=g)  # (1, 1, h, w)
    if coarse:
        noise = F.avg_pool2d(noise, 3, stride=1, padding=1, count_include_pad=False)
        noise = noise / noise.std().clamp_min(1e-6)
    return (x + sigma * noise[0]).clamp(0, 1)


def through_codec(
    x: torch.Tensor,
    encoder: str,
    crf: int,
    preset: str,
    grain: float = 0.0,
    coarse: bool = False,
    frames: int = 1,
    seed: int = 0,
    matrix: str = "bt709",
) -> torch.Tensor:
    """x delivered through a video codec (`encoders.through_codec`): limited-range 8-bit 4:2:0
    (as `ycbcr420`), then `encoder` ("libx264", "libx265", "libsvtav1") at `crf` and `preset`.

    With `grain` > 0, fresh grain (`add_grain`, seeded by `seed`) is added to each of
    `frames` copies of x before encoding, and the last decoded frame is returned (a
    predicted frame when frames > 1). x: shape (3, h, w); odd sizes are edge-padded for
    4:2:0 and cropped back. Returns (3, h, w), float32 on [0, 1]; the same bits every time.
    """
    _, h, w = x.shape
    x = F.pad(x[None], (0, w % 2, 0, h % 2), mode="replicate")[0]  # grain is drawn over the frame as encoded
    g = torch.Generator().manual_seed(seed)
    pictures = [add_grain(x, grain, coarse, g) if grain > 0 else x for _ in range(frames)]
    return encoders.through_codec(pictures, encoder, crf, preset, matrix)[:, :h, :w]


# --- random wrappers -------------------------------------------------------------------

# CRF ranges where flat areas band, and how often each codec is drawn
CODECS = {"libx264": ((23, 40), 0.4), "libx265": ((24, 40), 0.35), "libsvtav1": ((30, 55), 0.25)}


def _matrix(g: torch.Generator) -> str:
    return "bt601" if uniform(g, 0, 1) < 0.25 else "bt709"


def random_ycbcr420(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return ycbcr420(x, _matrix(g))


def random_requantise(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Luma 5-7 bits and/or chroma 5-7 bits, rounded or truncated, once or twice."""
    choice = randint(g, 0, 3)  # 0: luma only, 1: chroma only, else both
    luma_bits = 8 if choice == 1 else randint(g, 5, 7)
    chroma_bits = 8 if choice == 0 else randint(g, 5, 7)
    mode = "trunc" if uniform(g, 0, 1) < 0.5 else "round"
    passes = 1 + int(uniform(g, 0, 1) < 0.3)
    return requantise(x, luma_bits, chroma_bits, mode, passes, _matrix(g))


def random_ten_to_eight(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Truncated (60 %) or rounded; a Y'CbCr 4:2:0 master (75 %) or an R'G'B' one."""
    mode = "trunc" if uniform(g, 0, 1) < 0.6 else "round"
    matrix = _matrix(g) if uniform(g, 0, 1) < 0.75 else None
    return ten_to_eight(x, mode, matrix)


def random_dark_lift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Capture white 0.15-0.5, gamma 1-1.8, black 0-0.03; half the time delivered as 4:2:0."""
    white, gamma, black = uniform(g, 0.15, 0.5), uniform(g, 1.0, 1.8), uniform(g, 0.0, 0.03)
    y = dark_lift(x, white, gamma, black)
    return random_ycbcr420(y, g) if uniform(g, 0, 1) < 0.5 else y


def random_codec(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """H.264 CRF 23-40, HEVC CRF 24-40 or SVT-AV1 CRF 30-55 (among those this PyAV build
    has), a fast preset; half the time over grain of 0.5-3 codes, as 3 frames.
    Without any of these encoders, `random_requantise`. x: shape (3, h, w)."""
    names = [c for c in CODECS if encoders.available(c)]
    if not names:
        return random_requantise(x, g)
    weights = torch.tensor([CODECS[c][1] for c in names])
    name = names[int(torch.multinomial(weights, 1, generator=g))]
    (lo, hi), _ = CODECS[name]
    crf, preset = randint(g, lo, hi), encoders.PRESETS[name][randint(g, 0, len(encoders.PRESETS[name]) - 1)]
    grain = uniform(g, 0.5, 3.0) / 255 if uniform(g, 0, 1) < 0.5 else 0.0
    coarse, seed = uniform(g, 0, 1) < 0.5, randint(g, 0, 2**31 - 1)
    return through_codec(x, name, crf, preset, grain, coarse, 3 if grain > 0 else 1, seed, _matrix(g))


def random_colour_banding(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Colour bands the way real pipelines make them, over texture as much as over gradients:
    R'G'B' cut to 4-6 bits per channel (45 %), or Y'CbCr planes cut independently, Y' to 5-8
    bits and Cb/Cr to 4-8 bits (at least one of them under 8), from a 10-bit master, 4:2:0
    (70 %) or 4:4:4; rounded or truncated (40 %); a third of the time through x264/x265 at
    CRF 16-28 afterwards, and a tenth of the time before. Delivered as 8-bit R'G'B'.
    x: shape (3, h, w); returns the same shape."""
    mode = "trunc" if uniform(g, 0, 1) < 0.4 else "round"
    if uniform(g, 0, 1) < 0.1:
        x = _random_light_codec(x, g)
    if uniform(g, 0, 1) < 0.45:
        y = quantise(x, randint(g, 4, 6), mode)
    else:
        luma_bits, chroma_bits = randint(g, 5, 8), randint(g, 4, 7)
        if uniform(g, 0, 1) < 0.3:
            luma_bits, chroma_bits = randint(g, 5, 7), randint(g, 4, 8)
        y = store_ycbcr(x, luma_bits, chroma_bits, 10, mode, _matrix(g), subsampled=uniform(g, 0, 1) < 0.7)
    if uniform(g, 0, 1) < 1 / 3:
        y = _random_light_codec(y, g)
    return quantise(y, 8)


def grid_quantise(x: torch.Tensor, bits: tuple[int, int, int], convention: str = "scaled") -> torch.Tensor:
    """R'G'B' re-quantised per channel to `bits` (4-8 each) and stored as 8-bit codes, as
    an export at fewer bits per channel leaves it: "scaled", the nearest of 2**bits levels
    spread over 0..255 (k * 255 / (2**bits - 1)); "shift", rounded 8-bit codes rounded to a
    multiple of 2**(8 - bits) (a bit shift with rounding; 255 where it clips). x: (3, h, w)."""
    out = []
    for channel, b in zip(x, bits):
        if convention == "scaled":
            out.append(quantise(quantise(channel, b), 8))
        elif convention == "shift":
            q = 2.0 ** (8 - b)
            out.append(((channel.clamp(0, 1) * 255).round() / q).round().mul(q).clamp(max=255) / 255)
        else:
            raise ValueError(f"unknown convention {convention!r}; expected 'scaled' or 'shift'")
    return torch.stack(out)


def random_grid_quantise(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """x re-quantised per channel (`grid_quantise`): 4, 5, 6 or 7 bits (15/35/35/15 %), each
    channel a bit apart from that a fifth of the time (as 5-6-5 colour does); "scaled" 70 %,
    "shift" 30 %. x: (3, h, w); returns the same shape, on the 8-bit code grid."""
    u = uniform(g, 0, 1)
    bits = 4 if u < 0.15 else 5 if u < 0.5 else 6 if u < 0.85 else 7
    per = [bits] * 3
    if uniform(g, 0, 1) < 0.2:
        per = [min(max(bits + randint(g, -1, 1), 4), 7) for _ in range(3)]
    return grid_quantise(x, tuple(per), "scaled" if uniform(g, 0, 1) < 0.7 else "shift")


def random_plane_quantise(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """x stored as BT.709 Y'CbCr planes cut apart from a 10-bit master (`store_ycbcr`): Y' at
    4-8 bits and Cb/Cr at 4-8 bits, at least one of them at 6 or fewer; 4:2:0 70 % (else
    4:4:4); rounded 75 % (else truncated). Delivered as 8-bit R'G'B'. x: (3, h, w)."""
    luma, chroma = randint(g, 4, 8), randint(g, 4, 8)
    while min(luma, chroma) > 6:
        luma, chroma = randint(g, 4, 8), randint(g, 4, 8)
    mode = "round" if uniform(g, 0, 1) < 0.75 else "trunc"
    return quantise(store_ycbcr(x, luma, chroma, 10, mode, "bt709", subsampled=uniform(g, 0, 1) < 0.7), 8)


def _random_light_codec(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """x through x264 or x265 at CRF 16-28 (rates that keep what came before), when PyAV has one."""
    names = [c for c in ("libx264", "libx265") if encoders.available(c)]
    if not names:
        return x
    name = names[randint(g, 0, len(names) - 1)]
    return through_codec(x, name, randint(g, 16, 28), encoders.PRESETS[name][0], matrix=_matrix(g))


def random_delivery(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One banded version of a clean frame x of shape (3, h, w), by a delivery mechanism:
    codec 30 %, luma/chroma re-quantisation 25 %, 10 -> 8 bits 20 %, dark lift 15 %,
    plain 8-bit 4:2:0 10 %."""
    u = uniform(g, 0, 1)
    if u < 0.3:
        return random_codec(x, g)
    if u < 0.55:
        return random_requantise(x, g)
    if u < 0.75:
        return random_ten_to_eight(x, g)
    if u < 0.9:
        return random_dark_lift(x, g)
    return random_ycbcr420(x, g)


def random_banding(
    x: torch.Tensor, g: torch.Generator, codec_probability: float = 0.1, delivery_probability: float = 0.0
) -> torch.Tensor:
    """`random_delivery` with probability delivery_probability, else `degrade.random_degrade`
    (with codec_probability). At delivery_probability 0 it draws exactly what random_degrade
    draws, so the same generator gives the same bits. x: shape (3, h, w)."""
    if delivery_probability > 0 and uniform(g, 0, 1) < delivery_probability:
        return random_delivery(x, g)
    return random_degrade(x, g, codec_probability)

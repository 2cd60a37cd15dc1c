"""Faint real detail that a debander must leave alone: scenes for detail-safety training pairs.

Each scene is a smooth base in a tone family that bands in practice (darks, fog, skin, foliage,
a colour-mapped field) plus a layer of low-contrast detail of 1-4 codes (8-bit) that is real
structure, never a staircase: a thin river network over fractal terrain, fine foliage-like
texture, a fine grating, colour noise or luma grain, or a real image crop squeezed around its
mean. Delivered at 8 bits (`deliver`), such a pair keeps its detail in the input, so the
target (the clean scene) tells the restorer to keep it; the bands of banded pairs come instead
from re-quantising smooth content.

`contrast` of a scene, in 8-bit codes, is what its kind promises: the peak-to-peak range of
the detail layer (the largest over channels) for "terrain", "texture" and "crop", the
amplitude (half the peak-to-peak range) for "grating", and the standard deviation for
"colour_noise" and "luma_grain". Images are (3, h, w) float32 tensors on [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from deband.io.pixels import quantise
from deband.synthesis.degrade import randint, uniform
from deband.synthesis.delivery import random_ycbcr420
from deband.synthesis.sources import fractal_noise, ramp, smooth_noise

CODE = 1 / 255  # one 8-bit code on [0, 1]
CONTRAST = (1.0, 4.0)  # the detail's contrast in codes (see the module docstring)
KINDS = ("terrain", "texture", "grating", "colour_noise", "luma_grain", "crop")
TONES = ("dark", "fog", "skin", "foliage", "colormap")


@dataclass(frozen=True)
class FaintScene:
    """base: the smooth scene, (3, h, w); detail: the faint layer, (3, h, w), about zero-mean
    or one-signed; kind: one of KINDS; contrast: the detail's contrast in codes."""

    base: torch.Tensor
    detail: torch.Tensor
    kind: str
    contrast: float

    @property
    def clean(self) -> torch.Tensor:
        """base + detail, (3, h, w) float32 on [0, 1]."""
        return (self.base + self.detail).clamp(0, 1)


def _tone(g: torch.Generator, kind: str) -> torch.Tensor:
    """A mean colour of the tone family `kind`, shape (3,)."""
    if kind == "dark":
        return uniform(g, 0.03, 0.12) + 0.01 * (torch.rand(3, generator=g) - 0.5)
    if kind == "fog":
        v = uniform(g, 0.55, 0.9)
        return v + 0.03 * (torch.rand(3, generator=g) - 0.5)
    if kind == "skin":
        v = uniform(g, 0.35, 0.95)
        return v * torch.tensor([1.0, uniform(g, 0.7, 0.82), uniform(g, 0.55, 0.72)])
    if kind == "foliage":
        v = uniform(g, 0.12, 0.5)
        return v * torch.tensor([uniform(g, 0.4, 0.8), 1.0, uniform(g, 0.25, 0.55)])
    if kind == "colormap":
        return 0.15 + 0.7 * torch.rand(3, generator=g)
    raise ValueError(f"unknown tone {kind!r}; expected one of {', '.join(TONES)}")


def smooth_base(h: int, w: int, g: torch.Generator, tone: str | None = None) -> torch.Tensor:
    """A smooth field around a tone of family `tone` (random when None): the tone plus a gentle
    ramp of 0-12 codes per channel, kept 6 codes inside [0, 1]. Shape (3, h, w)."""
    tone = tone or TONES[randint(g, 0, len(TONES) - 1)]
    centre = _tone(g, tone)
    slope = (torch.rand(3, generator=g) * 2 - 1) * uniform(g, 0, 12) * CODE
    base = centre[:, None, None] + ramp(h, w, g)[None] * slope[:, None, None]
    return base.clamp(6 * CODE, 1 - 6 * CODE)


def colormap(field: torch.Tensor, stops: torch.Tensor) -> torch.Tensor:
    """field (h, w) on [0, 1] through a piecewise-linear colormap of n stops (n, 3). Returns (3, h, w)."""
    n = stops.shape[0]
    pos = field.clamp(0, 1) * (n - 1)
    i = pos.floor().long().clamp(max=n - 2)
    t = (pos - i)[None]  # (1, h, w)
    return stops[i].permute(2, 0, 1) * (1 - t) + stops[i + 1].permute(2, 0, 1) * t


def _peak_to_peak(detail: torch.Tensor) -> float:
    """The largest max - min over channels, in values on [0, 1]."""
    return (detail.flatten(1).amax(1) - detail.flatten(1).amin(1)).max().item()


def _scaled(detail: torch.Tensor, codes: float) -> torch.Tensor:
    """detail rescaled so its peak-to-peak range (`_peak_to_peak`) is `codes` codes."""
    return detail * (codes * CODE / max(_peak_to_peak(detail), 1e-12))


def _direction(g: torch.Generator, luma: bool) -> torch.Tensor:
    """A colour direction (3,) whose largest |component| is 1: grey when luma, else random."""
    d = torch.ones(3) if luma else torch.rand(3, generator=g) * 2 - 1
    return d / d.abs().max().clamp_min(1e-6)


def river_mask(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """A thin branching line network, 1 on the lines and falling to 0 within 1-2 px. (h, w) on [0, 1].

    The lines are the zero set of a fractal noise field; dividing the field by its gradient
    gives each line about the same width in pixels wherever it runs."""
    n = fractal_noise(h, w, g, octaves=4, base=randint(g, 2, 5))[0]  # (h, w)
    gy, gx = torch.gradient(n)
    dist = n.abs() / (gy**2 + gx**2).sqrt().clamp_min(1e-6)  # about the distance in px to the zero set
    mask = torch.exp(-((dist / uniform(g, 0.5, 1.4)) ** 2))
    return mask / mask.max().clamp_min(1e-6)


def _terrain(h: int, w: int, g: torch.Generator, codes: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A fractal height field through a random 4-6 stop colormap with a low overall contrast,
    and a river network darker or bluer by `codes`."""
    stops = 0.1 + 0.8 * torch.rand((randint(g, 4, 6), 3), generator=g)
    span = uniform(g, 0.05, 0.6)
    stops = stops.mean(0) + (stops - stops.mean(0)) * span
    height = fractal_noise(h, w, g, octaves=5, base=randint(g, 2, 4))[0]
    height = (height - height.min()) / (height.max() - height.min()).clamp_min(1e-6)
    base = colormap(height, stops).clamp(6 * CODE, 1 - 6 * CODE)
    if uniform(g, 0, 1) < 0.5:  # darker, in grey or in some colour
        water = -_direction(g, luma=uniform(g, 0, 1) < 0.5).abs()
    else:  # darker and bluer
        water = torch.tensor([-1.0, -0.5, 0.3])
    return base, river_mask(h, w, g)[None] * water[:, None, None] * codes * CODE / water.abs().max()


def _texture(h: int, w: int, g: torch.Generator, codes: float) -> torch.Tensor:
    """Foliage-like band-pass noise with features of 2-8 px, luma or coloured, `codes` peak to peak."""
    cells = max(2, int(max(h, w) / uniform(g, 2, 8)))
    luma = uniform(g, 0, 1) < 0.6
    tex = smooth_noise(h, w, cells, g, channels=1 if luma else 3)
    return _scaled(tex.expand(3, h, w), codes)


def _grating(h: int, w: int, g: torch.Generator, codes: float) -> torch.Tensor:
    """A sine grating of period 2.5-12 px at any angle, amplitude `codes`, over all or part of the image."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    a, period = uniform(g, 0, math.pi), uniform(g, 2.5, 12)
    wave = torch.sin((math.cos(a) * xx + math.sin(a) * yy) * (2 * math.pi / period) + uniform(g, 0, 2 * math.pi))
    if uniform(g, 0, 1) < 0.4:  # the grating on a soft-edged region only
        wave = wave * (smooth_noise(h, w, 3, g)[0] > 0).float()
    return wave[None] * _direction(g, uniform(g, 0, 1) < 0.7)[:, None, None] * codes * CODE


def compress_crop(crop: torch.Tensor, codes: float) -> torch.Tensor:
    """A real image crop (3, h, w) squeezed around its per-channel mean to `codes` codes peak to
    peak (the largest over channels): its structure, at 1-4 codes of contrast. Zero-mean."""
    detail = crop - crop.mean(dim=(1, 2), keepdim=True)
    return _scaled(detail, codes)


def faint_scene(h: int, w: int, g: torch.Generator, kind: str | None = None,
                crop: torch.Tensor | None = None) -> FaintScene:
    """One scene of `kind` (random when None; "crop" only when a real `crop` (3, h, w) is given)."""
    kinds = KINDS if crop is not None else KINDS[:-1]
    kind = kind or kinds[randint(g, 0, len(kinds) - 1)]
    codes = uniform(g, *CONTRAST)
    if kind == "terrain":
        base, detail = _terrain(h, w, g, codes)
        return FaintScene(base, detail, kind, codes)
    base = smooth_base(h, w, g)
    if kind == "texture":
        detail = _texture(h, w, g, codes)
    elif kind == "grating":
        detail = _grating(h, w, g, codes)
    elif kind == "colour_noise":
        detail = torch.randn((3, h, w), generator=g) * codes * CODE
    elif kind == "luma_grain":
        detail = torch.randn((1, h, w), generator=g).expand(3, h, w) * codes * CODE
    elif kind == "crop":
        if crop is None:
            raise ValueError("kind 'crop' needs a crop")
        detail = compress_crop(crop, codes)
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return FaintScene(base, detail, kind, codes)


def deliver(clean: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """clean at 8 bits as delivered: rounded R'G'B' codes (half the time) or limited-range
    Y'CbCr 4:2:0 (`delivery.random_ycbcr420`). Nothing coarser: the detail survives."""
    if uniform(g, 0, 1) < 0.5:
        return quantise(clean, 8)
    return random_ycbcr420(clean, g)


def faint_pair(size: int, g: torch.Generator,
               crops: Callable[[int], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, delivered) of a random faint scene, each (3, size, size): the target is clean.
    `crops(size)` gives a real crop (3, size, size) for the "crop" kind (left out when None)."""
    kinds = KINDS if crops is not None else KINDS[:-1]
    kind = kinds[randint(g, 0, len(kinds) - 1)]
    crop = crops(size) if kind == "crop" else None
    clean = faint_scene(size, size, g, kind, crop).clean
    return clean, deliver(clean, g)

"""The faint-detail set of `deband eval`: images whose detail is 1-4 codes of contrast at 8 bits.

A debander that smooths everything under a few codes removes bands and this detail alike.
The set holds crops of the corpus's held-out images where faint detail covers most of the
window (`realsets.faint_map`) and procedural scenes made to have it (`faint_scene`): a
colour-mapped terrain with a river network, fog, dark textures and skin-like low-contrast
noise, each with detail of a contrast drawn from 1-4 codes (the RMS of a sinusoid that many
codes peak to peak). Every image is delivered as
8-bit R'G'B' (rounded, no dither); the clean target is the image before that. It is scored
with PSNR and `scoring.detail_kept`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from deband.evaluation.evalsets import Pair
from deband.evaluation.realsets import Image, corpus_crops, faint_map
from deband.io.pixels import quantise
from deband.synthesis.faint import colormap
from deband.synthesis.sources import fractal_noise, smooth_noise

FAINT_SEED = 50_000  # the procedural faint scenes
FAINT_KINDS = ("terrain", "fog", "dark texture", "skin")
CONTRAST = (1.0, 4.0)  # 8-bit codes, peak to peak, of the faint detail
# terrain colours from low to high ground: water, shore, grass, hills, rock
TERRAIN = torch.tensor([[0.16, 0.28, 0.40], [0.42, 0.46, 0.36], [0.34, 0.44, 0.26],
                        [0.46, 0.42, 0.30], [0.58, 0.55, 0.50]])


def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _to_contrast(t: torch.Tensor, codes: float) -> torch.Tensor:
    """t rescaled to a contrast of `codes` 8-bit codes around zero: the RMS of a sinusoid
    `codes` peak to peak, codes / (2 sqrt 2)."""
    return (t - t.mean()) / t.std().clamp_min(1e-8) * codes / (2 * math.sqrt(2) * 255)


def terrain(h: int, w: int, g: torch.Generator, codes: float) -> torch.Tensor:
    """A colour-mapped height field from fractal noise with a river network: rivers run
    where a second noise field crosses zero. The heights' fine octaves and the rivers
    are `codes` codes deep; the broad relief is smooth. Returns (3, h, w) on [0, 1]."""
    relief = fractal_noise(h, w, g, octaves=3, base=2)[0]
    relief = (relief - relief.min()) / (relief.max() - relief.min()).clamp_min(1e-8)
    img = colormap(0.15 + 0.7 * relief, TERRAIN)
    fine = fractal_noise(h, w, g, octaves=3, base=max(4, min(h, w) // 8))[0]  # features of 2-8 px
    rivers = torch.exp(-((fractal_noise(h, w, g, octaves=4, base=3)[0] / 0.02) ** 2))  # thin lines near 0
    detail = _to_contrast(fine, codes) - rivers * codes / 255
    tint = torch.tensor([0.8, 0.9, 1.1])[:, None, None]  # the rivers lean blue
    return (img + detail * tint).clamp(0, 1)


def fog(h: int, w: int, g: torch.Generator, codes: float) -> torch.Tensor:
    """A bright, desaturated vertical gradient with wisps of fine noise `codes` deep."""
    yy = torch.linspace(0, 1, h)[:, None].expand(h, w)
    top, bottom = _u(g, 0.55, 0.7), _u(g, 0.72, 0.88)
    base = (top + (bottom - top) * yy)[None] * torch.tensor([0.97, 0.99, 1.0])[:, None, None]
    wisps = fractal_noise(h, w, g, octaves=3, base=max(4, min(h, w) // 8))[0]  # features of 2-8 px
    return (base + _to_contrast(wisps, codes)).clamp(0, 1)


def dark_texture(h: int, w: int, g: torch.Generator, codes: float) -> torch.Tensor:
    """A dark wall (values 0.03-0.12, a soft vignette) with a woven texture `codes` deep."""
    level = _u(g, 0.03, 0.1)
    shade = smooth_noise(h, w, 2, g)[0] * 0.02
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    period = _u(g, 5.0, 12.0)
    weave = torch.sin(2 * math.pi * xx / period) * torch.sin(2 * math.pi * yy / (period * 1.3))
    weave = weave + 0.5 * smooth_noise(h, w, max(4, min(h, w) // 8), g)[0]
    tone = torch.tensor([1.0, 0.95, 0.9])[:, None, None]
    return ((level + shade + _to_contrast(weave, codes))[None] * tone).clamp(0, 1)


def skin(h: int, w: int, g: torch.Generator, codes: float) -> torch.Tensor:
    """A skin tone under soft shading with pore-like blurred noise `codes` deep, in luma
    and a little more in red."""
    colour = torch.tensor([_u(g, 0.75, 0.9), _u(g, 0.55, 0.65), _u(g, 0.45, 0.55)])[:, None, None]
    shade = 0.85 + 0.15 * smooth_noise(h, w, 2, g)
    pores = F.avg_pool2d(torch.randn((1, 1, h + 2, w + 2), generator=g), 3, stride=1)[0, 0]
    detail = _to_contrast(pores, codes) * torch.tensor([1.2, 1.0, 0.9])[:, None, None]
    return (colour * shade + detail).clamp(0, 1)


def faint_scene(kind: str, size: int, g: torch.Generator) -> torch.Tensor:
    """One procedural faint-detail scene of `kind` (FAINT_KINDS), its detail contrast drawn
    from CONTRAST codes. Returns (3, size, size) float32 on [0, 1], high precision."""
    codes = _u(g, *CONTRAST)
    if kind == "terrain":
        return terrain(size, size, g, codes)
    if kind == "fog":
        return fog(size, size, g, codes)
    if kind == "dark texture":
        return dark_texture(size, size, g, codes)
    if kind == "skin":
        return skin(size, size, g, codes)
    raise ValueError(f"unknown faint scene {kind!r}; expected one of {FAINT_KINDS}")


def faint_set(images: list[Image], n: int, size: int, seed: int = FAINT_SEED) -> list[Pair]:
    """n corpus crops (`corpus_crops` with `faint_map`; none without images) and n
    procedural scenes (kinds in turn), each delivered as 8-bit R'G'B', rounded."""
    g = torch.Generator().manual_seed(seed)
    clean = [(f"faint: {label}", crop) for label, crop in corpus_crops(images, n, size, faint_map)]
    for i in range(n):
        kind = FAINT_KINDS[i % len(FAINT_KINDS)]
        clean.append((f"faint: {kind} {i}", faint_scene(kind, size, g).permute(1, 2, 0).numpy().copy()))
    return [Pair(c, quantise(c, 8).astype(np.float32), name) for name, c in clean]

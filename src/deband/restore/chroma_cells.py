"""Cb/Cr delivered 4:2:0 at 4-6 bits: find each chroma sample's cell, and place the chroma
within the cells by the luma texture.

Chroma stored at a few bits, then shown upsampled, leaves coloured blotches over texture
that no smoothing removes: over hair, skin or fabric the clean chroma is textured too, and
blurring it loses more than the steps cost (`benchmarks/chroma_room.py`). But there the clean
chroma is, window by window, close to a linear function of the luma, and the luma was kept
at 8 bits. So the chroma is placed by alternating projections (`place`): made locally linear
in Y' (a guided filter of the estimate by Y'), then moved back until each 2 x 2 block's mean
lies in its sample's cell, `PLACE_ITERATIONS` times. Values never leave their cells; where
the chroma crosses levels inside a window, the crossings pin the fit, and where it does not,
the cell bounds it.

The cells come from the delivered image alone (`cells`): its Cb/Cr are the 4:2:0 samples
upsampled bilinearly (`deband.io.chroma`), so the samples are recovered by inverting that
(`samples`: a few fixed-point iterations on the 2 x 2 block means, whose operator's response
lies in [1/4, 1]), and a sample's grid (limited-range 8-bit codes 4, 8 or 16 apart) is where
those samples sit on it over the window around each tile, as `Guard.plane_grid` finds it in
4:4:4 planes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deband.io.chroma import downsample, upsample
from deband.io.pixels import rgb_to_ycbcr, ycbcr_to_rgb
from deband.restore.guard import PLANE_OFFSET, PLANE_SCALE, Guard, _full

SAMPLE_ITERATIONS = 5  # fixed-point iterations recovering the samples (error under 1 % of a code by then)
SAMPLE_GAIN = 1.5  # their step: 2 / (1 + 1/4), the fastest for a response in [1/4, 1]
PLACE_WINDOW = 5  # pixels: the side of the windows the linear fits are made over
PLACE_ITERATIONS = 30  # alternating projections
PLACE_EPS = 1e-5  # regularises the fit where Y' is flat (Y' variance on [0, 1])


def _block_means_of_upsampled(s: torch.Tensor) -> torch.Tensor:
    """The 2 x 2 block means of s (m, 1, h, w) upsampled bilinearly (centred siting): s
    filtered by [1/8, 3/4, 1/8] along each axis, edges replicated (exact for even sizes)."""
    k = s.new_tensor([0.125, 0.75, 0.125])
    s = F.conv2d(F.pad(s, (1, 1, 0, 0), mode="replicate"), k.view(1, 1, 1, 3))
    return F.conv2d(F.pad(s, (0, 0, 1, 1), mode="replicate"), k.view(1, 1, 3, 1))


def samples(means: torch.Tensor) -> torch.Tensor:
    """The 4:2:0 samples (n, c, hc, wc) whose bilinear upsampling (centred siting) has the
    2 x 2 block means `means` (n, c, hc, wc): those means, corrected by fixed-point iterations."""
    n, c, hc, wc = means.shape
    m = means.reshape(n * c, 1, hc, wc)
    s = m
    for _ in range(SAMPLE_ITERATIONS):
        s = s + SAMPLE_GAIN * (m - _block_means_of_upsampled(s))
    return s.reshape(n, c, hc, wc)


def cells(x: torch.Tensor, guard: Guard = Guard()) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4:2:0 Cb/Cr samples of R'G'B' x (n, 3, h, w) on their grid's levels, and half that
    grid's step, both (n, 2, ceil(h/2), ceil(w/2)) in `rgb_to_ycbcr`'s units; half is 0
    (and the level the recovered sample) where no grid is found."""
    n, _, h, w = x.shape
    hc, wc = -(-h // 2), -(-w // 2)
    s = samples(rgb_to_ycbcr(downsample(x, hc, wc))[:, 1:])  # the matrix is linear: the planes' block means
    codes = s * PLANE_SCALE[1] + PLANE_OFFSET[1]
    step = 2 * guard.sample_grid(codes.reshape(2 * n, 1, hc, wc)).reshape(n, 2, hc, wc)  # codes; 0 where none
    return on_levels(s, step), step / (2 * PLANE_SCALE[1])


def on_levels(c: torch.Tensor, step: torch.Tensor | float) -> torch.Tensor:
    """Cb/Cr values (`rgb_to_ycbcr`'s units) moved onto the grid of limited-range 8-bit codes
    `step` apart (per value, or one for all); those whose step is 0 stay as they are."""
    codes = c * PLANE_SCALE[1] + PLANE_OFFSET[1]
    step = torch.as_tensor(step, dtype=c.dtype)
    codes = torch.where(step > 0, (codes / step.clamp(min=1)).round() * step, codes)
    return (codes - PLANE_OFFSET[1]) / PLANE_SCALE[1]


def linear_fit(guide: torch.Tensor, target: torch.Tensor, window: int = PLACE_WINDOW, eps: float = PLACE_EPS):
    """target (n, c, h, w) as a + b * guide (n, 1, h, w), fitted over each window x window
    window (odd), the fits of the windows that hold a pixel averaged (a guided filter)."""
    c = target.shape[1]

    def box(a: torch.Tensor) -> torch.Tensor:  # separable: two 1-D means, edges replicated
        r = window // 2
        a = F.avg_pool2d(F.pad(a, (r, r, 0, 0), mode="replicate"), (1, window), stride=1)
        return F.avg_pool2d(F.pad(a, (0, 0, r, r), mode="replicate"), (window, 1), stride=1)

    means = box(torch.cat([guide, guide * guide, target, guide * target], 1))
    mg, mgg, mt, mgt = means[:, :1], means[:, 1:2], means[:, 2 : 2 + c], means[:, 2 + c :]
    b = (mgt - mg * mt) / (mgg - mg * mg + eps)
    coeffs = box(torch.cat([b, mt - b * mg], 1))
    return coeffs[:, :c] * guide + coeffs[:, c:]


def place(
    levels: torch.Tensor, half: torch.Tensor, luma: torch.Tensor, start: torch.Tensor,
    iterations: int = PLACE_ITERATIONS,
) -> torch.Tensor:
    """Cb/Cr (n, 2, h, w) locally linear in luma (n, 1, h, w) with each 2 x 2 block's mean
    within half (n, 2, h/2, w/2) of its level, from `start` (n, 2, h, w), by `iterations`
    alternating projections; blocks whose half is 0 keep `start`'s values."""
    h, w = luma.shape[-2:]
    est = start
    for _ in range(iterations):
        est = linear_fit(luma, est)
        off = downsample(est, *levels.shape[-2:]) - levels
        est = est + _full(torch.minimum(torch.maximum(off, -half), half) - off, 2, h, w)
    return torch.where(_full(half, 2, h, w) > 0, est, start)


def restore_cells(x: torch.Tensor, restored: torch.Tensor, guard: Guard = Guard()) -> torch.Tensor:
    """`restored` (n, 3, h, w), its Cb/Cr placed in the cells of x's 4:2:0 chroma grid
    (`cells`, `place`, guided by restored's Y') wherever one is found; unchanged elsewhere."""
    levels, half = cells(x, guard)
    if not bool((half > 0).any()):
        return restored
    ycc = rgb_to_ycbcr(restored)
    h, w = x.shape[-2:]
    start = torch.where(_full(half, 2, h, w) > 0, upsample(levels, h, w), ycc[:, 1:])
    cbcr = place(levels, half, ycc[:, :1], start)
    return ycbcr_to_rgb(torch.cat([ycc[:, :1], cbcr], 1)).clamp(0, 1)

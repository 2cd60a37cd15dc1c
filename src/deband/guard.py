"""The detail guard: the restorer moves a pixel only as far as banding could have moved it.

A banded image was made by quantising a smooth one, so its true value lies within half a
quantisation step of the delivered one, and a restorer never needs to go further than
that. Faint real detail (1-4 codes of contrast) was delivered as it is, and a restorer
that smooths it away moves pixels by as much as the detail's contrast. The guard bounds
the restorer's change `restored - x` per pixel, from the input alone:

- where the input is *flat* (over a window of `blocks` x `blocks` blocks of `block` pixels
  around the pixel's block, more than `flat_share` of the neighbour differences are under
  `flat_diff`, i.e. plateaus with step edges between them: bands), the bound is
  `step_share` of the largest neighbour difference in that window (the band step; capped
  at `step_cap`, at least `cell`): enough to dissolve the steps (half a step is the most
  that rounding moved any pixel);
- elsewhere (texture, grain, faint detail: the values change every few pixels) the bound
  is `cell`, a quarter of an 8-bit code. The true value of delivered detail lies within
  half a code of the delivered one, but which way it lies is what a restorer that smooths
  detail gets wrong, so the guard lets it go only half of that way: the output is never
  more than 0.75 code from the truth there, and a restorer that does denoise the rounding
  still gets to do most of it.

Differences are the largest over R', G' and B'. The bound is computed per block (bands are
tens of pixels wide, so it varies slowly). Values are on [0, 1]; the defaults are in 8-bit
codes (1 / 255). What it does to every set is measured by `deband eval`, which scores
the restorer with and without it; see the README's results.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

CODE = 1 / 255  # one 8-bit code on [0, 1]


@dataclass(frozen=True)
class Guard:
    """The guard's settings (see the module docstring); values on [0, 1], windows in pixels."""

    block: int = 8  # pixels: the bound is one value per block x block pixels
    blocks: int = 9  # side, in blocks, of the window over which flatness and the band step are measured
    flat_share: float = 0.65  # a pixel lies in bands when more of its window is flat than this
    flat_diff: float = 0.25 * CODE  # a neighbour difference under this is flat
    cell: float = 0.25 * CODE  # the bound outside bands: half the 8-bit rounding error's largest
    step_share: float = 0.6  # the bound inside bands, as a share of the band step
    step_cap: float = 12 * CODE  # band steps are taken as at most this

    def __post_init__(self) -> None:
        if self.block < 1:
            raise ValueError(f"block must be at least one pixel, got {self.block}")
        if self.blocks < 1 or self.blocks % 2 == 0:
            raise ValueError(f"blocks must be an odd number, got {self.blocks}")

    def bound(self, x: torch.Tensor) -> torch.Tensor:
        """How far each pixel of x may move. x: (n, c, h, w) on [0, 1]; returns (n, 1, h, w)."""
        dx, dy = _neighbour_diffs(x)
        flat = ((dx < self.flat_diff).to(x.dtype) + (dy < self.flat_diff).to(x.dtype)) / 2
        share = _window(_blocks(flat, self.block, F.avg_pool2d), self.blocks, F.avg_pool2d)
        step = _window(_blocks(torch.maximum(dx, dy), self.block, F.max_pool2d), self.blocks, F.max_pool2d)
        inside = (self.step_share * step.clamp(max=self.step_cap)).clamp(min=self.cell)
        b = torch.where(share > self.flat_share, inside, torch.full_like(inside, self.cell))
        h, w = x.shape[-2:]
        return F.interpolate(b, scale_factor=float(self.block), mode="nearest")[..., :h, :w]

    def __call__(self, x: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
        """restored, moved back to within `bound(x)` of x. Both (n, c, h, w) on [0, 1], same
        device; returns the same shape."""
        b = self.bound(x)
        return x + torch.minimum(torch.maximum(restored - x, -b), b)


def _neighbour_diffs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|x(i, j+1) - x(i, j)| and |x(i+1, j) - x(i, j)|, the largest over channels, 0 past the
    last column and row. x: (n, c, h, w); returns two (n, 1, h, w)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().amax(1, keepdim=True)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().amax(1, keepdim=True)
    return F.pad(dx, (0, 1, 0, 0)), F.pad(dy, (0, 0, 0, 1))


def _blocks(a: torch.Tensor, block: int, pool) -> torch.Tensor:
    """`pool` (F.avg_pool2d or F.max_pool2d) of a (n, 1, h, w) over block x block tiles; a
    partial tile at the right or bottom pools what it has. Returns (n, 1, ceil(h / block),
    ceil(w / block))."""
    if pool is F.avg_pool2d:
        return F.avg_pool2d(a, block, ceil_mode=True, count_include_pad=False)
    return F.max_pool2d(a, block, ceil_mode=True)


def _window(a: torch.Tensor, k: int, pool) -> torch.Tensor:
    """`pool` (F.avg_pool2d or F.max_pool2d) of a (n, 1, h, w) over k x k windows centred on
    each pixel, edges replicated; done as a row pass then a column pass."""
    r = k // 2
    a = F.pad(a, (r, r, r, r), mode="replicate")
    return pool(pool(a, (1, k), stride=1), (k, 1), stride=1)

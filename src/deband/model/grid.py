"""The grid stages: where values sit on a coarse grid, place each pixel within its cell.

An image re-quantised to 4-7 bits per channel (a 6-bit export, a 16-bit colour buffer), or
whose Y'CbCr planes were stored at 4-6 bits, shows its grid in its values: every value of a
channel (or plane) over a region is one of the grid's levels, and the truth lies within half
a step of it. Over smooth areas the restorer's output (the U-Net's, through the detail
guard) already says where (it dissolves the steps); over texture it moves little, and the
truth is anywhere in a cell of 4-16 codes. A stage is a small network that looks at the
values in units of their own step, at the restorer's output and at the step, and moves each
value by `tanh(.)` of half a step: never out of its cell, the input itself where no grid was
found (half step 0). It starts from the restorer's output clamped to the cell (tanh's
argument holds atanh of that change) and learns what to add. The grids are found by
`Guard.grid_bound` (R'G'B' channels) and `Guard.plane_grid` (Y'CbCr planes), from the input
alone (the channel stage on grids of 6 bits or coarser: `Debander`'s `STAGE_BITS`).

Their weights live beside the U-Net's in the same file (`ModelConfig.grid_width`,
`planes_width`); each is trained alone, on quantised real images, the U-Net frozen
(`deband.training.grid`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CODE = 1 / 255
SCALE = 4  # the body works at 1/SCALE resolution on blocks of SCALE x SCALE pixels (space to depth)
DILATIONS = (1, 2, 4, 1)  # of its 3x3 convolutions: a field of 17 blocks, 68 px
PRIOR = 0.98  # the restorer's change, in half steps, enters tanh's argument as atanh(PRIOR * change)
PIXEL_FEATURES = 2  # per channel and pixel: the value in grid steps, the restorer's change in half steps
BLOCK_FEATURES = 2  # per channel and block: the step, and the share of the block on a grid


class GridStage(nn.Module):
    """forward(x, out, half): x (n, 3, h, w) the input on [0, 1]; out the restorer's output;
    half (n, 3, h, w) half the grid step per channel and pixel, 0 where there is none.
    Returns x + tanh(.) * half: each pixel within its cell (x where half is 0). Untrained,
    it is (almost exactly) `out` clamped to the cell; it learns a correction to that.

    The per-pixel features enter as blocks of 4 x 4 pixels (a 1x1 convolution over each
    block's 16 x 15 values), the body works on blocks, and each block's 16 x 3 corrections
    leave the same way: full-resolution detail at the cost of a network on 1/16 of the pixels.
    """

    def __init__(self, width: int = 32, channels: int = 3):
        super().__init__()
        self.stem = nn.Conv2d((SCALE * SCALE * PIXEL_FEATURES + BLOCK_FEATURES) * channels, width, 1)
        self.body = nn.ModuleList(nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in DILATIONS)
        self.head = nn.Conv2d(width, SCALE * SCALE * channels, 1)
        nn.init.zeros_(self.head.weight)  # starts as the restorer's output kept in the cell
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, out: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % SCALE, -w % SCALE
        if ph or pw:
            x, out, half = (F.pad(t, (0, pw, 0, ph), mode="replicate") for t in (x, out, half))
        found = (half > 0).to(x.dtype)
        change = ((out - x) / half.clamp(min=CODE / 2)).clamp(-4, 4) * found  # in half steps
        level = x / (2 * half).clamp(min=CODE) * found  # in steps: within a block, their differences
        blocks = F.avg_pool2d(torch.cat([half / (8 * CODE), found]), SCALE)  # (2n, c, h/4, w/4)
        n = x.shape[0]
        stem_in = torch.cat([F.pixel_unshuffle(torch.cat([level, change], 1), SCALE), blocks[:n], blocks[n:]], 1)
        a = F.relu(self.stem(stem_in))
        for conv in self.body:
            a = a + F.relu(conv(a))
        r = torch.tanh(torch.atanh(PRIOR * change.clamp(-1, 1)) + F.pixel_shuffle(self.head(a), SCALE))
        return (x + r * half)[..., :h, :w]

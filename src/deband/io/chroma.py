"""Chroma subsampling: full-resolution Cb/Cr onto a coarser grid and back.

Planes are torch tensors of shape (..., h, w), float32. Chroma samples sit at the centre
of the luma samples they cover (JPEG/MPEG-1 siting): subsampling box-averages each block,
upsampling interpolates bilinearly between block centres. Odd sizes round the chroma grid
up, the missing edge samples repeated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def downsample(c: torch.Tensor, hc: int, wc: int) -> torch.Tensor:
    """Chroma (..., h, w) -> (..., hc, wc) by box averaging (edge-padded); e.g. 4:2:0 with
    hc, wc = ceil(h / 2), ceil(w / 2)."""
    h, w = c.shape[-2:]
    if (h, w) == (hc, wc):
        return c
    sy, sx = -(-h // hc), -(-w // wc)
    flat = c.reshape(-1, 1, h, w)  # (n, 1, h, w)
    padded = F.pad(flat, (0, wc * sx - w, 0, hc * sy - h), mode="replicate")
    return F.avg_pool2d(padded, (sy, sx)).reshape(*c.shape[:-2], hc, wc)


def upsample(c: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Chroma (..., hc, wc) -> (..., h, w), bilinear with centred siting."""
    hc, wc = c.shape[-2:]
    if (hc, wc) == (h, w):
        return c
    sy, sx = -(-h // hc), -(-w // wc)  # 2 or 1 (ceil for odd sizes)
    flat = c.reshape(-1, 1, hc, wc)  # (n, 1, hc, wc)
    up = F.interpolate(flat, scale_factor=(sy, sx), mode="bilinear", align_corners=False)
    return up[..., :h, :w].reshape(*c.shape[:-2], h, w)


def subsample_420(c: torch.Tensor) -> torch.Tensor:
    """Chroma (..., h, w) -> (..., ceil(h / 2), ceil(w / 2)), box-averaged."""
    h, w = c.shape[-2:]
    return downsample(c, -(-h // 2), -(-w // 2))

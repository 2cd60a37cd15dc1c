"""Quality metrics: PSNR and SSIM against a clean reference."""

from __future__ import annotations

import torch


def psnr(x: torch.Tensor, ref: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """PSNR in dB per image. x, ref: shape (b, c, h, w) or (c, h, w), range [0, 1]. Returns (b,)."""
    if x.ndim == 3:
        x, ref = x[None], ref[None]
    mse = (x.double() - ref.double()).square().flatten(1).mean(1)
    return (10 * torch.log10(peak**2 / mse.clamp_min(1e-20))).float()

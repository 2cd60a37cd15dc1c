"""Tiny networks for tests: TINY (a small UNet, made non-trivial by `randomised`) and IDENTITY
(untrained, with no smoothing scales: exactly its input)."""

import torch

from deband.config import ModelConfig

TINY = ModelConfig(channels=(8, 12, 16), refine=4, time_dim=16, smooth_scales=3)
IDENTITY = ModelConfig(channels=(8, 12, 16), refine=4, time_dim=16, smooth_scales=0)  # untrained: exactly x


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give the zero-initialised layers small random weights so the net is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()

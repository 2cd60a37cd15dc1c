"""Inversion by Direct Iteration (Delbracio & Milanfar, TMLR 2023, arXiv:2303.11435).

Clean x, degraded y, t in [0, 1]: x_t = (1 - t) x + t y (+ t * eps * eta). A network
F(x_t, t) predicts x. Sampling (the paper's Algorithm 1) starts from x_1 = y and steps
x_{t-d} = (d / t) F(x_t, t) + (1 - d / t) x_t down to t = 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def interpolate(
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor,
    eps: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """x_t = (1 - t) x + t y + t * eps * noise.

    x, y (Tensor): shape (b, c, h, w), range [0, 1], float32. t (Tensor): shape (b,).
    noise: standard normal of x's shape, needed when eps > 0.
    """
    tt = t.reshape(-1, 1, 1, 1).to(x.dtype)
    x_t = (1 - tt) * x + tt * y
    if eps > 0:
        if noise is None:
            raise ValueError("eps > 0 needs a noise tensor")
        x_t = x_t + tt * eps * noise
    return x_t


def sample_t(batch: int, generator: torch.Generator | None = None, one_fraction: float = 0.0) -> torch.Tensor:
    """Training times: uniform on (0, 1], with `one_fraction` of them set exactly to 1.

    Returns shape (batch,), float32.
    """
    t = 1.0 - torch.rand(batch, generator=generator)  # (0, 1]
    if one_fraction > 0:
        ones = torch.rand(batch, generator=generator) < one_fraction
        t = torch.where(ones, torch.ones_like(t), t)
    return t


def timesteps(steps: int, t_start: float = 1.0) -> list[float]:
    """The decreasing grid t_start = t_0 > t_1 > ... > t_steps = 0."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if not 0.0 < t_start <= 1.0:
        raise ValueError("t_start must be in (0, 1]")
    return [t_start * (1 - i / steps) for i in range(steps + 1)]


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    y: torch.Tensor,
    steps: int,
    t_start: float = 1.0,
    eps: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """INDI Algorithm 1: restore y by `steps` direct iterations from t_start to 0.

    denoiser: callable (x_t, t) -> x0_hat, with t a tensor of shape (b,).
    y (Tensor): shape (b, c, h, w), range [0, 1], float32: the degraded image, taken as x_{t_start}.
    eps: noise level added to the start (eps * t_start * eta); later steps shrink it as
    the paper's deterministic update does. Returns x_0, the shape and dtype of y.
    """
    grid = timesteps(steps, t_start)
    x = y
    if eps > 0:
        noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        x = y + t_start * eps * noise  # x_{t_start} = y + t * eps * eta
    for t, s in zip(grid[:-1], grid[1:]):
        tt = torch.full((y.shape[0],), t, device=y.device, dtype=torch.float32)
        x0_hat = denoiser(x, tt)  # F(x_t, t)
        x = (s / t) * x + (1 - s / t) * x0_hat  # x_{t-d} = (d/t) F + (1 - d/t) x_t, d = t - s
    return x

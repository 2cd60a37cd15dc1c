"""Training losses. Each returns one value per sample, shape (b,); the caller reduces."""

from __future__ import annotations

import torch

from deband.config import LossConfig
from deband.restore.guard import Guard


def pixel_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """pred, target (Tensor): shape (b, c, h, w), range [0, 1]. Returns shape (b,)."""
    d = (pred - target).float()
    if kind == "l1":
        v = d.abs()
    elif kind == "l2":
        v = d.square()
    elif kind == "charbonnier":
        v = torch.sqrt(d.square() + 1e-6)
    else:
        raise ValueError(f"unknown pixel loss {kind!r}")
    return v.flatten(1).mean(1)


def fft_magphase_loss(
    pred: torch.Tensor, target: torch.Tensor, phase_weight: float = 1.0, floor: float = 1e-3
) -> torch.Tensor:
    """Magnitude and phase of the 2-D FFT compared per channel.

    Magnitude: L1 between log(1 + |F| / floor), so DC does not dominate and every octave
    counts. Phase: 1 - cos(dphi), wrap-safe, weighted by the target's share of magnitude
    so that noise-level bins, whose phase is arbitrary, carry little weight.
    pred, target (Tensor): shape (b, c, h, w), range [0, 1]. Returns shape (b,).
    """
    fp = torch.fft.rfft2(pred.float(), norm="ortho")  # (b, c, h, w//2+1) complex64
    ft = torch.fft.rfft2(target.float(), norm="ortho")  # (b, c, h, w//2+1) complex64
    mp, mt = fp.abs(), ft.abs()
    mag = (torch.log1p(mp / floor) - torch.log1p(mt / floor)).abs().flatten(1).mean(1)
    prod = mp * mt
    one_minus_cos = (prod - (fp * ft.conj()).real) / (prod + floor**2)  # 1 - cos(phi_p - phi_t), wrap-safe
    w = mt / (mt.flatten(2).sum(-1)[..., None, None] + 1e-12)  # (b, c, h, w//2+1), sums to 1
    phase = (w * one_minus_cos).flatten(1).sum(1) / pred.shape[1]
    return mag + phase_weight * phase


def fft_reim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 on the unnormalised real and imaginary parts of the 2-D FFT difference.

    pred, target (Tensor): shape (b, c, h, w). Returns shape (b,).
    """
    d = torch.fft.fft2(pred.float()) - torch.fft.fft2(target.float())  # (b, c, h, w) complex64
    return (d.real.abs() + d.imag.abs()).flatten(1).mean(1)


class RestorationLoss:
    """Pixel term plus an FFT term, weighted as `LossConfig` says. Called as loss(pred, target)."""

    def __init__(self, config: LossConfig = LossConfig()):
        self.config = config

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, degraded: torch.Tensor | None = None) -> torch.Tensor:
        """pred, target, degraded: shape (b, c, h, w). With `normalise`, each sample's loss is
        divided by the degraded input's loss (at least `normalise_floor`), so that every image
        counts by how much of its own error is removed, not by how coarse its banding was.
        With `guard`, pred is first bounded by the detail guard around the degraded input, as
        inference bounds its output: pixels the guard holds back pass no gradient. Returns
        shape (b,)."""
        if self.config.guard and degraded is not None:
            pred = Guard()(degraded.to(pred.dtype), pred)
        loss = self._raw(pred, target)
        if self.config.normalise and degraded is not None:
            loss = loss / self._raw(degraded, target).detach().clamp_min(self.config.normalise_floor)
        return loss

    def _raw(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        loss = cfg.pixel_weight * pixel_loss(pred, target, cfg.pixel)
        if cfg.fft == "magphase":
            loss = loss + cfg.fft_weight * fft_magphase_loss(pred, target, cfg.phase_weight)
        elif cfg.fft == "reim":
            loss = loss + cfg.fft_weight * fft_reim_loss(pred, target)
        elif cfg.fft != "none":
            raise ValueError(f"unknown fft loss {cfg.fft!r}")
        return loss

"""The restoration network F(x_t, t) -> x0_hat: a compact, fully convolutional U-Net.

Bands are tens to hundreds of pixels wide, so a pixel inside a flat band can only be
restored by a network that sees the band's edges. The stem folds 4x4 pixels into channels
(space-to-depth), with their local detail amplified so that one-code steps are visible to
the first layer, and every level halves the resolution again: the deepest features sit at
1/64 scale and the receptive field spans several hundred pixels at a small cost per pixel.

The output is built to make debanding easy to learn: per pixel and channel, a softmax blend
of the input and copies of it smoothed over 2, 4, ... 64 pixels (the network decides where
to smooth and how widely), plus a small direct correction refined at full resolution.
With `chroma_scales`, a second stage blends the output's Cb and Cr on their own, at the
features' resolution, over candidates up to hundreds of pixels wide: chroma blotches over
textured luma can be dissolved while the luma texture stays. It starts as the identity (a
zero gate per plane), so a model grown from one without it first gives that model's output.
There is no normalisation over space and no global pooling, so a tile of an image gives the
same result as the whole image away from its border.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from deband.config import ModelConfig
from deband.io.pixels import rgb_to_ycbcr, ycbcr_to_rgb
from deband.model.blend import blend
from deband.model.grid import GridStage


def time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t.

    t (Tensor): shape (b,), range [0, 1]. Returns shape (b, dim), float32.
    """
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -(math.log(1000.0) / half))
    args = t.float()[:, None] * 1000.0 * freqs[None]  # (b, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    """conv-act-FiLM(t)-conv with an identity shortcut; starts as the identity."""

    def __init__(self, ch: int, time_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.film = nn.Linear(time_dim, 2 * ch)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(temb)[:, :, None, None].chunk(2, dim=1)  # (b, ch, 1, 1) each
        h = self.conv1(F.silu(x))
        h = h * (1 + scale) + shift
        return x + self.conv2(F.silu(h))


class UNet(nn.Module):
    """Predicts the clean image from x_t and t.

    forward(x_t, t): x_t (Tensor) shape (b, c, h, w), range about [0, 1], float32;
    t (Tensor) shape (b,) or scalar, range [0, 1]. Returns x0_hat, same shape as x_t.
    Any h, w: the input is padded to a multiple of `config.multiple` and cropped back.
    """

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        c, r, chs = config.in_channels, config.unshuffle, config.channels
        self.time_mlp = nn.Sequential(
            nn.Linear(config.time_dim, config.time_dim), nn.SiLU(), nn.Linear(config.time_dim, config.time_dim)
        )
        self.stem = nn.Conv2d(2 * c * r * r + c, chs[0], 3, padding=1)
        self.enc = nn.ModuleList(
            nn.ModuleList(ResBlock(ch, config.time_dim) for _ in range(config.blocks)) for ch in chs
        )
        self.down = nn.ModuleList(nn.Conv2d(a, b, 2, stride=2) for a, b in zip(chs[:-1], chs[1:]))
        self.up = nn.ModuleList(nn.Conv2d(b, a, 1) for a, b in zip(chs[:-1], chs[1:]))
        self.dec = nn.ModuleList(
            nn.ModuleList(ResBlock(ch, config.time_dim) for _ in range(config.blocks)) for ch in chs[:-1]
        )
        self.head = nn.Conv2d(chs[0], c * r * r, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        # per-pixel blend weights over [x, x smoothed at 2, 4, ... px]; starts ~96 % on x
        self.blend = nn.Conv2d(chs[0], c * (config.smooth_scales + 1), 3, padding=1) if config.smooth_scales else None
        if self.blend is not None:
            nn.init.zeros_(self.blend.weight)
            with torch.no_grad():
                self.blend.bias.copy_(torch.tensor([5.0] + [0.0] * config.smooth_scales).repeat(c))
        # Cb/Cr stage: blend logits per plane, then a gate per plane (zero: the stage is the identity)
        self.chroma = nn.Conv2d(chs[0], 2 * (config.chroma_scales + 2), 3, padding=1) if config.chroma_scales else None
        if self.chroma is not None:
            nn.init.zeros_(self.chroma.weight)
            nn.init.zeros_(self.chroma.bias)
        # the grid stages: used after sampling, where a channel (or a Y'CbCr plane) sits on a
        # coarse grid; forward does not use them
        self.grid = GridStage(config.grid_width, c) if config.grid_width else None
        self.planes = GridStage(config.planes_width, 3) if config.planes_width else None
        if config.refine:  # full resolution: sharpens the correction at band edges
            self.refine = nn.Sequential(
                nn.Conv2d(2 * c, config.refine, 3, padding=1), nn.SiLU(), nn.Conv2d(config.refine, c, 3, padding=1)
            )
            nn.init.zeros_(self.refine[2].weight)
            nn.init.zeros_(self.refine[2].bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        b, _, h, w = x_t.shape
        t = torch.as_tensor(t, dtype=torch.float32, device=x_t.device).reshape(-1).expand(b)
        temb = self.time_mlp(time_features(t, self.config.time_dim))  # (b, time_dim)
        m = self.config.multiple
        ph, pw = (-h) % m, (-w) % m
        x = x_t.contiguous()  # full-resolution work runs fastest in NCHW, the convolutions in NHWC
        x = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        feat = self.stem(self._stem_input(x))  # (b, c0, H/r, W/r)
        skips = []
        for level, blocks in enumerate(self.enc):
            if level > 0:
                feat = self.down[level - 1](feat)  # halve H, W
            for block in blocks:
                feat = block(feat, temb)
            skips.append(feat)
        for level in reversed(range(len(self.dec))):
            feat = F.interpolate(self.up[level](feat), scale_factor=2.0, mode="nearest")
            feat = feat + skips[level]  # additive skip
            for block in self.dec[level]:
                feat = block(feat, temb)
        feat = F.silu(feat)
        smooth = blend(x, self.blend(feat), self.config.smooth_scales) if self.blend is not None else x.clone()
        residual = _depth_to_space(self.head(feat), self.config.unshuffle)  # (b, c, H, W), x gain
        if self.config.refine:
            residual.add_(self._refine(x, smooth, residual))
        out = smooth.add_(residual.to(x.dtype), alpha=1 / self.config.detail_gain)
        if self.chroma is not None:
            out = out + self._chroma(out, feat)
        return out[:, :, :h, :w]

    def _chroma(self, out: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """The Cb/Cr stage's change to `out`, as R'G'B' (Y' unchanged).

        out: (b, 3, H, W); feat: (b, c0, H/r, W/r). Cb and Cr of out's r x r block means are
        blended with copies smoothed at 2 ... 2**chroma_scales blocks (the planes padded to a
        multiple of that), the change is gated per plane and upsampled bilinearly.
        """
        r, k = self.config.unshuffle, self.config.chroma_scales
        c = rgb_to_ycbcr(F.avg_pool2d(out, r))[:, 1:]  # (b, 2, H/r, W/r): Cb, Cr
        head = self.chroma(feat).float()  # (b, 2 (k + 2), H/r, W/r)
        logits, gate = head[:, : 2 * (k + 1)], head[:, 2 * (k + 1) :]
        h, w = c.shape[-2:]
        ph, pw = (-h) % 2**k, (-w) % 2**k
        if ph or pw:
            c, logits = (F.pad(v, (0, pw, 0, ph), mode="replicate") for v in (c, logits))
        change = (blend(c, logits, k) - c)[:, :, :h, :w] * gate  # (b, 2, H/r, W/r)
        change = F.interpolate(change, scale_factor=float(r), mode="bilinear", align_corners=False)
        return ycbcr_to_rgb(torch.cat([torch.zeros_like(change[:, :1]), change], dim=1))  # (b, 3, H, W)

    def _refine(self, x: torch.Tensor, smooth: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """The full-resolution correction, from x and the correction so far (both x gain).

        x, smooth, residual: (b, c, H, W) contiguous. Returns (b, c, H, W), x gain. The
        input is written straight into the channels-last layout the convolutions run in.
        """
        detail = torch.sub(smooth, x).mul_(self.config.detail_gain).add_(residual)  # where it smoothed, x gain
        parts = [(x * 2 - 1).permute(0, 2, 3, 1), detail.permute(0, 2, 3, 1)]
        inp = torch.cat(parts, dim=3).permute(0, 3, 1, 2)  # (b, 2c, H, W), channels-last
        hidden = self.refine[0](inp)  # (b, refine, H, W)
        hidden = F.silu(hidden, inplace=not hidden.requires_grad)
        return self.refine[2](hidden)

    def _stem_input(self, x: torch.Tensor) -> torch.Tensor:
        """Space-to-depth pixels plus their local detail amplified by `detail_gain`.

        Band steps are ~1/64 of the signal; amplified detail lets the first layer see them at
        the scale of everything else. Returns shape (b, 2 c r^2 + c, H/r, W/r).
        """
        b, c, h, w = x.shape
        r, gain = self.config.unshuffle, self.config.detail_gain
        blocks = x.view(b, c, h // r, r, w // r, r).permute(0, 2, 4, 1, 3, 5)  # (b, H/r, W/r, c, r, r)
        blocks = blocks.reshape(b, h // r, w // r, c, r * r)  # space-to-depth, channels last
        mean = blocks.mean(-1)  # (b, H/r, W/r, c): each r x r block's mean
        within = (blocks - mean[..., None]) * gain  # detail inside blocks
        mean = mean.permute(0, 3, 1, 2)  # (b, c, H/r, W/r), channels-last
        around = (mean - F.avg_pool2d(F.pad(mean, (1, 1, 1, 1), mode="replicate"), 3, stride=1)) * gain
        parts = [blocks * 2 - 1, within, around.permute(0, 2, 3, 1)[..., None]]
        return torch.cat([p.flatten(3) for p in parts], dim=3).permute(0, 3, 1, 2)  # channels-last


def _depth_to_space(x: torch.Tensor, r: int) -> torch.Tensor:
    """F.pixel_shuffle(x, r), always returned contiguous (NCHW) whatever the layout of x.

    x (Tensor): shape (b, c r^2, h, w). Returns shape (b, c, h r, w r).
    """
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():  # a traced graph cannot hold the copy into a view
        return F.pixel_shuffle(x, r).contiguous()
    b, crr, h, w = x.shape
    c = crr // (r * r)
    out = torch.empty((b, c, h * r, w * r), dtype=x.dtype, device=x.device)
    out.view(b, c, h, r, w, r).copy_(x.view(b, c, r, r, h, w).permute(0, 1, 4, 2, 5, 3))
    return out


def grow_smooth_scales(state: dict[str, torch.Tensor], old: ModelConfig, new: ModelConfig) -> dict[str, torch.Tensor]:
    """Weights of `old` made to fit `new`, which differs only by more smoothing scales.

    Each added scale starts as a copy of the widest existing one's blend logit, lowered by 3
    (about 5 % of its weight), so the grown model starts close to the old one and can learn
    to smooth wider. Returns a new state dict; raises ValueError for any other difference.
    """
    if dataclasses.replace(old, smooth_scales=new.smooth_scales) != new or new.smooth_scales < old.smooth_scales:
        raise ValueError("only a larger smooth_scales can be grown")
    if not old.smooth_scales:
        raise ValueError("a model without smoothing scales cannot be grown")
    c, k, extra = old.in_channels, old.smooth_scales + 1, new.smooth_scales - old.smooth_scales
    out = dict(state)
    for name, offset in (("blend.weight", 0.0), ("blend.bias", -3.0)):
        per_channel = state[name].unflatten(0, (c, k))  # (c, k, ...)
        added = per_channel[:, -1:].expand(c, extra, *per_channel.shape[2:]) + offset
        out[name] = torch.cat([per_channel, added], dim=1).flatten(0, 1).contiguous()
    return out


def add_chroma_stage(state: dict[str, torch.Tensor], old: ModelConfig, new: ModelConfig) -> dict[str, torch.Tensor]:
    """Weights of `old`, a model without the Cb/Cr stage, made to fit `new`, which differs only
    by having one: the stage's weights start at zero, so the grown model gives old's output.
    Returns a new state dict; raises ValueError for any other difference."""
    if old.chroma_scales or not new.chroma_scales or dataclasses.replace(old, chroma_scales=new.chroma_scales) != new:
        raise ValueError("only a Cb/Cr stage can be added")
    out = dict(state)
    k, c0 = new.chroma_scales, new.channels[0]
    out["chroma.weight"] = torch.zeros(2 * (k + 2), c0, 3, 3)
    out["chroma.bias"] = torch.zeros(2 * (k + 2))
    return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

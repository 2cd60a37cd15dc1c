"""The network's output blend: a per-pixel softmax over the input and smoothed copies of it.

`blend_reference` states the math in a few lines: candidates are x and its 2x2 average
pyramid, each level bilinearly upsampled back to full size; the weights are the softmax,
over candidates, of logits bilinearly upsampled from low resolution. It materialises every
candidate and every weight at full resolution at once, so on a CPU it is memory-bound.

`blend` computes the same thing in a stream over the pyramid: one candidate and one weight
at a time, accumulated in place into a numerator and a denominator, with the softmax's
shift taken at low resolution before upsampling (bilinear upsampling is a convex combination
of low-resolution values, so every upsampled shifted logit stays <= 0 and exp stays <= 1).
On a CPU the bilinear upsampling itself is done separably (1-D along rows at low height,
then per output-row phase along columns), which is several times faster than
`F.interpolate`'s 2-D kernel for few channels and gives the same values up to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# If some pixel's softmax denominator ends up below this (every upsampled shifted logit
# under about -69), exp may have lost precision there (float32's smallest normal number is
# about exp(-87)): the reference, which shifts by the exact full-res maximum, is used instead.
MIN_SAFE_DENOMINATOR = 1e-30


def blend_reference(x: torch.Tensor, logits: torch.Tensor, scales: int) -> torch.Tensor:
    """Softmax-weighted mix of x and x smoothed at 2, 4, ... 2**scales pixels, per pixel and channel.

    x (Tensor): shape (b, c, H, W), float32, H and W multiples of 2**scales.
    logits (Tensor): shape (b, c (scales + 1), h, w), any float dtype, candidate-minor
    (channel i's logits are rows i (scales + 1) ... of dim 1). Returns shape (b, c, H, W), float32.
    """
    b, c, h, w = x.shape
    candidates, level = [x], x
    for _ in range(scales):
        level = F.avg_pool2d(level, 2)
        candidates.append(F.interpolate(level, size=(h, w), mode="bilinear", align_corners=False))
    stack = torch.stack(candidates, dim=2)  # (b, c, k+1, H, W)
    weights = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
    weights = weights.unflatten(1, (c, scales + 1)).softmax(dim=2)  # (b, c, k+1, H, W)
    return (weights * stack).sum(dim=2)


def blend(x: torch.Tensor, logits: torch.Tensor, scales: int) -> torch.Tensor:
    """`blend_reference`, streamed over the pyramid in place; same arguments, same result up to rounding.

    Writing in place leaves nothing for autograd to differentiate, and the check that picks
    the reference for extreme logits depends on the data, which a traced graph cannot hold:
    while autograd is recording (training) or a graph is being captured (ONNX export,
    torch.compile), this is `blend_reference`.
    """
    if torch.is_grad_enabled() and (x.requires_grad or logits.requires_grad):
        return blend_reference(x, logits, scales)
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
        return blend_reference(x, logits, scales)
    b, c, h, w = x.shape
    x = x.float().contiguous()
    lo = logits.float().unflatten(1, (c, scales + 1))  # (b, c, k+1, h', w')
    lo = lo - lo.amax(dim=2, keepdim=True)  # softmax shift, per low-res pixel: all <= 0
    weight, num, den = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
    candidate = torch.empty_like(x)
    level = x
    for j in range(scales + 1):
        upsample(lo[:, :, j], h // lo.shape[-2], out=weight).exp_()  # (b, c, H, W), on (0, 1]
        if j == 0:
            den.copy_(weight)
            torch.mul(weight, x, out=num)
            continue
        level = F.avg_pool2d(level, 2)  # (b, c, H / 2**j, W / 2**j)
        upsample(level, 2**j, out=candidate)
        den.add_(weight)
        num.addcmul_(weight, candidate)
    if float(den.amin()) < MIN_SAFE_DENOMINATOR:
        return blend_reference(x, logits, scales)
    return num.div_(den)


def upsample(x: torch.Tensor, s: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear upsampling by an integer factor s (align_corners=False), as F.interpolate does it.

    x (Tensor): shape (b, c, h, w), float32. Returns (or writes into `out`) shape
    (b, c, h s, w s), contiguous. CPU tensors go through `upsample_separable`.
    """
    if x.device.type == "cpu":
        return upsample_separable(x, s, out)
    up = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
    return up if out is None else out.copy_(up)


def upsample_separable(x: torch.Tensor, s: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear upsampling by s: a 1-D pass along rows, then a lerp between neighbouring rows.

    Output row y = s i + p samples source row (y + 0.5) / s - 0.5: between rows i - 1 and i
    for p < s / 2, between rows i and i + 1 otherwise, with a fraction that depends on p
    only; beyond the first and last rows it clamps, as F.interpolate does. Each half of the
    phases is one broadcast lerp, whatever s is. Shapes as in `upsample`.
    """
    b, c, h, w = x.shape
    half = s // 2
    rows = F.interpolate(x.reshape(1, b * c * h, w), size=w * s, mode="linear", align_corners=False)
    rows = rows.view(b, c, h, 1, w * s)  # (b, c, h, 1, W): broadcast over the phases
    if out is None:
        out = torch.empty((b, c, h * s, w * s), dtype=x.dtype, device=x.device)
    phases = out.view(b, c, h, s, w * s)  # output row s i + p at [:, :, i, p]
    frac = (torch.arange(s, dtype=x.dtype, device=x.device) + 0.5) / s + 0.5
    frac = frac.view(s, 1)  # (s, 1); phases from s/2 on are relative to row i, one less
    upper, lower = rows[:, :, :-1], rows[:, :, 1:]  # (b, c, h - 1, 1, W) each
    torch.lerp(upper, lower, frac[:half], out=phases[:, :, 1:, :half])  # rows i - 1 and i
    torch.lerp(upper, lower, frac[half:] - 1, out=phases[:, :, :-1, half:])  # rows i and i + 1
    phases[:, :, 0, :half] = rows[:, :, 0]  # clamped at the first row
    phases[:, :, -1, half:] = rows[:, :, -1]  # and at the last
    return out

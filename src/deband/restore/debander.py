"""Inference: tiles with overlap and seamless blending, devices, steps and strength, channels.

`Debander.load().restore(array)` restores one image of any size in bounded memory. Steps and
strength are checked here (`check_sampling`), once, for every front end that takes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deband.config import DEFAULT_STEPS
from deband.errors import ResourceError, SettingError
from deband.io.pixels import from_codes, levels, peak, rgb_to_ycbcr, ycbcr_to_rgb
from deband.model.checkpoint import load_model
from deband.model.indi import sample
from deband.restore.cells import CELLS_REACH, frame_steps, place_cells
from deband.restore.guard import Guard, _blocks, _full, plane_levels
from deband.restore.letterbox import keep_bars

TileFn = Callable[[torch.Tensor], torch.Tensor]
STAGE_BITS = 6  # the channel stage places values on grids of this many bits or fewer: a 7-bit
# grid (every other code) is the one smooth areas quantised another way (Y'CbCr planes, or a
# coarser grid over few levels) fall on by chance, and there the restorer's output is better
STAGE_HALF = 0.5 / (2**STAGE_BITS - 1) - 1e-6  # its half step on [0, 1]
STAGE_TEXTURE = 0.2  # `textured`: the restored image's local high-pass RMS, as a share of the half step
TEXTURE_TILE = 16  # pixels: `textured` measures over tiles of this side
GRID_CORE = 128  # pixels: the side of the cores `windows` runs `textured` and the grid stages on
WINDOW_ALIGN = 16  # `windows`' cores are multiples of this: `textured`'s tiles, the stages' 4-px blocks
GRID_MARGIN = 40  # pixels of context a grid stage needs around a core: its field reaches 35 px
MAX_STEPS = 100  # the most INDI steps a restorer takes (each one is a network call)


def check_sampling(steps: int, strength: float) -> None:
    """Raise SettingError unless 1 <= steps <= MAX_STEPS and 0 < strength <= 1 (a start time t)."""
    if not 1 <= steps <= MAX_STEPS:
        raise SettingError("steps", f"must be between 1 and {MAX_STEPS}, got {steps}")
    if not 0 < strength <= 1:
        raise SettingError("strength", f"must be in (0, 1], got {strength}")


@dataclass(frozen=True)
class Truncation:
    """A source known to have been cut from `source_bits` to `bits` by a bit shift: its codes
    lie below the truth by (1 - 2**(bits - source_bits)) / 2 of a step at `bits` on average
    (0.375 of an 8-bit code for 10 -> 8), an offset no image shows. `undo` adds it back.
    space "ycbcr": the cut was of limited-range Y'CbCr planes (video, BT.709); "rgb": of
    full-range R'G'B' channels (a still image)."""

    source_bits: int
    bits: int
    space: str = "ycbcr"

    def __post_init__(self) -> None:
        if not 1 <= self.bits < self.source_bits <= 16:
            raise ValueError(f"a cut from {self.source_bits} to {self.bits} bits: need 1 <= bits < source bits <= 16")
        if self.space not in ("ycbcr", "rgb"):
            raise ValueError(f"unknown space {self.space!r}; expected 'ycbcr' or 'rgb'")

    @property
    def steps(self) -> float:
        """The offset, in steps of `bits`."""
        return (1 - 2.0 ** (self.bits - self.source_bits)) / 2

    def undo(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb (Tensor): (n, 3, h, w) on [0, 1]. Returns it raised by the offset, clamped to [0, 1]."""
        if self.space == "rgb":
            return (rgb + self.steps / peak(self.bits)).clamp(0, 1)
        lv = levels(self.bits, full=False)
        shift = torch.tensor([1 / lv.y_scale, 1 / lv.c_scale, 1 / lv.c_scale], dtype=rgb.dtype) * self.steps
        return ycbcr_to_rgb(rgb_to_ycbcr(rgb) + shift[:, None, None].to(rgb.device)).clamp(0, 1)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when available; 'cuda' without a GPU raises ResourceError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ResourceError("device 'cuda' was asked for, but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}")
    return torch.device(device)


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: stride tile - overlap, the last tile flush with the end."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def _ramp(n: int, overlap: int, has_prev: bool) -> torch.Tensor:
    """Blend weight along one axis of a tile: 0 -> 1 over `overlap` where a previous tile lies."""
    r = torch.ones(n)
    if has_prev and overlap > 0:
        k = min(overlap, n)
        r[:k] = (torch.arange(k, dtype=torch.float32) + 0.5) / overlap
    return r


def tiled(
    fn: TileFn, x: torch.Tensor, tile: int, overlap: int, on_tile: Callable[[int, int], None] | None = None
) -> torch.Tensor:
    """Apply fn tile by tile and blend the overlaps; an identity fn returns x bit-exactly.

    x (Tensor): shape (b, c, h, w). fn maps (b, c, th, tw) -> (b, c', th, tw) (c' = c as a
    rule; tiled returns c' channels). Tiles are placed in raster order and each is blended
    into what is already there with out + a * (tile - out),
    a ramping from 0 to 1 across the overlap with earlier tiles, so equal values stay exact.
    """
    if overlap * 2 >= tile:
        raise ValueError("tile must be more than twice the overlap")
    b, _, h, w = x.shape
    out = None  # shaped by the first tile: fn may change the number of channels
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    done, total = 0, len(ys) * len(xs)
    for i, top in enumerate(ys):
        for j, left in enumerate(xs):
            th, tw = min(tile, h), min(tile, w)
            patch = fn(x[:, :, top : top + th, left : left + tw])
            if out is None:
                out = x.new_empty(b, patch.shape[1], h, w)
            patch = patch.to(out.dtype)
            a = _ramp(th, overlap, i > 0)[:, None] * _ramp(tw, overlap, j > 0)[None, :]  # (th, tw)
            region = out[:, :, top : top + th, left : left + tw]
            if i == 0 and j == 0:
                region.copy_(patch)
            else:
                region.copy_(torch.where(a >= 1, patch, region + a.to(out.device) * (patch - region)))
            done += 1
            if on_tile is not None:
                on_tile(done, total)
    return out


def windows(
    fn: Callable[..., torch.Tensor], xs: tuple[torch.Tensor, ...], where: torch.Tensor, fill: torch.Tensor,
    margin: int, core: int, tile: int,
) -> torch.Tensor:
    """fn only around `where`: `fill` (b, c', h, w), with each core tile (core x core, from the
    origin) that holds a True of `where` (b, 1, h, w) replaced by fn's output there, fn given
    each of `xs` (b, c_i, h, w) cut to that core widened by `margin` on every side (within the
    image). Where those windows would cover more than the image, the cores are as large as
    `tile` allows with their margins instead (a multiple of `WINDOW_ALIGN`). Where fn reaches
    no farther than `margin` and its own alignment divides `WINDOW_ALIGN`, each core is
    what fn over the whole image gives it, in bounded memory, at a fraction of the cost where
    `where` is sparse. fn maps tensors (b, c_i, th, tw) -> (b, c', th, tw)."""
    h, w = fill.shape[-2:]
    found = where.to(fill.dtype)

    def cores_hit(side: int) -> torch.Tensor:  # (rows, cols): the cores of this side that hold a find
        return F.max_pool2d(found, side, ceil_mode=True).amax(0)[0] > 0

    hit = cores_hit(core)
    if int(hit.sum()) * (core + 2 * margin) ** 2 >= h * w:  # about everywhere: fewer, larger windows
        core = max(tile - 2 * margin, WINDOW_ALIGN) // WINDOW_ALIGN * WINDOW_ALIGN
        hit = cores_hit(core)
    out = fill.clone()
    for i, j in hit.nonzero().tolist():
        top, left = i * core, j * core
        y0, x0 = max(top - margin, 0), max(left - margin, 0)
        patch = fn(*(x[:, :, y0 : min(top + core + margin, h), x0 : min(left + core + margin, w)] for x in xs))
        core_h, core_w = min(core, h - top), min(core, w - left)
        out[:, :, top : top + core_h, left : left + core_w] = patch[
            :, :, top - y0 : top - y0 + core_h, left - x0 : left - x0 + core_w
        ].to(out.dtype)
    return out


@dataclass
class Debander:
    """A loaded restorer with its inference settings.

    steps: INDI iterations, 1 to MAX_STEPS; strength: t_start in (0, 1] (1 removes all banding
    the model sees, less is gentler; either out of range raises SettingError); tile/overlap:
    tile side and overlap in pixels; seed: fixes the start noise when eps > 0 (the same for
    every frame of a video); bars: hand letterbox and pillarbox bars back untouched (see
    `deband.restore.letterbox`); guard: the detail guard that bounds each pixel's change by
    what banding could have done to it (see `deband.restore.guard`; None restores without it);
    truncation: a source known to be cut by a bit shift, whose offset is added back before
    restoring (see `Truncation`); grid: where values sit on a coarse grid (a
    re-quantised image), place them within their cells: by the model's grid stages where a
    window shows a grid (see `deband.model.grid`; models without them skip this), then, where
    a whole frame's R'G'B' channel or 4:2:0 Cb/Cr plane sits on a 4-6-bit grid, by the luma
    texture (`deband.restore.cells`; any model; at 1080p about 0.05 s to look, 0.7 s more
    where it acts).
    """

    model: torch.nn.Module
    device: torch.device = torch.device("cpu")
    steps: int = DEFAULT_STEPS
    strength: float = 1.0
    tile: int = 2048
    overlap: int = 256
    eps: float = 0.0
    seed: int = 0
    bars: bool = True
    guard: Guard | None = Guard()
    truncation: Truncation | None = None
    grid: bool = True

    def __post_init__(self) -> None:
        check_sampling(self.steps, self.strength)

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str = "auto", **settings) -> Debander:
        """The shipped default model (or `weights`) on `device`, with inference `settings`."""
        return cls.on_device(load_model(weights), resolve_device(device), **settings)

    @classmethod
    def on_device(cls, model: torch.nn.Module, device: torch.device, **settings) -> Debander:
        """A restorer around `model`, moved to `device` in the memory layout inference uses."""
        return cls(model=model.to(device).to(memory_format=torch.channels_last), device=device, **settings)

    def portable(self) -> tuple[bytes, dict]:
        """The restorer as plain data to send to another process or machine: its weights as
        .safetensors bytes, and its settings (every field but model and device)."""
        from deband.model.checkpoint import weights_bytes

        settings = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("model", "device")}
        return weights_bytes(self.model), settings

    @classmethod
    def from_portable(cls, data: bytes, settings: dict, device: torch.device) -> Debander:
        """The restorer `portable` described, rebuilt on `device`."""
        from deband.model.checkpoint import model_from_bytes

        return cls.on_device(model_from_bytes(data), device, **settings)

    def _denoiser(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            return self.model(x_t, t).float()  # the model takes any layout; NCHW costs no copy

    def _restore_tile(self, y: torch.Tensor) -> torch.Tensor:
        g = torch.Generator(device=self.device).manual_seed(self.seed) if self.eps > 0 else None
        y = y.to(self.device, torch.float32)
        return sample(self._denoiser, y, self.steps, self.strength, self.eps, g).clamp(0, 1).cpu()

    @torch.inference_mode()
    def restore_batch(self, rgb: torch.Tensor, on_tile: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """rgb (Tensor): shape (n, 3, h, w), range [0, 1], float32 (CPU). Returns the same shape."""
        raw = rgb.float()
        rgb = raw if self.truncation is None else self.truncation.undo(raw)
        out = tiled(self._restore_tile, rgb, self.tile, self.overlap, on_tile)
        restored = self.guard(rgb, out) if self.guard is not None else out
        stages = getattr(self.model, "grid", None), getattr(self.model, "planes", None)
        if self.grid and stages != (None, None):
            restored = self._on_grid(*stages, raw, rgb, restored)
        if self.grid:  # on the truncated source raised, no grid shows: its cells are not centred on codes
            restored = self._on_frame_grid(rgb, restored)
        return keep_bars(rgb, restored) if self.bars else restored

    def _on_grid(self, channels, planes, raw, rgb, restored) -> torch.Tensor:
        """`restored` (the network's output, guarded), where the delivered `raw` sits on a
        coarse grid, placed within its cells from `rgb` and `restored` by the model's grid
        stages (`deband.model.grid`): Y'CbCr planes by `planes`; R'G'B' channels by
        `channels` at pixels where no plane is on a grid (a plane grid is the rarer find in
        R'G'B' cut alone than a channel grid is in planes cut apart) and on grids of
        `STAGE_BITS` bits or coarser; each only where the restored image is `textured`. (A
        truncated source's `rgb` was raised by half a step: its cells start at its codes.)"""
        guard = self.guard or Guard()
        on_planes = torch.zeros_like(raw[:, :1], dtype=torch.bool)
        if planes is not None:

            def on_levels(delivered: torch.Tensor, raised: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
                return plane_levels(delivered, half) + rgb_to_ycbcr(raised) - rgb_to_ycbcr(delivered)

            placed, half = self._place(planes, (raw, rgb), on_levels, rgb_to_ycbcr(restored), guard.plane_grid(raw))
            on_planes = half.amax(1, keepdim=True) > 0
            if bool(on_planes.any()):
                restored = torch.where(on_planes, ycbcr_to_rgb(placed).clamp(0, 1), restored)
        if channels is not None:
            half = guard.grid_bound(raw)
            half = torch.where(on_planes | (half < STAGE_HALF), 0, half)
            placed, half = self._place(channels, (rgb,), lambda rgb, half: rgb, restored, half)
            restored = torch.where(half > 0, placed.clamp(0, 1), restored)
        return restored

    def _on_frame_grid(self, rgb: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
        """`restored`, where a whole channel or 4:2:0 Cb/Cr plane of `rgb` sits on a grid,
        placed within its cells (`deband.restore.cells`), in `windows` of at most `tile`."""
        channels, chroma = frame_steps(rgb, self.guard or Guard())
        if not bool(channels.any() or chroma.any()):
            return restored
        everywhere = torch.ones_like(rgb[:, :1], dtype=torch.bool)
        return windows(lambda x, out: place_cells(x, out, channels, chroma), (rgb, restored), everywhere, restored,
                       CELLS_REACH, GRID_CORE, self.tile)

    def _place(
        self, stage, xs: tuple[torch.Tensor, ...], inputs: Callable[..., torch.Tensor], out: torch.Tensor,
        half: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """out, with stage(inputs(*xs, half), out, half) wherever `textured(out, half)` is not 0,
        and that textured half step. Both run in `windows`: `textured` around the grid's finds,
        the stage (on the restorer's device) around the textured ones."""
        found = half.amax(1, keepdim=True) > 0
        if bool(found.any()):  # tiles of TEXTURE_TILE from the origin: a margin of one tile keeps them exact
            half = windows(textured, (out, half), found, torch.zeros_like(half), TEXTURE_TILE, GRID_CORE, self.tile)
            found = half.amax(1, keepdim=True) > 0
        if not bool(found.any()):
            return out, half

        def fn(*cut: torch.Tensor) -> torch.Tensor:
            *x, out, half = (t.to(self.device) for t in cut)
            return stage(inputs(*x, half), out, half).cpu()

        placed = windows(fn, (*xs, out, half), found, out, GRID_MARGIN, GRID_CORE, self.tile)
        return torch.where(half > 0, placed, out), half

    def restore(self, image: np.ndarray, on_tile: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Restore one image.

        image (ndarray): shape (h, w), (h, w, 1|2|3|4); uint8, uint16 or float32 on [0, 1].
        Returns float32 on [0, 1] with the same shape; alpha is passed through untouched and
        gray is restored as gray.
        """
        x = to_float(image)
        squeeze = x.ndim == 2
        if squeeze:
            x = x[..., None]
        c = x.shape[2]
        colour, alpha = (x[..., :3], x[..., 3:]) if c >= 3 else (x[..., :1], x[..., 1:])
        rgb = torch.from_numpy(np.ascontiguousarray(colour)).permute(2, 0, 1)[None]  # (1, 1|3, h, w)
        out = self.restore_batch(rgb.expand(1, 3, *rgb.shape[2:]), on_tile)[0]
        out = out.mean(0, keepdim=True) if colour.shape[2] == 1 else out
        res = out.permute(1, 2, 0).numpy()
        if alpha.shape[2]:
            res = np.concatenate([res, alpha], axis=2)
        return res[..., 0] if squeeze else np.ascontiguousarray(res)


def textured(restored: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """half (n, c, h, w: a grid's half step per channel or plane) where `restored` (the same
    shape, in the same channels or planes) is textured at that step's scale: the RMS of its
    high-pass (itself minus its 5 x 5 mean) over each tile of `TEXTURE_TILE` px is at least
    `STAGE_TEXTURE` of the half step; 0 elsewhere. Over smooth gradients the restorer has
    dissolved the steps, and keeping each value in its cell there would cut the ramps back
    into steps (more banding by CAMBI, even where PSNR rises); over texture the restorer
    barely moves values, and the cell is what a grid stage knows."""
    if not bool(half.any()):
        return half
    high = restored - F.avg_pool2d(F.pad(restored, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    rms = _full(_blocks(high.square(), TEXTURE_TILE, F.avg_pool2d).sqrt(), TEXTURE_TILE, *restored.shape[-2:])
    return torch.where(rms >= STAGE_TEXTURE * half, half, torch.zeros_like(half))


def keep_freed_memory() -> bool:
    """Have the C library keep freed memory for reuse, process-wide: for programs to call once.

    glibc hands large buffers back to the kernel when they are freed, and the kernel maps
    and zeroes fresh pages on their next use: a 1080p network call allocates ~100k pages
    afresh every time, about a quarter of its CPU time on a 2-core machine. Returns False
    where the C library is not glibc (then nothing changes).
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30) and mallopt(m_trim_threshold, 1 << 30))


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8/uint16/float image -> float32 on [0, 1] (same shape)."""
    if image.dtype in (np.uint8, np.uint16):
        return from_codes(image)
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(image.astype(np.float32), 0, 1)
    raise ValueError(f"unsupported pixel type {image.dtype}")

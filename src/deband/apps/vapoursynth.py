"""A native VapourSynth filter: `deband(clip)` runs the network in PyTorch, frame by frame.

    import vapoursynth as vs
    from deband.apps.vapoursynth import deband
    clip = deband(clip, steps=2, strength=1.0)

Any constant-format YUV, RGB or GRAY clip of 8-16-bit integer or 16/32-bit float samples
comes back in the same format with the same frame props. Per frame, as `deband video` does:

* YUV is read with the frame's `_Matrix` and `_Range` (or `_ColorRange`; untagged: BT.709
  for HD, BT.601 for SD, limited range), chroma upsampled bilinearly with centred siting, and converted to
  R'G'B' for the network (`deband.video.colour`). RGB is taken as R'G'B' (full range unless
  tagged limited); GRAY as Y' (limited range unless tagged full).
* The model's change (restored - input, R'G'B') is added back onto the original planes in
  their own space (box-averaged onto the chroma grid), so an identity model returns the
  input samples exactly and out-of-range values survive.
* Integer output is rounded; at 8 bits a static TPDF dither is added where a sample changed
  (unchanged samples and letterbox bars keep their codes). Float output stays float.

The restorer is shared by VapourSynth's worker threads behind a lock; conversions run in
parallel. vapoursynth is imported only inside `deband`, so this module imports without it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deband.config import DEFAULT_STEPS
from deband.errors import UnsupportedError
from deband.io import pixels
from deband.io.planes import add_rgb_delta, codes_to_plane, planes_to_rgb
from deband.restore.debander import Debander
from deband.restore.guard import Guard
from deband.video.colour import dither_patterns, matrix_of
from deband.video.options import Restorer

_FAMILIES = ("yuv", "rgb", "gray")
_CONVERT = "convert it first, e.g. with core.resize.Point(clip, format=vs.YUV444P16)"


@dataclass(frozen=True)
class Layout:
    """A clip's sample format, as far as the conversion needs it."""

    family: str  # "yuv" | "rgb" | "gray"
    bits: int  # bits per sample: 8-16 integer, 16 or 32 float
    is_float: bool

    @property
    def chroma(self) -> tuple[bool, ...]:
        """Per plane: True for Cb/Cr (codes centred on 2**(bits-1)), False for Y' and R'G'B'."""
        return (False, True, True) if self.family == "yuv" else (False,) * (3 if self.family == "rgb" else 1)


def layout_of(clip: Any, vs: Any) -> Layout:
    """The Layout of a VapourSynth clip; UnsupportedError for variable format or size, other
    colour families, and sample types outside 8-16-bit integer and 16/32-bit float."""
    fmt = clip.format
    if fmt is None or fmt.color_family == vs.UNDEFINED:
        raise UnsupportedError(f"clip of variable format: deband needs one constant format; {_CONVERT}")
    if clip.width == 0 or clip.height == 0:
        raise UnsupportedError(f"{fmt.name} clip of variable frame size: deband needs a constant size")
    families = {vs.YUV: "yuv", vs.RGB: "rgb", vs.GRAY: "gray"}
    family = families.get(fmt.color_family)
    is_float = fmt.sample_type == vs.FLOAT
    bits = fmt.bits_per_sample
    if family is None:
        raise UnsupportedError(f"{fmt.name} clip: deband takes YUV, RGB or GRAY; {_CONVERT}")
    if (is_float and bits not in (16, 32)) or (not is_float and not 8 <= bits <= 16):
        raise UnsupportedError(f"{fmt.name} clip: deband takes 8-16-bit integer or 16/32-bit float samples")
    return Layout(family, bits, is_float)


def full_range(props: dict, default: bool) -> bool:
    """Whether a frame is full range: `_Range` (1 full, 0 limited; newer VapourSynth), else
    the older `_ColorRange` (0 full, 1 limited), else `default`."""
    if "_Range" in props:
        return int(props["_Range"]) == 1
    if "_ColorRange" in props:
        return int(props["_ColorRange"]) == 0
    return default


class FrameDebander:
    """The per-frame work: planes -> R'G'B' -> restorer -> change added back onto the planes.

    Called by VapourSynth from several threads at once; only the restorer call is serialised.
    """

    def __init__(self, restorer: Restorer, layout: Layout, seed: int = 0):
        self.restorer, self.layout, self.seed = restorer, layout, seed
        self.lock = threading.Lock()
        self.dither: list[np.ndarray] | None = None  # 8-bit output: one static pattern per plane

    def __call__(self, n: int, f: Any) -> Any:
        """VapourSynth's ModifyFrame callback: a copy of frame f (props kept), restored."""
        out = f.copy()
        arrays = [np.asarray(f[p]) for p in range(len(self.layout.chroma))]
        for p, values in enumerate(self.process(arrays, dict(f.props))):
            np.asarray(out[p])[:] = values
        return out

    def process(self, arrays: list[np.ndarray], props: dict) -> list[np.ndarray]:
        """Planes (h', w') of one frame, in the clip's sample type -> the restored planes, same
        shapes and dtypes. props: the frame's props (_Matrix, _Range or _ColorRange are read)."""
        lay = self.layout
        h, w = arrays[0].shape
        full = full_range(props, default=lay.family == "rgb")
        matrix = matrix_of(int(props.get("_Matrix", 2)), w, h)
        planes = self._planes(arrays, full)
        x = self._rgb(planes, matrix)  # (1, 3, h, w) on [0, 1]
        with self.lock:
            restored = self.restorer.restore_batch(x).float().cpu()
        if restored.shape != x.shape:
            raise ValueError(f"restore_batch returned {tuple(restored.shape)}, expected {tuple(x.shape)}")
        new = self._add(planes, restored - x, matrix)
        if lay.is_float:
            return [p.numpy().astype(a.dtype) for p, a in zip(new, arrays)]
        return self._codes(planes, new, full)

    def _planes(self, arrays: list[np.ndarray], full: bool) -> list[torch.Tensor]:
        """Samples -> normalised planes: Y' and R'G'B' on [0, 1], Cb/Cr on [-0.5, 0.5], float32.
        Float clips already are (VapourSynth's float YUV has chroma centred on 0)."""
        lay = self.layout
        if lay.is_float:
            return [torch.from_numpy(a.astype(np.float32)) for a in arrays]
        return [codes_to_plane(a, lay.bits, full, chroma=c) for a, c in zip(arrays, lay.chroma)]

    def _rgb(self, planes: list[torch.Tensor], matrix: str) -> torch.Tensor:
        """Normalised planes -> R'G'B' (1, 3, h, w) float32 clamped to [0, 1]."""
        family = self.layout.family
        if family == "yuv":
            return planes_to_rgb([p[None] for p in planes], matrix)
        if family == "rgb":
            return torch.stack(planes)[None].clamp(0, 1)
        if family == "gray":
            return planes[0].clamp(0, 1).expand(1, 3, *planes[0].shape).contiguous()
        raise ValueError(f"unknown colour family {family!r}")

    def _add(self, planes: list[torch.Tensor], delta: torch.Tensor, matrix: str) -> list[torch.Tensor]:
        """The planes plus the R'G'B' change delta (1, 3, h, w), in the planes' own space."""
        family = self.layout.family
        if family == "yuv":
            return [p[0] for p in add_rgb_delta([p[None] for p in planes], delta, matrix)]
        if family == "rgb":
            return [p + d for p, d in zip(planes, delta[0])]
        if family == "gray":  # restored gray is the mean of the channels, as Debander.restore does
            return [planes[0] + delta[0].mean(0)]
        raise ValueError(f"unknown colour family {family!r}")

    def _codes(self, old: list[torch.Tensor], new: list[torch.Tensor], full: bool) -> list[np.ndarray]:
        """Normalised planes -> integer codes, rounded; at 8 bits TPDF-dithered where changed."""
        lay = self.layout
        dither: list[np.ndarray | None] = [None] * len(new)
        if lay.bits == 8:
            if self.dither is None:
                self.dither = dither_patterns(new, self.seed)  # deterministic: a race is harmless
            dither = [pattern * (n != o).numpy() for pattern, n, o in zip(self.dither, new, old)]
        return [
            pixels.ycbcr_codes(p, lay.bits, full, chroma=c, dither=d) for p, c, d in zip(new, lay.chroma, dither)
        ]


def deband(
    clip: Any,
    steps: int = DEFAULT_STEPS,
    strength: float = 1.0,
    device: str = "auto",
    tile: int = 2048,
    overlap: int = 256,
    restore_bars: bool = False,
    guard: bool = True,
    weights: str | Path | None = None,
    seed: int = 0,
    debander: Restorer | None = None,
) -> Any:
    """Deband a VapourSynth clip with the network in PyTorch; the same format and props out.

    steps: INDI steps; strength: in (0, 1], 1 removes all banding the model sees; device:
    "auto" (CUDA when available), "cuda" or "cpu"; tile/overlap: tile side and overlap in
    pixels (memory is bounded by the tile); restore_bars: restore letterbox bars too (by
    default they are found and handed back untouched); guard: bound each pixel's change by
    what banding could have done to it (`deband.restore.guard`), which keeps faint detail;
    weights: a .safetensors file instead of the shipped model; seed: the 8-bit dither pattern;
    debander: an already loaded restorer (any object with `restore_batch`) used instead of weights and settings.
    Raises UnsupportedError for formats it cannot take, SettingError (a ValueError) for steps or
    strength out of range.
    """
    import vapoursynth as vs

    layout = layout_of(clip, vs)
    if debander is None:
        debander = Debander.load(
            weights, device, steps=steps, strength=strength, tile=tile, overlap=overlap, bars=not restore_bars,
            guard=Guard() if guard else None, grid=False,  # the grid stages stay off for video, as in deband video
        )
    return clip.std.ModifyFrame(clip, FrameDebander(debander, layout, seed))

"""Clean, high-precision images to band: procedural scenes, bundled photos, user folders.

All return (3, h, w) float32 tensors on [0, 1] with far more than 8 bits of precision.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deband.io.pixels import from_codes


def _u(g: torch.Generator, lo: float = 0.0, hi: float = 1.0, shape: tuple[int, ...] = ()) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def _coords(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates scaled so the longer side spans [-1, 1]."""
    s = max(h, w)
    yy = (torch.arange(h, dtype=torch.float32) + 0.5 - h / 2) * (2 / s)
    xx = (torch.arange(w, dtype=torch.float32) + 0.5 - w / 2) * (2 / s)
    return yy[:, None].expand(h, w), xx[None, :].expand(h, w)


def smooth_noise(h: int, w: int, cells: int, g: torch.Generator, channels: int = 1) -> torch.Tensor:
    """Band-limited noise: a random (cells x cells) grid upsampled bicubically. Shape (channels, h, w), ~[-1, 1]."""
    grid = _u(g, -1, 1, (1, channels, cells + 3, cells + 3))
    up = F.interpolate(grid, size=(h + 2 * h // cells, w + 2 * w // cells), mode="bicubic", align_corners=False)
    oy, ox = h // cells, w // cells
    return up[0, :, oy : oy + h, ox : ox + w]


def fractal_noise(h: int, w: int, g: torch.Generator, octaves: int = 4, base: int = 3) -> torch.Tensor:
    """Soft cloud-like noise: octaves of `smooth_noise` with halving amplitude. Shape (1, h, w)."""
    out = torch.zeros(1, h, w)
    for k in range(octaves):
        out += smooth_noise(h, w, base * 2**k, g) * 0.5**k
    return out / 2


def _palette(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    """n random RGB colours whose values lie in [lo, hi]. Shape (n, 3)."""
    return lo + (hi - lo) * torch.rand((n, 3), generator=g)


def ramp(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """A smooth 0..1 field: linear, radial (vignette/sun) or low-frequency noise. Shape (h, w)."""
    yy, xx = _coords(h, w)
    kind = int(torch.randint(0, 3, (), generator=g))
    if kind == 0:
        a = _u(g, 0, 2 * math.pi).item()
        f = math.cos(a) * xx + math.sin(a) * yy
    elif kind == 1:
        cy, cx = _u(g, -1.2, 1.2).item(), _u(g, -1.2, 1.2).item()
        f = -torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    else:
        f = smooth_noise(h, w, int(torch.randint(2, 5, (), generator=g)), g)[0]
    f = (f - f.min()) / (f.max() - f.min() + 1e-8)
    return f ** _u(g, 0.5, 2.0).item()  # gamma-like bend


def _shape_mask(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """A sharp-edged disk, ellipse or half-plane, anti-aliased over ~1 px. Shape (h, w) on [0, 1]."""
    yy, xx = _coords(h, w)
    px = 2 / max(h, w)
    if torch.rand((), generator=g) < 0.5:
        cy, cx = _u(g, -0.8, 0.8).item(), _u(g, -0.8, 0.8).item()
        ry, rx = _u(g, 0.1, 0.7).item(), _u(g, 0.1, 0.7).item()
        d = (1 - torch.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)) * min(ry, rx)
    else:
        a = _u(g, 0, 2 * math.pi).item()
        d = math.cos(a) * xx + math.sin(a) * yy - _u(g, -0.6, 0.6).item()
    return (d / px + 0.5).clamp(0, 1)


def procedural_scene(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """A smooth scene of the kind that bands: skies, sunsets, vignettes, dark walls, with
    soft clouds, sharp-edged shapes and sometimes fine texture or grain on top.

    Returns shape (3, h, w), float32, range [0, 1].
    """
    return procedural_scene_layers(h, w, g)[1]


def procedural_scene_layers(h: int, w: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(smooth, scene): the scene before its fine texture or grain was added (equal to it when
    it has none), and the scene itself, the one `procedural_scene` draws from the same g."""
    dark = torch.rand((), generator=g) < 0.3
    lo = _u(g, 0.0, 0.08).item() if dark else _u(g, 0.0, 0.7).item()
    span = _u(g, 0.03, 0.25).item() if dark else _u(g, 0.05, 1.0 - lo).item()
    colours = _palette(g, 3, lo, lo + span)  # (3, 3)
    f1, f2 = ramp(h, w, g), ramp(h, w, g) * _u(g, 0, 0.6).item()
    img = colours[0, :, None, None] + f1 * (colours[1] - colours[0])[:, None, None]
    img = img + f2 * (colours[2] - colours[0])[:, None, None]
    if torch.rand((), generator=g) < 0.5:  # soft clouds
        img = img + fractal_noise(h, w, g) * _u(g, 0.01, 0.12).item() * span
    for _ in range(int(torch.randint(0, 4, (), generator=g))):  # sharp-edged objects with their own gradient
        m = _shape_mask(h, w, g)
        c = _palette(g, 2, lo, lo + span)
        fill = c[0, :, None, None] + ramp(h, w, g) * (c[1] - c[0])[:, None, None]
        img = img * (1 - m) + fill * m
    return img.clamp(0, 1), add_detail(img, g, span).clamp(0, 1)


def add_detail(
    img: torch.Tensor, g: torch.Generator, span: float, p: float = 0.3, grain_max: float = 0.02
) -> torch.Tensor:
    """With probability p, fine texture or film grain (standard deviation up to `grain_max`)
    that the restorer must keep. img: shape (3, h, w); span: the scene's value range."""
    u = torch.rand((), generator=g).item()
    _, h, w = img.shape
    if u < p / 2:  # film grain, luma-correlated across channels
        sigma = _u(g, 0.002, grain_max).item()
        grain = torch.randn((1, h, w), generator=g) * 0.8 + torch.randn((3, h, w), generator=g) * 0.2
        img = img + sigma * grain
    elif u < p:  # fine texture: blurred noise or a fine grating
        if torch.rand((), generator=g) < 0.5:
            tex = F.avg_pool2d(torch.randn((1, 1, h + 2, w + 2), generator=g), 3, stride=1)[0]
        else:
            yy, xx = _coords(h, w)
            a, f = _u(g, 0, math.pi).item(), _u(g, 60, 250).item() * max(h, w) / 384
            tex = torch.sin((math.cos(a) * xx + math.sin(a) * yy) * f)[None]  # a period of 4.8-20 px at any size
        mask = _shape_mask(h, w, g) if torch.rand((), generator=g) < 0.5 else 1.0
        img = img + tex * mask * _u(g, 0.01, 0.1).item() * max(span, 0.1)
    return img


def sunset_scene(h: int, w: int, seed: int = 7, pan: float = 0.0) -> torch.Tensor:
    """A demo scene: a sky from deep blue to orange, a soft sun, faint clouds, dark hills with
    fine grain. `pan` moves the hills and sun sideways (for a video). Shape (3, h, w) on [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = _coords(h, w)
    xx = xx + pan
    v = (yy - yy.min()) / (yy.max() - yy.min())  # 0 top, 1 bottom
    top, horizon = torch.tensor([0.10, 0.16, 0.38]), torch.tensor([0.98, 0.62, 0.34])
    sky = top[:, None, None] + (horizon - top)[:, None, None] * v**1.6
    sun = torch.exp(-((xx - 0.35) ** 2 + (yy - 0.05) ** 2) / 0.05)
    sky = sky + sun * torch.tensor([0.25, 0.2, 0.08])[:, None, None]
    sky = sky + fractal_noise(h, w, g, octaves=3, base=2) * 0.025
    ridge = 0.22 + 0.06 * torch.sin(xx * 3.1) + 0.03 * torch.sin(xx * 7.3 + 1)
    hills = ((yy - ridge) * max(h, w) / 2).clamp(0, 1)  # anti-aliased edge
    grain = torch.randn((1, h, w), generator=g) * 0.01
    ground = torch.tensor([0.05, 0.045, 0.06])[:, None, None] * (1.2 - 0.5 * v) + grain
    return (sky * (1 - hills) + ground * hills).clamp(0, 1)


# --- natural images ---------------------------------------------------------------------

_SKIMAGE_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "motorcycle_left")


def bundled_photos(scale: int = 2) -> list[torch.Tensor]:
    """scikit-image's bundled colour photos, area-downscaled by `scale` to gain precision.

    Photos that cannot be read (an older scikit-image) are skipped.
    """
    import skimage.data as skd

    out = []
    for name in _SKIMAGE_NAMES:
        try:
            arr = getattr(skd, name)()
        except Exception:  # noqa: BLE001 - a missing optional sample is not an error
            continue
        out.append(_downscale(_to_float(arr), scale))
    return out


def _to_float(arr: np.ndarray) -> torch.Tensor:
    """(h, w[, c]) uint8/uint16/float array -> (3, h, w) float32 on [0, 1]."""
    if arr.dtype in (np.uint8, np.uint16):
        x = torch.from_numpy(from_codes(arr))
    else:
        x = torch.from_numpy(arr.astype(np.float32))
    if x.ndim == 2:
        x = x[..., None].expand(-1, -1, 3)
    return x[..., :3].permute(2, 0, 1).contiguous()


def _downscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    if scale <= 1:
        return x
    return F.avg_pool2d(x[None], scale)[0]


def folder_images(folder: str | Path) -> list[Path]:
    """Image files deband reads (`io.READ_SUFFIXES`) under `folder`, recursively, sorted."""
    from deband.io.files import READ_SUFFIXES

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in READ_SUFFIXES and p.is_file())


def load_clean(path: str | Path, scale: int = 1) -> torch.Tensor:
    """Read one clean image at full precision, RGB, optionally area-downscaled."""
    from deband.io.files import read_image

    img = read_image(path).rgb()
    return _downscale(torch.from_numpy(img).permute(2, 0, 1).contiguous(), scale)


def random_crop(x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """A size x size crop of (3, h, w), reflect-padded when the image is smaller."""
    _, h, w = x.shape
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        x = F.pad(x[None], (0, pw, 0, ph), mode="replicate")[0]
        _, h, w = x.shape
    top = int(torch.randint(0, h - size + 1, (), generator=g))
    left = int(torch.randint(0, w - size + 1, (), generator=g))
    crop = x[:, top : top + size, left : left + size]
    if torch.rand((), generator=g) < 0.5:
        crop = crop.flip(-1)
    return crop


def pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """x (3, h, w) edge-padded at the bottom and right to at least size x size."""
    _, h, w = x.shape
    if h >= size and w >= size:
        return x
    return F.pad(x[None], (0, max(0, size - w), 0, max(0, size - h)), mode="replicate")[0]


def random_region(x: torch.Tensor, height: int, g: torch.Generator) -> torch.Tensor:
    """A random region of x (3, h, w) `height` px high and 16:9 wide, or as much of x as there is."""
    _, h, w = x.shape
    rh, rw = min(h, height), min(w, -(-height * 16 // 9))
    top = int(torch.randint(0, h - rh + 1, (), generator=g))
    left = int(torch.randint(0, w - rw + 1, (), generator=g))
    return x[:, top : top + rh, left : left + rw]


def crop_pair(a: torch.Tensor, b: torch.Tensor, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random size x size crop of a and b (3, h, w each, h and w >= size), flipped
    left-right together half the time."""
    _, h, w = a.shape
    top = int(torch.randint(0, h - size + 1, (), generator=g))
    left = int(torch.randint(0, w - size + 1, (), generator=g))
    a, b = (x[:, top : top + size, left : left + size] for x in (a, b))
    if torch.rand((), generator=g) < 0.5:
        a, b = a.flip(-1), b.flip(-1)
    return a, b

"""Values stored at a few bits, over texture: find the grid a whole frame sits on, and place
the values within their cells by the luma texture (`restore_cells`).

Quantisation leaves blotches over texture that no smoothing removes: over hair, skin or
fabric the clean values are textured too, and blurring them loses more than the steps cost
(`benchmarks/chroma_room.py`). But there each clean channel or plane is, window by window,
close to a linear function of the luma. So the values are placed by alternating projections:
made locally linear in Y' (a guided filter of the estimate by the restored Y'), then moved
back into their cells, a number of times. Values never leave their cells; where they cross
levels inside a window, the crossings pin the fit, and where they do not, the cell bounds it.
Not learned: it runs after any model.

- **R'G'B' channels** cut to 4-6 bits (`channel_cells`, `place_channels`): every pixel is
  its own cell; the luma, a mix of three channels stepping at different places, is finer
  than any of them. Only where the luma explains a channel's levels up to their rounding
  (`explained`); elsewhere (colourful texture) a fit would carry the other channels' texture
  into it, and the values are only clamped into their cells.
- **Cb/Cr delivered 4:2:0 at 4-6 bits** (`chroma_cells`, `place_chroma`), the luma kept at
  more: the delivered Cb/Cr are the 4:2:0 samples upsampled bilinearly (`deband.io.chroma`),
  so the samples are recovered by inverting that (`samples`: a few fixed-point iterations on
  the 2 x 2 block means, whose operator's response lies in [1/4, 1]); each 2 x 2 block's
  mean is kept in its sample's cell. Y' is never moved: where the placed chroma would leave
  the R'G'B' gamut, only the share of its change that stays inside is taken.

A grid is the one nearly all of a plane's varying values sit on (`Guard.frame_grid`: a frame
is stored at one depth, and texture spans too few levels for a window to show it). Values at
the ends of the range, neutral chroma and chroma next to clipped R'G'B' are not counted (the
first two sit on every grid; clipping moved the third off it). The placing starts from the
restorer's output, so where it has dissolved the steps of a smooth ramp the ramp stays (the
fit of a ramp is the ramp, and it lies in its cells).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import cv2
import numpy as np
import torch

from deband.io.pixels import rgb_to_ycbcr, ycbcr_to_rgb
from deband.restore.guard import FRAME_BITS, PLANE_OFFSET, PLANE_SCALE, Guard

SAMPLE_ITERATIONS = 5  # fixed-point iterations recovering the samples (error under 1 % of a code by then)
SAMPLE_GAIN = 1.5  # their step: 2 / (1 + 1/4), the fastest for a response in [1/4, 1]
PLACE_WINDOW = 5  # pixels: the side of the windows the linear fits are made over
PLACE_EPS = 1e-5  # regularises the fit where Y' is flat (Y' variance on [0, 1])
CHROMA_ITERATIONS = 15  # alternating projections for 4:2:0 chroma (a block mean per cell: slower to pin)
CHANNEL_ITERATIONS = 10  # and for R'G'B' channels
EXPLAINED_WINDOW = 9  # px: `explained` compares a fit's residual with the rounding's over windows of this side
UPSAMPLED_MEANS = np.array([0.125, 0.75, 0.125], np.float32)  # per axis: 2 x 2 block means of a bilinear 2x upsampling
CELLS_REACH = 64  # px: how far placing reaches (the fits' windows, 15 times over, fading long before this)
CLIP_REACH = 2  # chroma samples within this many of a block with a clipped R'G'B' value are not counted
CHROMA_STEPS = tuple(2.0 ** (8 - b) for b in FRAME_BITS)  # limited-range codes: multiples of these
CHROMA_TOLERANCE = 0.75  # codes: Cb/Cr recovered from rounded R'G'B' lie this close to their level
# full-range codes: levels k * 255 / (2**bits - 1) (rounded), or multiples of 2**(8 - bits)
CHANNEL_STEPS = tuple(q for b in FRAME_BITS for q in (255 / (2**b - 1), 2.0 ** (8 - b)))
CHANNEL_TOLERANCE = 0.55  # codes: the rounding of a level to an 8-bit code, and a little


def restore_cells(x: torch.Tensor, restored: torch.Tensor, guard: Guard = Guard()) -> torch.Tensor:
    """`restored` (n, 3, h, w), each R'G'B' channel and each 4:2:0 Cb/Cr plane of x (the
    delivered image) that sits on a grid placed within its cells (`frame_steps`,
    `place_cells`); as it is where none is found."""
    return place_cells(x, restored, *frame_steps(x, guard))


def frame_steps(x: torch.Tensor, guard: Guard = Guard()) -> tuple[torch.Tensor, torch.Tensor]:
    """The steps, in 8-bit codes, of the grids that x's (n, 3, h, w) R'G'B' channels (n, 3)
    and 4:2:0 Cb/Cr planes (n, 2) sit on as wholes; 0 where none."""
    n, c, h, w = x.shape
    codes = (x[..., ::2, ::2] * 255).round().reshape(n * c, 1, -(-h // 2), -(-w // 2))  # every other: plenty
    usable = (codes > 0) & (codes < 255)  # the ends of the range sit on every grid
    channels = guard.frame_grid(codes, usable, CHANNEL_STEPS, CHANNEL_TOLERANCE).reshape(n, c)
    rgb = _planes(x)
    codes = _sample_codes(rgb)
    hc, wc = codes.shape[-2:]
    unclipped = torch.from_numpy(np.stack([_unclipped(image) for image in rgb]))[:, None]  # (n, 1, hc, wc)
    usable = unclipped.expand(n, 2, hc, wc) & ((codes - 128).abs() > CHROMA_TOLERANCE)  # neutral is on every grid
    chroma = guard.frame_grid(codes.reshape(2 * n, 1, hc, wc), usable.reshape(2 * n, 1, hc, wc), CHROMA_STEPS,
                              CHROMA_TOLERANCE)
    return channels, chroma.reshape(n, 2)


def place_cells(x: torch.Tensor, restored: torch.Tensor, channels: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """`restored` (n, 3, h, w) with the R'G'B' channels whose step (`frame_steps`: channels
    (n, 3), chroma (n, 2), codes; 0 for none) is found placed within the cells of x's values
    (`place_channels`), then the Cb/Cr planes within the cells of x's 4:2:0 samples
    (`place_chroma`, as far as the gamut allows, Y' kept); all guided by the restored Y'.
    Placing reaches `CELLS_REACH` px: run on windows of an image (their origins even, for
    the 4:2:0 samples), it gives each window's core what it gives the whole image, to within
    a thousandth of a code."""
    if bool(channels.any()):
        levels, half = _channel_cells(x, channels)
        restored = place_channels(levels, half, rgb_to_ycbcr(restored)[:, :1], restored).clamp(0, 1)
    if not bool(chroma.any()):
        return restored
    levels, half = _chroma_cells(x, chroma)
    ycc = rgb_to_ycbcr(restored)
    cbcr = place_chroma(levels, half, ycc[:, :1], ycc[:, 1:])
    change = ycbcr_to_rgb(torch.cat([torch.zeros_like(ycc[:, :1]), cbcr - ycc[:, 1:]], 1))  # linear: Y' kept
    return (restored + within_gamut(restored, change) * change).clamp(0, 1)


def channel_cells(x: torch.Tensor, guard: Guard = Guard()) -> tuple[torch.Tensor, torch.Tensor]:
    """The R'G'B' channels of x (n, 3, h, w) on their grid's levels, and half that grid's step
    (one per channel, spread to (n, 3, h, w)) on [0, 1]; half is 0 (and the level the value)
    in a channel where no grid is found."""
    return _channel_cells(x, frame_steps(x, guard)[0])


def _channel_cells(x: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`channel_cells` of x (n, c, h, w) given its channels' steps (n, c) in codes."""
    steps = steps[..., None, None].to(x.dtype)
    return on_levels(x * 255, steps) / 255, (steps / 510).expand(x.shape)


def place_channels(
    levels: torch.Tensor, half: torch.Tensor, luma: torch.Tensor, start: torch.Tensor,
    iterations: int = CHANNEL_ITERATIONS,
) -> torch.Tensor:
    """Channels (n, c, h, w) each value within half (n, c, h, w; one value per channel) of its
    level: `start`'s values moved into their cells, and where the luma (n, 1, h, w) explains
    the levels (`explained`), made locally linear in it by `iterations` alternating
    projections from there; channels whose half is 0 keep `start`'s values."""
    out = _planes(start).copy()
    for i, (g, lv, bounds) in enumerate(zip(_planes(luma), _planes(levels), half.amax((-2, -1)).tolist())):
        stats = _guide(g[0], PLACE_WINDOW, PLACE_EPS)
        todo = [j for j, bound in enumerate(bounds) if bound > 0]
        placed = _each([partial(_place_channel, out[i, j], stats, lv[j], bounds[j], iterations) for j in todo])
        for j, plane in zip(todo, placed):
            out[i, j] = plane
    return torch.from_numpy(out).to(start.device, start.dtype)


def _place_channel(
    start: np.ndarray, guide: tuple[np.ndarray, np.ndarray, np.ndarray], levels: np.ndarray, half: float,
    iterations: int,
) -> np.ndarray:
    """One channel plane of `place_channels`, with its guide's `_guide` statistics."""
    low, high = levels - half, levels + half
    est = kept = np.clip(start, low, high)
    fits = explained(guide, levels, half)
    if not fits.any():  # colourful texture throughout: nothing to fit
        return kept
    for _ in range(iterations):
        est = np.clip(_fit(guide, est, PLACE_WINDOW), low, high)
    return np.where(fits, est, kept)


def _each(jobs: list[Callable[[], np.ndarray]]) -> list[np.ndarray]:
    """What each job returns, the jobs run side by side in threads: OpenCV and NumPy let go of
    the interpreter while they work on whole planes, so two planes take about the time of one
    and a half on two cores."""
    if len(jobs) <= 1:
        return [job() for job in jobs]
    with ThreadPoolExecutor(min(len(jobs), os.cpu_count() or 1)) as pool:
        return [done.result() for done in [pool.submit(job) for job in jobs]]


def explained(guide: tuple[np.ndarray, np.ndarray, np.ndarray], levels: np.ndarray, half: float) -> np.ndarray:
    """Where levels (h, w), values rounded to a grid of half step `half`, are locally linear in
    the guide (`_guide`) up to their rounding: the mean square of their own fit's residual
    over `EXPLAINED_WINDOW` px is at most the rounding's, half**2 / 3. Elsewhere the values
    vary in ways the luma does not (colourful texture) and a fit would move them to the far
    side of their cells; clamped into the cells instead, they never move away from the truth."""
    residual = levels - _fit(guide, levels, PLACE_WINDOW)
    return _blur(cv2.multiply(residual, residual), EXPLAINED_WINDOW) <= half * half / 3


def samples(means: torch.Tensor) -> torch.Tensor:
    """The 4:2:0 samples (n, c, hc, wc) whose bilinear upsampling (centred siting) has the
    2 x 2 block means `means` (n, c, hc, wc): those means, corrected by fixed-point iterations
    (those block means are the samples filtered by `UPSAMPLED_MEANS` along each axis, edges
    replicated: exact for even sizes)."""
    m = _planes(means)
    out = m.copy()
    for s, target in zip(out.reshape(-1, *m.shape[-2:]), m.reshape(-1, *m.shape[-2:])):
        for _ in range(SAMPLE_ITERATIONS):
            filtered = cv2.sepFilter2D(s, -1, UPSAMPLED_MEANS, UPSAMPLED_MEANS, borderType=cv2.BORDER_REPLICATE)
            s += SAMPLE_GAIN * (target - filtered)
    return torch.from_numpy(out).to(means.device, means.dtype)


def chroma_cells(x: torch.Tensor, guard: Guard = Guard()) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4:2:0 Cb/Cr samples of R'G'B' x (n, 3, h, w) on their grid's levels, and half that
    grid's step, both (n, 2, ceil(h/2), ceil(w/2)) in `rgb_to_ycbcr`'s units; half is 0
    (and the level the recovered sample) in a plane where no grid is found."""
    levels, half = _chroma_cells(x, frame_steps(x, guard)[1])
    return levels, half.clone()


def _chroma_cells(x: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`chroma_cells` of x (n, 3, h, w) given its Cb/Cr planes' steps (n, 2) in codes (half
    spread, not copied)."""
    steps = steps[..., None, None].to(x.dtype)
    codes = on_levels(_sample_codes(_planes(x)), steps)
    return (codes - PLANE_OFFSET[1]) / PLANE_SCALE[1], (steps / (2 * PLANE_SCALE[1])).expand(codes.shape)


def _sample_codes(rgb: np.ndarray) -> torch.Tensor:
    """The 4:2:0 Cb/Cr samples of R'G'B' planes rgb (n, 3, h, w), recovered (`samples`), as
    limited-range 8-bit codes: (n, 2, ceil(h/2), ceil(w/2))."""
    means = torch.from_numpy(np.stack([[_halved(c) for c in image] for image in rgb]))
    s = samples(rgb_to_ycbcr(means)[:, 1:])  # the matrix is linear: the planes' block means
    return s * PLANE_SCALE[1] + PLANE_OFFSET[1]


def _halved(a: np.ndarray) -> np.ndarray:
    """The 2 x 2 block means of plane a (h, w), edges replicated for odd sizes: (ceil(h/2), ceil(w/2))."""
    h, w = a.shape
    if h % 2 or w % 2:
        a = cv2.copyMakeBorder(a, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
    return cv2.resize(a, (-(-w // 2), -(-h // 2)), interpolation=cv2.INTER_AREA)


def _unclipped(rgb: np.ndarray) -> np.ndarray:
    """Per 2 x 2 block of rgb (3, h, w), whether none within `CLIP_REACH` blocks holds a value
    clipped at 0 or 1 (as 8-bit codes): (ceil(h/2), ceil(w/2)) bool."""
    clipped = ((rgb < 0.5 / 255) | (rgb > 254.5 / 255)).any(0).astype(np.uint8)
    blocks = cv2.dilate(clipped, np.ones((2, 2), np.uint8), anchor=(0, 0))[::2, ::2]  # any in the block
    return cv2.dilate(blocks, np.ones((2 * CLIP_REACH + 1,) * 2, np.uint8)) == 0


def on_levels(codes: torch.Tensor, step: torch.Tensor | float) -> torch.Tensor:
    """8-bit codes (full or limited range) moved onto the nearest multiple of `step` (per
    value, or one for all); those whose step is 0 stay as they are."""
    step = torch.as_tensor(step, dtype=codes.dtype)
    return torch.where(step > 0, (codes / step.clamp(min=1)).round() * step, codes)


def _blur(a: np.ndarray, window: int) -> np.ndarray:
    """The mean of plane a (h, w, float32) over the window x window window (odd) around each
    pixel, edges replicated (OpenCV's box filter: several times torch's pooling on the CPU)."""
    return cv2.blur(a, (window, window), borderType=cv2.BORDER_REPLICATE)


def _guide(g: np.ndarray, window: int, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What every fit on guide plane g needs: g, its window means, its window variances + eps."""
    mg = _blur(g, window)
    return g, mg, _blur(cv2.multiply(g, g), window) - cv2.multiply(mg, mg) + eps


def _fit(guide: tuple[np.ndarray, np.ndarray, np.ndarray], t: np.ndarray, window: int) -> np.ndarray:
    """Plane t as a + b * g over each window of `_guide`'s g, the fits of the windows that hold a
    pixel averaged (a guided filter)."""
    g, mg, var = guide
    mt = _blur(t, window)
    b = cv2.divide(_blur(cv2.multiply(g, t), window) - cv2.multiply(mg, mt), var)
    return cv2.multiply(_blur(b, window), g) + _blur(mt - cv2.multiply(b, mg), window)


def linear_fit(guide: torch.Tensor, target: torch.Tensor, window: int = PLACE_WINDOW, eps: float = PLACE_EPS):
    """target (n, c, h, w) as a + b * guide (n, 1, h, w), fitted over each window x window
    window (odd), the fits of the windows that hold a pixel averaged (a guided filter)."""
    out = torch.empty(target.shape, dtype=torch.float32)
    for i, (g, t) in enumerate(zip(_planes(guide), _planes(target))):
        stats = _guide(g[0], window, eps)
        for j, plane in enumerate(t):
            out[i, j] = torch.from_numpy(_fit(stats, plane, window))
    return out.to(target.device, target.dtype)


def _planes(a: torch.Tensor) -> np.ndarray:
    """a (n, c, h, w) as float32 numpy planes (a copy where a is not already that on the CPU)."""
    return np.ascontiguousarray(a.detach().to("cpu", torch.float32).numpy())


def place_chroma(
    levels: torch.Tensor, half: torch.Tensor, luma: torch.Tensor, start: torch.Tensor,
    iterations: int = CHROMA_ITERATIONS,
) -> torch.Tensor:
    """Cb/Cr (n, 2, h, w) locally linear in luma (n, 1, h, w) with each 2 x 2 block's mean
    within half (n, 2, ceil(h/2), ceil(w/2); one value per plane) of its level, from `start`
    (n, 2, h, w), by `iterations` alternating projections; planes whose half is 0 keep
    `start`'s values. (Odd sizes are edge-padded to even ones while placing.)"""
    h, w = luma.shape[-2:]
    pad = (0, h % 2, 0, w % 2)  # bottom, right

    def even(a: np.ndarray) -> np.ndarray:
        return cv2.copyMakeBorder(a, *pad, cv2.BORDER_REPLICATE) if any(pad) else a

    out = _planes(start).copy()
    for i, (g, lv, bounds) in enumerate(zip(_planes(luma), _planes(levels), half.amax((-2, -1)).tolist())):
        stats = _guide(even(g[0]), PLACE_WINDOW, PLACE_EPS)
        todo = [j for j, bound in enumerate(bounds) if bound > 0]
        placed = _each([partial(_place_chroma_plane, even(out[i, j]), stats, lv[j], bounds[j], iterations)
                        for j in todo])
        for j, plane in zip(todo, placed):
            out[i, j] = plane[:h, :w]
    return torch.from_numpy(out).to(start.device, start.dtype)


def _place_chroma_plane(
    start: np.ndarray, guide: tuple[np.ndarray, np.ndarray, np.ndarray], levels: np.ndarray, half: float,
    iterations: int,
) -> np.ndarray:
    """One Cb or Cr plane of `place_chroma` (of even size), with its guide's `_guide` statistics."""
    est, size = start, start.shape[::-1]
    for _ in range(iterations):
        est = _fit(guide, est, PLACE_WINDOW)
        off = _halved(est) - levels
        est += cv2.resize(np.clip(off, -half, half) - off, size, interpolation=cv2.INTER_NEAREST)
    return est


def within_gamut(rgb: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """The largest share of `change` (n, 3, h, w) in [0, 1], per pixel (n, 1, h, w), that keeps
    rgb (n, 3, h, w, on [0, 1]) + share * change on [0, 1]."""
    room = torch.where(change > 0, 1 - rgb, torch.where(change < 0, rgb, torch.ones_like(rgb)))
    share = room / change.abs().clamp(min=1e-12)
    return share.amin(1, keepdim=True).clamp(0, 1)

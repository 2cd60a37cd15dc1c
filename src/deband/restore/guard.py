"""The detail guard: the restorer moves a pixel only as far as banding could have moved it.

A banded image was made by quantising a smooth one, so its true value lies within half a
quantisation step of the delivered one, and a restorer never needs to go further than
that. Faint real detail (1-4 codes of contrast) was delivered as it is, and a restorer
that smooths it away moves pixels by as much as the detail's contrast. The guard bounds
the restorer's change `restored - x` per pixel, from the input alone:

- where the input is *flat* (over a window of `blocks` x `blocks` blocks of `block` pixels
  around the pixel's block, more than `flat_share` of the neighbour differences are under
  `flat_diff`, i.e. plateaus with step edges between them: bands), the bound is
  `step_share` of the largest neighbour difference in that window (the band step; capped
  at `step_cap`, at least `cell`): enough to dissolve the steps (half a step is the most
  that rounding moved any pixel);
- elsewhere (texture, grain, faint detail: the values change every few pixels) the bound
  is `cell`, a quarter of an 8-bit code. The true value of delivered detail lies within
  half a code of the delivered one, but which way it lies is what a restorer that smooths
  detail gets wrong, so the guard lets it go only half of that way: the output is never
  more than 0.75 code from the truth there, and a restorer that does denoise the rounding
  still gets to do most of it.

Differences are the largest over R', G' and B'. The bound is computed per block (bands are
tens of pixels wide, so it varies slowly). Two widenings, each found from the input alone:

- *the grid* (`grid`): a channel whose values over a window all sit on the levels of 4-7 bits
  (re-quantised R'G'B', as a 6-bit export leaves it, over texture as much as over
  gradients: the levels k * 255 / (2**bits - 1), or the multiples of 2**(8 - bits) codes)
  may move by half of that grid's step there: the most its rounding moved it. The restorer
  uses `grid_bound` by default through the model's grid stage (`deband.model.grid`), which
  places each such pixel within its cell itself; the widening here is for models without one;
- *chroma bands* (`chroma`): Cb and Cr, taken at half resolution (where R'G'B' rounding
  averages out and 4:2:0 chroma lives), are judged flat on their own, as above; where a
  plane is, its change may reach `step_share` of its own step even when the luma around it
  is textured. And where a plane's limited-range codes sit on a 4-7-bit grid (chroma stored
  at fewer bits than luma), it may move half that grid's step. Blotches of colour over hair
  or skin are steps of Cb/Cr alone.

Where neither finds anything the bound is the one above, unchanged. Both are off by default:
they pay only with a restorer trained to use the room (the shipped one, given it, smooths
texture: see the weights README). Values are on [0, 1]; the defaults are in 8-bit
codes (1 / 255). What it does to every set is measured by `deband eval`, which scores
the restorer with and without it; see the README's results.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deband.io.pixels import rgb_to_ycbcr, ycbcr_to_rgb

CODE = 1 / 255  # one 8-bit code on [0, 1]


@dataclass(frozen=True)
class Guard:
    """The guard's settings (see the module docstring); values on [0, 1], windows in pixels."""

    block: int = 8  # pixels: the bound is one value per block x block pixels
    blocks: int = 9  # side, in blocks, of the window over which flatness and the band step are measured
    flat_share: float = 0.65  # a pixel lies in bands when more of its window is flat than this
    flat_diff: float = 0.25 * CODE  # a neighbour difference under this is flat
    cell: float = 0.25 * CODE  # the bound outside bands: half the 8-bit rounding error's largest
    step_share: float = 0.6  # the bound inside bands, as a share of the band step
    step_cap: float = 12 * CODE  # band steps are taken as at most this
    grid: bool = False  # widen the bound of a channel whose values sit on a 4-7-bit grid
    grid_share: float = 0.98  # share of a window's pixels on a grid for it to count
    grid_tolerance: float = 0.55 * CODE  # values this far inside a window's extremes lie between them
    grid_inner: float = 0.1  # share of a window's pixels that must lie strictly between its extremes
    grid_levels: int = 3  # levels of a grid a window's values must span for it to count
    chroma: bool = False  # widen the bound of Cb/Cr where they are flat on their own
    chroma_flat_diff: float = 0.5 * CODE  # a half-resolution Cb/Cr difference under this is flat
    chroma_cap: float = 24 * CODE  # Cb/Cr band steps are taken as at most this
    chroma_grid_share: float = 0.85  # share of a window's Cb (or Cr) codes on a 4-7-bit grid for it to count
    chroma_grid_tolerance: float = 0.75  # 8-bit codes: Cb/Cr from rounded R'G'B' lie this close to their level
    plane_share: float = 0.95  # share of a window's Y' (Cb, Cr) codes on a 4-6-bit grid for `plane_grid`
    plane_levels: int = 3  # levels of that grid a window must span
    frame_share: float = 0.9  # share of a whole plane's varying codes on a grid for `frame_grid`

    def __post_init__(self) -> None:
        if self.block < 1:
            raise ValueError(f"block must be at least one pixel, got {self.block}")
        if self.blocks < 1 or self.blocks % 2 == 0:
            raise ValueError(f"blocks must be an odd number, got {self.blocks}")

    def bound(self, x: torch.Tensor) -> torch.Tensor:
        """How far each pixel of x may move. x: (n, c, h, w) on [0, 1]; returns (n, 1, h, w)."""
        b = self._bands(x, self.block, self.flat_diff, self.step_cap, self.cell, self.cell)
        return _full(b, self.block, *x.shape[-2:])

    def _bands(self, x: torch.Tensor, block: int, flat_diff: float, cap: float, floor: float, outside: float):
        """Per block of x (n, c, h, w): `step_share` of the window's band step (at most `cap`,
        at least `floor`) where more than `flat_share` of its neighbour differences are under
        `flat_diff`, else `outside`. Returns (n, 1, ceil(h / block), ceil(w / block))."""
        dx, dy = _neighbour_diffs(x)
        flat = ((dx < flat_diff).to(x.dtype) + (dy < flat_diff).to(x.dtype)) / 2
        share = self._around(flat, block, F.avg_pool2d)
        inside = (self.step_share * self._around(torch.maximum(dx, dy), block, F.max_pool2d).clamp(max=cap))
        inside = inside.clamp(min=floor)
        return torch.where(share > self.flat_share, inside, torch.full_like(inside, outside))

    def _around(self, a: torch.Tensor, block: int, pool) -> torch.Tensor:
        """`pool` (F.avg_pool2d or F.max_pool2d) of a (n, c, h, w) over the window of `blocks` x
        `blocks` tiles of block x block pixels around each tile: (n, c, tiles high, tiles wide)."""
        return _window(_blocks(a, block, pool), self.blocks, pool)

    def _extremes(self, a: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The least and the greatest value of a (n, c, h, w) over the window around each tile."""
        return -self._around(-a, block, F.max_pool2d), self._around(a, block, F.max_pool2d)

    @property
    def _half(self) -> int:
        """The tile side at half resolution, where the widenings measure."""
        return max(self.block // 2, 1)

    def grid_bound(self, x: torch.Tensor) -> torch.Tensor:
        """Half the step of the coarsest 4-7-bit grid each channel's values sit on over the
        window around each block (0 where none). x: (n, c, h, w); returns (n, c, h, w).

        Measured on every other pixel of every other row (the window holds thousands), as
        8-bit codes looked up in a table of the grids each code lies on.
        """
        n, c, h, w = x.shape
        half = self._half
        planes = x.reshape(n * c, 1, h, w)[:, :, ::2, ::2]  # (nc, 1, h/2, w/2)
        codes = (planes[:, 0] * 255).round_().clamp_(0, 255).long()  # (nc, h/2, w/2)
        on = _grid_table(x.device, x.dtype)[codes].permute(0, 3, 1, 2)  # (nc, 8, h/2, w/2): 7, 6, 5, 4 bits
        share = self._around(on, half, F.avg_pool2d)  # (nc, 8, ...)
        # a grid needs values between its window's extremes (two-level text and flat areas sit on every grid)
        lo, hi = self._extremes(planes, half)
        tol = self.grid_tolerance
        inner = self._inner(planes, lo, hi, tol)
        found = torch.zeros_like(inner)
        for i, bits in enumerate(GRID_BITS):  # finer first: a coarser grid found later overrides it
            on_grid = share[:, 2 * i : 2 * i + 2].amax(1, keepdim=True) >= self.grid_share  # either convention
            spread = hi - lo >= (self.grid_levels - 1) / (2**bits - 1) - tol  # at least grid_levels of its levels
            found = torch.where(on_grid & spread, 0.5 / (2**bits - 1), found)
        found = torch.where(inner >= self.grid_inner, found, torch.zeros_like(found))
        return _full(found, 2 * half, h, w).reshape(n, c, h, w)

    def chroma_bound(self, x: torch.Tensor) -> torch.Tensor:
        """How far Cb and Cr may move where each is flat on its own at half resolution (0
        elsewhere). x: (n, 3, h, w) R'G'B'; returns (n, 2, h, w)."""
        n, _, h, w = x.shape
        c = rgb_to_ycbcr(F.avg_pool2d(x, 2, ceil_mode=True))[:, 1:].reshape(2 * n, 1, (h + 1) // 2, (w + 1) // 2)
        half = self._half
        b = self._bands(c, half, self.chroma_flat_diff, self.chroma_cap, 0.0, 0.0)
        b = torch.maximum(b, self._chroma_grid(rgb_to_ycbcr(x[:, :, ::2, ::2])[:, 1:].reshape(2 * n, 1, *c.shape[-2:])))
        return _full(b, 2 * half, h, w).reshape(n, 2, h, w)

    def _chroma_grid(self, c: torch.Tensor) -> torch.Tensor:
        """Half the step of the coarsest 4-7-bit grid of limited-range 8-bit Cb/Cr codes
        (steps of 16 ... 2 codes) that a plane sits on over the window around each block,
        with at least two of its levels there (0 where none). c: (m, 1, h, w) Cb or Cr values
        sampled on every other pixel; returns (m, 1, blocks high, blocks wide), in Cb/Cr units."""
        return self._code_grid(c * 224 + 128, GRID_BITS) / 224

    def _code_grid(
        self, codes: torch.Tensor, bits: tuple[int, ...], share_min: float | None = None, levels: int = 2,
        inner: bool = False,
    ) -> torch.Tensor:
        """Half the step, in codes, of the coarsest grid of `bits` (steps of 2**(8 - bits)
        8-bit codes, finer first) that codes (m, 1, h, w), sampled on every other pixel, sit on
        within `chroma_grid_tolerance` over the window around each tile of `_half`, with at
        least `levels` of its levels there (and, with `inner`, `grid_inner` of the values
        strictly between the window's extremes); 0 where none. Returns (m, 1, tiles high, tiles wide)."""
        half = self._half
        lo, hi = self._extremes(codes, half)
        found = torch.zeros_like(lo)
        for b in bits:  # finer first: a coarser grid found later overrides it
            q = 2.0 ** (8 - b)
            on = ((codes / q - (codes / q).round()).abs() * q < self.chroma_grid_tolerance).to(codes.dtype)
            share = self._around(on, half, F.avg_pool2d)
            spread = hi - lo >= (levels - 1) * q - self.chroma_grid_tolerance
            hit = (share >= (self.chroma_grid_share if share_min is None else share_min)) & spread
            found = torch.where(hit, q / 2, found)
        if inner:  # values between the extremes too: a flat plane with a few outliers sits on every grid
            share = self._inner(codes, lo, hi, self.chroma_grid_tolerance)
            found = torch.where(share >= self.grid_inner, found, torch.zeros_like(found))
        return found

    def _inner(self, a: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, tol: float) -> torch.Tensor:
        """The share of a's values (m, 1, h, w) more than `tol` inside the extremes lo and hi
        (`_extremes` over tiles of `_half`) of the window around each tile."""
        h, w = a.shape[-2:]
        half = self._half
        between = (a > _full(lo, half, h, w) + tol) & (a < _full(hi, half, h, w) - tol)
        return self._around(between.to(a.dtype), half, F.avg_pool2d)

    def plane_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Where the Y', Cb and Cr planes of x (BT.709, as limited-range 8-bit codes) sit on a
        4-6-bit grid (planes stored at fewer bits, then shown as 8-bit R'G'B'): half its step
        per plane and pixel (0 where none), in the units of `rgb_to_ycbcr` (`plane_levels`
        moves the values onto that grid). Found on every other pixel of every other row, as
        `grid_bound` does (7 bits are not looked for: within the tolerance their levels hold
        most codes). x: (n, 3, h, w); returns (n, 3, h, w)."""
        n, _, h, w = x.shape
        scale = x.new_tensor(PLANE_SCALE)[:, None, None]
        codes = rgb_to_ycbcr(x[:, :, ::2, ::2]) * scale + x.new_tensor(PLANE_OFFSET)[:, None, None]
        found = self._code_grid(codes.reshape(3 * n, 1, *codes.shape[-2:]), PLANE_BITS, self.plane_share,
                                self.plane_levels, inner=True)
        return _full(found, 2 * self._half, h, w).reshape(n, 3, h, w) / scale

    def frame_grid(
        self, codes: torch.Tensor, usable: torch.Tensor, steps: tuple[float, ...], tolerance: float
    ) -> torch.Tensor:
        """The coarsest of `steps` (in codes, coarsest first) whose multiples a whole plane's
        codes (m, 1, h, w) sit on, one per plane (a frame is stored at one depth); 0 where none.
        Only the codes that `usable` (m, 1, h, w, bool) marks count, and of those only the ones
        that differ from a neighbour (in flat areas one value sits on a grid by chance): at
        least `frame_share` of them within `tolerance` of a multiple, spanning `plane_levels`
        of them, and at least `FRAME_CODES`. Returns (m,), in codes."""
        dx, dy = _neighbour_diffs(codes)
        counted = usable & ((dx > self.flat_diff / CODE) | (dy > self.flat_diff / CODE))
        found = codes.new_zeros(codes.shape[0])
        for i, (c, keep) in enumerate(zip(codes, counted)):
            v = c[keep]
            if v.numel() < FRAME_CODES:
                continue
            for q in steps:  # coarser first: values on a coarse grid often sit on finer ones too
                level = (v / q).round()
                on = (v - level * q).abs() < tolerance
                if float(on.float().mean()) >= self.frame_share and level[on].unique().numel() >= self.plane_levels:
                    found[i] = q
                    break
        return found

    def wider(self, x: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
        """half (n, c, h, w: a grid's half step, per channel or plane, found in x) where it is
        wider than `bound(x)`, 0 elsewhere: texture, where the guard's bound is a fraction of
        the grid's cell and what a grid stage learns matters most (its training examples are
        scored there, `deband.training.grid`). In bands the guard already lets the restorer
        move about as far, and a stage starts from the restorer's output."""
        return torch.where(half > self.bound(x), half, torch.zeros_like(half))

    def __call__(self, x: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
        """restored, moved back to within the bounds of x. Both (n, c, h, w) on [0, 1], same
        device; returns the same shape.

        Each channel moves at most `bound(x)`, or its grid's half step where larger; with
        three channels Cb and Cr then move on by up to what `chroma_bound` allows beyond that.
        """
        b = self.bound(x)
        if self.grid:
            b = torch.maximum(b, self.grid_bound(x))
        change = restored - x
        kept = torch.minimum(torch.maximum(change, -b), b)
        if self.chroma and x.shape[1] == 3:
            more = (self.chroma_bound(x) - b.amin(1, keepdim=True)).clamp(min=0)  # (n, 2, h, w)
            lost = rgb_to_ycbcr(change - kept)[:, 1:]  # the Cb/Cr change the clamp took (the matrix is linear)
            back = torch.minimum(torch.maximum(lost, -more), more)
            kept = kept + ycbcr_to_rgb(torch.cat([torch.zeros_like(back[:, :1]), back], dim=1))
        return x + kept


GRID_BITS = (7, 6, 5, 4)  # the grids `Guard.grid_bound` looks for, finer first
FRAME_CODES = 64  # `frame_grid` finds no grid in a plane with fewer varying codes than this
FRAME_BITS = (4, 5, 6)  # the grids `frame_grid` is asked for, coarsest first
PLANE_BITS = (6, 5, 4)  # the grids `Guard.plane_grid` looks for, finer first
PLANE_SCALE = (219.0, 224.0, 224.0)  # limited-range 8-bit codes of Y', Cb, Cr = value * scale + offset
PLANE_OFFSET = (16.0, 128.0, 128.0)


def plane_levels(x: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """The Y'CbCr planes of x (n, 3, h, w) moved onto the nearest level of the grid whose half
    step `half` (n, 3, h, w; `Guard.plane_grid`'s units) each pixel has; as they are where 0."""
    scale = x.new_tensor(PLANE_SCALE)[:, None, None]
    offset = x.new_tensor(PLANE_OFFSET)[:, None, None]
    codes = rgb_to_ycbcr(x) * scale + offset
    q = (2 * half * scale).round()  # whole codes: 4, 8, 16
    return (torch.where(q > 0, (codes / q.clamp(min=1)).round() * q, codes) - offset) / scale


def _grid_table(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(256, 2 * len(GRID_BITS)): 1 where 8-bit code i lies on a grid, two columns per entry
    of GRID_BITS: the nearest codes to its levels (k * 255 / (2**bits - 1)), then the
    multiples of its step in codes (2**(8 - bits), a bit shift of rounded codes; and 255,
    where they clip). Each is tested alone: together they hold nearly every code."""
    codes = torch.arange(256, dtype=torch.float64)
    cols = []
    for bits in GRID_BITS:
        levels = 2**bits - 1
        cols.append(((codes * levels / 255).round() * 255 / levels).round() == codes)
        cols.append((codes % 2 ** (8 - bits) == 0) | (codes == 255))
    return torch.stack(cols, dim=1).to(device, dtype)


def _full(b: torch.Tensor, block: int, h: int, w: int) -> torch.Tensor:
    """Per-block values (n, c, ceil(h / block), ceil(w / block)) spread over their pixels: (n, c, h, w)."""
    return F.interpolate(b, scale_factor=float(block), mode="nearest")[..., :h, :w]


def _neighbour_diffs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|x(i, j+1) - x(i, j)| and |x(i+1, j) - x(i, j)|, the largest over channels, 0 past the
    last column and row. x: (n, c, h, w); returns two (n, 1, h, w)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().amax(1, keepdim=True)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().amax(1, keepdim=True)
    return F.pad(dx, (0, 1, 0, 0)), F.pad(dy, (0, 0, 0, 1))


def _blocks(a: torch.Tensor, block: int, pool) -> torch.Tensor:
    """`pool` (F.avg_pool2d or F.max_pool2d) of a (n, 1, h, w) over block x block tiles; a
    partial tile at the right or bottom pools what it has. Returns (n, 1, ceil(h / block),
    ceil(w / block))."""
    if pool is F.avg_pool2d:
        return F.avg_pool2d(a, block, ceil_mode=True, count_include_pad=False)
    return F.max_pool2d(a, block, ceil_mode=True)


def _window(a: torch.Tensor, k: int, pool) -> torch.Tensor:
    """`pool` (F.avg_pool2d or F.max_pool2d) of a (n, 1, h, w) over k x k windows centred on
    each pixel, edges replicated; done as a row pass then a column pass."""
    r = k // 2
    a = F.pad(a, (r, r, r, r), mode="replicate")
    return pool(pool(a, (1, k), stride=1), (k, 1), stride=1)

"""Letterbox and pillarbox bars: synthesised for training, found and kept at inference.

Bars are flat near-black borders spanning a whole side of the frame, with a straight, hard
edge to the picture. They hold nothing to deband, and an undithered 10-bit rendering shows
any faint ramp a restorer leaves in them as a band, so restoration hands them back untouched.
"""

from __future__ import annotations

import torch

from deband.io.pixels import from_codes

DARK = 32 / 255  # a bar's colour is at most this bright in every channel (limited-range black is 16)
TOLERANCE = 2.5 / 255  # a pixel matches the bar colour within this, per channel (codec specks)
FULL = 0.9  # a bar line (row or column) matches in at least this share of its pixels
RAMP = 16  # lines of codec ringing allowed between a bar and the picture (a macroblock)
JUMP = 24 / 255  # the picture starts with a jump of at least this between two lines' medians
MIN_BAR = 4  # thinner borders are not treated as bars
CHUNK = 64  # lines examined at a time


def add_bars(clean: torch.Tensor, banded: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames a (clean, banded) training pair with letterbox or pillarbox bars: a flat
    near-black 8-bit colour with sparse codec-like specks, identical in both, so the restorer
    learns that a flat area beside a hard edge to bright content is not a band to fill in.

    clean, banded (Tensor): shape (3, h, w), range [0, 1], float32. Each side gets a bar
    with probability 0.7 (at least one does), 8-35 % of the frame wide. Returns the pair.
    """
    _, h, w = clean.shape
    horizontal = torch.rand((), generator=g).item() < 0.7
    length = h if horizontal else w
    sides = torch.rand(2, generator=g) < 0.7
    if not sides.any():
        sides[int(torch.randint(0, 2, (), generator=g))] = True
    widths = (torch.empty(2).uniform_(0.08, 0.35, generator=g) * length).long().clamp(min=1)
    mask = torch.zeros(length, dtype=torch.bool)
    if sides[0]:
        mask[: widths[0]] = True
    if sides[1]:
        mask[length - widths[1] :] = True
    mask = mask.view(1, -1, 1) if horizontal else mask.view(1, 1, -1)
    level = torch.randint(0, 17, (), generator=g)
    colour = (level + torch.randint(-3, 4, (3, 1, 1), generator=g)).clamp(min=0)
    speckled = torch.rand((1, h, w), generator=g) < 0.03 * torch.rand((), generator=g)
    specks = speckled * torch.randint(-4, 5, (3, h, w), generator=g)
    bar = from_codes((colour + specks).clamp(0, 255), bits=8)
    return torch.where(mask, bar, clean), torch.where(mask, bar, banded)


def _bar_length(lines: torch.Tensor, inward: bool = True) -> int:
    """How many lines from one edge form a bar, ringing included; 0 when there is none.

    lines (Tensor): shape (n, c, m): n lines of m pixels (a view: it is read a chunk at a
    time, so a huge image is never copied). inward: count from line 0, else from line n - 1.
    """
    n = lines.shape[0]

    def outer(i: int, j: int) -> torch.Tensor:  # lines i..j-1 counted from the edge, (j - i, c, m)
        j = min(j, n)
        return lines[i:j] if inward else lines[n - j : n - i].flip(0)

    colour = outer(0, 1)[0].median(dim=1).values  # (c,)
    if n < 2 * MIN_BAR or colour.max() > DARK:
        return 0
    core = n
    for i in range(0, n // 2 + 1, CHUNK):
        share = ((outer(i, i + CHUNK) - colour[:, None]).abs() <= TOLERANCE).all(dim=1).float().mean(dim=1)
        if (share < FULL).any():
            core = i + int((share < FULL).int().argmax())
            break
    if core < MIN_BAR or core > n // 2:
        return 0
    medians = outer(core - 1, core + RAMP + 1).median(dim=2).values  # (k, c)
    jumps = (medians[1:] - medians[:-1]).abs().amax(dim=1) >= JUMP  # (k - 1,)
    picture = core + int(jumps.int().argmax())
    return picture if jumps.any() and picture <= n // 2 else 0


def find_bars(image: torch.Tensor) -> tuple[int, int, int, int]:
    """Letterbox/pillarbox bar widths (top, bottom, left, right) in pixels, 0 where none.

    image (Tensor): shape (c, h, w), range [0, 1], float32. A bar is at least MIN_BAR lines
    of one dark colour (up to DARK) in FULL of their pixels, then within RAMP lines a hard
    edge: the median of a line jumps by JUMP from the line before. It covers at most half the
    frame. The darkest band of a banded gradient does not qualify even when its edge is
    straight: the next band is a quantisation step (under JUMP for 4 bits or more) brighter.
    """
    rows = image.permute(1, 0, 2)  # (h, c, w)
    cols = image.permute(2, 0, 1)  # (w, c, h)
    return (
        _bar_length(rows),
        _bar_length(rows, inward=False),
        _bar_length(cols),
        _bar_length(cols, inward=False),
    )


def keep_bars(source: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
    """Copies the bars found in `source` into `restored`, in place, and returns `restored`.

    source, restored (Tensor): shape (n, c, h, w), range [0, 1], float32.
    """
    h, w = source.shape[2:]
    for i in range(source.shape[0]):
        top, bottom, left, right = find_bars(source[i])
        restored[i, :, :top] = source[i, :, :top]
        restored[i, :, h - bottom :] = source[i, :, h - bottom :]
        restored[i, :, :, :left] = source[i, :, :, :left]
        restored[i, :, :, w - right :] = source[i, :, :, w - right :]
    return restored

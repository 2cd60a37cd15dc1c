"""Quality metrics: PSNR and SSIM against a clean reference, CAMBI without one.

CAMBI (Contrast Aware Multiscale Banding Index, Tandon et al., PCS 2021) follows libvmaf's
`libvmaf/src/feature/cambi.c` with its default options, for 10-bit frames whose encode size
equals the frame size: zero-derivative spatial mask, 5 scales (2x decimation by keeping every
other pixel, then a 3x3 separable mode filter), windowed histograms of the masked pixels,
per-pixel c-values over contrasts of 1..2**max_log_contrast codes gated by a BT.1886 (or PQ)
visibility table, top-k pooling per scale and a weighted sum over scales.

Speed: libvmaf slides one histogram per column down the frame. Here the count of value v + k in
the window around each pixel comes from a box filter of the pixels whose value is congruent to
v + k modulo M (one cv2.boxFilter per residue class, M = 16..1024 picked per scale). That is the
exact count wherever no value in the window lies M - |k| or more away from v; the remaining
pixels are counted exactly, tile by tile, one box filter per value. Scores match libvmaf's.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from deband.io.pixels import levels, luma_codes


def psnr(x: torch.Tensor, ref: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """PSNR in dB per image. x, ref: shape (b, c, h, w) or (c, h, w), range [0, 1]. Returns (b,)."""
    if x.ndim == 3:
        x, ref = x[None], ref[None]
    mse = (x.double() - ref.double()).square().flatten(1).mean(1)
    return (10 * torch.log10(peak**2 / mse.clamp_min(1e-20))).float()


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, shape (size,), float64."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def ssim(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """SSIM per image (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03).

    x, ref (Tensor): shape (b, c, h, w) or (c, h, w), range [0, 1], h and w >= 11. Computed per
    channel over the valid region (no padding, like scikit-image, which crops the border) and
    averaged over channels and pixels. Returns shape (b,), float32.
    """
    if x.ndim == 3:
        x, ref = x[None], ref[None]
    if x.shape != ref.shape or min(x.shape[-2:]) < 11:
        raise ValueError(f"need equal shapes with h, w >= 11; got {x.shape} and {ref.shape}")
    x, ref = x.double(), ref.double()
    c = x.shape[1]
    g = _gaussian_window()

    def blur(t: torch.Tensor) -> torch.Tensor:  # (b, c, h, w) -> (b, c, h-10, w-10)
        t = F.conv2d(t, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(t, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(ref)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(ref * ref) - mu_y**2
    cov = blur(x * ref) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).flatten(1).mean(1).float()


# ----------------------------------------------------------------------------------------------
# CAMBI
# ----------------------------------------------------------------------------------------------

_NUM_SCALES = 5
_SCALE_WEIGHTS = (16, 8, 4, 2, 1)  # finest scale first
# Suprathreshold contrast response: weight of a step of d+1 codes.
_CONTRAST_WEIGHTS = (1, 2, 3, 4, 4, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8)
_CONTRAST_WEIGHTS += (8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9)
_MASK_FILTER_SIZE = 7
_LIMITED = levels(10, full=False)
_FOOT, _HEAD = int(_LIMITED.y_offset), int(_LIMITED.y_offset + _LIMITED.y_scale)  # 64, 940
_EOTFS = ("bt1886", "pq")
# Speed only (results are exact either way): the cost of one query pixel left to the exact
# tile-by-tile fallback, in box-filtered pixels, and the side of those tiles.
_FALLBACK_COST = 5000
_TILE = 64


def _eotf(v: float, eotf: str) -> float:
    """Luminance in cd/m^2 of a normalised signal v in [0, 1] (BT.1886 with 300/0.01, or PQ)."""
    if eotf == "bt1886":
        gamma, lw, lb = 2.4, 300.0, 0.01
        span = lw ** (1 / gamma) - lb ** (1 / gamma)
        return span**gamma * max(v + lb ** (1 / gamma) / span, 0.0) ** gamma
    if eotf == "pq":
        m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
        p = v ** (1 / m2)
        return 10000 * (max(p - c1, 0.0) / (c2 - c3 * p)) ** (1 / m1)
    raise ValueError(f"unknown eotf {eotf!r}; expected one of {_EOTFS}")


def _luminance(code: int, eotf: str) -> float:
    """Luminance of a limited-range 10-bit luma code (clipped to 64..940)."""
    return _eotf((min(max(code, _FOOT), _HEAD) - _FOOT) / (_HEAD - _FOOT), eotf)


def _tvi_for_diff(diff: int, threshold: float, eotf: str) -> int:
    """Largest code at which a step of `diff` codes is visible (dL > threshold * L).

    libvmaf's bisection: 0 if not even visible at the foot, 1023 if still visible at the top.
    """

    def check(code: int) -> int:  # -1: too small, 0: correct, 1: too big
        def visible(c: int) -> bool:
            lum = _luminance(c, eotf)
            return _luminance(c + diff, eotf) - lum > threshold * lum

        return 1 if not visible(code) else (-1 if visible(code + 1) else 0)

    foot, head = _FOOT, _HEAD - diff - 1
    if (flag := check(foot)) >= 0:
        return foot if flag == 0 else 0
    if (flag := check(head)) <= 0:
        return head if flag == 0 else 1023
    while True:
        mid = foot + (head - foot) // 2
        flag = check(mid)
        if flag == 0:
            return mid
        foot, head = (mid, head) if flag < 0 else (foot, mid)


@lru_cache(maxsize=32)
def _tvi_table(threshold: float, max_log_contrast: int, eotf: str) -> tuple[int, ...]:
    """Visibility thresholds for steps of 1 .. 2**max_log_contrast codes (10-bit codes)."""
    return tuple(_tvi_for_diff(d, threshold, eotf) for d in range(1, 2**max_log_contrast + 1))


def _adjusted_window(window_size: int, h: int, w: int) -> int:
    """libvmaf's window for the frame size (window_size is for 4K), rounded up to odd."""
    return (((window_size * (w + h)) // 375) >> 4) | 1


def _spatial_mask(luma: np.ndarray) -> np.ndarray:
    """Pixels in flat areas: more than mask_index zero-derivative pixels in their 7x7 box.

    luma: (h, w) int32. A pixel has zero derivative when it equals its right and lower
    neighbours (the last column/row count as equal). Returns (h, w) bool.
    """
    h, w = luma.shape
    zero = np.ones((h, w), bool)
    zero[:, :-1] &= luma[:, :-1] == luma[:, 1:]
    zero[:-1, :] &= luma[:-1, :] == luma[1:, :]
    k = _MASK_FILTER_SIZE
    count = cv2.boxFilter(zero.view(np.uint8), cv2.CV_16U, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)
    ceil_log2 = int((w >> 6) * (h >> 6) - 1).bit_length() if (w >> 6) * (h >> 6) else 0
    mask_index = (k * k + 3 * (ceil_log2 - 11) - 1) >> 1
    return count > mask_index


def _mode3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Element-wise mode of three arrays; the minimum when all differ."""
    low = np.minimum(np.minimum(a, b), c)
    return np.where((a == b) | (a == c), a, np.where(b == c, b, low))


def _mode_filter(img: np.ndarray) -> np.ndarray:
    """libvmaf's 3x3 mode filter: horizontal mode3 then vertical mode3; first/last row kept."""
    horiz = img.copy()
    horiz[:, 1:-1] = _mode3(img[:, :-2], img[:, 1:-1], img[:, 2:])
    out = img.copy()
    out[1:-1] = _mode3(horiz[:-2], horiz[1:-1], horiz[2:])
    return out


def _window_counts(
    vals: np.ndarray,
    q_idx: np.ndarray,
    q_val: np.ndarray,
    offsets: list[int],
    window: int,
    modulus: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Histogram counts in the window around query pixels, for values q_val + k, k in offsets.

    vals: (h, w) int32, the value of each counted pixel, -1 for pixels not counted.
    q_idx: (n,) ascending flat indices into vals of the query pixels; q_val: (n,) their values.
    One box filter per residue class (value mod `modulus`) that some query needs, over the rows
    those queries span. The count of a residue is the count of the value when no counted pixel
    in the window differs from the query value by modulus - max|k| or more (see
    `_required_modulus`). Returns (order, counts): counts[i, j], uint16, is the count of
    q_val[order[j]] + offsets[i] around pixel q_idx[order[j]]; shape (len(offsets), n).
    """
    h, w = vals.shape
    pad = window // 2
    res = np.where(vals >= 0, vals % modulus, modulus).astype(np.uint16)  # modulus: not counted
    q_res = (q_val % modulus).astype(np.uint16)
    order = np.argsort(q_res, kind="stable")  # by residue, then by index
    q_sorted = q_idx[order]
    bounds = np.searchsorted(q_res[order], np.arange(modulus + 1))
    has_queries = bounds[1:] > bounds[:-1]
    needed = np.zeros(modulus, bool)
    for k in offsets:  # residue r serves the queries of residue (r - k) mod modulus
        needed |= np.roll(has_queries, k)
    present = np.bincount(res.reshape(-1), minlength=modulus + 1)[:modulus] > 0
    counts = np.zeros((len(offsets), q_idx.size), np.uint16)
    box = np.empty(vals.shape, np.uint16)
    for r in np.flatnonzero(present & needed):
        groups = [(i, (r - k) % modulus) for i, k in enumerate(offsets)]
        groups = [(i, bounds[g], bounds[g + 1]) for i, g in groups if has_queries[g]]
        top = max(min(q_sorted[start] for _, start, _ in groups) // w - pad, 0)
        bottom = min(max(q_sorted[stop - 1] for _, _, stop in groups) // w + pad + 1, h)
        out = box[: bottom - top]  # (rows, w) uint16, written in place
        cv2.boxFilter(
            (res[top:bottom] == r).view(np.uint8),
            cv2.CV_16U,
            (window, window),
            dst=out,
            normalize=False,
            borderType=cv2.BORDER_CONSTANT,
        )
        for i, start, stop in groups:
            np.take(out.reshape(-1), q_sorted[start:stop] - top * w, out=counts[i, start:stop])
    return order, counts


def _required_modulus(vals: np.ndarray, q_idx: np.ndarray, diffs: int, window: int) -> np.ndarray:
    """Smallest modulus that makes `_window_counts` exact, per query pixel: (n,) int64.

    A counted value u in the window aliases value v + k only if u - v - k is a nonzero
    multiple of the modulus, impossible when |u - v| + |k| < modulus.
    """
    kernel = np.ones((window, window), np.uint8)
    counted = vals >= 0
    hi = cv2.dilate(np.where(counted, vals, 0).astype(np.uint16), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    lo = cv2.erode(
        np.where(counted, vals, 4095).astype(np.uint16), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=4095
    )
    v = vals.reshape(-1)[q_idx].astype(np.int64)
    spread = np.maximum(hi.reshape(-1)[q_idx] - v, v - lo.reshape(-1)[q_idx])
    return spread + diffs + 1


def _choose_modulus(vals: np.ndarray, required: np.ndarray, diffs: int, exact: int) -> int:
    """Modulus for the whole frame balancing box filters (one per residue) against fallback."""
    hist = np.bincount(vals[vals >= 0], minlength=exact)
    best, best_cost = exact, np.inf
    for modulus in [2**m for m in range(int(2 * diffs + 1).bit_length(), 12)] + [exact]:
        if modulus > exact:
            continue
        residues = np.count_nonzero(np.bincount(np.arange(hist.size) % modulus, weights=hist))
        cost = residues * vals.size + _FALLBACK_COST * np.count_nonzero(required > modulus)
        if cost < best_cost:
            best, best_cost = modulus, cost
    return best


def _fallback_counts(
    vals: np.ndarray,
    q_idx: np.ndarray,
    q_val: np.ndarray,
    offsets: list[int],
    window: int,
    exact: int,
) -> np.ndarray:
    """`_window_counts` with an exact modulus, tile by tile; counts in the order of q_idx."""
    h, w = vals.shape
    pad = window // 2
    qy, qx = np.divmod(q_idx, w)
    tile = (qy // _TILE) * w + qx // _TILE
    order = np.lexsort((q_idx, tile))  # by tile, then ascending index
    cuts = np.flatnonzero(np.diff(tile[order])) + 1
    counts = np.zeros((len(offsets), q_idx.size), np.uint16)
    for sel in np.split(order, cuts):
        y0, x0 = (qy[sel[0]] // _TILE) * _TILE, (qx[sel[0]] // _TILE) * _TILE
        ry, rx = max(y0 - pad, 0), max(x0 - pad, 0)
        region = np.ascontiguousarray(vals[ry : y0 + _TILE + pad, rx : x0 + _TILE + pad])
        local = (qy[sel] - ry) * region.shape[1] + (qx[sel] - rx)
        sub_order, sub_counts = _window_counts(region, local, q_val[sel], offsets, window, exact)
        counts[:, sel[sub_order]] = sub_counts
    return counts


def _c_values(img: np.ndarray, mask: np.ndarray, window: int, tvi: tuple[int, ...]) -> np.ndarray:
    """Per-pixel c-values of one scale. img: (h, w) int32 codes, mask: (h, w) bool.

    c = max over steps d with img <= tvi[d] of weight[d] * p0 * p / (p0 + p), where p0 counts
    masked pixels equal to the centre value in the window and p the larger count of value
    +- d. Returns (h, w) float32, 0 outside the mask.
    """
    diffs = len(tvi)
    # Counted values and looked-up values v + k all lie in [-diffs, tvi[-1] + diffs], so this
    # modulus never aliases (it is one box filter per value).
    exact = tvi[-1] + 2 * diffs + 1
    vals = np.where(mask & (img <= tvi[-1] + diffs), img, -1).astype(np.int32)
    q_idx = np.flatnonzero(mask & (img <= tvi[-1]))
    c = np.zeros(img.shape, np.float32)
    if q_idx.size == 0:
        return c
    q_val = img.reshape(-1)[q_idx]
    steps = [d for d in range(1, diffs + 1) if tvi[d - 1] >= q_val.min()]  # tvi is increasing
    offsets = [0] + [k for d in steps for k in (d, -d)]
    required = _required_modulus(vals, q_idx, diffs, window)
    modulus = _choose_modulus(vals, required, diffs, exact)
    order, counts = _window_counts(vals, q_idx, q_val, offsets, window, modulus)
    q_idx, q_val = q_idx[order], q_val[order]
    slow = np.flatnonzero((required > modulus)[order])
    if slow.size:
        counts[:, slow] = _fallback_counts(vals, q_idx[slow], q_val[slow], offsets, window, exact)
    p0 = counts[0].astype(np.float32)  # >= 1: the pixel itself
    best = np.zeros(q_idx.size, np.float32)
    for i, d in enumerate(steps):
        p = np.maximum(counts[1 + 2 * i], counts[2 + 2 * i]).astype(np.float32)
        val = p0 * p
        val *= _CONTRAST_WEIGHTS[d - 1]
        val /= p0 + p
        np.maximum(best, val, out=best, where=q_val <= tvi[d - 1])
    c.reshape(-1)[q_idx] = best
    return c


def _topk_mean(c: np.ndarray, topk: float) -> float:
    """Mean of the int(topk * n) largest values (at least 1) of c, accumulated in float64."""
    n = c.size
    k = min(max(int(topk * n), 1), n)
    nonzero = c[c > 0]
    if nonzero.size > k:
        nonzero = np.partition(nonzero, nonzero.size - k)[nonzero.size - k :]
    return float(nonzero.sum(dtype=np.float64)) / k


def _check_cambi_args(
    luma10: np.ndarray, window_size: int, topk: float, tvi_threshold: float, max_log_contrast: int, eotf: str
) -> None:
    if luma10.ndim != 2 or luma10.size == 0 or not np.issubdtype(luma10.dtype, np.integer):
        raise ValueError(f"luma10 must be a non-empty 2-D integer array, got {luma10.dtype} {luma10.shape}")
    if luma10.min() < 0 or luma10.max() > 1023:
        raise ValueError("luma10 must hold 10-bit codes 0..1023")
    if not 15 <= window_size <= 127:
        raise ValueError(f"window_size must be in [15, 127], got {window_size}")
    if not 0 < topk <= 1:
        raise ValueError(f"topk must be in (0, 1], got {topk}")
    if not 0 < tvi_threshold <= 1:
        raise ValueError(f"tvi_threshold must be in (0, 1], got {tvi_threshold}")
    if not 0 <= max_log_contrast <= 5:
        raise ValueError(f"max_log_contrast must be in [0, 5], got {max_log_contrast}")
    if eotf not in _EOTFS:
        raise ValueError(f"unknown eotf {eotf!r}; expected one of {_EOTFS}")


def cambi(
    luma10: np.ndarray,
    *,
    window_size: int = 65,
    topk: float = 0.6,
    tvi_threshold: float = 0.019,
    max_log_contrast: int = 2,
    eotf: str = "bt1886",
    return_map: bool = False,
) -> float | tuple[float, np.ndarray]:
    """CAMBI banding score of one frame, libvmaf's algorithm (0 = no banding, ~5 annoying, 24 max).

    luma10 (ndarray): shape (h, w), integer dtype, limited-range 10-bit luma codes 0..1023
        (8-bit sources shifted left by 2).
    window_size: window at 4K, scaled to the frame size as libvmaf does (65 -> 33 at 1080p).
    topk: fraction of the largest c-values pooled per scale.
    tvi_threshold: a step dL is visible when dL > tvi_threshold * L.
    max_log_contrast: steps of 1 .. 2**max_log_contrast codes are considered.
    eotf: "bt1886" or "pq", for the visibility thresholds.
    return_map: also return `(h, w)` float32 heat map in [0, 1]: per pixel, the largest c-value
        over the 5 scales (coarse scales repeated up to full size) divided by its maximum,
        max contrast weight * window**2 / 4.
    Returns the score (float), or (score, heat map).
    """
    _check_cambi_args(luma10, window_size, topk, tvi_threshold, max_log_contrast, eotf)
    tvi = _tvi_table(float(tvi_threshold), int(max_log_contrast), eotf)
    h, w = luma10.shape
    window = _adjusted_window(window_size, h, w)
    img = luma10.astype(np.int32)
    mask = _spatial_mask(img)  # computed once, at full resolution
    scores, heat = [], np.zeros((h, w), np.float32)
    for scale in range(_NUM_SCALES):
        if scale > 0:  # decimate the mode-filtered image of the previous scale
            img, mask = np.ascontiguousarray(img[::2, ::2]), np.ascontiguousarray(mask[::2, ::2])
        img = _mode_filter(img)
        c = _c_values(img, mask, window, tvi)
        scores.append(_topk_mean(c, topk))
        if return_map:
            f = 2**scale
            np.maximum(heat, c.repeat(f, 0).repeat(f, 1)[:h, :w], out=heat)
    score = sum(s * wt for s, wt in zip(scores, _SCALE_WEIGHTS)) / window**2
    if not return_map:
        return score
    return score, heat / (max(_CONTRAST_WEIGHTS[: len(tvi)]) * window**2 / 4)


def cambi_rgb(rgb: np.ndarray, **kwargs) -> float | tuple[float, np.ndarray]:
    """`cambi` of an R'G'B' image: rgb (h, w, 3) float on [0, 1], scored on its limited-range
    10-bit BT.709 luma codes (`pixels.luma_codes`); kwargs go to `cambi`."""
    return cambi(luma_codes(rgb), **kwargs)


def cambi_heatmap(rgb: np.ndarray, **kwargs) -> np.ndarray:
    """Where CAMBI sees banding: rgb (h, w, 3) float on [0, 1] -> (h, w) float32 on [0, 1].

    The per-pixel c-values, maximum over scales, normalised (see `cambi`'s return_map).
    """
    return cambi_rgb(rgb, return_map=True, **kwargs)[1]

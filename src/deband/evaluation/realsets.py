"""Real-content benchmark sets: crops of the corpus's held-out images, banded as delivery bands.

The corpus is a folder written by `deband corpus build` (`deband.data.corpus`): 16-bit PNGs and a
`manifest.json` whose entries carry a `split`. Only "held-out" images are used here, never
"train" ones; the 16-bit image is the clean target.

Crops are chosen, not taken at random: each image's candidate windows (`CANDIDATES` of them,
placed by a generator seeded from the image's file name, so adding images never moves
another image's crops) are ranked by a per-pixel map averaged over the window, and the best ones
that overlap an already chosen window by at most half are kept:

- `gentle_map` (the banding sets): smooth gradients, whose slope is neither zero nor steeper
  than one 8-bit code per pixel, without grain or texture around them. That is where
  delivery bands; flat areas and texture are not.
- `faint_map` (the faint-detail set, `deband.evaluation.faintsets`): pixels whose local high-pass RMS
  lies in `FAINT_RMS`, that of 1-4 codes of contrast at 8 bits, and that `gentle_map` does
  not count as smooth gradient (a source's own 8-bit steps across a gradient have that RMS
  too, and those are bands, not detail), less those with stronger detail.

A window qualifies when the map's mean over it is at least `MIN_SHARE`: most of the window
holds what the set is about (an image of texture has no window of smooth gradient, and a
flat-gradient wallpaper none of faint detail, and a crop from them would score something
else). A set of n crops takes the qualifying images in turn, in an order set by a hash of
their file names (so a large corpus is sampled across its sources, not by the alphabet),
each image's qualifying windows best first, until n are taken. Only qualifying windows are
taken: a corpus with few of them gives a smaller set, and one with none gives none. A crop
is `size` pixels square, or the image's shorter side when that is smaller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from deband.data.manifest import split_files
from deband.evaluation.evalsets import Pair
from deband.io.pixels import luma, quantise
from deband.synthesis import encoders
from deband.synthesis.delivery import dark_lift, requantise, store_ycbcr, ten_to_eight, through_codec, ycbcr420

REAL_SEED = 40_000  # mixed with each image's sha256 to place its candidate windows
CANDIDATES = 48  # candidate windows drawn per image
MAX_OVERLAP = 0.5  # a kept window overlaps any earlier one by at most this share of its area
MIN_SHARE = 0.5  # a window qualifies for a set when the map's mean over it is at least this
FAINT_RMS = (0.35, 1.5)  # 8-bit codes: the RMS of sinusoids 1..4 codes peak to peak
STRONG_PENALTY = 3.0  # a pixel of stronger detail costs a faint-detail window this much
SMOOTH_RMS = 0.5  # 8-bit codes: a smooth-gradient pixel has less high-pass RMS around it
GRAIN = 1.0 / 255  # film grain (standard deviation) under the codec sets
CODEC_FRAMES = 3  # frames encoded per crop; the last, a predicted one, is scored

Image = tuple[str, np.ndarray]  # (name, (h, w, 3) float32 on [0, 1])

# set name -> delivery of a clean (3, h, w) tensor on [0, 1]; the same bits every time
REQUANTISATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "real 4:2:0 8-bit": lambda x: ycbcr420(x),
    "real luma6-chroma5 round": lambda x: requantise(x, 6, 5, "round"),
    "real luma6-chroma6 trunc": lambda x: requantise(x, 6, 6, "trunc"),
    "real 10-to-8 trunc": lambda x: ten_to_eight(x, "trunc"),
    "real dark lift": lambda x: dark_lift(x, white=0.25, gamma=1.4, black=0.01),
}
# set name -> colour banding of a clean (3, h, w) tensor on [0, 1], scored on textured crops
# (`texture_map`): R'G'B' cut per channel, with and without x264 after; Cb/Cr cut alone
COLOUR: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "textured rgb 6-bit": lambda x: quantise(quantise(x, 6), 8),
    "textured rgb 5-bit": lambda x: quantise(quantise(x, 5), 8),
    "textured rgb 6-bit x264": lambda x: through_codec(quantise(x, 6), "libx264", 18, "veryfast"),
    "textured rgb 5-bit x264": lambda x: through_codec(quantise(x, 5), "libx264", 18, "veryfast"),
    "textured chroma 5-bit 4:2:0": lambda x: store_ycbcr(x, 8, 5, source_bits=10),
    "textured chroma 4-bit 4:2:0": lambda x: store_ycbcr(x, 8, 4, source_bits=10),
}
TEXTURE_RMS = 2.0  # 8-bit codes: a textured pixel has at least this high-pass RMS around it
# set name -> (encoder, CRF, preset): rates where flat areas band, over fine grain
CODECS: dict[str, tuple[str, int, str]] = {
    "real h264 crf32 grain": ("libx264", 32, "veryfast"),
    "real hevc crf34 grain": ("libx265", 34, "veryfast"),
    "real av1 crf48 grain": ("libsvtav1", 48, "10"),
}


def corpus_problem(folder: Path) -> str | None:
    """Why `folder` cannot give real-content sets (no manifest, or no held-out image), or None."""
    if not (folder / "manifest.json").is_file():
        return f"no corpus at {folder} (no manifest.json)"
    if not split_files(folder, "held-out"):
        return f"{folder / 'manifest.json'} lists no held-out image"
    return None


def load_held_out(folder: Path) -> list[Image]:
    """Every held-out image of the corpus, read exactly: [(file name, (h, w, 3) float32)]."""
    from deband.io.files import read_image

    return [(p.name, read_image(p, max_pixels=None).rgb()) for p in sorted(split_files(folder, "held-out"))]


def gentle_map(img: np.ndarray) -> np.ndarray:
    """1 on smooth gradients, else 0: the luma slope (Sobel, per pixel) is above zero and at
    most one 8-bit code per pixel, and the local high-pass RMS (`scoring.local_rms`) is under
    SMOOTH_RMS (no grain or texture). img: (h, w, 3) float32 on [0, 1]; returns (h, w) float32."""
    from deband.evaluation.scoring import local_rms

    return _gentle(img, local_rms(img) * 255).astype(np.float32)


def faint_map(img: np.ndarray) -> np.ndarray:
    """1 where the local high-pass RMS (`scoring.local_rms`) lies in FAINT_RMS codes at 8
    bits and `gentle_map` is 0, -STRONG_PENALTY where the RMS is above (strong detail, which
    would outweigh the faint), else 0. img: (h, w, 3) float32 on [0, 1]; returns (h, w) float32."""
    from deband.evaluation.scoring import local_rms

    rms = local_rms(img) * 255
    faint = (rms >= FAINT_RMS[0]) & (rms <= FAINT_RMS[1]) & ~_gentle(img, rms)
    return faint.astype(np.float32) - STRONG_PENALTY * (rms > FAINT_RMS[1])


def texture_map(img: np.ndarray) -> np.ndarray:
    """1 where the local high-pass RMS (`scoring.local_rms`) is at least TEXTURE_RMS codes
    (hair, foliage, fabric, skin pores, grain), else 0. img: (h, w, 3) float32 on [0, 1];
    returns (h, w) float32."""
    from deband.evaluation.scoring import local_rms

    return (local_rms(img) * 255 >= TEXTURE_RMS).astype(np.float32)


def _gentle(img: np.ndarray, rms: np.ndarray) -> np.ndarray:
    """`gentle_map` as a bool mask, given the image's local high-pass RMS in 8-bit codes."""
    y = np.ascontiguousarray(luma(img, axis=-1), dtype=np.float32)
    slope = np.hypot(cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1)) / 8
    return (slope > 0.5 / 65535) & (slope <= 1 / 255) & (rms < SMOOTH_RMS)


def _overlap(a: tuple[int, int], b: tuple[int, int], crop: int) -> float:
    dy, dx = max(0, crop - abs(a[0] - b[0])), max(0, crop - abs(a[1] - b[1]))
    return dy * dx / crop**2


def ranked_windows(score_map: np.ndarray, crop: int, count: int, g: torch.Generator) -> list[tuple[int, int, float]]:
    """`count` (top, left, mean) of crop x crop windows, best first: CANDIDATES windows
    placed by g, ranked by the mean of score_map (h, w) over each, those overlapping a kept
    one by more than MAX_OVERLAP skipped (and used last if too few remain)."""
    h, w = score_map.shape
    sums = cv2.integral(score_map.astype(np.float64))  # (h + 1, w + 1)
    tops = torch.randint(0, h - crop + 1, (CANDIDATES,), generator=g).tolist()
    lefts = torch.randint(0, w - crop + 1, (CANDIDATES,), generator=g).tolist()
    mean = {(t, x): float(sums[t + crop, x + crop] - sums[t, x + crop] - sums[t + crop, x] + sums[t, x]) / crop**2
            for t, x in zip(tops, lefts)}
    order = sorted(mean, key=lambda c: (-mean[c], c))
    kept: list[tuple[int, int]] = []
    for c in order:
        if all(_overlap(c, k, crop) <= MAX_OVERLAP for k in kept):
            kept.append(c)
    kept += [c for c in order if c not in kept]
    return [(t, x, mean[(t, x)]) for t, x in kept[:count]]


def _image_seed(name: str) -> int:
    return REAL_SEED + int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def corpus_crops(images: list[Image], n: int, size: int, score: Callable[[np.ndarray], np.ndarray]) -> list[Image]:
    """Up to n crops by `score` (`gentle_map` or `faint_map`): the qualifying windows (mean
    at least MIN_SHARE) of the images in turn (see the module docstring); each `size`
    square or the image's shorter side."""
    queues = []  # per image: its qualifying windows [(name, img, top, left, crop)], best first
    for name, img in sorted(images, key=lambda image: (_image_seed(image[0]), image[0])):
        crop = min(size, *img.shape[:2])
        g = torch.Generator().manual_seed(_image_seed(name))
        queues.append([(name, img, t, x, crop) for t, x, m in ranked_windows(score(img), crop, n, g) if m >= MIN_SHARE])
    chosen = []
    while len(chosen) < n and any(queues):
        chosen += [q.pop(0) for q in queues if q][: n - len(chosen)]
    return [(f"{Path(name).stem}@{t},{x}", img[t : t + crop, x : x + crop].copy())
            for name, img, t, x, crop in chosen]


def real_set_names() -> list[str]:
    """The real-content banding sets this build can make: every re-quantisation set, then
    the codec sets whose encoder PyAV has."""
    return list(REQUANTISATIONS) + [name for name, (enc, _, _) in CODECS.items() if encoders.available(enc)]


def colour_set_names() -> list[str]:
    """The colour sets this build can make (the x264 ones need PyAV's libx264)."""
    return [name for name in COLOUR if "x264" not in name or encoders.available("libx264")]


def deliver(name: str, clean: np.ndarray, seed: int) -> np.ndarray:
    """clean (h, w, 3) float32 on [0, 1] delivered as set `name` does (grain seeded by seed)."""
    x = torch.from_numpy(np.ascontiguousarray(clean)).permute(2, 0, 1)
    if name in REQUANTISATIONS:
        y = REQUANTISATIONS[name](x)
    elif name in COLOUR:
        y = COLOUR[name](x)
    elif name in CODECS:
        encoder, crf, preset = CODECS[name]
        y = through_codec(x, encoder, crf, preset, grain=GRAIN, frames=CODEC_FRAMES, seed=seed)
    else:
        raise ValueError(f"unknown real-content set {name!r}; expected one of {real_set_names()}")
    return y.permute(1, 2, 0).numpy().astype(np.float32, copy=True)


def real_set(name: str, crops: list[Image]) -> list[Pair]:
    """The crops (`corpus_crops` with `gentle_map`, or `texture_map` for the colour sets)
    delivered as set `name`; clean = the crop."""
    return [Pair(c, deliver(name, c, REAL_SEED + i), f"{name}: {label}") for i, (label, c) in enumerate(crops)]

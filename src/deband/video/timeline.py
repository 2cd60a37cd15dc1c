"""A banding timeline of a video: CAMBI per frame, scene cuts, banded scenes; and a restorer
that restores only the frames of banded scenes.

`scan(path, TimelineOptions())` decodes the video one frame at a time (`video.analysis.
iter_frames`: the frames `deband_video` would restore, in the same colour) and for each frame

* scores CAMBI as `metrics.cambi_rgb` does: on the limited-range 10-bit BT.709 luma codes of
  the decoded R'G'B' frame (`pixels.luma_codes`), so a video frame and the same picture saved
  as an image score alike whatever the source's matrix or bit depth. With `every` N, only every
  Nth frame and the first frame of each scene are scored.
* detects scene cuts: the frame's luma is area-downscaled to a 32x32 thumbnail, and a cut lies
  before every frame whose thumbnail differs from the previous frame's by more than
  `cut_threshold` in mean absolute value (luma on [0, 1]). Downscaling averages grain and noise
  away, so a grainy shot stays one scene while a change of picture is a cut. Fades and
  dissolves spread over many frames are not cut.

Each scene's CAMBI is the mean over its scored frames; it is banded when that mean is above
`threshold`. `OnlyBanded` wraps a restorer: the decisions come from a first pass (`scan`), so a
scene is restored all or nothing, and a frame of a clean scene is handed back unchanged, which
the video pipeline re-encodes to its own codes exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from deband.errors import InputError
from deband.io.pixels import luma
from deband.video.options import Restorer

THUMB = 32  # side of the luma thumbnails the cut detector compares
PRINT = 4  # side of the fingerprint (PRINT x PRINT thumbnail means) that ties passes together
PRINT_TOLERANCE = 1e-3  # largest fingerprint difference (luma on [0, 1]) for the same frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimelineOptions:
    every: int = 1  # score every Nth frame (and the first frame of every scene)
    max_log_contrast: int = 4  # CAMBI's largest step, 2**N codes (4: also sees 6-7-bit steps)
    threshold: float = 5.0  # a scene whose mean CAMBI is above this is banded
    cut_threshold: float = 0.08  # mean |thumbnail change| (luma on [0, 1]) that makes a cut
    start: float | None = None  # seconds into the video where the scan starts
    duration: float | None = None  # seconds of video to scan

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"every must be at least 1, got {self.every}")
        if not 0 <= self.max_log_contrast <= 5:
            raise ValueError(f"max_log_contrast must be in [0, 5], got {self.max_log_contrast}")
        if self.threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")
        if not 0 < self.cut_threshold <= 1:
            raise ValueError(f"cut_threshold must be in (0, 1], got {self.cut_threshold}")


@dataclass(frozen=True)
class FrameScore:
    index: int  # frame number from 0 (at the scan's start)
    seconds: float  # presentation time stamp
    cambi: float | None  # None: not scored (see TimelineOptions.every)
    scene: int  # scene number from 0


@dataclass(frozen=True)
class Scene:
    id: int  # from 0
    first: int  # first frame index
    last: int  # last frame index (inclusive)
    start: float  # seconds: the first frame's time stamp
    end: float  # seconds: the last frame's time stamp plus its duration
    mean: float  # mean CAMBI of the scored frames
    max: float  # largest CAMBI of the scored frames
    scored: int  # frames scored
    banded: bool  # mean > threshold


@dataclass
class Timeline:
    """What `scan` found. fingerprints: (frames, PRINT * PRINT) float32 luma means."""

    source: Path
    options: TimelineOptions
    frames: list[FrameScore] = field(default_factory=list)
    scenes: list[Scene] = field(default_factory=list)
    fingerprints: np.ndarray = field(default_factory=lambda: np.zeros((0, PRINT * PRINT), np.float32))

    def banded_frames(self) -> np.ndarray:
        """(frames,) bool: the frame belongs to a banded scene."""
        banded = np.zeros(len(self.frames), bool)
        for s in self.scenes:
            banded[s.first : s.last + 1] = s.banded
        return banded


def thumbnail(rgb: torch.Tensor) -> np.ndarray:
    """BT.709 luma of an R'G'B' frame, area-downscaled: rgb (3, h, w) float32 on [0, 1] ->
    (THUMB, THUMB) float32 on [0, 1] (sides below THUMB are stretched)."""
    y = luma(rgb, "bt709", axis=0).numpy().astype(np.float32)  # (h, w)
    return cv2.resize(y, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


def cut_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails (THUMB, THUMB) on [0, 1]."""
    return float(np.abs(a - b).mean())


def fingerprint(thumb: np.ndarray) -> np.ndarray:
    """(THUMB, THUMB) -> (PRINT * PRINT,) float32 block means: a frame's identity across passes."""
    k = THUMB // PRINT
    return thumb.reshape(PRINT, k, PRINT, k).mean(axis=(1, 3)).ravel()


def frame_cambi(rgb: torch.Tensor, max_log_contrast: int) -> float:
    """CAMBI of an R'G'B' frame (3, h, w) float32 on [0, 1], as `metrics.cambi_rgb` scores it."""
    from deband.metrics import cambi_rgb

    return float(cambi_rgb(rgb.permute(1, 2, 0).numpy(), max_log_contrast=max_log_contrast))


def scan(path: str | Path, options: TimelineOptions | None = None, progress: bool = False) -> Timeline:
    """The banding timeline of the first video stream of `path` (see the module docstring).

    progress: a progress bar on stderr. Raises InputError (missing, unreadable, no frames),
    UnsupportedError (no video stream).
    """
    from deband.video.analysis import expected_frames, iter_frames

    o = options or TimelineOptions()
    src = Path(path)
    line = Timeline(src, o)
    prints, scene, prev, end = [], 0, None, 0.0
    total = expected_frames(src, o.start, o.duration) if progress else None
    with tqdm(total=total, unit="frame", disable=not progress, desc=src.name) as bar:
        for f in iter_frames(src, o.start, o.duration):
            thumb = thumbnail(f.rgb)
            cut = prev is not None and cut_distance(prev, thumb) > o.cut_threshold
            scene += cut
            score = frame_cambi(f.rgb, o.max_log_contrast) if cut or f.index % o.every == 0 else None
            line.frames.append(FrameScore(f.index, f.seconds, score, scene))
            prints.append(fingerprint(thumb))
            prev, end = thumb, f.seconds + f.duration
            bar.update(1)
    line.fingerprints = np.stack(prints)
    line.scenes = scenes_of(line.frames, o.threshold, end)
    return line


def scenes_of(frames: list[FrameScore], threshold: float, end: float) -> list[Scene]:
    """Group frames (in order, scene numbers rising from 0) into scenes; end: when the last
    frame ends, in seconds. A scene without a scored frame has CAMBI 0."""
    groups = [list(g) for _, g in groupby(frames, key=lambda f: f.scene)]
    out = []
    for sid, members in enumerate(groups):
        scores = [f.cambi for f in members if f.cambi is not None]
        mean = float(np.mean(scores)) if scores else 0.0
        stop = groups[sid + 1][0].seconds if sid + 1 < len(groups) else end
        first, last = members[0], members[-1]
        out.append(Scene(sid, first.index, last.index, first.seconds, stop, mean, max(scores, default=0.0),
                         len(scores), mean > threshold))
    return out


class OnlyBanded:
    """A restorer that restores the frames of banded scenes and hands the others back as given.

    It expects the frames of `timeline` in order, as `deband_video` passes them (the same file,
    range and colour), and checks each against the timeline's fingerprint; frames out of step
    (the file changed, or another range) raise InputError rather than restore the wrong scenes.
    """

    def __init__(self, restorer: Restorer, timeline: Timeline):
        self.restorer, self.timeline = restorer, timeline
        self.banded = torch.from_numpy(timeline.banded_frames())
        self.seen = 0  # frames passed through so far

    def restore_batch(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb (Tensor): shape (n, 3, h, w), range [0, 1], float32, CPU. Returns the same."""
        lo, hi = self.seen, self.seen + rgb.shape[0]
        self._check(rgb, lo, hi)
        self.seen = hi
        mask = self.banded[lo:hi]
        if not mask.any():
            return rgb
        out = rgb.clone()
        out[mask] = self.restorer.restore_batch(rgb[mask]).to(rgb)
        return out

    def _check(self, rgb: torch.Tensor, lo: int, hi: int) -> None:
        src = self.timeline.source
        if hi > len(self.timeline.frames):
            raise InputError(f"{src}: more frames than the first pass read ({len(self.timeline.frames)})")
        got = np.stack([fingerprint(thumbnail(x)) for x in rgb])  # (n, PRINT * PRINT)
        diff = np.abs(got - self.timeline.fingerprints[lo:hi]).max(axis=1)
        if (diff > PRINT_TOLERANCE).any():
            bad = lo + int(np.argmax(diff > PRINT_TOLERANCE))
            raise InputError(f"{src}: frame {bad} differs from the first pass (was the file changed?)")


def only_banded(
    restorer: Restorer,
    path: str | Path,
    threshold: float,
    start: float | None = None,
    duration: float | None = None,
    progress: bool = False,
) -> OnlyBanded:
    """Scan `path` (every frame, the default TimelineOptions) and wrap `restorer` to restore
    only the scenes whose mean CAMBI is above `threshold`."""
    line = scan(path, TimelineOptions(threshold=threshold, start=start, duration=duration), progress)
    banded = [s for s in line.scenes if s.banded]
    log.info(
        "%s: %d of %d scenes banded (CAMBI above %g), %d of %d frames to restore",
        line.source.name, len(banded), len(line.scenes), threshold,
        sum(s.last - s.first + 1 for s in banded), len(line.frames),
    )
    return OnlyBanded(restorer, line)

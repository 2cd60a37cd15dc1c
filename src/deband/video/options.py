"""What a video run is asked to do (`VideoOptions`), what it did (`VideoReport`), and the
one method it needs from a model (`Restorer`)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch

CODECS = ("libx265", "libx264", "ffv1")
COMPARE_MODES = (None, "split", "side-by-side")


class Restorer(Protocol):
    """Anything with `restore_batch`; `deband.restore.debander.Debander` is one."""

    def restore_batch(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb (Tensor): shape (n, 3, h, w), range [0, 1], float32, CPU. Returns the same."""
        ...


@dataclass(frozen=True)
class VideoOptions:
    codec: str = "libx265"  # "libx265" | "libx264" (High 10 at 10 bits) | "ffv1" (lossless)
    crf: int = 18  # constant rate factor, 0-51 (ignored by ffv1)
    preset: str = "medium"  # x264/x265 speed preset (ignored by ffv1)
    bit_depth: int = 10  # 10, or 8 with a static TPDF +-1 LSB dither
    start: float | None = None  # seconds into the input where the piece starts
    duration: float | None = None  # seconds of input to process
    compare: str | None = None  # None | "split" (left before, right after) | "side-by-side"
    batch: int = 4  # frames per restore_batch call
    overwrite: bool = False  # replace an existing dst
    seed: int = 0  # seed of the dither pattern (the same for every frame)
    threads: int = 0  # encoder threads (x265 pools and frame threads); 0: the encoder decides
    pipeline: bool | None = None  # decode, model and encode overlap in threads (True) or not; None: on a GPU only

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {self.codec!r}")
        if self.bit_depth not in (8, 10):
            raise ValueError(f"bit_depth must be 8 or 10, got {self.bit_depth}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")
        if self.compare not in COMPARE_MODES:
            raise ValueError(f"compare must be one of {COMPARE_MODES}, got {self.compare!r}")
        if self.batch < 1:
            raise ValueError("batch must be at least 1")
        if self.start is not None and not 0 <= self.start < math.inf:
            raise ValueError(f"start must be a finite number of seconds >= 0, got {self.start}")
        if self.threads < 0:
            raise ValueError("threads must be >= 0")
        if self.duration is not None and not 0 < self.duration < math.inf:
            raise ValueError(f"duration must be a finite number of seconds > 0, got {self.duration}")


@dataclass
class VideoReport:
    """Counts and seconds of one run. decode_s, model_s and encode_s are the time spent in each
    stage; when the stages overlap (`VideoOptions.pipeline`), their sum may exceed total_s."""

    frames_in: int = 0  # frames decoded inside the selected range
    frames_out: int = 0  # frames encoded
    skipped_packets: int = 0  # corrupt video packets that were skipped
    decode_s: float = 0.0  # demux + decode + Y'CbCr -> RGB (the caller's thread)
    model_s: float = 0.0  # restore_batch (the model stage)
    encode_s: float = 0.0  # RGB -> Y'CbCr + encode + mux, copied packets included (the writer stage)
    total_s: float = 0.0  # wall clock of the whole call

    @property
    def fps(self) -> float:
        """End-to-end frames per second."""
        return self.frames_out / self.total_s if self.total_s > 0 else 0.0

    @contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        """Add the wall time spent inside to `phase`: "decode_s", "model_s" or "encode_s"."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, phase, getattr(self, phase) + time.perf_counter() - t0)

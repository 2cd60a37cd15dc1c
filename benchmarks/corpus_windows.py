"""The command line and the windows shared by the benchmarks that score `deband` on the
real-content sets' windows of the corpus's held-out images (`truncation.py`, `residual.py`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from deband.evaluation.realsets import Image, corpus_crops, gentle_map, load_held_out


def parser(doc: str) -> argparse.ArgumentParser:
    """--corpus, --weights, --n and --size, described by the first line of `doc`."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--corpus", type=Path, required=True, help="a corpus folder (`deband corpus build`)")
    ap.add_argument("--weights", default=None, help="weights to score (default: the shipped model)")
    ap.add_argument("--n", type=int, default=8, help="windows (default 8, as `deband eval`)")
    ap.add_argument("--size", type=int, default=384, help="window side in pixels (default 384)")
    return ap


def windows(args: argparse.Namespace) -> list[Image]:
    """The (label, clean crop) windows `deband eval` makes its real-content sets of."""
    return corpus_crops(load_held_out(args.corpus), args.n, args.size, gentle_map)

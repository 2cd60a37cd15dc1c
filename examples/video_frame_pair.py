"""Deband the bundled clip and save one frame before | after as the README's picture.

Runs `deband video` (default settings, shipped model) on examples/sunset-banded.mp4, decodes
the middle frame of input and output with the same colour handling, and writes the usual
comparison picture (before | after, and both again with contrast x4 so bands show) plus the
CAMBI of the two frames.

    python examples/video_frame_pair.py                     # -> docs/video-frame.png
    python examples/video_frame_pair.py --out /tmp/pair.png
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from deband.metrics import cambi_rgb
from deband.restore.images import comparison
from deband.video import read_video_rgb

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", default=str(HERE / "sunset-banded.mp4"))
    p.add_argument("--out", default=str(HERE.parent / "docs" / "video-frame.png"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        debanded = Path(tmp) / "debanded.mkv"
        cmd = [sys.executable, "-m", "deband.cli", "video", args.clip, "-o", str(debanded)]
        subprocess.run(cmd, check=True)
        before, after = read_video_rgb(args.clip), read_video_rgb(debanded)
    i = len(before) // 2
    a, b = (x[i].permute(1, 2, 0).numpy() for x in (before, after))
    picture = comparison(a, b)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, np.ascontiguousarray(picture[..., ::-1]))
    print(f"frame {i} of {len(before)}: CAMBI {cambi_rgb(a):.2f} -> {cambi_rgb(b):.2f} "
          f"(max_log_contrast 4: {cambi_rgb(a, max_log_contrast=4):.2f} -> {cambi_rgb(b, max_log_contrast=4):.2f})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

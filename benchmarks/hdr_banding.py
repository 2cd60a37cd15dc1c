"""CAMBI (PQ visibility, contrasts up to 16 codes) of a banded 10-bit PQ ramp before and after `deband video`.

The model was trained on SDR gamma-encoded pictures and runs on PQ code values as they are;
this prints what that does to a synthetic PQ sky whose luma sits on coarse steps.

    python benchmarks/hdr_banding.py [--step 4 8 16] [--size 640x360] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import numpy as np

from deband.io.planes import codes_to_frame
from deband.metrics import cambi
from deband.restore.debander import Debander
from deband.video import VideoOptions, deband_video

PQ_TAGS = (9, 16, 9, 1)  # BT.2020 primaries, SMPTE ST 2084, BT.2020 NCL matrix, limited range


def pq_sky(w: int, h: int, step: int, i: int) -> list[np.ndarray]:
    """10-bit limited codes: a smooth luma field over 64..600 (about 0.03 to 300 cd/m2 in PQ)
    put on `step`-code steps, neutral chroma."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    y = 250 + 300 * (yy / h) + 60 * np.sin(xx / w * 3 + i * 0.05)
    y = (np.round(y / step) * step).astype(np.uint16)
    c = np.full((h // 2, w // 2), 512, np.uint16)
    return [y, c, c.copy()]


def write_clip(path: Path, w: int, h: int, step: int, frames: int = 2) -> None:
    with av.open(str(path), "w") as out:
        vs = out.add_stream("ffv1", rate=25)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p10le"
        vs.color_primaries, vs.color_trc, vs.colorspace, vs.color_range = PQ_TAGS
        for i in range(frames):
            frame = codes_to_frame(pq_sky(w, h, step, i), "yuv420p10le", w, h)
            frame.pts = i
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)


def luma(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
        p = f.planes[0]
        return np.frombuffer(p, "<u2").reshape(p.height, -1)[:, : p.width].astype(np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step", type=int, nargs="+", default=[4, 8, 16], help="code steps of the banding")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    debander = Debander.load(None, args.device)
    print("| step (10-bit codes) | CAMBI before (pq) | after (pq) | before (bt1886) | after (bt1886) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for step in args.step:
            src, dst = Path(d) / f"in{step}.mkv", Path(d) / f"out{step}.mkv"
            write_clip(src, w, h, step)
            deband_video(src, dst, debander, VideoOptions(codec="ffv1"), progress=False)
            a, b = luma(src), luma(dst)
            s = [cambi(x, eotf=e, max_log_contrast=4) for e in ("pq", "bt1886") for x in (a, b)]
            print(f"| {step} | {s[0]:.2f} | {s[1]:.2f} | {s[2]:.2f} | {s[3]:.2f} |")


if __name__ == "__main__":
    main()

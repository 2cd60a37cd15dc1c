"""Make examples/sunset-banded.mp4: 3 s of a panning sunset, banded, with a stereo tone.

Each frame is `sunset_scene` panned a little further, its luma re-quantised to 6 bits (the
look of a starved 8-bit stream), encoded as BT.709-tagged 8-bit H.264 at 24 frames/s, next
to an AAC track, so that `deband video` has something real to chew on.

    python examples/make_example_video.py
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from deband.synthesis.degrade import requantize_ycbcr
from deband.synthesis.sources import sunset_scene

W, H, RATE, SECONDS, SAMPLE_RATE = 640, 360, 24, 3, 48_000


def frames():
    for i in range(RATE * SECONDS):
        clean = sunset_scene(H, W, pan=i * 0.004)
        banded = requantize_ycbcr(clean, luma_bits=6, chroma_bits=None)
        yield (banded.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def main() -> None:
    path = Path(__file__).parent / "sunset-banded.mp4"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=RATE, options={"crf": "20", "preset": "slow"})
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.color_primaries = video.color_trc = video.colorspace = 1  # BT.709
        video.color_range = 1  # limited
        audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        for i, rgb in enumerate(frames()):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
            frame.pts, frame.time_base = i, Fraction(1, RATE)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        t = np.arange(SAMPLE_RATE * SECONDS) / SAMPLE_RATE
        tone = (0.1 * np.sin(2 * np.pi * 220 * t) * np.minimum(1, 4 * (SECONDS - t))).astype(np.float32)
        for k in range(0, tone.size, 1024):
            chunk = np.stack([tone[k : k + 1024]] * 2)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, k, Fraction(1, SAMPLE_RATE)
            out.mux(audio.encode(frame))
        out.mux(audio.encode())
    print("wrote", path, f"{path.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()

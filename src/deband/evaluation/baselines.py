"""The debanders people use today, run through PyAV's bundled FFmpeg filter graph.

No system ffmpeg is needed. Frames go in and out as 16-bit RGB so that only the filter
itself (and the pixel formats it negotiates) decides the output precision.
"""

from __future__ import annotations

import av
import numpy as np

from deband.io.pixels import from_codes, to_codes

# name -> (filter, options); "strong" settings are what a user reaches for when defaults leave bands
FILTERS: dict[str, tuple[str, str]] = {
    "ffmpeg-deband": ("deband", ""),
    "ffmpeg-deband-strong": ("deband", "1thr=0.04:2thr=0.04:3thr=0.04:4thr=0.04:range=32"),
    "ffmpeg-gradfun": ("gradfun", ""),
    "ffmpeg-gradfun-strong": ("gradfun", "strength=3:radius=32"),
}


def ffmpeg_filter(rgb: np.ndarray, name: str) -> np.ndarray:
    """Run one FFmpeg filter from FILTERS on an image.

    rgb (ndarray): shape (h, w, 3), float32 on [0, 1]. Returns the same shape and type.
    Odd sizes are padded by edge replication to even ones (4:2:0 filters) and cropped back.
    """
    if name not in FILTERS:
        raise ValueError(f"unknown baseline {name!r}; expected one of {sorted(FILTERS)}")
    flt, opts = FILTERS[name]
    h, w, _ = rgb.shape
    padded = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    frame = av.VideoFrame.from_ndarray(to_codes(padded, 16), format="rgb48le")
    frame.pts = 0
    graph = av.filter.Graph()
    src = graph.add_buffer(width=frame.width, height=frame.height, format="rgb48le", time_base="1/25")
    nodes = [src, graph.add(flt, opts) if opts else graph.add(flt), graph.add("format", "rgb48le"),
             graph.add("buffersink")]
    for a, b in zip(nodes[:-1], nodes[1:]):
        a.link_to(b)
    graph.configure()
    graph.push(frame)
    out = from_codes(graph.pull().to_ndarray())  # rgb48le: (h, w, 3) uint16
    return out[:h, :w]

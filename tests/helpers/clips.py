"""Tiny test clips made on the fly with PyAV (64x48 by default), shared by the video tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from deband.io.planes import codes_to_frame

W, H = 64, 48


def planes_for(i: int, w: int, h: int, fmt: str) -> list[np.ndarray]:
    """Frame i of a test clip as 8-bit Y'CbCr codes: a luma ramp with a moving bar,
    a chroma ramp, and a static top-left block (for flicker)."""
    sx, sy = (2, 2) if "420" in fmt else (2, 1) if "422" in fmt else (1, 1)
    y = np.tile(np.linspace(20, 230, w), (h, 1))
    y[:, (i * 3) % w : (i * 3) % w + 5] = 200
    y[: h // 3, : w // 3] = 90
    hc, wc = -(-h // sy), -(-w // sx)
    cb = np.tile(np.linspace(100, 160, wc), (hc, 1))
    cr = np.tile(np.linspace(150, 110, hc)[:, None], (1, wc))
    return [a.round().astype(np.uint8) for a in (y, cb, cr)]


def add_audio(out: av.container.OutputContainer, codec: str = "aac", language: str = "eng") -> av.stream.Stream:
    """A mono 48 kHz audio stream (AAC or Opus) tagged with `language`."""
    st = out.add_stream(codec, rate=48000)
    st.metadata["language"] = language
    st.layout = "mono"
    return st


def encode_audio(out: av.container.OutputContainer, st: av.stream.Stream, seconds: float, tone: float) -> None:
    """`seconds` of a sine at `tone` Hz (0: silence) into `st`."""
    n = 1024 if st.codec_context.name == "aac" else 960
    for k in range(int(seconds * 48000 / n) + 1):
        t = (np.arange(n) + k * n) / 48000
        data = (0.2 * np.sin(2 * np.pi * tone * t))[None].astype(np.float32)
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, k * n
        for p in st.encode(frame):
            out.mux(p)
    for p in st.encode():
        out.mux(p)


def make_clip(
    path: Path,
    n: int = 12,
    size: tuple[int, int] = (W, H),
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    audio: int = 0,
    subtitles: bool = False,
    tags: tuple[int, int, int, int] = (1, 1, 1, 1),
    rotation: int | None = None,
    chapters: bool = False,
    planes=planes_for,
    gop: int | None = None,
) -> Path:
    """Write a clip at 25 frames/s: n frames, optional AAC/Opus tracks and a SubRip track.

    path's suffix picks the container (.h264: a raw Annex B stream). tags: (primaries, trc,
    colorspace, range) as FFmpeg enums (0/2 = unspecified). planes(i, w, h, pix_fmt) gives
    frame i as 8-bit code planes; gop: frames
    from one keyframe to the next (default: the encoder's)."""
    w, h = size
    with av.open(str(path), "w") as out:
        out.metadata["title"] = "test clip"
        if chapters:
            out.set_chapters(
                [
                    {"id": 1, "start": 0, "end": 200, "time_base": Fraction(1, 1000), "metadata": {"title": "one"}},
                    {"id": 2, "start": 200, "end": 480, "time_base": Fraction(1, 1000), "metadata": {"title": "two"}},
                ]
            )
        vs = out.add_stream(codec, rate=25, options={"preset": "ultrafast"} if "lib" in codec else {})
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        if gop is not None:
            vs.codec_context.gop_size = gop
        if time_base is not None:
            vs.time_base = vs.codec_context.time_base = time_base
        vs.color_primaries, vs.color_trc, vs.colorspace, vs.color_range = tags
        if rotation is not None:
            vs.set_display_rotation(rotation)
        tracks = [add_audio(out, "aac" if k == 0 else "libopus", ("eng", "deu")[k % 2]) for k in range(audio)]
        subs = []
        if subtitles:
            subs = [out.add_mux_stream("subrip", time_base=Fraction(1, 1000))]
            subs[0].metadata["language"] = "fra"
        for i in range(n):
            frame = codes_to_frame(planes(i, w, h, pix_fmt), pix_fmt, w, h)
            frame.pts = i if pts is None else pts[i]
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        for k, st in enumerate(tracks):
            encode_audio(out, st, n / 25, 440 * (k + 1))
        for st in subs:
            for j, text in enumerate([b"first line", b"second line"]):
                pk = av.Packet(text)
                pk.stream, pk.time_base = st, Fraction(1, 1000)
                pk.pts = pk.dts = 40 + 200 * j
                pk.duration = 120
                out.mux(pk)
    return path


def work_folders(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.deband-work-*"))


def frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [np.concatenate([np.frombuffer(p, np.uint8) for p in f.planes]) for f in c.decode(video=0)]


def same_frames(a: Path, b: Path) -> bool:
    fa, fb = frames(a), frames(b)
    return len(fa) == len(fb) > 0 and all((x == y).all() for x, y in zip(fa, fb))

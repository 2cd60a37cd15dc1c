"""Pictures through real video encoders and back, the same bits every time: the one home of
the codec round trip (`through_codec` for R'G'B' pictures, `round_trip` for frames).

Frames go straight from the encoder to the decoder, with no container, and every encoder
runs on one thread: threaded x265 and the Matroska muxer both failed now and then on tiny
frames, and threads make rate control depend on timing. x264 runs without its macroblock
tree, which gave varying bits over a few small frames with B-frames. SVT-AV1 prints its settings to
stderr when an encoder opens (it reads SVT_LOG once, when first loaded).
"""

from __future__ import annotations

from fractions import Fraction

import av
import torch
import torch.nn.functional as F

from deband.io.pixels import from_codes, to_codes
from deband.io.planes import codes_to_frame, codes_to_plane, frame_codes, planes_to_codes, planes_to_rgb, rgb_to_planes

# encoder -> the decoder of its bitstream
DECODERS = {"libx264": "h264", "libx265": "hevc", "libsvtav1": "libdav1d"}
PRESETS = {  # the fast presets, fastest first
    "libx264": ("ultrafast", "superfast", "veryfast", "faster", "fast"),
    "libx265": ("ultrafast", "superfast", "veryfast", "faster", "fast"),
    "libsvtav1": ("12", "11", "10", "9", "8"),
}


def available(codec: str) -> bool:
    """Whether this PyAV build has both the encoder `codec` and its decoder."""
    if codec not in DECODERS:
        raise ValueError(f"unsupported codec {codec!r}; expected one of {sorted(DECODERS)}")
    for name, mode in ((codec, "w"), (DECODERS[codec], "r")):
        try:
            av.Codec(name, mode)
        except av.codec.codec.UnknownCodecError:
            return False
    return True


def _options(codec: str, crf: int, preset: str) -> dict[str, str]:
    opts = {"crf": str(crf), "preset": preset}
    if codec == "libx265":
        opts["x265-params"] = "log-level=none:pools=none:frame-threads=1"
    elif codec == "libsvtav1":
        opts["svtav1-params"] = "lp=1"
    else:  # the macroblock tree gave varying bits over several small frames (ultrafast has none)
        opts["threads"], opts["x264-params"] = "1", "mbtree=0"
    return opts


def round_trip(
    frames: list[av.VideoFrame], codec: str, crf: int, preset: str, pix_fmt: str = "yuv420p"
) -> list[av.VideoFrame]:
    """Frames of one even size and of `pix_fmt` (yuv420p, or yuv420p10le for 10 bits),
    encoded by `codec` ("libx264", "libx265" or "libsvtav1") at `crf` and `preset` as one
    short sequence at 25 fps, then decoded.

    Returns the decoded frames in display order.
    """
    if codec not in DECODERS:
        raise ValueError(f"unsupported codec {codec!r}; expected one of {sorted(DECODERS)}")
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = frames[0].width, frames[0].height, pix_fmt
    enc.time_base, enc.framerate, enc.thread_count = Fraction(1, 25), Fraction(25), 1
    enc.options = _options(codec, crf, preset)
    packets = []
    for i, frame in enumerate(frames):
        frame.pts, frame.time_base = i, Fraction(1, 25)
        packets += enc.encode(frame)
    packets += enc.encode(None)
    dec = av.CodecContext.create(DECODERS[codec], "r")
    dec.thread_count = 1
    return [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))


def through_codec(
    pictures: list[torch.Tensor], codec: str, crf: int, preset: str, matrix: str = "bt709", swscale: bool = False
) -> torch.Tensor:
    """R'G'B' pictures, each (3, h, w) float32 on [0, 1], encoded as one short sequence by
    `codec` at `crf` and `preset` (see `round_trip`) as 8-bit 4:2:0; the last decoded picture,
    (3, h, w) float32 on [0, 1]. Odd sizes are edge-padded for 4:2:0 and cropped back.

    The pictures become limited-range Y'CbCr by `matrix` (`deband.io.planes`, chroma
    box-averaged, and back with bilinear chroma). With `swscale`, FFmpeg's swscale converts
    8-bit R'G'B' instead (BT.601, its own chroma filter): how the procedural H.264 set of
    `deband eval` and `degrade.random_codec` band a picture.
    """
    _, h, w = pictures[0].shape
    even = [F.pad(p[None], (0, w % 2, 0, h % 2), mode="replicate")[0] for p in pictures]  # (3, he, we)
    he, we = h + h % 2, w + w % 2
    if swscale:
        frames = [av.VideoFrame.from_ndarray(to_codes(p.permute(1, 2, 0).numpy(), 8), format="rgb24")
                  .reformat(format="yuv420p") for p in even]
    else:
        frames = [codes_to_frame(planes_to_codes(rgb_to_planes(p, matrix, (he // 2, we // 2)), 8, full=False),
                                 "yuv420p", we, he) for p in even]
    last = round_trip(frames, codec, crf, preset)[-1]
    if swscale:
        out = torch.from_numpy(from_codes(last.to_ndarray(format="rgb24"))).permute(2, 0, 1)
    else:
        planes = [codes_to_plane(c, 8, False, chroma=i > 0) for i, c in enumerate(frame_codes(last))]
        out = planes_to_rgb(planes, matrix)
    return out[:, :h, :w]

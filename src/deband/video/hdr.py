"""Static HDR metadata: read from a decoded frame, handed to the encoder.

HDR10 streams carry two pieces of side data besides their colour tags: the mastering display
colour volume (SMPTE ST 2086: the display's R, G, B primaries, white point and luminance
range) and the content light level (CTA-861.3: MaxCLL, MaxFALL, in cd/m2). FFmpeg attaches
both to every decoded frame, whether they came from the bitstream (HEVC/H.264 SEI) or from
the container (Matroska MasteringMetadata, MP4 mdcv/clli boxes). PyAV cannot attach side data
to frames or streams it writes, so they go to the encoder as options: x265's
`master-display`/`max-cll` and x264's `mastering-display`/`cll`, which write them as SEI.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

_CHROMA_UNIT = 50000  # x265/x264 chromaticity unit: 0.00002
_LUMA_UNIT = 10000  # x265/x264 luminance unit: 0.0001 cd/m2


@dataclass(frozen=True)
class HdrMetadata:
    """Mastering display and content light level of a stream; None where absent."""

    primaries: tuple[tuple[Fraction, Fraction], ...] | None = None  # (x, y) of R, G, B
    white: tuple[Fraction, Fraction] | None = None  # (x, y) of the white point
    luminance: tuple[Fraction, Fraction] | None = None  # (min, max) in cd/m2
    max_cll: int | None = None  # brightest pixel, cd/m2
    max_fall: int | None = None  # brightest frame average, cd/m2

    @classmethod
    def of_frame(cls, frame: av.VideoFrame) -> HdrMetadata | None:
        """The frame's MASTERING_DISPLAY_METADATA and CONTENT_LIGHT_LEVEL; None if neither."""
        md, cll = frame.side_data.get("MASTERING_DISPLAY_METADATA"), frame.side_data.get("CONTENT_LIGHT_LEVEL")
        if md is None and cll is None:
            return None
        fields = {}
        if md is not None:  # AVMasteringDisplayMetadata: 10 AVRationals, then two int flags
            v = np.frombuffer(bytes(md), "<i4")[:22].tolist()
            q = [Fraction(n, d) if d else Fraction(0) for n, d in zip(v[0:20:2], v[1:20:2])]
            if v[20]:  # has_primaries
                fields.update(primaries=((q[0], q[1]), (q[2], q[3]), (q[4], q[5])), white=(q[6], q[7]))
            if v[21]:  # has_luminance
                fields.update(luminance=(q[8], q[9]))
        if cll is not None:  # AVContentLightMetadata: two unsigned ints
            fields["max_cll"], fields["max_fall"] = np.frombuffer(bytes(cll), "<u4")[:2].tolist()
        return cls(**fields)

    def master_display(self) -> str | None:
        """"G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)" in x265/x264 units; None unless complete."""
        if self.primaries is None or self.white is None or self.luminance is None:
            return None
        (rx, ry), (gx, gy), (bx, by) = self.primaries

        def xy(x: Fraction, y: Fraction) -> str:
            return f"({round(x * _CHROMA_UNIT)},{round(y * _CHROMA_UNIT)})"

        lo, hi = self.luminance
        return (
            f"G{xy(gx, gy)}B{xy(bx, by)}R{xy(rx, ry)}WP{xy(*self.white)}"
            f"L({round(hi * _LUMA_UNIT)},{round(lo * _LUMA_UNIT)})"
        )

    def encoder_params(self, codec: str) -> list[str]:
        """"key=value" items for x265-params / x264-params; [] for other codecs."""
        keys = {"libx265": ("master-display", "max-cll"), "libx264": ("mastering-display", "cll")}.get(codec)
        if keys is None:
            return []
        out, md = [], self.master_display()
        if md is not None:
            out.append(f"{keys[0]}={md}")
        if self.max_cll is not None:
            out.append(f"{keys[1]}={self.max_cll},{self.max_fall}")
        return out

"""Make examples/sunset-banded.png: a synthetic sunset re-quantised like a cheap stream.

The clean scene is smooth at 32-bit float precision; its luma is re-quantised to 6 bits and
chroma to 6 bits (as 8-bit delivery of a graded sky often looks), then saved as 8-bit PNG.
The clean version is saved beside it for measurements: examples/sunset-clean.png (16-bit).

    python examples/make_example.py
"""

from __future__ import annotations

from pathlib import Path

from deband.io.files import write_image
from deband.io.pixels import to_codes
from deband.synthesis.degrade import requantize_ycbcr
from deband.synthesis.sources import sunset_scene


def main() -> None:
    here = Path(__file__).parent
    clean = sunset_scene(540, 960)
    banded = requantize_ycbcr(clean, luma_bits=6, chroma_bits=6)
    to_hwc = lambda x: x.permute(1, 2, 0).numpy()  # noqa: E731
    write_image(here / "sunset-banded.png", to_codes(to_hwc(banded), 8), overwrite=True)
    write_image(here / "sunset-clean.png", to_codes(to_hwc(clean), 16), overwrite=True)
    print("wrote", here / "sunset-banded.png", here / "sunset-clean.png")


if __name__ == "__main__":
    main()

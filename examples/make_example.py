"""Make examples/sunset-banded.png: a synthetic sunset re-quantised like a cheap stream.

The clean scene is smooth at 32-bit float precision; its luma is re-quantised to 6 bits and
chroma to 6 bits (as 8-bit delivery of a graded sky often looks), then saved as 8-bit PNG.
The clean version is saved beside it for measurements: examples/sunset-clean.png (16-bit).

    python examples/make_example.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deband.degrade import requantize_ycbcr
from deband.io import quantise_output, write_image
from deband.sources import _coords, fractal_noise


def sunset(h: int = 540, w: int = 960, seed: int = 7) -> torch.Tensor:
    """A sky from deep blue to orange, a soft sun, faint clouds, dark hills with fine texture."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = _coords(h, w)
    v = (yy - yy.min()) / (yy.max() - yy.min())  # 0 top, 1 bottom
    top, horizon = torch.tensor([0.10, 0.16, 0.38]), torch.tensor([0.98, 0.62, 0.34])
    sky = top[:, None, None] + (horizon - top)[:, None, None] * v**1.6
    sun = torch.exp(-((xx - 0.35) ** 2 + (yy - 0.05) ** 2) / 0.05)
    sky = sky + sun * torch.tensor([0.25, 0.2, 0.08])[:, None, None]
    sky = sky + fractal_noise(h, w, g, octaves=3, base=2) * 0.025
    ridge = 0.22 + 0.06 * torch.sin(xx * 3.1) + 0.03 * torch.sin(xx * 7.3 + 1)
    hills = ((yy - ridge) * max(h, w) / 2).clamp(0, 1)  # anti-aliased edge
    grain = torch.randn((1, h, w), generator=g) * 0.01
    ground = torch.tensor([0.05, 0.045, 0.06])[:, None, None] * (1.2 - 0.5 * v) + grain
    return (sky * (1 - hills) + ground * hills).clamp(0, 1)


def main() -> None:
    here = Path(__file__).parent
    clean = sunset()
    banded = requantize_ycbcr(clean, luma_bits=6, chroma_bits=6)
    to_hwc = lambda x: x.permute(1, 2, 0).numpy()  # noqa: E731
    write_image(here / "sunset-banded.png", quantise_output(to_hwc(banded), 8, dither=False), overwrite=True)
    write_image(here / "sunset-clean.png", quantise_output(to_hwc(clean), 16), overwrite=True)
    print("wrote", here / "sunset-banded.png", here / "sunset-clean.png")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()

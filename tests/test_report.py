import numpy as np

from deband.evaluate import Row
from deband.report import crops_figure, steps_plot


def _png(path):
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.ndim == 3
    return img


def test_steps_plot_draws_both_floors(tmp_path):
    name = "all synthetic (mean)"
    rows = [Row("clean reference", name, cambi=1.7, cambi4=2.5), Row("clean without grain/texture", name, cambi=2.2)]
    rows += [Row("banded input", name, psnr=42.0, cambi=2.1, cambi4=12.0)]
    rows += [Row(f"deband {n} steps", name, psnr=45 + n / 10, cambi=1.8, cambi4=2.8) for n in (1, 2, 4)]
    rows += [Row("deband 2 steps, strength 0.5", name, psnr=44.0, cambi=1.9, cambi4=3.0)]
    steps_plot({name: rows}, tmp_path / "steps.png")
    assert _png(tmp_path / "steps.png").std() > 0


def test_crops_figure_one_row_per_image(tmp_path):
    tile = np.linspace(0, 1, 32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3)
    crops_figure([[("a", tile), ("b", 1 - tile)], [("a", tile), ("b", tile)]], tmp_path / "c.png")
    h, w, _ = _png(tmp_path / "c.png").shape
    assert h > w * 0.8  # two rows of two panels

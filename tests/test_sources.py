import numpy as np
import pytest
from PIL import Image

from deband.io.files import READ_SUFFIXES
from deband.synthesis.sources import _to_float, folder_images, load_clean


def test_folder_images_takes_every_readable_format(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.png", "b.webp", "sub/c.BMP", "d.jpg"):
        Image.fromarray(np.full((4, 5, 3), 99, np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    found = folder_images(tmp_path)
    assert [p.name for p in found] == ["a.png", "b.webp", "d.jpg", "c.BMP"]
    assert all(p.suffix.lower() in READ_SUFFIXES for p in found)
    assert load_clean(tmp_path / "b.webp").shape == (3, 4, 5)
    with pytest.raises(FileNotFoundError):
        folder_images(tmp_path / "a.png")


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 65535)])
def test_to_float_scales_codes_and_replicates_gray(dtype, top):
    gray = np.array([[0, top]], dtype)
    x = _to_float(gray)
    assert x.shape == (3, 1, 2) and x[:, 0, 0].tolist() == [0, 0, 0] and x[:, 0, 1].tolist() == [1, 1, 1]

import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from deband.errors import (
    BitDepthError,
    InputError,
    OutputError,
    OutputExistsError,
    TooManyPixelsError,
    UnsupportedError,
)
from deband.io.files import Picture, read_image, write_image
from deband.io.pixels import to_codes


def _rand(shape, dtype):
    rng = np.random.default_rng(0)
    return (rng.random(shape) * np.iinfo(dtype).max).astype(dtype)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 2), (5, 7, 3), (5, 7, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_round_trip_is_bit_exact(tmp_path, suffix, shape, dtype):
    px = _rand(shape, dtype)
    path = tmp_path / f"img{suffix}"
    write_image(path, px)
    back = read_image(path).pixels
    if len(shape) == 3 and shape[2] == 2 and suffix == ".png":  # written as RGBA
        back = back[..., [0, 3]]
    assert back.dtype == dtype and back.shape == px.shape
    assert np.array_equal(back, px)


def test_16bit_rgb_png_written_by_opencv_reads_as_16bit(tmp_path):
    px = _rand((4, 6, 3), np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), px[..., ::-1])
    assert np.array_equal(read_image(tmp_path / "a.png").pixels, px)


def test_icc_profile_survives(tmp_path):
    icc = b"fake-icc-profile" * 10
    Image.fromarray(_rand((4, 4, 3), np.uint8)).save(tmp_path / "in.png", icc_profile=icc)
    pic = read_image(tmp_path / "in.png")
    assert pic.icc == icc
    for suffix in (".png", ".tif"):
        write_image(tmp_path / f"out{suffix}", to_codes(pic.rgb(), 16), pic.icc)
        assert read_image(tmp_path / f"out{suffix}").icc == icc


def test_exif_orientation_is_applied(tmp_path):
    px = _rand((4, 6, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    Image.fromarray(px).save(tmp_path / "o.png", exif=exif.tobytes())
    out = read_image(tmp_path / "o.png").pixels
    assert out.shape == (6, 4, 3)
    assert np.array_equal(out, np.rot90(px, 3))


def test_palette_and_gray_alpha(tmp_path):
    Image.fromarray(_rand((5, 5, 3), np.uint8)).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").pixels.shape == (5, 5, 3)
    Image.fromarray(_rand((5, 5, 2), np.uint8), "LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").rgb().shape == (5, 5, 3)


def test_cmyk_jpeg(tmp_path):
    Image.fromarray(_rand((8, 8, 3), np.uint8)).convert("CMYK").save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").pixels.shape == (8, 8, 3)


@pytest.mark.parametrize("content,kind", [(b"", InputError), (b"hello, not an image", UnsupportedError)])
def test_bad_files(tmp_path, content, kind):
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(kind) as e:
        read_image(tmp_path / "x.png")
    assert str(e.value).startswith(str(tmp_path / "x.png"))


def test_truncated_png(tmp_path):
    write_image(tmp_path / "t.png", _rand((64, 64, 3), np.uint8))
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError):
        read_image(tmp_path / "t.png")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def test_decompression_bomb_refused_before_decoding(tmp_path):
    ihdr = (100_000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
    (tmp_path / "bomb.png").write_bytes(png + _chunk(b"IEND", b""))
    with pytest.raises(TooManyPixelsError) as e:
        read_image(tmp_path / "bomb.png")
    assert "10,000,000,000 pixels" in str(e.value) and "--" not in str(e.value)  # no option names


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_our_pixel_limit_decides_not_pillows(tmp_path, monkeypatch, suffix):
    px = _rand((60, 50, 3), np.uint8)
    Image.fromarray(px).save(tmp_path / f"a{suffix}")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow alone would refuse 3000 pixels
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / f"a{suffix}")
    assert read_image(tmp_path / f"a{suffix}").pixels.shape == (60, 50, 3)
    with pytest.raises(TooManyPixelsError):
        read_image(tmp_path / f"a{suffix}", max_pixels=2999)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_import_leaves_pillows_guard_alone():
    code = ("import PIL.Image as I; m = I.MAX_IMAGE_PIXELS; import deband, deband.io.files, deband.restore.images; "
            "assert I.MAX_IMAGE_PIXELS == m, I.MAX_IMAGE_PIXELS")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_write_refuses_overwrite_and_leaves_nothing(tmp_path):
    dst = tmp_path / "out.png"
    dst.write_bytes(b"precious")
    with pytest.raises(OutputExistsError) as e:
        write_image(dst, _rand((4, 4, 3), np.uint8))
    assert str(e.value) == f"{dst}: already exists" and dst.read_bytes() == b"precious"
    with pytest.raises(BitDepthError) as e:
        write_image(tmp_path / "deep.jpg", _rand((4, 4, 3), np.uint16))
    assert "--" not in str(e.value)
    with pytest.raises(OutputError):
        write_image(tmp_path / "missing" / "x.png", _rand((4, 4, 3), np.uint8))
    with pytest.raises(OutputError):
        write_image(tmp_path / "x.gif", _rand((4, 4, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_failed_encode_leaves_nothing(tmp_path, monkeypatch):
    import deband.io.files

    def fail(tmp, *args):
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(deband.io.files, "_encode", fail)
    with pytest.raises(OutputError, match="No space left"):
        write_image(tmp_path / "x.png", _rand((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_dithered_8bit_keeps_the_mean_of_a_gradient():
    x = np.linspace(0.3, 0.31, 4000, dtype=np.float32)[None].repeat(50, 0)
    q = to_codes(x, 8, dither=True).astype(np.float64) / 255
    assert np.unique(q).size > 2
    assert abs(q.mean(0)[:500].mean() - x[0, :500].mean()) < 2e-4


def test_picture_rgb_from_gray16():
    pic = Picture(np.full((2, 2), 65535, np.uint16))
    assert pic.bit_depth == 16 and np.allclose(pic.rgb(), 1.0) and pic.rgb().shape == (2, 2, 3)

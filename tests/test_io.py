import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from deband.errors import OUTPUT, RESOURCES, UNREADABLE, UNSUPPORTED, DebandError
from deband.io import Picture, atomic_path, read_image, write_image
from deband.pixels import to_codes


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


@pytest.mark.parametrize("content,code", [(b"", UNREADABLE), (b"hello, not an image", UNSUPPORTED)])
def test_bad_files(tmp_path, content, code):
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(DebandError) as e:
        read_image(tmp_path / "x.png")
    assert e.value.code == code


def test_truncated_png(tmp_path):
    write_image(tmp_path / "t.png", _rand((64, 64, 3), np.uint8))
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DebandError) as e:
        read_image(tmp_path / "t.png")
    assert e.value.code == UNREADABLE


def _chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def test_decompression_bomb_refused_before_decoding(tmp_path):
    ihdr = (100_000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
    (tmp_path / "bomb.png").write_bytes(png + _chunk(b"IEND", b""))
    with pytest.raises(DebandError) as e:
        read_image(tmp_path / "bomb.png")
    assert e.value.code == RESOURCES and "--max-pixels" in str(e.value)


def test_atomic_write_refuses_overwrite_and_cleans_up(tmp_path):
    dst = tmp_path / "out.png"
    dst.write_bytes(b"precious")
    with pytest.raises(DebandError) as e:
        write_image(dst, _rand((4, 4, 3), np.uint8))
    assert e.value.code == OUTPUT and dst.read_bytes() == b"precious"
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "new.png") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_picture_rgb_from_gray16():
    pic = Picture(np.full((2, 2), 65535, np.uint16))
    assert pic.bit_depth == 16 and np.allclose(pic.rgb(), 1.0) and pic.rgb().shape == (2, 2, 3)

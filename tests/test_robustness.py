"""Hostile and odd inputs through the real CLI: exit code, one line, no output left behind."""

import io
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deband.cli.exits import OUTPUT, RESOURCES, UNREADABLE, UNSUPPORTED
from deband.io.files import read_image, write_image

SRC = Path(__file__).resolve().parents[1] / "src" / "deband"


def deband(*args, preexec_fn=None):
    cmd = [sys.executable, "-m", "deband.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=preexec_fn)


def _png_bytes(shape, dtype=np.uint8):
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random(shape) * 255).astype(dtype)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes():
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _bomb():
    def chunk(kind, body):
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = (100_000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    idat = zlib.compress(b"\0" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


BAD = {
    "zero.png": (b"", UNREADABLE),
    "text.png": (b"just some text\n", UNSUPPORTED),
    "truncated.png": (_png_bytes((64, 64, 3))[:300], UNREADABLE),
    "truncated.jpg": (_jpeg_bytes()[:400], UNREADABLE),
    "bomb.png": (_bomb(), RESOURCES),
}


def _assert_clean_failure(r, code, out_dir):
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deband: error:") and "Traceback" not in r.stderr
    assert not any(out_dir.iterdir()), list(out_dir.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_inputs(tmp_path, tiny_weights, name):
    content, code = BAD[name]
    src = tmp_path / name
    src.write_bytes(content)
    out = tmp_path / "out"
    out.mkdir()
    r = deband("image", src, "-o", out / "x.png", "--weights", tiny_weights)
    _assert_clean_failure(r, code, out)


@pytest.mark.slow
def test_directory_where_a_file_was_expected(tmp_path, tiny_weights):
    (tmp_path / "d.png").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    r = deband("image", tmp_path / "d.png", "-o", out / "x.png", "--weights", tiny_weights)
    assert r.returncode != 0 and "Traceback" not in r.stderr and not any(out.iterdir())


@pytest.mark.slow
def test_bomb_override(tmp_path, tiny_weights):
    write_image(tmp_path / "a.png", np.zeros((20, 30, 3), np.uint8))
    r = deband("image", tmp_path / "a.png", "-o", tmp_path / "b.png", "--max-pixels", "100", "--weights", tiny_weights)
    assert r.returncode == RESOURCES
    r = deband("image", tmp_path / "a.png", "-o", tmp_path / "b.png", "--max-pixels", "600", "--weights", tiny_weights)
    assert r.returncode == 0


@pytest.mark.parametrize("shape,dtype", [((1, 1, 3), np.uint8), ((1, 9, 3), np.uint8), ((7, 3, 3), np.uint8),
                                         ((12, 10), np.uint16), ((12, 10, 2), np.uint8), ((12, 10, 4), np.uint16)])
@pytest.mark.slow
def test_odd_shapes_and_channels(tmp_path, tiny_weights, shape, dtype):
    px = (np.random.default_rng(1).random(shape) * np.iinfo(dtype).max).astype(dtype)
    write_image(tmp_path / "in.png", px)
    r = deband("image", tmp_path / "in.png", "-o", tmp_path / "out.png", "--weights", tiny_weights)
    assert r.returncode == 0, r.stderr
    out = read_image(tmp_path / "out.png").pixels
    assert out.shape[:2] == shape[:2] and out.dtype == np.uint16


@pytest.mark.slow
def test_palette_cmyk_exif_icc(tmp_path, tiny_weights):
    rng = np.random.default_rng(2)
    px = (rng.random((10, 14, 3)) * 255).astype(np.uint8)
    Image.fromarray(px).convert("P").save(tmp_path / "pal.png")
    Image.fromarray(px).convert("CMYK").save(tmp_path / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(px).save(tmp_path / "rot.jpg", exif=exif.tobytes(), icc_profile=b"icc" * 50)
    r = deband("image", tmp_path / "pal.png", tmp_path / "cmyk.jpg", tmp_path / "rot.jpg", "-o", tmp_path / "out",
               "--weights", tiny_weights)
    assert r.returncode == 0, r.stderr
    rot = read_image(tmp_path / "out" / "rot.png")
    assert rot.pixels.shape[:2] == (14, 10) and rot.icc == b"icc" * 50


@pytest.mark.slow
def test_unwritable_output_folder(tmp_path, tiny_weights):
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    r = deband("image", tmp_path / "a.png", "-o", tmp_path / "missing" / "deeper" / "b.png", "--weights", tiny_weights)
    assert r.returncode == OUTPUT and "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE")
def test_full_disk_leaves_no_partial_file(tmp_path, tiny_weights):
    import resource

    px = (np.random.default_rng(3).random((256, 256, 3)) * 255).astype(np.uint8)
    write_image(tmp_path / "a.png", px)
    out = tmp_path / "out"
    out.mkdir()

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    r = deband("image", tmp_path / "a.png", "-o", out / "b.png", "--weights", tiny_weights, preexec_fn=small_files)
    _assert_clean_failure(r, OUTPUT, out)


def test_source_has_no_pickle_eval_or_shell_strings():
    banned = [r"\bpickle\b", r"(?<![.\w])eval\(", r"(?<![.\w])exec\(", r"shell\s*=\s*True", r"os\.system",
              r"os\.popen", r"weights_only\s*=\s*False"]
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for pattern in banned:
            assert not re.search(pattern, text), f"{path.name} matches {pattern!r}"


@pytest.mark.slow
def test_ctrl_c_keeps_the_previous_output(tmp_path):
    import signal
    import time

    rng = np.random.default_rng(5)
    write_image(tmp_path / "a.png", (rng.random((16, 16, 3)) * 255).astype(np.uint8))
    write_image(tmp_path / "b.png", (rng.random((512, 512, 3)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    previous = np.full((4, 4, 3), 7, np.uint8)
    write_image(out / "b.png", previous)
    # the shipped model, 100 steps: a.png takes a moment, b.png half a minute; once a.png is
    # written the process is up and working on b.png, so the signal lands mid-way through it
    cmd = [sys.executable, "-m", "deband.cli", "image", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
           "-o", str(out), "--overwrite", "--steps", "100", "--device", "cpu"]
    # Ctrl-C as in a terminal: a child of a background job inherits SIGINT ignored, and Python
    # then keeps ignoring it, so the child gets the default disposition back
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not (out / "a.png").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"finished before it could be interrupted: {proc.communicate()[1]}"
        assert (out / "a.png").exists(), "a.png was not written in time"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "Traceback" not in err and len(err.strip().splitlines()[-1:]) == 1
    # no temporary file left: `.b.partial-XXXXXXXX.png` or `.b.XXXX.partial.png`
    assert not [p.name for p in out.iterdir() if p.name.startswith((".a", ".b")) and "partial" in p.name]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert read_image(out / "a.png").pixels.shape == (16, 16, 3)  # the finished one, whole
    assert np.array_equal(read_image(out / "b.png").pixels, previous)


@pytest.mark.slow
def test_pixel_limit_message_names_the_option(tmp_path, tiny_weights):
    (tmp_path / "bomb.png").write_bytes(_bomb())
    r = deband("image", tmp_path / "bomb.png", "-o", tmp_path / "x.png", "--weights", tiny_weights)
    assert r.returncode == RESOURCES and r.stderr.strip() == (
        f"deband: error: {tmp_path / 'bomb.png'}: 100000x100000 is 10,000,000,000 pixels, over the limit of "
        "300,000,000 (raise it with --max-pixels)")
    assert not (tmp_path / "x.png").exists()


def _animation(path, frames=3):
    pictures = [Image.fromarray(np.full((16, 24, 3), 40 * i, np.uint8)) for i in range(frames)]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=100)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["anim.gif", "anim.png", "anim.webp"])
def test_animation_is_refused_not_cut_to_its_first_frame(tmp_path, tiny_weights, name):
    _animation(tmp_path / name)
    out = tmp_path / "out"
    out.mkdir()
    r = deband("image", tmp_path / name, "-o", out / "g.png", "--weights", tiny_weights)
    _assert_clean_failure(r, UNSUPPORTED, out)
    assert "3 frames" in r.stderr


@pytest.mark.slow
def test_folder_mode_says_what_it_leaves_out(tmp_path, tiny_weights):
    shots = tmp_path / "shots"
    shots.mkdir()
    write_image(shots / "a.png", np.full((8, 8, 3), 9, np.uint8))
    _animation(shots / "anim.gif")
    (shots / "notes.txt").write_text("not an image")
    r = deband("image", shots, "-o", tmp_path / "out", "--weights", tiny_weights)
    assert r.returncode == 0, r.stderr
    assert "left out (not images deband reads): anim.gif, notes.txt" in r.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]

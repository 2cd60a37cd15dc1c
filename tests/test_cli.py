import subprocess
import sys

import numpy as np
import pytest

from deband.cli.exits import OUTPUT, UNREADABLE, UNSUPPORTED, USAGE
from deband.io.files import read_image, write_image


def deband(*args, cwd=None):
    cmd = [sys.executable, "-m", "deband.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture
def banded(tmp_path):
    x = np.linspace(0, 1, 96, dtype=np.float32)[None, :, None].repeat(40, 0).repeat(3, 2)
    path = tmp_path / "in put ü.png"  # spaces and non-ASCII on purpose
    write_image(path, (np.round(x * 63) / 63 * 255).round().astype(np.uint8))
    return path


@pytest.mark.slow
def test_image_default_writes_16bit_png(tmp_path, banded, tiny_weights):
    out = tmp_path / "out.png"
    r = deband("image", banded, "-o", out, "--weights", tiny_weights, "--compare")
    assert r.returncode == 0, r.stderr
    pic = read_image(out)
    assert pic.pixels.dtype == np.uint16 and pic.pixels.shape == (40, 96, 3)
    assert (tmp_path / "out-compare.png").is_file()


@pytest.mark.slow
def test_image_8bit_and_tiff(tmp_path, banded, tiny_weights):
    r = deband("image", banded, "-o", tmp_path / "o8.png", "--bit-depth", "8", "--weights", tiny_weights)
    assert r.returncode == 0 and read_image(tmp_path / "o8.png").pixels.dtype == np.uint8
    r = deband("image", banded, "-o", tmp_path / "o.tif", "--weights", tiny_weights, "--steps", "2")
    assert r.returncode == 0 and read_image(tmp_path / "o.tif").pixels.dtype == np.uint16


@pytest.mark.slow
def test_refuses_to_overwrite(tmp_path, banded, tiny_weights):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    r = deband("image", banded, "-o", out, "--weights", tiny_weights)
    assert r.returncode == OUTPUT and "--overwrite" in r.stderr
    assert out.read_bytes() == b"keep me"
    assert deband("image", banded, "-o", out, "--weights", tiny_weights, "--overwrite").returncode == 0
    assert read_image(out).pixels.dtype == np.uint16


@pytest.mark.slow
def test_output_equal_to_input_is_refused(banded, tiny_weights):
    before = banded.read_bytes()
    r = deband("image", banded, "-o", banded, "--weights", tiny_weights, "--overwrite")
    assert r.returncode == OUTPUT and banded.read_bytes() == before


@pytest.mark.slow
def test_folder_batch_goes_past_a_bad_file(tmp_path, banded, tiny_weights):
    folder = tmp_path / "in"
    folder.mkdir()
    banded.rename(folder / "good.png")
    (folder / "bad.png").write_text("not an image")
    r = deband("image", folder, "-o", tmp_path / "out", "--weights", tiny_weights)
    assert r.returncode == UNSUPPORTED
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "bad.png").exists()
    assert "bad.png" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args,code", [
    (["image", "missing.png", "-o", "x.png"], UNREADABLE),
    (["image", "a.png", "-o", "x.png", "--steps", "0"], USAGE),
    (["image", "a.png", "-o", "x.png", "--strength", "1.5"], USAGE),
    (["image", "a.png"], USAGE),
    (["frobnicate"], USAGE),
])
@pytest.mark.slow
def test_errors_are_one_line_with_exit_code(tmp_path, tiny_weights, args, code):
    r = deband(*args, "--weights", tiny_weights, cwd=tmp_path) if args[0] == "image" else deband(*args)
    assert r.returncode == code
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deband") and "Traceback" not in r.stderr


def test_help_has_examples():
    r = deband("image", "--help")
    assert r.returncode == 0 and "examples:" in r.stdout


def test_python_api(tiny_weights):
    from deband import Debander

    img = np.random.default_rng(0).random((10, 12, 3)).astype(np.float32)
    out = Debander.load(tiny_weights, device="cpu", steps=2).restore(img)
    assert out.shape == img.shape and out.dtype == np.float32


@pytest.mark.slow
def test_letterbox_bars_are_left_untouched_unless_asked(tmp_path, tiny_weights):
    x = np.full((64, 96, 3), 200, np.uint8)
    x[:, :, 0] = np.linspace(60, 250, 96).astype(np.uint8)
    x[:12], x[-10:] = 4, 4  # flat near-black bars, top and bottom
    src = tmp_path / "boxed.png"
    write_image(src, x)
    assert deband("image", src, "-o", tmp_path / "kept.png", "--weights", tiny_weights).returncode == 0
    r = deband("image", src, "-o", tmp_path / "free.png", "--weights", tiny_weights, "--restore-bars")
    assert r.returncode == 0, r.stderr
    kept, free = read_image(tmp_path / "kept.png").pixels, read_image(tmp_path / "free.png").pixels
    bars = np.r_[0:12, 54:64]
    assert np.array_equal(kept[bars], np.full_like(kept[bars], 4 * 257))  # exactly the input, at 16 bits
    assert not np.array_equal(free[bars], kept[bars])


@pytest.mark.slow
def test_guard_bounds_changes_unless_turned_off(tmp_path, tiny_weights):
    x = np.random.default_rng(1).integers(100, 110, (40, 56, 3), dtype=np.uint8)  # texture: no bands
    src = tmp_path / "texture.png"
    write_image(src, x)
    for name, extra in (("guarded.png", []), ("free.png", ["--no-guard"])):
        r = deband("image", src, "-o", tmp_path / name, "--weights", tiny_weights, "--restore-bars", *extra)
        assert r.returncode == 0, r.stderr
    moved = {n: np.abs(read_image(tmp_path / n).pixels / 65535 - x / 255).max() * 255
             for n in ("guarded.png", "free.png")}
    assert moved["guarded.png"] <= 0.25 + 0.01  # a quarter code, plus 16-bit rounding
    assert moved["free.png"] > 1.0, moved


def test_parser_imports_no_heavy_module():
    code = ("import sys; from deband.cli import build_parser; build_parser(); "
            "heavy = {'torch', 'av', 'cv2', 'deband.training.loop'} & set(sys.modules); assert not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_train_options_are_there_when_asked_for():
    r = deband("train", "--help")
    assert r.returncode == 0 and "--resume" in r.stdout and "examples:" in r.stdout


def test_exit_codes_and_hints_come_from_the_cli():
    from deband import errors
    from deband.cli.exits import describe, exit_code
    from deband.cli.options import UsageError

    cases = [
        (UsageError("u"), 2, "u"),
        (errors.InputError("a.png: no such file"), 3, "a.png: no such file"),
        (errors.UnsupportedError("u"), 4, "u"),
        (errors.OutputExistsError("o.png: already exists"), 5, "o.png: already exists (use --overwrite to replace it)"),
        (errors.SameFileError("s"), 5, "s"),
        (errors.BitDepthError("o.jpg: JPEG holds 8 bits only; use .png/.tif"), 5,
         "o.jpg: JPEG holds 8 bits only; use .png/.tif or --bit-depth 8"),
        (errors.TooManyPixelsError("p"), 6, "p (raise it with --max-pixels)"),
        (errors.ResourceError("a.png: out of memory"), 6, "a.png: out of memory (try a smaller --tile)"),
        (errors.SettingError("steps", "must be between 1 and 100, got 0"), 2,
         "argument --steps: must be between 1 and 100, got 0"),
    ]
    for error, code, text in cases:
        assert (exit_code(error), describe(error)) == (code, text)
    assert exit_code(KeyboardInterrupt()) == 130 and exit_code(MemoryError()) == 6 and exit_code(OSError()) == 5


@pytest.mark.slow
def test_16bit_jpeg_names_the_option(tmp_path, banded, tiny_weights):
    out = tmp_path / "o.jpg"
    r = deband("image", banded, "-o", out, "--weights", tiny_weights, "--steps", "1")
    assert r.returncode == OUTPUT and not out.exists()
    assert r.stderr.strip() == f"deband: error: {out}: JPEG holds 8 bits only; use .png/.tif or --bit-depth 8"


@pytest.mark.slow
def test_missing_cuda_is_a_usage_error(tmp_path, banded, tiny_weights):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    r = deband("image", banded, "-o", tmp_path / "o.png", "--weights", tiny_weights, "--device", "cuda")
    assert r.returncode == USAGE
    assert r.stderr.strip() == "deband: error: --device cuda was asked for, but no CUDA GPU is available"


@pytest.mark.slow
def test_sigterm_cleans_up_like_ctrl_c(tmp_path, tiny_weights):
    import signal
    import time

    write_image(tmp_path / "a.png", (np.random.default_rng(4).random((1024, 1024, 3)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "deband.cli", "image", str(tmp_path / "a.png"), "-o", str(out / "b.png"),
           "--weights", str(tiny_weights), "--steps", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while not list(out.glob(".b.partial-*")):  # the output is being written: stop it now
            assert proc.poll() is None, "finished before its output was being written"
            assert time.monotonic() < deadline, "its output was never written"
            time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 130, err
    assert err.strip() == "deband: interrupted; no partial output was left"
    assert list(out.iterdir()) == []  # neither b.png nor its temporary file


@pytest.mark.slow
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_compare_picture_never_replaces_the_input(tmp_path, banded, tiny_weights, overwrite):
    src = tmp_path / "x-compare.png"
    banded.rename(src)
    before = src.read_bytes()
    r = deband("image", src, "-o", tmp_path / "x.png", "--compare", "--weights", tiny_weights, *overwrite)
    assert r.returncode == OUTPUT and "would replace the input" in r.stderr
    assert src.read_bytes() == before and not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_compare_picture_is_not_written_over_without_overwrite(tmp_path, banded, tiny_weights):
    (tmp_path / "out-compare.png").write_bytes(b"keep me")
    r = deband("image", banded, "-o", tmp_path / "out.png", "--compare", "--weights", tiny_weights)
    assert r.returncode == OUTPUT and "out-compare.png: already exists (use --overwrite" in r.stderr
    assert (tmp_path / "out-compare.png").read_bytes() == b"keep me" and not (tmp_path / "out.png").exists()
    r = deband("image", banded, "-o", tmp_path / "out.png", "--compare", "--weights", tiny_weights, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert read_image(tmp_path / "out-compare.png").pixels.shape[1] > 96 * 2  # before | after


@pytest.mark.slow
def test_inspect_never_replaces_its_input(banded):
    before = banded.read_bytes()
    r = deband("inspect", banded, "-o", banded, "--overwrite")
    assert r.returncode == OUTPUT and "would replace the input" in r.stderr
    assert banded.read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("inputs,output", [(1, "out.webp"), (2, "two.png"), (2, "clean.v2")])
def test_a_file_name_never_becomes_a_folder(tmp_path, banded, tiny_weights, inputs, output):
    second = tmp_path / "second.png"
    second.write_bytes(banded.read_bytes())
    r = deband("image", *[banded, second][:inputs], "-o", tmp_path / output, "--weights", tiny_weights)
    assert r.returncode == OUTPUT and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / output).exists()


@pytest.mark.slow
def test_folder_rerun_skips_what_is_done(tmp_path, banded, tiny_weights):
    shots = tmp_path / "shots"
    shots.mkdir()
    banded.rename(shots / "a.png")
    write_image(shots / "b.png", np.full((8, 8, 3), 9, np.uint8))
    out = shots / "clean"  # inside the input folder: its files are not taken as inputs
    first = deband("image", shots, "-o", out, "--compare", "--weights", tiny_weights)
    assert first.returncode == 0, first.stderr
    assert "2 done, 0 failed, 0 skipped of 2" in first.stdout
    made = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(made) == ["a-compare.png", "a.png", "b-compare.png", "b.png"]
    rerun = deband("image", shots, "-o", out, "--compare", "--weights", tiny_weights)
    assert rerun.returncode == 0 and rerun.stderr == "", rerun.stderr
    assert "0 done, 0 failed, 2 skipped of 2" in rerun.stdout
    (out / "b.png").unlink()  # b's comparison is there, b is not: not finished, and not written over
    again = deband("image", shots, "-o", out, "--compare", "--weights", tiny_weights)
    assert again.returncode == OUTPUT, again.stderr
    assert "0 done, 1 failed, 1 skipped of 2" in again.stdout
    exists = f"{out / 'b-compare.png'}: already exists (use --overwrite to replace it)"
    assert again.stderr.strip() == f"deband: error: {exists}"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {k: v for k, v in made.items() if k != "b.png"}


@pytest.mark.slow
def test_folder_output_is_never_the_input_folder(tmp_path, banded, tiny_weights):
    shots = tmp_path / "shots"
    shots.mkdir()
    banded.rename(shots / "a.png")
    r = deband("image", shots, "-o", tmp_path / "." / "shots", "--format", "tif", "--weights", tiny_weights)
    assert r.returncode == OUTPUT and "the output folder is the input folder" in r.stderr
    assert [p.name for p in shots.iterdir()] == ["a.png"]


def test_truncated_source_is_lifted_by_its_offset(tmp_path, tiny_weights):
    x = np.full((40, 56, 3), 100, np.uint8)  # flat: the model and the guard leave it alone
    src = tmp_path / "flat.png"
    write_image(src, x)
    for name, extra in (("plain.png", []), ("lifted.png", ["--truncated", "10:8"])):
        r = deband("image", src, "-o", tmp_path / name, "--weights", tiny_weights, "--no-guard", *extra)
        assert r.returncode == 0, r.stderr
    plain, lifted = (read_image(tmp_path / n).pixels / 65535 * 255 for n in ("plain.png", "lifted.png"))
    assert np.allclose(lifted - plain, 0.375, atol=0.02)  # R'G'B' cut 10 -> 8: 0.375 of a code
    for bad in ("8:8", "10", "x:y", "20:8"):
        r = deband("image", src, "-o", tmp_path / "bad.png", "--truncated", bad)
        assert r.returncode == USAGE and len(r.stderr.strip().splitlines()) == 1 and "--truncated" in r.stderr


FLOAT_OPTIONS = [  # every float option: a command line it belongs to, the option, a finite value out of its range
    (["video", "in.mp4", "-o", "out.mkv"], "--start", "-1"),
    (["video", "in.mp4", "-o", "out.mkv"], "--start", "1e9"),
    (["video", "-", "-o", "-"], "--duration", "0"),
    (["video", "in.mp4", "-o", "out.mkv"], "--chunk", "-30"),
    (["video", "in.mp4", "-o", "out.mkv"], "--only-banded", "-1"),
    (["video", "in.mp4", "-o", "out.mkv"], "--strength", "0"),
    (["image", "a.png", "-o", "b.png"], "--strength", "1.5"),
    (["inspect", "a.png", "-o", "a.html"], "--threshold", "-5"),
    (["inspect", "a.png", "-o", "a.html"], "--cut-threshold", "2"),
    (["export", "onnx", "a.onnx"], "--strength", "-0.5"),
    (["mix", "a.safetensors", "b.safetensors", "-o", "c.safetensors"], "--share", "1.5"),
    (["corpus", "build", "out"], "--held-out", "-0.1"),
    (["corpus", "pack", "p.npz", "--corpus", "c"], "--detailed", "2"),
    (["train", "--out", "run"], "--minutes", "0"),
]


@pytest.mark.parametrize("args, option, out_of_range", FLOAT_OPTIONS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", None])
def test_float_options_are_finite_and_in_range_at_parse_time(tmp_path, monkeypatch, capsys, args, option,
                                                               out_of_range, value):
    from deband.cli import main

    monkeypatch.chdir(tmp_path)  # nothing is read or written: the parser refuses first
    assert main([*args, f"{option}={value or out_of_range}"]) == USAGE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"argument {option}" in err, err
    assert list(tmp_path.iterdir()) == []

"""deband.apps.vapoursynth under real VapourSynth (a Python 3.12 venv, see tests/helpers/vsenv.py).

Each test writes a small script, runs it in that venv and checks what it saved here.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deband.io import pixels
from deband.io.chroma import subsample_420
from deband.metrics import cambi
from deband.model.checkpoint import save_weights
from deband.model.unet import UNet
from deband.restore.debander import Debander
from helpers.models import IDENTITY

pytestmark = pytest.mark.slow  # the VapourSynth venv

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vapoursynth_deband.vpy"

HEAD = """
import json, sys, threading, time
import numpy as np, vapoursynth as vs
from deband.apps.vapoursynth import deband
core = vs.core
out_dir = sys.argv[1]

def props(frame):
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in frame.props.items()}

def planes(frame):
    return [np.asarray(frame[p]).copy() for p in range(frame.format.num_planes)]

def random_clip(fmt, lo=-0.1, hi=1.1, length=3, width=66, height=38):
    '''Random samples: every integer code; floats on [lo, hi] (chroma on [-0.6, 0.6]).'''
    blank = core.std.BlankClip(width=width, height=height, format=fmt, length=length)
    def fill(n, f):
        f, rng = f.copy(), np.random.default_rng(n)
        for p in range(f.format.num_planes):
            a = np.asarray(f[p])
            if f.format.sample_type == vs.INTEGER:
                a[:] = rng.integers(0, 2 ** f.format.bits_per_sample, a.shape)
            elif f.format.color_family == vs.YUV and p > 0:
                a[:] = rng.uniform(-0.6, 0.6, a.shape)
            else:
                a[:] = rng.uniform(lo, hi, a.shape)
        return f
    return core.std.ModifyFrame(blank, blank, fill)
"""

IDENTITY_SCRIPT = """
weights = sys.argv[2]
results = {}
for name in ["YUV420P10", "YUV422P8", "YUV444P16", "RGB24", "RGB30", "GRAY16", "GRAY8",
             "YUV444PS", "YUV420PS", "RGBS", "RGBH", "GRAYS"]:
    clip = random_clip(getattr(vs, name))
    rgb = name.startswith("RGB")
    clip = core.std.SetFrameProps(clip, _Matrix=0 if rgb else 9, _Range=1 if rgb else 0,
                                  _FieldBased=1, _ChromaLocation=0, Label="banded")
    out = deband(clip, steps=1, weights=weights, device="cpu", tile=32, overlap=8)
    exact = all(np.array_equal(a, b) for n in range(len(clip))
                for a, b in zip(planes(clip.get_frame(n)), planes(out.get_frame(n))))
    results[name] = {"format": out.format.id == getattr(vs, name), "exact": exact,
                     "props_in": props(clip.get_frame(1)), "props_out": props(out.get_frame(1))}
errors = {}
a = core.std.BlankClip(format=vs.YUV420P8, width=64, height=32, length=1)
cases = {"variable format": lambda: core.std.Splice([a, a.resize.Point(format=vs.RGB24)], mismatch=True),
         "variable size": lambda: core.std.Splice([a, a.resize.Point(width=32)], mismatch=True),
         "steps": None, "strength": None}
for case, make in cases.items():
    try:
        if case in ("steps", "strength"):
            deband(a, **{case: 0}, weights=weights, device="cpu")
        else:
            deband(make(), weights=weights, device="cpu")
        errors[case] = None
    except Exception as e:
        errors[case] = type(e).__name__ + ": " + str(e)
json.dump({"results": results, "errors": errors}, open(out_dir + "/result.json", "w"))
"""


@pytest.fixture(scope="module")
def identity_weights(tmp_path_factory):
    """A tiny untrained network whose output is exactly its input."""
    path = tmp_path_factory.mktemp("identity") / "identity.safetensors"
    save_weights(UNet(IDENTITY).eval(), path)
    return path


def run(vs_python, tmp_path, script: str, *args) -> None:
    path = tmp_path / "script.py"
    path.write_text(HEAD + script)
    r = vs_python.run(path, tmp_path, *args, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def test_identity_model_returns_every_format_exactly_with_its_props(tmp_path, vapoursynth_python, identity_weights):
    run(vapoursynth_python, tmp_path, IDENTITY_SCRIPT, identity_weights)
    result = json.loads((tmp_path / "result.json").read_text())
    for name, r in result["results"].items():
        assert r["format"], name  # the same format out
        assert r["exact"], name  # integer and float, out-of-range samples included, 8-bit too
        assert r["props_out"] == r["props_in"], name
        assert r["props_out"]["_FieldBased"] == 1 and r["props_out"]["Label"] == "banded"
    errors = result["errors"]
    assert errors["variable format"].startswith("UnsupportedError") and "variable format" in errors["variable format"]
    assert errors["variable size"].startswith("UnsupportedError") and "variable frame size" in errors["variable size"]
    assert errors["steps"].startswith("SettingError") and "steps" in errors["steps"]
    assert errors["strength"].startswith("SettingError") and "strength" in errors["strength"]


SHIPPED_SCRIPT = """
# a banded 10-bit ramp (6-bit steps) with a slightly coloured flat chroma, BT.709 limited range
def ramp(n, f):
    f = f.copy()
    y = np.asarray(f[0])
    yy, xx = np.mgrid[0:y.shape[0], 0:y.shape[1]]
    y[:] = np.floor((0.3 + 0.3 * xx / y.shape[1] + 0.1 * yy / y.shape[0]) * 63 + 0.5) / 63 * 876 + 64
    return f
blank = core.std.BlankClip(width=160, height=96, format=vs.YUV420P10, length=2, color=[0, 540, 490])
clip = core.std.SetFrameProps(core.std.ModifyFrame(blank, blank, ramp), _Matrix=1, _Range=0, _FieldBased=0)
rgb = core.resize.Bilinear(clip, format=vs.RGBS, matrix_in_s="709", range_in_s="limited")  # zimg's conversion
out = deband(clip, steps=1, device="cpu")
np.save(out_dir + "/rgb.npy", np.stack(planes(rgb.get_frame(0)), axis=2))
np.savez(out_dir + "/out.npz", *planes(out.get_frame(0)))
np.save(out_dir + "/rgbs.npy", np.stack(planes(deband(rgb, steps=1, device="cpu").get_frame(0)), axis=2))
json.dump([out.format.name, props(clip.get_frame(0)), props(out.get_frame(0))], open(out_dir + "/meta.json", "w"))
"""


def test_shipped_model_matches_the_library_on_yuv420p10_and_rgbs(tmp_path, vapoursynth_python):
    run(vapoursynth_python, tmp_path, SHIPPED_SCRIPT)
    name, props_in, props_out = json.loads((tmp_path / "meta.json").read_text())
    assert name == "YUV420P10" and props_out == props_in
    rgb = np.load(tmp_path / "rgb.npy")  # (h, w, 3) float32: the input as VapourSynth's resize sees it
    assert 0 < rgb.min() and rgb.max() < 1  # in gamut: no clamping on either path
    want = Debander.load(None, "cpu", steps=1, grid=False).restore(rgb)  # `deband image`'s network and guard
    assert np.abs(want - rgb).max() > 2e-3  # the model changes the ramp: a real comparison
    # RGBS: the filter's float output is the library's
    assert np.abs(np.load(tmp_path / "rgbs.npy") - want).max() < 1e-4
    # YUV420P10: luma per pixel and 2x2-averaged chroma of the library's output, to rounding
    y, cb, cr = (np.load(tmp_path / "out.npz")[f"arr_{i}"].astype(np.float64) for i in range(3))
    ycc = pixels.rgb_to_ycbcr(torch.from_numpy(want).double().permute(2, 0, 1))  # (3, h, w)
    assert np.abs(y - (ycc[0].numpy() * 876 + 64)).max() < 0.51
    for got, c in ((cb, ycc[1]), (cr, ycc[2])):
        assert np.abs(got - (subsample_420(c.float()).numpy() * 896 + 512)).max() < 0.51


THREADS_SCRIPT = """
class Watched:
    '''Halves R'G'B' slowly, counting callers inside at once and the threads that called.'''
    def __init__(self):
        self.inside = self.most = 0
        self.threads, self.guard = set(), threading.Lock()
    def restore_batch(self, rgb):
        with self.guard:
            self.inside += 1
            self.most = max(self.most, self.inside)
            self.threads.add(threading.get_ident())
        time.sleep(0.01)
        with self.guard:
            self.inside -= 1
        return rgb * 0.5

class Shift:
    '''Adds 0.3 codes of 8 bits to every channel.'''
    def restore_batch(self, rgb):
        return (rgb + 0.3 / 255).clamp(0, 1)

class Recorder:
    '''Returns its input, keeping the first pixel's R'G'B'.'''
    def restore_batch(self, rgb):
        self.first = rgb[0, :, 0, 0].tolist()
        return rgb

flat = core.std.BlankClip(width=66, height=38, format=vs.YUV444P8, length=1, color=[180, 90, 170])
seen = {}
for case, tags in {"untagged": {}, "709 full": {"_Matrix": 1, "_Range": 1}, "2020 limited": {"_Matrix": 9, "_Range": 0},
                   "601 old full": {"_Matrix": 6, "_ColorRange": 0}}.items():
    recorder = Recorder()
    deband(core.std.SetFrameProps(flat, **tags), debander=recorder).get_frame(0)
    seen[case] = recorder.first

core.num_threads = 4
clip = random_clip(vs.RGBS, lo=0.0, hi=1.0, length=24)
for attempt in range(5):  # on a busy 2-core machine one worker may take every frame: then again
    watched = Watched()
    outs = list(deband(clip, debander=watched).frames())
    if len(watched.threads) > 1:
        break
ok = all(np.allclose(np.stack(planes(o)), 0.5 * np.stack(planes(clip.get_frame(n))), atol=1e-6)
         for n, o in enumerate(outs))
calls = set()
def spy(n, f):
    calls.add(threading.get_ident())
    return f
list(core.std.ModifyFrame(clip, clip, spy).frames())
shift = {}
for name, top in (("RGB24", 200), ("RGB30", 800)):
    fmt = getattr(vs, name)
    src = core.std.Expr(random_clip(fmt, length=1), f"x {top} min 10 max")
    diff = np.stack(planes(deband(src, debander=Shift()).get_frame(0))).astype(int) - np.stack(planes(src.get_frame(0)))
    shift[name] = {str(k): int(v) for k, v in zip(*np.unique(diff, return_counts=True))}
json.dump({"ok": ok, "most": watched.most, "threads": len(watched.threads), "spy_threads": len(calls),
           "shift": shift, "seen": seen}, open(out_dir + "/result.json", "w"))
"""


def test_props_threads_and_8_bit_dither(tmp_path, vapoursynth_python):
    run(vapoursynth_python, tmp_path, THREADS_SCRIPT)
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["ok"]  # every frame got its own restored planes back
    assert r["threads"] > 1  # VapourSynth called the filter from several threads ...
    assert r["most"] == 1  # ... but never two inside the restorer at once
    codes = np.array([180, 90, 170], np.float64)
    for case, (matrix, full) in {"untagged": ("bt601", False), "709 full": ("bt709", True),
                                 "2020 limited": ("bt2020", False), "601 old full": ("bt601", True)}.items():
        ycc = [pixels.from_signal(c / 255, 8, full, chroma=i > 0) for i, c in enumerate(codes)]
        want = np.clip(pixels.ycbcr_to_rgb(np.array(ycc), matrix, axis=0), 0, 1)
        assert np.abs(np.array(r["seen"][case]) - want).max() < 1e-5, case
    eight, ten = r["shift"]["RGB24"], r["shift"]["RGB30"]
    assert ten == {"1": 3 * 66 * 38}  # 0.3 codes of 8 bits = 1.2 at 10 bits: rounded to +1
    n = 3 * 66 * 38
    assert set(eight) == {"-1", "0", "1"}  # TPDF d on (-1, 1): P(+1) = P(d > 0.2) = 0.32, P(-1) = 0.02
    assert 0.28 < eight["1"] / n < 0.36 and eight["-1"] / n < 0.04
    assert 0.27 < (eight["1"] - eight["-1"]) / n < 0.33  # the mean change is 0.3 codes


def test_documented_example_runs_and_debands(tmp_path, vapoursynth_python):
    page = (Path(__file__).resolve().parents[1] / "docs" / "vapoursynth-onnx.md").read_text()
    example = EXAMPLE.read_text()
    assert example.strip() in page  # docs/vapoursynth-onnx.md shows exactly the script tested here
    script = f"""
import runpy
names = runpy.run_path({str(EXAMPLE)!r})
out = vs.get_output(0)
out = getattr(out, "clip", out)
banded = names["banded"].get_frame(3)
np.save(out_dir + "/y_in.npy", planes(banded)[0])
np.save(out_dir + "/y.npy", planes(out.get_frame(3))[0])
json.dump([out.format.name, len(out), props(banded), props(out.get_frame(3))], open(out_dir + "/meta.json", "w"))
"""
    run(vapoursynth_python, tmp_path, script)
    name, length, props_in, props_out = json.loads((tmp_path / "meta.json").read_text())
    assert (name, length) == ("YUV420P10", 24) and props_out == props_in and props_out["_Matrix"] == 1
    y_in, y = np.load(tmp_path / "y_in.npy"), np.load(tmp_path / "y.npy")
    before, after = cambi(y_in), cambi(y)
    assert before > 5 and after < 0.3 * before, (before, after)  # measured: 12.5 -> 1.9


def test_module_imports_without_vapoursynth():
    code = """import sys
sys.modules["vapoursynth"] = None  # as if not installed
import deband.apps.vapoursynth as m
print("imported")
try:
    m.deband(None)
except ModuleNotFoundError as e:
    print("needs", e.name)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["imported", "needs", "vapoursynth"], r.stderr

"""A Python 3.12 virtual environment with VapourSynth, vs-mlrt's ONNX Runtime plugin and torch.

The PyPI `vapoursynth` wheel needs Python >= 3.12, so tests that drive real VapourSynth run
scripts in this venv as subprocesses. It is built once and cached on disk under
`~/.cache/deband-tests/vs312-<hash of REQUIREMENTS>` (or `$DEBAND_TEST_CACHE`): built in a
temporary folder beside it and renamed into place when complete, so an interrupted build
leaves nothing that looks finished. deband itself is not installed there: scripts run with
this checkout's `src` on PYTHONPATH, so one cached venv serves every checkout.

Run `python tests/helpers/vsenv.py` to build it ahead of a test run (it prints the time taken).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
# deband's imports on the path of deband.apps.vapoursynth (restore, checkpoint, video.colour) and
# the ONNX plugin; torch is the PyPI wheel for cp312 (with its CUDA libraries).
REQUIREMENTS = (
    "vapoursynth",
    "vapoursynth-mlrt-ort",
    "numpy",
    "torch==2.13.0",
    "safetensors",
    "av",
    "tqdm",
    "pillow",
    "opencv-python-headless",
    "tifffile",
)
BUILD_TIMEOUT_S = 3600  # the torch wheel and its CUDA libraries are about 3 GB
CHECK = "import vapoursynth as vs, torch, numpy, av, safetensors; vs.core.std; vs.core.ort"


@dataclass(frozen=True)
class VsPython:
    """The venv's interpreter; `run` executes a script there with this checkout's deband."""

    python: str

    def run(self, script: str | Path, *args: object, timeout: float = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        cmd = [self.python, str(script), *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def python312() -> str | None:
    """A working python3.12 (on PATH or under pyenv), or None."""
    pyenv = sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.12*/bin/python3.12")))
    for exe in filter(None, [shutil.which("python3.12"), *pyenv]):
        if subprocess.run([exe, "-c", "import venv"], capture_output=True).returncode == 0:
            return exe
    return None


def cache_dir() -> Path:
    """Where the venv lives: $DEBAND_TEST_CACHE or ~/.cache/deband-tests, then vs312-<hash>."""
    root = Path(os.environ.get("DEBAND_TEST_CACHE") or Path.home() / ".cache" / "deband-tests")
    digest = hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()[:12]
    return root / f"vs312-{digest}"


def _works(python: Path) -> bool:
    return python.is_file() and subprocess.run([str(python), "-c", CHECK], capture_output=True).returncode == 0


def build(exe: str) -> tuple[VsPython | None, str]:
    """The cached venv, built first when missing. Returns (venv, "") or (None, why not)."""
    final = cache_dir()
    if _works(final / "bin" / "python"):
        return VsPython(str(final / "bin" / "python")), ""
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        subprocess.run([exe, "-m", "venv", str(tmp)], check=True, capture_output=True)
        python = tmp / "bin" / "python"
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--no-input", *REQUIREMENTS],
            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
        )
        if pip.returncode != 0:
            return None, f"pip install {' '.join(REQUIREMENTS)} failed: {pip.stderr.strip()[-300:]}"
        check = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True)
        if check.returncode != 0:
            return None, f"the VapourSynth venv does not work: {check.stderr.strip()[-300:]}"
        # venv scripts name their folder: rewrite the build folder's name before moving it
        fix_paths(tmp, final)
        try:
            tmp.rename(final)
        except OSError:  # another session finished first
            if not _works(final / "bin" / "python"):
                raise
        return VsPython(str(final / "bin" / "python")), ""
    except (subprocess.SubprocessError, OSError) as e:
        return None, f"building the VapourSynth venv failed: {e}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale(final: Path) -> None:
    """Remove partial builds of `final` left by killed runs (older than the build timeout)."""
    for old in final.parent.glob(f".{final.name}.partial-*"):
        if time.time() - old.stat().st_mtime > BUILD_TIMEOUT_S:
            shutil.rmtree(old, ignore_errors=True)


def fix_paths(tmp: Path, final: Path) -> None:
    """Point the venv's text files (activate scripts, pip entry points, pyvenv.cfg) at `final`."""
    old, new = str(tmp).encode(), str(final).encode()
    for path in [tmp / "pyvenv.cfg", *(tmp / "bin").iterdir()]:
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if old in data:
                path.write_bytes(data.replace(old, new))


if __name__ == "__main__":
    exe = python312()
    if exe is None:
        sys.exit("no python3.12 found")
    t0 = time.perf_counter()
    venv, why = build(exe)
    print(venv.python if venv else why, f"({time.perf_counter() - t0:.0f} s)")
    sys.exit(0 if venv else 1)

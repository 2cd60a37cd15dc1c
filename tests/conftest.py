"""Fixtures every test module may use: a tiny model, its weights file, the VapourSynth venv."""

import pytest
import torch

from deband.model.unet import UNet
from helpers.models import IDENTITY, TINY, randomised


@pytest.fixture
def tiny_model() -> UNet:
    torch.manual_seed(0)
    return randomised(UNet(TINY))


@pytest.fixture
def tiny_weights(tmp_path, tiny_model):
    from deband.model.checkpoint import save_weights

    path = tmp_path / "tiny.safetensors"
    save_weights(tiny_model, path)
    return path


@pytest.fixture(scope="session")
def identity_weights(tmp_path_factory):
    """An untrained UNet: zero-initialised heads make it exactly the identity."""
    from deband.model.checkpoint import save_weights

    path = tmp_path_factory.mktemp("w") / "identity.safetensors"
    save_weights(UNet(IDENTITY).eval(), path)
    return path


@pytest.fixture(scope="session")
def vapoursynth_python():
    """A Python 3.12 venv with VapourSynth, vs-mlrt's ONNX Runtime plugin and torch
    (`tests/helpers/vsenv.py`): built on first use (minutes), then cached on disk. Its `run(script,
    *args)` runs a script there with this checkout's deband. Skips when python3.12 is missing
    or the install fails."""
    from helpers.vsenv import build, python312

    exe = python312()
    if exe is None:
        pytest.skip("no python3.12 to build a VapourSynth venv with")
    venv, why = build(exe)
    if venv is None:
        pytest.skip(why)
    return venv

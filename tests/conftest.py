import pytest
import torch

from deband.config import ModelConfig
from deband.model.unet import UNet

TINY = ModelConfig(channels=(8, 12, 16), refine=4, time_dim=16, smooth_scales=3)
IDENTITY = ModelConfig(channels=(8, 12, 16), refine=4, time_dim=16, smooth_scales=0)  # untrained: exactly x


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give the zero-initialised layers small random weights so the net is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


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
def vapoursynth_python():
    """A Python 3.12 venv with VapourSynth, vs-mlrt's ONNX Runtime plugin and torch
    (`tests/vsenv.py`): built on first use (minutes), then cached on disk. Its `run(script,
    *args)` runs a script there with this checkout's deband. Skips when python3.12 is missing
    or the install fails."""
    from vsenv import build, python312

    exe = python312()
    if exe is None:
        pytest.skip("no python3.12 to build a VapourSynth venv with")
    venv, why = build(exe)
    if venv is None:
        pytest.skip(why)
    return venv

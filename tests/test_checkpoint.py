import os
import subprocess
import sys

import pytest
import torch

from deband.errors import InputError
from deband.model.checkpoint import (
    DEFAULT_WEIGHTS,
    interpolate,
    load_model,
    load_training_state,
    read_metadata,
    save_training_state,
    save_weights,
)
from deband.model.unet import UNet
from helpers.models import randomised


@pytest.mark.slow
def test_save_load_gives_identical_outputs(tiny_model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_weights(tiny_model, path, {"step": 7})
    loaded = load_model(path)
    x = torch.rand(1, 3, 40, 24)
    assert torch.equal(loaded(x, torch.ones(1)), tiny_model(x, torch.ones(1)))
    assert read_metadata(path)["step"] == "7"
    assert loaded.config == tiny_model.config


@pytest.mark.slow
def test_shipped_default_loads_offline():
    assert DEFAULT_WEIGHTS.is_file()
    assert DEFAULT_WEIGHTS.stat().st_size < 10 * 2**20
    model = load_model()
    x = torch.rand(1, 3, 64, 64)
    assert model(x, torch.ones(1)).shape == x.shape


@pytest.mark.parametrize("content", [b"", b"not safetensors at all", b"\x10\x00\x00\x00\x00\x00\x00\x00{}"])
def test_corrupt_weights_raise_clear_error(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(InputError):
        load_model(path)


def test_truncated_weights_raise_clear_error(tiny_weights, tmp_path):
    data = tiny_weights.read_bytes()
    path = tmp_path / "trunc.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError):
        load_model(path)


def test_wrong_architecture_raises(tiny_model, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "wrong.safetensors"
    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    state.pop(next(iter(state)))
    save_file(state, str(path), metadata=read_metadata_like(tiny_model))
    with pytest.raises(InputError):
        load_model(path)


def read_metadata_like(model):
    import json

    from deband.config import to_dict

    return {"config": json.dumps(to_dict(model.config)), "format": "deband-unet-v1"}


def test_missing_weights(tmp_path):
    with pytest.raises(InputError):
        load_model(tmp_path / "none.safetensors")


def test_training_state_round_trip(tmp_path, tiny_model):
    state = {"model": tiny_model.state_dict(), "step": 3, "rng": torch.Generator().get_state()}
    save_training_state(tmp_path / "s.pt", state)
    back = load_training_state(tmp_path / "s.pt")
    assert back["step"] == 3
    assert all(torch.equal(back["model"][k], v) for k, v in state["model"].items())


def test_saving_replaces_atomically_and_leaves_no_temporary(tmp_path, tiny_model, monkeypatch):
    import deband.model.checkpoint

    save_weights(tiny_model, tmp_path / "m.safetensors", {"step": 1})
    save_weights(tiny_model, tmp_path / "m.safetensors", {"step": 2})
    save_training_state(tmp_path / "s.pt", {"step": 1})
    save_training_state(tmp_path / "s.pt", {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "s.pt"]
    assert read_metadata(tmp_path / "m.safetensors")["step"] == "2"

    def interrupted(state, path, metadata=None):
        open(path, "wb").write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(deband.model.checkpoint, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_weights(tiny_model, tmp_path / "m.safetensors", {"step": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "s.pt"]
    assert read_metadata(tmp_path / "m.safetensors")["step"] == "2"


@pytest.mark.slow
def test_interpolate_mixes_every_weight(tiny_model):
    other = randomised(UNet(tiny_model.config), seed=1)
    ends = interpolate(tiny_model, other, 0.0), interpolate(tiny_model, other, 1.0)
    mid = interpolate(tiny_model, other, 0.25)
    for k, a in tiny_model.state_dict().items():
        b = other.state_dict()[k]
        assert torch.equal(ends[0].state_dict()[k], a) and torch.equal(ends[1].state_dict()[k], b)
        assert torch.allclose(mid.state_dict()[k], 0.75 * a + 0.25 * b, atol=1e-6)


def test_interpolate_refuses_other_configs_and_shares(tiny_model):
    from dataclasses import replace

    wider = UNet(replace(tiny_model.config, time_dim=tiny_model.config.time_dim * 2))
    with pytest.raises(InputError, match="config"):
        interpolate(tiny_model, wider, 0.5)
    with pytest.raises(ValueError, match="share"):
        interpolate(tiny_model, tiny_model, 1.5)


@pytest.mark.slow
def test_cli_mix_writes_the_interpolation_and_refuses_to_overwrite(tiny_model, tmp_path):
    a, b, out = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "m.safetensors"
    save_weights(tiny_model, a)
    save_weights(randomised(UNet(tiny_model.config), seed=2), b)
    cmd = [sys.executable, "-m", "deband.cli", "mix", str(a), str(b), "--share", "0.5", "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": "src"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    want = interpolate(load_model(a), load_model(b), 0.5).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in load_model(out).state_dict().items())
    assert read_metadata(out)["mixed"] == "0.5 x a.safetensors + 0.5 x b.safetensors"
    before = out.read_bytes()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 5 and "exists" in r.stderr and out.read_bytes() == before
    r = subprocess.run([*cmd[:-3], "--share", "2", "-o", str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "--share" in r.stderr

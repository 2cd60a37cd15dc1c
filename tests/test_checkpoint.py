import pytest
import torch

from deband.checkpoint import (
    DEFAULT_WEIGHTS,
    load_model,
    load_training_state,
    read_metadata,
    save_training_state,
    save_weights,
)
from deband.errors import InputError


def test_save_load_gives_identical_outputs(tiny_model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_weights(tiny_model, path, {"step": 7})
    loaded = load_model(path)
    x = torch.rand(1, 3, 40, 24)
    assert torch.equal(loaded(x, torch.ones(1)), tiny_model(x, torch.ones(1)))
    assert read_metadata(path)["step"] == "7"
    assert loaded.config == tiny_model.config


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
    import deband.checkpoint

    save_weights(tiny_model, tmp_path / "m.safetensors", {"step": 1})
    save_weights(tiny_model, tmp_path / "m.safetensors", {"step": 2})
    save_training_state(tmp_path / "s.pt", {"step": 1})
    save_training_state(tmp_path / "s.pt", {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "s.pt"]
    assert read_metadata(tmp_path / "m.safetensors")["step"] == "2"

    def interrupted(state, path, metadata=None):
        open(path, "wb").write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(deband.checkpoint, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_weights(tiny_model, tmp_path / "m.safetensors", {"step": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "s.pt"]
    assert read_metadata(tmp_path / "m.safetensors")["step"] == "2"

"""Weights as safetensors with the model config in the metadata; training state apart."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save, save_file

from deband.config import ModelConfig, model_config_from_dict, to_dict
from deband.errors import InputError
from deband.io.outputs import atomic_output
from deband.model.unet import UNet

DEFAULT_WEIGHTS = Path(__file__).parents[1] / "weights" / "default.safetensors"




def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP / torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def _tensors_and_meta(model: torch.nn.Module, extra: dict | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    model = unwrap(model)
    meta = {"config": json.dumps(to_dict(model.config)), "format": "deband-unet-v1"}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    return {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}, meta


def save_weights(model: torch.nn.Module, path: str | Path, extra: dict | None = None, overwrite: bool = True) -> None:
    """Write the model's weights and config to one .safetensors file, atomically (replacing an
    existing file unless `overwrite` is False: then OutputExistsError)."""
    state, meta = _tensors_and_meta(model, extra)
    with atomic_output(path, overwrite=overwrite) as tmp:
        save_file(state, str(tmp), metadata=meta)


def weights_bytes(model: torch.nn.Module) -> bytes:
    """The .safetensors file `save_weights` would write, as bytes (to send a model elsewhere)."""
    return save(*_tensors_and_meta(model, None))


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_model(path: str | Path | None = None) -> UNet:
    """Rebuild the model from one .safetensors file (the shipped default when path is None).

    Raises InputError when the file is missing, unreadable or does not fit its model config.
    """
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    try:
        meta = read_metadata(path)
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable safetensors file ({e})") from None
    return _rebuild(state, meta, str(path))


def model_from_bytes(data: bytes, name: str = "weights") -> UNet:
    """Rebuild the model from the bytes of a .safetensors file (`weights_bytes`); `name` is
    used in error messages. Raises InputError as load_model does."""
    try:
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])  # u64 length, then JSON
        meta = header.get("__metadata__") or {}
        state = load(data)
    except (SafetensorError, ValueError, TypeError, AttributeError) as e:
        raise InputError(f"{name}: not a readable safetensors file ({e})") from None
    return _rebuild(state, meta, name)


def interpolate(a: UNet, b: UNet, share: float) -> UNet:
    """A model whose every weight is (1 - share) * a's + share * b's: weight-space
    interpolation between two models of one config, such as a fine-tune (b) and the weights
    it started from (a), which keeps much of what each does well. Raises InputError when the
    configs differ, ValueError when share is outside [0, 1]."""
    if not 0 <= share <= 1:
        raise ValueError(f"share must be within 0..1, got {share}")
    if a.config != b.config:
        raise InputError(f"the two models differ in config ({to_dict(a.config)} against {to_dict(b.config)})")
    theirs = b.state_dict()
    mixed = UNet(a.config)
    mixed.load_state_dict({k: torch.lerp(v, theirs[k], share) for k, v in a.state_dict().items()})
    return mixed.eval()


def _rebuild(state: dict[str, torch.Tensor], meta: dict[str, str], path: str) -> UNet:
    if meta.get("format") != "deband-unet-v1" or "config" not in meta:
        raise InputError(f"{path}: not a deband weights file (no model config in its metadata)")
    try:
        config: ModelConfig = model_config_from_dict(json.loads(meta["config"]))
        model = UNet(config)
        model.load_state_dict(state, strict=True)
    except (ValueError, TypeError, RuntimeError) as e:
        raise InputError(f"{path}: weights do not match the model they describe ({str(e).splitlines()[0]})") from None
    return model.eval()


def save_training_state(path: str | Path, state: dict) -> None:
    """Optimiser, EMA and counters; only tensors and plain values, loaded with weights_only."""
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(state, tmp)


def load_training_state(path: str | Path) -> dict:
    """The dict written by `save_training_state` (tensors and plain values only).

    Raises InputError when the file is missing, truncated or not such a state."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load raises OSError, EOFError, RuntimeError, unpickling errors
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: not a readable training state ({reason})") from None

import dataclasses
import pickle
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch

from deband.errors import SettingError
from deband.restore.debander import MAX_STEPS, Debander, check_sampling, tiled, to_float


@pytest.mark.parametrize("h,w", [(1, 1), (7, 3), (97, 131), (300, 257)])
@pytest.mark.parametrize("tile,overlap", [(64, 16), (100, 33), (128, 0)])
def test_identity_through_tiler_is_bit_exact(h, w, tile, overlap):
    x = torch.rand(2, 3, h, w)
    assert torch.equal(tiled(lambda t: t.clone(), x, tile, overlap), x)


def test_tiler_blends_smoothly():
    x = torch.zeros(1, 1, 64, 200)
    calls = []

    def fn(t):
        calls.append(1)
        return torch.full_like(t, float(len(calls)))

    out = tiled(fn, x, 64, 24)[0, 0, 0]
    assert len(calls) > 2
    assert (out[1:] - out[:-1]).abs().max() < 0.1  # no seams: ramps, not steps


def test_tiler_rejects_large_overlap():
    with pytest.raises(ValueError):
        tiled(lambda t: t, torch.rand(1, 3, 8, 8), 64, 32)


def test_tiled_restore_matches_whole_image_in_the_interior(tiny_model):
    x = torch.rand(1, 3, 160, 160)
    whole = Debander(tiny_model, steps=2, tile=1024).restore_batch(x)
    tiles = Debander(tiny_model, steps=2, tile=128, overlap=48).restore_batch(x)
    assert (whole - tiles).abs().mean() < 0.01


@pytest.mark.parametrize("shape,dtype", [((9, 7), np.uint8), ((9, 7, 1), np.uint16), ((9, 7, 2), np.uint8),
                                         ((9, 7, 3), np.float32), ((9, 7, 4), np.uint16)])
def test_restore_shape_contract_and_alpha_untouched(tiny_model, shape, dtype):
    rng = np.random.default_rng(0)
    hi = 1 if dtype == np.float32 else np.iinfo(dtype).max
    img = (rng.random(shape) * hi).astype(dtype)
    out = Debander(tiny_model, steps=2).restore(img)
    assert out.shape == img.shape and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1
    if len(shape) == 3 and shape[2] in (2, 4):
        assert np.array_equal(out[..., -1], to_float(img)[..., -1])


def test_untrained_model_restores_to_the_input():
    from deband.model.unet import UNet
    from helpers.models import IDENTITY

    img = np.random.default_rng(0).random((20, 30, 3)).astype(np.float32)
    assert np.allclose(Debander(UNet(IDENTITY).eval(), steps=3).restore(img), img, atol=1e-6)


def test_to_float_rejects_other_types():
    with pytest.raises(ValueError):
        to_float(np.zeros((2, 2), np.int32))


FAULTS = """
import resource, sys, torch
from deband.restore.debander import keep_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(10 * 2**20)  # 40 MiB, freed at once: 10k pages (glibc maps over 32 MiB afresh by default)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

tuned = sys.argv[1] == "tuned" and keep_freed_memory()
print(tuned, min([faults() for _ in range(6)][1:]))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's allocator only")
@pytest.mark.parametrize("setting", ["tuned", "default"])
def test_freed_memory_is_reused_without_page_faults(setting):
    """In a fresh interpreter, as the CLI calls it: freed buffers come back without page faults
    (not on every call: where the allocator places a block varies from run to run), and
    without the setting every call faults its pages in afresh."""
    out = subprocess.run([sys.executable, "-c", FAULTS, setting], capture_output=True, text=True, check=True)
    tuned, faults = out.stdout.split()
    if setting == "tuned":
        assert tuned == "True" and int(faults) < 1000
    else:
        assert int(faults) > 9000  # every call faults its 10k pages in


@pytest.mark.parametrize("steps, strength, setting", [
    (0, 1.0, "steps"), (MAX_STEPS + 1, 1.0, "steps"), (2, 0.0, "strength"), (2, 1.5, "strength"),
    (2, float("nan"), "strength"),
])
def test_steps_and_strength_are_checked_where_the_debander_takes_them(tiny_model, steps, strength, setting):
    with pytest.raises(SettingError, match=f"^{setting}: ") as caught:
        Debander(tiny_model, steps=steps, strength=strength)
    assert caught.value.setting == setting and isinstance(caught.value, ValueError)
    again = pickle.loads(pickle.dumps(caught.value))  # Ray hands errors back pickled
    assert (type(again), str(again), again.setting) == (SettingError, str(caught.value), setting)


def test_the_range_ends_are_accepted(tiny_model):
    check_sampling(1, 1e-6)
    check_sampling(MAX_STEPS, 1.0)
    debander = Debander(tiny_model, steps=MAX_STEPS, strength=0.5)
    with pytest.raises(SettingError, match="steps"):
        dataclasses.replace(debander, steps=0)  # as the web page makes a restorer per request


@pytest.mark.parametrize("space", ["rgb", "ycbcr"])
def test_truncation_offset_is_added_back_before_restoring(space):
    from deband.io.pixels import rgb_to_ycbcr
    from deband.restore.debander import Truncation

    cut = Truncation(10, 8, space)
    assert cut.steps == pytest.approx(0.375)
    x = torch.full((1, 3, 8, 8), 0.5)
    lifted = cut.undo(x)
    if space == "rgb":
        assert torch.allclose(lifted - x, torch.full_like(x, 0.375 / 255))
    else:  # 0.375 limited-range codes on each plane
        d = rgb_to_ycbcr(lifted) - rgb_to_ycbcr(x)
        assert torch.allclose(d[:, 0], torch.full_like(d[:, 0], 0.375 / 219), atol=1e-6)
        assert torch.allclose(d[:, 1:], torch.full_like(d[:, 1:], 0.375 / 224), atol=1e-6)
    identity = Debander(model=lambda x_t, t: x_t, guard=None, bars=False)
    shifted = Debander(model=lambda x_t, t: x_t, guard=None, bars=False, truncation=cut)
    assert torch.equal(identity.restore_batch(x), x)
    assert torch.allclose(shifted.restore_batch(x), lifted)
    with pytest.raises(ValueError):
        Truncation(8, 8)

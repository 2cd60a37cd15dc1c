"""The grid stage: grids found in re-quantised images, each pixel kept in its cell, nothing
changed where there is no grid, and its training resumable exactly."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from deband.cli import main
from deband.config import GridTrainConfig
from deband.data.pack import PackConfig, build_pack
from deband.io.pixels import quantise, rgb_to_ycbcr
from deband.model.checkpoint import load_model
from deband.model.grid import GridStage
from deband.model.unet import UNet
from deband.restore.debander import Debander, tiled
from deband.restore.guard import Guard, plane_levels
from deband.synthesis.delivery import grid_quantise, random_grid_quantise
from deband.training import grid as grid_training
from helpers.corpora import make_corpus
from helpers.models import randomised


def textured(h: int = 96, w: int = 96, seed: int = 0) -> torch.Tensor:
    """A clean (3, h, w) image: a gradient under fine texture, each channel its own."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.1, 0.9, w)[None, None, :].expand(3, h, w)
    return (ramp + 0.06 * torch.randn(3, h, w, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("convention", ["scaled", "shift"])
@pytest.mark.parametrize("bits", [4, 5, 6, 7])
def test_the_guard_finds_each_grid_and_its_half_step(bits, convention):
    x = grid_quantise(textured(), (bits, bits, bits), convention)[None]
    half = Guard().grid_bound(x)
    step = 1 / (2**bits - 1) if convention == "scaled" else 2 ** (8 - bits) / 255
    assert half.min() > 0
    assert torch.equal(half, torch.full_like(half, 1 / (2 * (2**bits - 1))))  # reported as the scaled grid's
    assert abs(float(half.mean()) - step / 2) < 0.035 * step  # within 7 % of either convention's half step


def test_channels_on_different_grids_get_their_own_step():
    x = grid_quantise(textured(), (5, 6, 5), "scaled")[None]
    half = Guard().grid_bound(x).amax((2, 3))[0]
    assert torch.allclose(half, torch.tensor([1 / 62, 1 / 126, 1 / 62]))


def test_no_grid_in_8_bit_texture():
    x = (textured() * 255).round()[None] / 255
    assert float(Guard().grid_bound(x).max()) == 0


def test_random_grid_quantise_lands_on_a_grid_the_guard_finds():
    for seed in range(6):
        x = random_grid_quantise(textured(seed=seed), torch.Generator().manual_seed(seed))
        assert torch.equal(x, (x * 255).round() / 255)
        assert float((Guard().grid_bound(x[None]) > 0).float().mean()) > 0.95


def test_stage_keeps_every_pixel_in_its_cell_and_leaves_gridless_pixels():
    torch.manual_seed(0)
    stage = randomised(GridStage(8))
    x = torch.rand(2, 3, 37, 50)
    half = torch.where(torch.rand_like(x) < 0.5, torch.full_like(x, 2 / 255), torch.zeros_like(x))
    y = stage(x, x + 0.05 * torch.randn_like(x), half)
    assert y.shape == x.shape
    assert ((y - x).abs() <= half + 1e-7).all()
    assert torch.equal(y[half == 0], x[half == 0])
    assert not torch.equal(y, x)
    out = x + 0.01 * torch.randn_like(x)
    kept = x + torch.minimum(torch.maximum(out - x, -half), half)
    assert torch.allclose(GridStage(8)(x, out, half), kept, atol=0.02 * 2 / 255)  # untrained: out kept in its cell


def test_tiled_may_change_the_channel_count():
    x = torch.rand(1, 5, 70, 90)
    y = tiled(lambda p: p[:, :2] * 2, x, 40, 8)
    assert torch.allclose(y, x[:, :2] * 2)


def network(**stages: int) -> UNet:
    """The shipped U-Net with fresh stages of the given widths (grid_width, planes_width; none by default)."""
    base = load_model()
    model = UNet(replace(base.config, **({"grid_width": 0, "planes_width": 0} | stages)))
    kept = {k: v for k, v in base.state_dict().items() if not k.startswith(("grid.", "planes."))}
    missing, unexpected = model.load_state_dict(kept, strict=False)
    assert not unexpected and all(k.startswith(("grid.", "planes.")) for k in missing)
    return model


@pytest.fixture(scope="module")
def staged_model() -> UNet:
    model = network(grid_width=8)
    randomised(model.grid, seed=3)
    return model


def test_a_model_with_a_stage_restores_gridless_images_exactly_as_without(staged_model):
    img = (textured(64, 80).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    with_stage = Debander(model=staged_model).restore(img)
    without = Debander(model=network()).restore(img)
    assert np.array_equal(with_stage, without)


def test_on_a_grid_the_stage_places_pixels_within_their_cells(staged_model):
    clean = textured(64, 80)
    x = grid_quantise(clean, (5, 5, 5), "scaled")
    img = x.permute(1, 2, 0).numpy()
    placed = Debander(model=staged_model).restore(img)
    plain = Debander(model=staged_model, grid=False).restore(img)
    assert np.abs(placed - np.round(img * 31) / 31).max() <= 1 / 62 + 1e-6  # the cells of the 5-bit levels
    assert not np.array_equal(placed, plain)


def test_training_writes_a_model_and_resumes_exactly(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", sizes=((140, 150), (150, 140), (160, 160)))
    build_pack(corpus, tmp_path / "pack.npz", PackConfig(size=64, n=6, candidates=2))
    cfg = GridTrainConfig(pack=str(tmp_path / "pack.npz"), variants=1, val_crops=2, width=8, patch=32,
                          batch=2, steps=6, warmup=2, val_every=3)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.__dict__))
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    assert main(["train-stage", "--out", str(whole), "--config", str(tmp_path / "cfg.json")]) == 0
    grid_training.train(halves, cfg, None, None, False, until=3)  # stopped half way
    assert main(["train-stage", "--out", str(halves), "--resume"]) == 0
    a, b = torch.load(whole / "state.pt"), torch.load(halves / "state.pt")
    assert a["step"] == b["step"] == 6
    assert all(torch.equal(a["stage"][k], b["stage"][k]) for k in a["stage"])
    model = load_model(whole / "model.safetensors")
    assert model.grid is not None and model.config.grid_width == 8
    log = (whole / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,loss") and len(log) == 3  # header, step 3 and step 6 (validations)


def test_a_planes_stage_trains_beside_a_channels_stage(tmp_path, staged_model):
    from deband.model.checkpoint import save_weights

    corpus = make_corpus(tmp_path / "corpus", sizes=((140, 150), (150, 140)))
    build_pack(corpus, tmp_path / "pack.npz", PackConfig(size=64, n=4, candidates=2))
    save_weights(staged_model, tmp_path / "start.safetensors")
    cfg = GridTrainConfig(pack=str(tmp_path / "pack.npz"), space="planes", variants=1, val_crops=1, width=8,
                          patch=32, batch=2, steps=2, warmup=1, val_every=2)
    grid_training.train(tmp_path / "run", cfg, tmp_path / "start.safetensors", None, False)
    model = load_model(tmp_path / "run" / "model.safetensors")
    assert model.config.planes_width == 8 and model.config.grid_width == 8
    assert all(torch.equal(a, b) for a, b in zip(model.grid.parameters(), staged_model.grid.parameters()))
    row = (tmp_path / "run" / "log.csv").read_text().splitlines()[-1].split(",")
    assert all(v != "" for v in row)  # the validation ran
    planes = load_model(tmp_path / "run" / "model.safetensors").planes.state_dict()
    grid_training.train(tmp_path / "run", cfg, None, None, True)  # finished: rewritten on the shipped model
    again = load_model(tmp_path / "run" / "model.safetensors")
    assert all(torch.equal(planes[k], v) for k, v in again.planes.state_dict().items())
    shipped = load_model()
    assert (again.grid is None) == (shipped.grid is None)  # the shipped model's channel stage, if it has one
    if shipped.grid is not None:
        assert all(torch.equal(a, b) for a, b in zip(again.grid.parameters(), shipped.grid.parameters()))


@pytest.mark.parametrize("luma, chroma", [(6, 5), (5, 8), (8, 4)])
def test_the_guard_finds_planes_stored_at_fewer_bits(luma, chroma):
    from deband.synthesis.delivery import store_ycbcr

    clean = textured(96, 96)
    x = quantise(store_ycbcr(clean, luma, chroma, 10, "round", subsampled=False), 8)[None]
    half = Guard().plane_grid(x)
    level = plane_levels(x, half)
    for plane, bits, scale in ((0, luma, 219), (1, chroma, 224), (2, chroma, 224)):
        found = half[0, plane] > 0
        if bits > 6:
            assert not found.any()
            continue
        assert found.float().mean() > 0.9
        assert torch.allclose(half[0, plane][found], torch.tensor(2.0 ** (8 - bits) / 2 / scale))
    codes = (level[0, 0] * 219 + 16)[half[0, 0] > 0]
    assert torch.allclose(codes / 2 ** (8 - luma), (codes / 2 ** (8 - luma)).round(), atol=1e-4)  # on the grid


def test_no_plane_grid_in_8_bit_texture():
    x = (textured() * 255).round()[None] / 255
    half = Guard().plane_grid(x)
    level = plane_levels(x, half)
    assert float(half.max()) == 0
    assert torch.allclose(level, rgb_to_ycbcr(x), atol=1e-6)


def test_a_planes_stage_keeps_each_plane_in_its_cell():
    from deband.synthesis.delivery import store_ycbcr

    model = network(planes_width=8)
    randomised(model.planes, seed=5)
    x = quantise(store_ycbcr(textured(64, 80), 5, 5, 10, "round", subsampled=False), 8)
    img = x.permute(1, 2, 0).numpy()
    placed = torch.from_numpy(Debander(model=model).restore(img)).permute(2, 0, 1)[None]
    half = Guard().plane_grid(x[None])
    level = plane_levels(x[None], half)
    moved = rgb_to_ycbcr(placed) - level
    inside = (half > 0) & (placed > 0).all(1, keepdim=True) & (placed < 1).all(1, keepdim=True)  # unclipped
    assert inside.float().mean() > 0.5
    assert ((moved.abs() <= half + 1e-4) | ~inside).all()


def test_committed_stage_configs_are_grid_train_configs():
    history = sorted((Path(__file__).parents[1] / "docs" / "model-history").glob("*config.json"))
    stages = [p for p in history if p.name.startswith(("grid", "planes"))]
    assert stages
    for path in stages:
        cfg = GridTrainConfig(**json.loads(path.read_text()))
        assert cfg.space in ("rgb", "planes") and cfg.steps > 0


def test_no_plane_grid_in_a_flat_plane_with_a_few_outliers():
    # a grey wall (Cb = Cr = 128, on every grid) with a few coloured pixels spanning several levels
    g = torch.Generator().manual_seed(3)
    x = torch.full((1, 3, 96, 96), 0.5)
    spots = torch.rand(1, 1, 96, 96, generator=g) < 0.04
    x = torch.where(spots, torch.tensor([0.9, 0.2, 0.4])[None, :, None, None], x)
    half = Guard().plane_grid(x)
    assert float(half.max()) == 0


def test_a_grid_cell_is_used_only_where_it_is_wider_than_the_guard():
    guard = Guard()
    banded = grid_quantise(torch.linspace(0.1, 0.6, 256)[None, None, :].expand(3, 64, 256), (6, 6, 6), "scaled")
    rough = grid_quantise(textured(64, 256), (6, 6, 6), "scaled")
    for x, kept in ((banded, False), (rough, True)):
        half = guard.grid_bound(x[None])
        assert float((half > 0).float().mean()) > 0.9  # a grid found in both
        wider = guard.wider(x[None], half)
        assert bool((wider > 0).float().mean() > 0.9) == kept  # smooth bands: the guard's own bound is wider


def test_a_clean_share_leaves_examples_at_8_bits(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", sizes=((140, 150), (150, 140)))
    build_pack(corpus, tmp_path / "pack.npz", PackConfig(size=64, n=3, candidates=2))
    from deband.data.pack import Pack

    cfg = GridTrainConfig(pack=str(tmp_path / "pack.npz"), variants=2, clean_share=1.0, width=8)
    pack = Pack(cfg.pack)
    ex = grid_training.make_examples(pack, network(), cfg)
    for row, i in enumerate(ex["index"].tolist()):
        assert torch.equal(ex["x"][row], (pack.crop(i) * 255).round().to(torch.uint8))


def test_the_channel_stage_leaves_7_bit_grids_to_the_restorer(staged_model):
    x = grid_quantise(textured(64, 80), (7, 7, 7), "scaled")
    assert float(Guard().grid_bound(x[None]).min()) > 0  # found
    img = x.permute(1, 2, 0).numpy()
    placed = Debander(model=staged_model).restore(img)
    without_stages = Debander(model=network()).restore(img)  # the frame's cells still apply to both
    assert np.array_equal(placed, without_stages)


def test_stages_act_only_where_the_restored_image_is_textured():
    from deband.restore.debander import textured as where_textured

    half = torch.full((1, 3, 64, 96), 2 / 255)
    ramp = torch.linspace(0.2, 0.4, 96)[None, None, None, :].expand(1, 3, 64, 96)
    assert float(where_textured(ramp, half).max()) == 0  # a smooth restored ramp: the restorer's output stands
    assert torch.equal(where_textured(textured(64, 96)[None], half), half)
    bumpy = ramp + 0.2 * half * torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    assert 0 < float((where_textured(bumpy, half) > 0).float().mean()) < 1  # about the threshold: some tiles


def test_a_staged_model_leaves_a_smooth_6_bit_ramp_to_the_restorer(staged_model):
    ramp = torch.linspace(0.3, 0.45, 256)[None, None, :].expand(3, 64, 256)  # bands of 27 px
    x = grid_quantise(ramp, (6, 6, 6), "scaled")
    assert float((Guard().grid_bound(x[None]) > 0).float().mean()) > 0.9  # its grid is found
    img = x.permute(1, 2, 0).numpy()
    placed = Debander(model=staged_model).restore(img)
    without_stages = Debander(model=network()).restore(img)  # the frame's cells still apply to both
    assert np.array_equal(placed, without_stages)


@pytest.mark.parametrize("tile", [2048, 256])  # one network tile; several, and the stages' windows at most that
def test_stages_run_around_the_grids_found_as_over_the_whole_image(monkeypatch, tile):
    """A 5-bit R'G'B' patch and a Y'CbCr patch stored at 5 bits, across core borders, in 8-bit
    texture: `textured` and the stages run in windows around them, and give what they give in
    windows as large as the tile allows (with a tile of 2048, one pass over the whole image)."""
    from deband.restore import debander
    from deband.synthesis.delivery import store_ycbcr

    model = network(grid_width=8, planes_width=8)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # weights large enough that the whole field matters: a window cut short shows
        for p in [*model.grid.parameters(), *model.planes.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    x = (textured(600, 700) * 255).round() / 255
    x[:, 60:300, 180:330] = grid_quantise(textured(240, 150, seed=1), (5, 5, 5), "scaled")
    x[:, 330:560, 300:560] = quantise(store_ycbcr(textured(230, 260, seed=2), 5, 5, 10, "round", subsampled=False), 8)
    img = x.permute(1, 2, 0).numpy()
    windows, textured_ = [], debander.textured
    monkeypatch.setattr(debander, "textured", lambda *a: windows.append(a[0].shape) or textured_(*a))
    placed = Debander(model=model, tile=tile, overlap=tile // 4).restore(img)
    small = debander.GRID_CORE + 2 * debander.TEXTURE_TILE  # the largest window `textured` gets around a find
    assert len(windows) > 4 and all(max(s[-2:]) <= small for s in windows)
    windows.clear()
    monkeypatch.setattr(debander, "GRID_CORE", 4096)  # windows covering more than the image: the largest instead
    large = Debander(model=model, tile=tile, overlap=tile // 4).restore(img)
    assert len(windows) >= 2 and max(max(s[-2:]) for s in windows) > small
    if tile >= 700:
        assert all(s[-2:] == (600, 700) for s in windows)  # one window: the whole image
    plain = Debander(model=model, tile=tile, overlap=tile // 4, grid=False).restore(img)
    assert not np.array_equal(placed, plain)  # the stages acted
    assert np.abs(placed - large).max() < 1e-5


@pytest.mark.parametrize("cores", [3, 4])  # 3 windows cover less than the image, 4 as much
def test_windows_put_fn_on_the_cores_that_hold_a_find_and_fill_elsewhere(cores):
    from deband.restore.debander import windows

    x = torch.rand(1, 2, 64, 64, generator=torch.Generator().manual_seed(0))
    where = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    for k in range(cores):
        where[0, 0, 16 * k + 5, 16 * k + 9] = True  # one find in each of the cores on the diagonal
    fill = torch.full_like(x, -1.0)

    def blur(p: torch.Tensor) -> torch.Tensor:  # reaches 3 px
        return torch.nn.functional.avg_pool2d(torch.nn.functional.pad(p, (3, 3, 3, 3), mode="reflect"), 7, stride=1)

    out = windows(blur, (x,), where, fill, 8, 16, 48)  # larger cores: 48 - 2 x 8 = 32
    on = torch.zeros(64, 64, dtype=torch.bool)
    for k in range(cores):
        on[16 * k : 16 * k + 16, 16 * k : 16 * k + 16] = True
    assert torch.allclose(out[..., on], blur(x)[..., on], atol=1e-6)
    changed = (out != fill).any(1)[0]
    assert torch.allclose(out[..., changed], blur(x)[..., changed], atol=1e-6)  # fn's output or fill, nothing else
    if cores == 3:
        assert torch.equal(changed, on)
    else:  # larger cores of 32 px: the finds lie in the two on the diagonal
        big = torch.zeros(64, 64, dtype=torch.bool)
        big[:32, :32] = big[32:, 32:] = True
        assert torch.equal(changed, big)

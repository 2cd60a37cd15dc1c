"""Training pairs: old configs draw exactly what they drew before; corpus and faint pairs are
deterministic and never touch held-out images."""

import json
from pathlib import Path

import pytest
import torch

from deband.config import DataConfig, load_train_config
from deband.data.pack import PackConfig, build_pack
from deband.data.pairs import CorpusImages, PairSampler, PairStream, RunSeeds
from deband.errors import InputError
from deband.io.pixels import quantise
from deband.restore.letterbox import add_bars
from deband.synthesis.degrade import random_degrade
from deband.synthesis.sources import add_detail, crop_pair, random_region
from helpers.corpora import HELD_OUT_RGB, make_corpus

HISTORY = Path(__file__).resolve().parents[1] / "docs" / "model-history"  # every training config so far


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus")


def _previous_pair(s: PairSampler, size: int):
    """The pair the sampler drew before corpus, delivery and faint pairs existed."""
    clean = s.clean(size)
    if s.config.unbanded_fraction > 0 and torch.rand((), generator=s.g).item() < s.config.unbanded_fraction:
        span = (clean.amax() - clean.amin()).item()
        clean = add_detail(clean, s.g, span, p=1.0, grain_max=0.04).clamp(0, 1)
        banded = quantise(clean, 8)
    else:
        banded = random_degrade(clean, s.g, s.config.codec_probability)
    if torch.rand((), generator=s.g).item() < s.config.letterbox_fraction:
        clean, banded = add_bars(clean, banded, s.g)
    return clean, banded


@pytest.mark.parametrize("cfg", [DataConfig(natural_fraction=0.0),
                                 DataConfig(natural_fraction=0.0, unbanded_fraction=0.5, letterbox_fraction=0.5)])
def test_new_fields_at_their_defaults_draw_the_previous_pairs(cfg):
    new, old = PairSampler(cfg, torch.Generator().manual_seed(3)), PairSampler(cfg, torch.Generator().manual_seed(3))
    for _ in range(12):
        (c1, b1), (c2, b2) = new.pair(48), _previous_pair(old, 48)
        assert torch.equal(c1, c2) and torch.equal(b1, b2)


def test_shipped_configs_load_with_todays_behaviour():
    older = [p for p in sorted(HISTORY.glob("*config.json"))
             if not p.name.startswith(("real", "colour", "grid", "planes"))]  # the new mixes; grid stages
    assert older
    for path in older:
        data = load_train_config(path).data
        assert (data.delivery_probability, data.corpus, data.corpus_fraction, data.faint_fraction) == (0, None, 0, 0)
        assert json.loads(path.read_text())["data"]["patch"] == data.patch


def test_corpus_lists_train_images_only(corpus):
    images = CorpusImages(corpus)
    assert [p.name for p in images.files] == ["train-0.png", "train-1.png", "train-2.png"]
    assert all(images[i].shape[0] == 3 for i in range(len(images)))


def _is_held_out(x: torch.Tensor) -> torch.Tensor:
    """Per pixel: the held-out image's colour (no train image comes within 0.2 of it)."""
    return (x - torch.tensor(HELD_OUT_RGB)[:, None, None]).abs().amax(-3) < 0.2


@pytest.mark.parametrize("source", ["folder", "pack"])
def test_corpus_and_faint_pairs_are_deterministic_and_never_held_out(corpus, tmp_path, source):
    path = corpus if source == "folder" else tmp_path / "p.npz"
    if source == "pack":
        build_pack(corpus, path, PackConfig(size=64, n=4, candidates=2))
    cfg = DataConfig(natural_fraction=0.0, codec_probability=0.0, letterbox_fraction=0.0, corpus=str(path),
                     corpus_fraction=1.0, faint_fraction=0.2, corpus_region=48)
    a = PairSampler(cfg, torch.Generator().manual_seed(0)).batch(40, 24)
    b = PairSampler(cfg, torch.Generator().manual_seed(0)).batch(40, 24)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not _is_held_out(a[0]).any()


def test_corpus_pairs_are_aligned_crops_of_one_banded_region(corpus):
    cfg = DataConfig(natural_fraction=0.0, codec_probability=0.0, letterbox_fraction=0.0, corpus=str(corpus),
                     corpus_fraction=1.0, delivery_probability=0.5)
    clean, banded = PairSampler(cfg, torch.Generator().manual_seed(1)).batch(12, 40)
    err = (clean - banded).abs().flatten(1).mean(1)  # (12,) mean |error| of each pair
    assert err.max() < 0.05  # banding, not a misplaced crop (the corpus images hold sharp edges)
    assert (clean - banded).abs().amax() > 0  # something was banded


def test_stream_with_corpus_depends_on_seed_and_step_only(corpus):
    cfg = DataConfig(natural_fraction=0.0, codec_probability=0.0, corpus=str(corpus), corpus_fraction=0.5,
                     faint_fraction=0.25, delivery_probability=0.5)
    full = list(PairStream(cfg, RunSeeds(4), 0, 0, 4, lambda step: (32, 2)))
    resumed = list(PairStream(cfg, RunSeeds(4), 0, 2, 4, lambda step: (32, 2)))
    for (c1, b1), (c2, b2) in zip(full[2:], resumed):
        assert torch.equal(c1, c2) and torch.equal(b1, b2)


def test_a_corpus_without_train_images_is_an_input_error(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"images": [{"file": "x.png", "split": "held-out"}]}))
    with pytest.raises(InputError, match="no train images"):
        PairSampler(DataConfig(corpus=str(folder), corpus_fraction=0.5), torch.Generator())
    with pytest.raises(InputError, match="manifest"):
        CorpusImages(tmp_path)


def test_regions_are_720_high_or_the_whole_image_and_crops_match():
    g = torch.Generator().manual_seed(0)
    assert random_region(torch.zeros(3, 1000, 2000), 720, g).shape == (3, 720, 1280)
    assert random_region(torch.zeros(3, 500, 900), 720, g).shape == (3, 500, 900)
    x = torch.rand((3, 20, 30), generator=g)
    a, b = crop_pair(x, x + 1, 8, g)
    assert torch.equal(a + 1, b)

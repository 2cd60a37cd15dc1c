"""Training packs: train crops only, stored losslessly, read back crop by crop."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from deband.data.pack import Pack, PackConfig, build_pack, choose_crop, decode, encode
from deband.errors import InputError
from deband.io.files import read_image
from deband.io.pixels import to_codes
from helpers.corpora import make_corpus


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus")


def test_encode_decode_is_lossless_across_wrap_around():
    codes = np.array([[[0, 65535, 0, 1, 65534, 3]]], np.uint16).repeat(3, 0)  # (3, 1, 6)
    x = torch.from_numpy(codes.astype(np.float32) / 65535)
    assert np.array_equal(to_codes(decode(encode(x)).numpy(), 16), codes)


def test_pack_round_trip_holds_train_crops_only(corpus, tmp_path):
    out = tmp_path / "pack.npz"
    meta = build_pack(corpus, out, PackConfig(size=72, n=7, candidates=3))
    pack = Pack(out)
    assert len(pack) == len(meta["crops"]) == 7
    assert {c["file"] for c in meta["crops"]} == {"train-0.png", "train-1.png", "train-2.png"}
    assert all(c["split"] == "train" for c in meta["crops"])
    for i, c in enumerate(meta["crops"]):
        src = read_image(corpus / c["file"]).pixels  # (h, w, 3) uint16
        h, w = src.shape[:2]
        crop = pack.crop(i)
        assert crop.shape == (3, 72, 72) and crop.dtype == torch.float32
        got = to_codes(crop.numpy(), 16).transpose(1, 2, 0)  # (72, 72, 3)
        t, le = c["top"], c["left"]
        inside = src[t : t + 72, le : le + 72]
        assert np.array_equal(got[: inside.shape[0], : inside.shape[1]], inside)  # bit-exact where the image is
        if h < 72:  # train-2 is 70 px high: edge-padded below
            assert np.array_equal(got[h:], np.broadcast_to(got[h - 1 : h], got[h:].shape))


def test_crops_favour_smooth_regions_unless_detailed():
    img = torch.zeros(3, 64, 128)
    img[:, :, 64:] = torch.rand((3, 64, 64), generator=torch.Generator().manual_seed(0))  # right half: noise
    g = torch.Generator().manual_seed(1)
    _, left, choice = choose_crop(img, PackConfig(size=32, candidates=12, detailed=0.0), g)
    assert choice == "smooth" and left < 40  # mostly in the flat half
    _, left, choice = choose_crop(img, PackConfig(size=32, candidates=12, detailed=1.0), g)
    assert choice == "detailed" and left > 40  # mostly in the noisy half


def test_same_seed_same_pack(corpus, tmp_path):
    a = build_pack(corpus, tmp_path / "a.npz", PackConfig(size=48, n=4))
    b = build_pack(corpus, tmp_path / "b.npz", PackConfig(size=48, n=4))
    assert a == b
    assert all(torch.equal(Pack(tmp_path / "a.npz").crop(i), Pack(tmp_path / "b.npz").crop(i)) for i in range(4))


def test_not_a_pack_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz"):
        Pack(bad)


@pytest.mark.slow
def test_cli_writes_a_pack_and_refuses_to_overwrite(corpus, tmp_path):
    out = tmp_path / "p.npz"
    cmd = [sys.executable, "-m", "deband.cli", "corpus", "pack", str(out), "--corpus", str(corpus),
           "--size", "32", "--n", "3"]
    env = {**os.environ, "PYTHONPATH": "src"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "3 crops of 32 px from 3 train images" in r.stdout
    meta = json.loads(str(np.load(out)["meta"]))
    assert len(meta["crops"]) == 3
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "exists" in r.stderr
    r = subprocess.run([*cmd, "--overwrite"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr

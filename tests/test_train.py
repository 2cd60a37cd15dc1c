import json
import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from deband.cli import main
from deband.config import DataConfig, ModelConfig, TrainConfig, load_train_config, save_json
from deband.data.pairs import PairStream, RunSeeds
from deband.model.checkpoint import load_model, read_metadata
from deband.model.unet import UNet
from deband.training.loop import WORKER_START, ConfigMismatchError, lr_at, patch_at, train

TINY_TRAIN = TrainConfig(
    model=ModelConfig(channels=(8, 12, 16), refine=4, time_dim=16),
    data=DataConfig(patch=64, natural_fraction=0.5, codec_probability=0.2),
    steps=6, batch=2, warmup=2, val_every=3, val_images=2, val_size=64, ckpt_every=3,
    curriculum=((0.0, 32), (0.5, 64)),
)


def test_config_json_round_trip(tmp_path):
    save_json(TINY_TRAIN, tmp_path / "c.json")
    assert load_train_config(tmp_path / "c.json") == TINY_TRAIN


def test_schedules():
    cfg = TrainConfig(steps=1000, warmup=100, lr=1e-3)
    assert lr_at(0, cfg) < lr_at(99, cfg) <= 1e-3
    assert lr_at(999, cfg) < 0.05e-3
    grow = TrainConfig(steps=1000, curriculum=((0.0, 128), (0.5, 256)))
    assert patch_at(0, grow) == (128, 4 * grow.batch) and patch_at(999, grow) == (256, grow.batch)


@pytest.mark.slow
def test_train_writes_weights_log_and_resumes(tmp_path):
    out = tmp_path / "run"
    weights = train(TINY_TRAIN, out)
    assert weights.is_file() and (out / "state.pt").is_file() and (out / "config.json").is_file()
    log = (out / "log.csv").read_text()
    assert "psnr_input" in log and "psnr_1step" in log
    before = load_model(weights)
    train(replace(TINY_TRAIN, steps=9), out, resume=True)
    rows = [r.split(",") for r in (out / "log.csv").read_text().splitlines()[1:]]
    assert max(int(r[0]) for r in rows) == 9
    after = load_model(weights)
    x = torch.rand(1, 3, 32, 32)
    assert not torch.equal(before(x, torch.ones(1)), after(x, torch.ones(1)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    cfg_path = tmp_path / "tiny.json"
    save_json(replace(TINY_TRAIN, steps=3, ckpt_every=3, val_every=3), cfg_path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "deband.cli", "train", "--out", str(tmp_path / "ddp"), "--config", str(cfg_path), "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 process(es)" in proc.stderr + proc.stdout
    trained = load_model(tmp_path / "ddp" / "model.safetensors")
    assert trained.config == TINY_TRAIN.model and read_metadata(tmp_path / "ddp" / "model.safetensors")["step"] == "3"
    with torch.random.fork_rng(devices=[]):  # the weights both ranks started from
        torch.manual_seed(RunSeeds(TINY_TRAIN.seed).model)
        initial = UNet(TINY_TRAIN.model).state_dict()
    assert any(not torch.equal(w, initial[k]) for k, w in trained.state_dict().items())  # three steps moved them
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["steps"] == 3


def test_spike_guard_flags_blow_ups_only():
    from deband.training.loop import SpikeGuard

    guard = SpikeGuard(factor=20)
    for i in range(50):
        assert guard.limit > 1e-4 or i < 20
        guard.record(1e-4 * (1 + (i % 3)), False)
    assert 1e-3 < guard.limit < 1e-2
    guard.record(float("nan"), True)
    assert guard.skipped == 1 and len(guard.history) == 50
    for _ in range(150):  # a lasting new level is accepted, not skipped for ever
        guard.record(0.1, 0.1 > guard.limit)
    assert guard.limit > 0.1


def test_train_step_skips_a_spike(tiny_model):
    from deband.training.loop import train_step
    from deband.training.losses import RestorationLoss

    opt = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in tiny_model.parameters()]
    clean, banded = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    loss, skipped = train_step(tiny_model, opt, RestorationLoss(), clean, banded, TINY_TRAIN, g, torch.device("cpu"),
                               1e-12)
    assert skipped and loss > 0
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_model.parameters()))


@pytest.mark.slow
def test_resume_drops_log_rows_after_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    train(TINY_TRAIN, out)  # checkpoints at 3 and 6
    with (out / "log.csv").open("a") as f:
        f.write("7,loss,0.5\n")  # as if the process died after step 7
    train(replace(TINY_TRAIN, steps=8), out, resume=True)
    rows = [r.split(",") for r in (out / "log.csv").read_text().splitlines()[1:]]
    losses = [int(step) for step, key, _ in rows if key == "loss"]
    assert losses == list(range(1, 9))  # the stray row for step 7 is gone, the rerun's is there


@pytest.mark.slow
def test_init_starts_from_given_weights_and_refuses_other_architectures(tmp_path):
    from deband.model.checkpoint import save_weights
    from deband.model.unet import UNet

    start = UNet(TINY_TRAIN.model)
    for p in start.parameters():
        torch.nn.init.normal_(p, std=0.05)
    save_weights(start, tmp_path / "start.safetensors")
    weights = train(replace(TINY_TRAIN, steps=1, ema=0.0), tmp_path / "run", init=tmp_path / "start.safetensors")
    x = torch.rand(1, 3, 32, 32)
    fresh = train(replace(TINY_TRAIN, steps=1, ema=0.0), tmp_path / "fresh")
    # one small step from the start is much closer to it than an untrained model is
    gap = (load_model(weights)(x, torch.ones(1)) - start(x, torch.ones(1))).abs().mean()
    far = (load_model(fresh)(x, torch.ones(1)) - start(x, torch.ones(1))).abs().mean()
    assert gap < 0.5 * far
    other = replace(TINY_TRAIN, model=replace(TINY_TRAIN.model, channels=(8, 12, 24)))
    with pytest.raises(ConfigMismatchError, match="model config differs"):
        train(other, tmp_path / "other", init=tmp_path / "start.safetensors")


def _shape(step: int) -> tuple[int, int]:
    return (32, 2) if step < 4 else (48, 1)


def _stream(workers: int, start: int = 1, stop: int = 8) -> list:
    stream = PairStream(TINY_TRAIN.data, RunSeeds(0), 3, start, stop, _shape)
    kw = {"multiprocessing_context": WORKER_START} if workers else {}  # as training starts them
    return list(torch.utils.data.DataLoader(stream, None, num_workers=workers, **kw))


def test_pair_stream_is_the_same_for_any_worker_count_and_resumes_exactly():
    one = _stream(0)
    assert [tuple(c.shape) for c, _ in one] == [(2, 3, 32, 32)] * 3 + [(1, 3, 48, 48)] * 4
    for workers in (1, 2):
        other = _stream(workers)
        assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(one, other))
    later = _stream(2, start=5)  # a run resumed at step 5 sees what step 5 saw before
    assert all(torch.equal(a, c) for (a, _), (c, _) in zip(one[4:], later))
    assert not torch.equal(one[0][0], one[1][0])


@pytest.mark.slow
def test_minutes_fit_the_step_count_after_warm_up(tmp_path):
    cfg = replace(TINY_TRAIN, steps=100_000, warmup=4, val_every=10_000, ckpt_every=10_000)
    train(cfg, tmp_path / "run", workers=2, minutes=0.1)
    fitted = load_train_config(tmp_path / "run" / "config.json").steps
    rows = [r.split(",") for r in (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]]
    assert 10 < fitted < 100_000
    assert max(int(r[0]) for r in rows) == fitted  # the run ended where the fitted schedule did
    assert (tmp_path / "run" / "model.safetensors").is_file()


@pytest.mark.parametrize("bad", [["--workers", "-1"], ["--minutes", "0"]])
def test_bad_workers_or_minutes_are_usage_errors(tmp_path, bad):
    assert main(["train", "--out", str(tmp_path / "run"), *bad]) == 2
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_leaves_global_state_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(replace(TINY_TRAIN, steps=1), tmp_path / "run", device="cpu")
    assert torch.equal(torch.rand(3), expected)  # the global generator was neither seeded nor drawn from


def test_exact_arithmetic_restores_the_backend_flags():
    from deband.training.loop import exact_arithmetic

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    with exact_arithmetic(torch.device("cuda")):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.benchmark
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.benchmark) == before


def test_unreadable_init_or_state_is_an_input_error(tmp_path):
    from deband.errors import InputError

    with pytest.raises(InputError, match="not found"):
        train(TINY_TRAIN, tmp_path / "a", init=tmp_path / "none.safetensors")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "state.pt").write_bytes(b"not a state")
    with pytest.raises(InputError, match="state.pt"):
        train(TINY_TRAIN, tmp_path / "b", resume=True)


def test_seeds_derive_from_the_run_seed():
    seeds = RunSeeds(2)
    assert seeds.model == 2 and seeds.generator(1) == 2001 and seeds.step(1, 5) == 2001 * 1_000_003 + 5
    assert RunSeeds(0).validation == RunSeeds(7).validation


def test_parser_does_not_import_torch():
    code = "import sys; from deband.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_cli_exit_codes_for_bad_inputs_and_outputs(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "bad.json").write_text('{"stepz": 3}')
    assert main(["train", "--out", str(tmp_path / "a"), "--init", str(tmp_path / "none.safetensors")]) == 3
    assert main(["train", "--out", str(tmp_path / "b"), "--config", str(tmp_path / "bad.json")]) == 3
    save_json(replace(TINY_TRAIN, steps=1), tmp_path / "tiny.json")
    assert main(["train", "--out", str(tmp_path / "file"), "--config", str(tmp_path / "tiny.json")]) == 5


def test_chroma_stage_learns_at_its_own_rate():
    from dataclasses import replace

    from deband.config import TrainConfig
    from deband.model.unet import UNet
    from deband.training.loop import param_groups

    cfg = replace(TrainConfig(), chroma_lr=20.0)
    plain = param_groups(UNet(cfg.model), cfg)
    assert [g["lr_share"] for g in plain] == [1.0]  # no Cb/Cr stage: one group
    grown = UNet(replace(cfg.model, chroma_scales=3))
    groups = param_groups(grown, cfg)
    assert [g["lr_share"] for g in groups] == [1.0, 20.0]
    assert {id(p) for p in groups[1]["params"]} == {id(grown.chroma.weight), id(grown.chroma.bias)}
    assert sum(len(g["params"]) for g in groups) == len(list(grown.parameters()))

"""deband.cluster.tasks and deband.cluster.video on a real local Ray cluster (two CPUs): the same
outputs as local runs, bad inputs failing once, transient errors retried, inputs sent when a
worker cannot read them, resuming across local and Ray runs, and `--ray` on the CLI."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow  # a Ray cluster
ray = pytest.importorskip("ray")

import deband  # noqa: E402
from deband.cluster import video as video_cluster  # noqa: E402
from deband.cluster.images import run_batch_ray  # noqa: E402
from deband.cluster.tasks import (  # noqa: E402
    ClusterOptions,
    Tasks,
    TaskShape,
    check_reachable,
    input_ref,
    local_input,
    remote,
    task_shape,
)
from deband.cluster.video import deband_library_ray, deband_video_ray  # noqa: E402
from deband.errors import ClusterError, InputError  # noqa: E402
from deband.io.files import write_image  # noqa: E402
from deband.model.unet import UNet  # noqa: E402
from deband.restore.debander import Debander  # noqa: E402
from deband.restore.images import ImageOptions, run_batch  # noqa: E402
from deband.video import VideoOptions  # noqa: E402
from deband.video.chunks import plan_chunks, scan_keyframes  # noqa: E402
from deband.video.jobs import ChunkOptions, deband_video_chunked  # noqa: E402
from deband.video.library import deband_library  # noqa: E402
from deband.video.streams import probe  # noqa: E402
from helpers.clips import frames, make_clip, same_frames, work_folders  # noqa: E402
from helpers.models import TINY, randomised  # noqa: E402

FFV1 = VideoOptions(codec="ffv1", batch=5)
QUARTER = ChunkOptions(seconds=0.2)  # 20 frames at 25 frames/s, a keyframe every 5: 4 chunks
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for this module; its workers import this checkout's deband and tests."""
    saved = os.environ.get("PYTHONPATH")
    paths = [str(Path(deband.__file__).parents[1]), str(TESTS)] + ([saved] if saved else [])
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="module")
def debander() -> Debander:
    """A tiny random model, built as `Debander.load` and the workers build it."""
    torch.manual_seed(0)
    return Debander.on_device(randomised(UNet(TINY)), torch.device("cpu"), steps=2, tile=128, overlap=16)


@pytest.fixture
def gop5(tmp_path) -> Path:
    return make_clip(tmp_path / "gop5.mkv", n=20, codec="ffv1", gop=5)


class StopAt(Debander):
    """The same restorer (and work key) that raises KeyboardInterrupt at call `stop_at`."""

    calls, stop_at = 0, None

    def restore_batch(self, rgb, on_tile=None):
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.calls += 1
        return super().restore_batch(rgb, on_tile)


def stop_at(debander: Debander, n: int | None) -> StopAt:
    d = StopAt(**{k: getattr(debander, k) for k in debander.__dataclass_fields__})
    d.stop_at = n
    return d


def images(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        ramp = np.linspace(0, 255, 40)[None, :, None] * np.ones((30, 1, 3))
        write_image(folder / f"im{i}.png", (ramp // 8 * 8 + rng.integers(0, 2, ramp.shape)).astype(np.uint8))
    return sorted(folder.iterdir())


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deband.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


# ----------------------------------------------------------------------------- the cluster itself


def _where() -> str:
    import deband

    return deband.__file__


def test_workers_import_this_deband(cluster):
    assert ray.get(ray.remote(_where).remote()) == deband.__file__


def test_task_shape_on_two_cpus(cluster):
    assert task_shape("auto", 1) == TaskShape(cpus=2, gpus=0) and task_shape("auto", 1).device == "cpu"
    assert task_shape("cpu", 8) == TaskShape(cpus=1, gpus=0)
    with pytest.raises(ClusterError, match="reports no GPU"):
        task_shape("cuda", 1)


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "head"])
def test_an_address_nothing_answers_at_is_refused_at_once(address):
    with pytest.raises(ClusterError, match=address):
        check_reachable(address)


def test_gpu_tasks_where_the_cluster_has_gpus(monkeypatch):
    nodes = [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}}, {"Alive": True, "Resources": {"CPU": 8.0}}]
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 24.0, "GPU": 2.0})
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    assert task_shape("auto", 40) == task_shape("cuda", 40) == TaskShape(cpus=8, gpus=1)
    assert task_shape("auto", 1).device == "cuda"
    assert task_shape("cpu", 40) == TaskShape(cpus=1, gpus=0)  # a CPU task fits on every node
    assert task_shape("cpu", 2) == TaskShape(cpus=8, gpus=0)  # at most the smallest node's cores


def _flaky(inp, flag: str) -> str:
    """Raises a transient error while the flag file is there (removing it): fails once."""
    if os.path.exists(flag):
        os.remove(flag)
        raise ConnectionError("the first attempt fails")
    return "ok"


def _bad(inp, log: str) -> None:
    """Bad input: notes each attempt, then raises InputError."""
    with open(log, "a") as f:
        f.write("attempt\n")
    raise InputError(f"{inp.path}: not an image")


def test_transient_errors_are_retried_bad_input_is_not(cluster, tmp_path):
    flag, log = tmp_path / "flag", tmp_path / "attempts"
    flag.touch()
    inp = input_ref(flag)
    one = TaskShape(cpus=1, gpus=0)
    with Tasks() as tasks:
        tasks.submit("flaky", remote(_flaky, one, retries=2), inp, str(flag))
        tasks.submit("bad", remote(_bad, one, retries=2), inp, str(log))
        results = {tag: (value, error) for tag, value, error in tasks.gather()}
    assert results["flaky"] == ("ok", None) and not flag.exists()  # failed, retried, done
    value, error = results["bad"]
    assert isinstance(error, InputError) and str(error) == f"{flag}: not an image"
    assert log.read_text() == "attempt\n"  # once only


def test_an_input_a_node_lacks_is_sent(cluster, tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 5000)
    inp = input_ref(src)
    with local_input(inp) as path:
        assert path == src
    src.write_bytes(b"y" * 5000)  # another file under that name: not used
    with local_input(inp) as path:
        assert path is None
    sent = type(inp)("/nowhere/a.bin", inp.identity, [ray.put(b"x" * 5000)])
    with local_input(sent) as path:
        assert path.name == "a.bin" and path.read_bytes() == b"x" * 5000
    assert not path.exists()


# ----------------------------------------------------------------------------- videos


@pytest.mark.parametrize("send", [False, True])
def test_ray_chunks_give_the_frames_of_a_local_run(cluster, gop5, tmp_path, debander, send):
    local, remote_ = tmp_path / "local.mkv", tmp_path / "ray.mkv"
    deband_video_chunked(gop5, local, debander, FFV1, QUARTER, progress=False)
    report = deband_video_ray(gop5, remote_, debander, FFV1, QUARTER, ClusterOptions(send_inputs=send), False)
    assert report.frames_out == report.frames_in == 20
    assert same_frames(remote_, local) and not same_frames(remote_, gop5)  # restored, identically
    assert work_folders(tmp_path) == [] and not list(tmp_path.glob(".*partial*"))


def test_a_chunk_task_keeps_nothing_on_disk(gop5, tmp_path, monkeypatch):
    """Ray kills the workers of a driver that goes away (SIGTERM to the command): whatever a
    chunk task has on disk then stays there. So it has nothing there."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen = []

    class Looking:  # the identity, looking at the disk while the task runs
        def restore_batch(self, rgb):
            seen.append(sorted(p.name for p in tmp_path.rglob("*")))
            return rgb

    monkeypatch.setattr(video_cluster, "worker_restorer", lambda spec: Looking())
    plan = plan_chunks(*scan_keyframes(gop5, FFV1), 0.2)
    result, data = video_cluster._chunk_task(input_ref(gop5), 1, None, FFV1, probe(gop5), plan[1],
                                             torch.get_num_threads())
    assert seen == [["gop5.mkv", "tmp"]]
    assert result.frames == 5 and hashlib.sha256(data).hexdigest() == result.sha256


def test_chunks_made_locally_are_reused_by_ray_and_back(cluster, gop5, tmp_path, debander, caplog, monkeypatch):
    whole, dst = tmp_path / "whole.mkv", tmp_path / "out.mkv"
    deband_video_chunked(gop5, whole, debander, FFV1, QUARTER, progress=False)
    with pytest.raises(KeyboardInterrupt):  # local: two chunks made
        deband_video_chunked(gop5, dst, stop_at(debander, 2), FFV1, QUARTER, progress=False)
    with caplog.at_level(logging.INFO):
        deband_video_ray(gop5, dst, debander, FFV1, QUARTER, progress=False)
    assert "resuming, 2 of 4 chunks already made" in caplog.text
    assert same_frames(dst, whole) and work_folders(tmp_path) == []

    kept, real = [], video_cluster.add_chunk  # Ray, interrupted after its second chunk here

    def add_then_stop(run, result):
        if len(kept) == 2:
            raise KeyboardInterrupt
        real(run, result)
        kept.append(result.index)

    monkeypatch.setattr(video_cluster, "add_chunk", add_then_stop)
    dst.unlink()
    with pytest.raises(KeyboardInterrupt):
        deband_video_ray(gop5, dst, debander, FFV1, QUARTER, progress=False)
    assert not dst.exists() and len(work_folders(tmp_path)) == 1
    rerun = stop_at(debander, None)
    deband_video_chunked(gop5, dst, rerun, FFV1, QUARTER, progress=False)  # local: the other two
    assert rerun.calls == 2 and same_frames(dst, whole)


def test_a_folder_of_videos(cluster, tmp_path, debander):
    films = tmp_path / "films"
    films.mkdir()
    make_clip(films / "a.mkv", n=20, codec="ffv1", gop=5)
    make_clip(films / "b.mkv", n=10, codec="ffv1", gop=5)
    (films / "c.mp4").write_bytes(b"not a video")
    local = deband_library(films, tmp_path / "local", debander, FFV1, QUARTER, progress=False)
    report = deband_library_ray(films, tmp_path / "ray", debander, FFV1, QUARTER, progress=False)
    assert [(s.name, d.name) for s, d, _ in report.done] == [("a.mkv", "a.mkv"), ("b.mkv", "b.mkv")]
    assert [(s.name, str(e)) for s, e in report.failed] == [(s.name, str(e)) for s, e in local.failed]
    for name, n in (("a.mkv", 20), ("b.mkv", 10)):
        made = tmp_path / "ray" / name
        assert same_frames(made, tmp_path / "local" / name) and len(frames(made)) == n
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == ["a.mkv", "b.mkv"]


# ----------------------------------------------------------------------------- images and the CLI


def test_images_match_a_local_batch_and_a_bad_one_fails_once(cluster, tmp_path, debander):
    inputs = images(tmp_path / "in") + [tmp_path / "in" / "zz.png"]
    inputs[-1].write_bytes(b"\x89PNG broken")
    opts = ImageOptions(compare=True)
    local = run_batch(inputs, tmp_path / "local", debander, opts, progress=False)
    report = run_batch_ray(inputs, tmp_path / "ray", debander, opts, ClusterOptions(send_inputs=True), False)
    assert [p.name for p in report.written] == [p.name for p in local.written] == ["im0.png", "im1.png", "im2.png"]
    assert [(s, str(e), type(e)) for s, e in report.failed] == [(s, str(e), type(e)) for s, e in local.failed]
    for name in sorted(os.listdir(tmp_path / "local")):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    assert sorted(os.listdir(tmp_path / "ray")) == sorted(os.listdir(tmp_path / "local"))


def test_cli_ray_on_images_and_a_video(cluster, tmp_path, tiny_weights, gop5):
    folder = images(tmp_path / "in", 2)[0].parent
    (folder / "bad.png").write_bytes(b"not an image")
    local = cli("image", folder, "-o", tmp_path / "local", "--weights", tiny_weights)
    ray_run = cli("image", folder, "-o", tmp_path / "ray", "--weights", tiny_weights, "--ray", cluster)
    assert ray_run.returncode == local.returncode == 4, ray_run.stderr  # UnsupportedError
    assert ray_run.stderr.splitlines()[-2:] == local.stderr.splitlines()[-2:]
    assert f"{folder / 'bad.png'}" in ray_run.stderr and ray_run.stdout == local.stdout.replace("local", "ray")
    for name in ("im0.png", "im1.png"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    args = ["video", gop5, "--codec", "ffv1", "--chunk", "0.2", "--weights", tiny_weights]
    run = cli(*args, "-o", tmp_path / "ray.mkv", "--ray", cluster)
    assert run.returncode == 0, run.stderr
    local = tmp_path / "local.mkv"
    deband_video_chunked(gop5, local, Debander.load(tiny_weights, "cpu"), VideoOptions(codec="ffv1"), QUARTER)
    assert same_frames(tmp_path / "ray.mkv", local)


@pytest.mark.parametrize("extra", [["--jobs", "2"], ["--only-banded", "5"]])
def test_cli_ray_refuses_what_needs_this_machine(tmp_path, gop5, extra, capsys):
    from deband.cli import main

    assert main(["video", str(gop5), "-o", str(tmp_path / "out.mkv"), "--ray", *extra]) == 2
    assert extra[0] in capsys.readouterr().err and not (tmp_path / "out.mkv").exists()


def test_sigterm_cancels_the_tasks_and_keeps_finished_chunks(cluster, tmp_path):
    src = make_clip(tmp_path / "in.mkv", n=150, size=(128, 96), codec="ffv1", gop=5)
    dst = tmp_path / "out.mkv"
    proc = subprocess.Popen([sys.executable, "-m", "deband.cli", "video", str(src), "-o", str(dst), "--codec", "ffv1",
                             "--chunk", "0.2", "--ray", cluster], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300  # the first chunk, on a loaded machine, can take a minute or more
        while not (finished := list(tmp_path.glob(".out.mkv.deband-work-*/chunk-*.mp4"))):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert finished and proc.poll() is None, "no chunk finished before the run ended or the deadline"
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; no partial output was left" in err
    (work,) = work_folders(tmp_path)
    assert not dst.exists() and not list(tmp_path.glob(".*partial*")) and not list(work.glob(".*partial*"))
    assert 1 <= len(list(work.glob("chunk-*.mp4"))) < 30

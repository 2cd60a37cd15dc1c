"""A resumable chunked run: plan, deband the chunks not yet done (in worker processes when
asked), join, tidy up.

`deband_video_chunked` gives the same file as `deband_video` (up to the encoder's choices
at chunk starts, see `deband.video.chunks`) but can be stopped at any moment, Ctrl-C,
SIGTERM, kill -9 or a power cut, and rerun: only chunks without a verified file in the work
folder (`deband.video.resume`) are made again. Nothing stands under the output's name
until the join is complete.
"""

from __future__ import annotations

import ctypes
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import av
import torch
from tqdm import tqdm

from deband.io.outputs import atomic_output
from deband.video.chunks import (
    ChunkResult,
    Keyframes,
    check_container,
    encode_chunk,
    join_chunks,
    plan_chunks,
    scan_keyframes,
)
from deband.video.options import Restorer, VideoOptions, VideoReport
from deband.video.pipeline import check_paths, output_error
from deband.video.resume import WorkFolder, work_key
from deband.video.streams import Probe, probe

log = logging.getLogger(__name__)

_TIMES = ("decode_s", "model_s", "encode_s")
_PR_SET_PDEATHSIG = 1  # prctl option: a signal sent to this process when its parent dies


@dataclass(frozen=True)
class ChunkOptions:
    seconds: float = 30.0  # chunk length aimed at, cut at the nearest keyframes; 0: one chunk
    jobs: int = 1  # chunks made at once, each in a worker process with cores // jobs threads
    fresh: bool = False  # discard what an earlier run of the same job left

    def __post_init__(self) -> None:
        if not 0 <= self.seconds < math.inf:
            raise ValueError(f"chunk length must be a finite number of seconds >= 0, got {self.seconds}")
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {self.jobs}")


@dataclass(frozen=True)
class Job:
    """What every chunk of one run shares."""

    src: Path
    work: WorkFolder
    restorer: Restorer | None  # None on its way to a worker, which gets it pickled
    options: VideoOptions
    info: Probe


@dataclass
class Run:
    """One chunked run under way: what its chunks share, where it goes, what is left."""

    job: Job
    dst: Path
    keys: Keyframes
    todo: list[int]  # chunks without a verified file in the work folder
    report: VideoReport = field(default_factory=VideoReport)
    started: float = field(default_factory=time.perf_counter)


def deband_video_chunked(
    src: str | Path,
    dst: str | Path,
    debander: Restorer,
    options: VideoOptions | None = None,
    chunking: ChunkOptions | None = None,
    progress: bool = True,
) -> VideoReport:
    """Deband `src` into `dst` chunk by chunk, resuming an interrupted run of the same job.

    Same arguments, output and errors as `deband_video`, plus `chunking`. The work folder
    is removed once dst is written, and after an error; after KeyboardInterrupt (Ctrl-C,
    SIGTERM) it is kept when it holds finished chunks, for the next run.
    """
    chunking = chunking or ChunkOptions()
    run = start_run(src, dst, debander, options, chunking)
    plan = run.job.work.plan
    with cleanup_on_error(run):
        initial = len(plan) - len(run.todo)
        with tqdm(total=len(plan), initial=initial, unit="chunk", disable=not progress) as bar:
            _make_chunks(run.job, run.todo, chunking.jobs, lambda r: (add_chunk(run, r), bar.update(1)))
    return finish_run(run)


def start_run(
    src: str | Path, dst: str | Path, debander: Restorer, options: VideoOptions | None, chunking: ChunkOptions
) -> Run:
    """Check the paths and the container, plan the chunks, open the work folder (see
    `deband.video.resume`) and find the chunks an earlier run left."""
    options = options or VideoOptions()
    src, dst = check_paths(src, dst, options.overwrite)
    t0 = time.perf_counter()
    info = probe(src)
    check_container(src, dst, info, options)
    keys, span = scan_keyframes(src, options)
    plan = plan_chunks(keys, span, chunking.seconds)
    work = WorkFolder.open(dst, work_key(src, options, chunking.seconds, debander), plan, chunking.fresh)
    run = Run(Job(src, work, debander, options, info), dst, keys, [], started=t0)
    with cleanup_on_error(run):
        run.todo = [i for i in range(len(plan)) if i not in work.verified()]
        if len(run.todo) < len(plan):
            log.info("%s: resuming, %d of %d chunks already made", src.name, len(plan) - len(run.todo), len(plan))
    return run


def add_chunk(run: Run, result: ChunkResult) -> None:
    """Record a finished chunk in the manifest and add its times to the run's report."""
    run.job.work.record(result)
    run.report.frames_in += result.report.frames_in
    run.report.skipped_packets += result.report.skipped_packets
    for phase in _TIMES:
        setattr(run.report, phase, getattr(run.report, phase) + getattr(result.report, phase))


def finish_run(run: Run) -> VideoReport:
    """Join the chunks into dst (here), remove the work folder; the run's report."""
    job, report = run.job, run.report
    with cleanup_on_error(run):
        with atomic_output(run.dst, job.options.overwrite, sources=[job.src]) as tmp:
            report.frames_out = join_chunks(job.src, tmp, run.dst, job.work.files(), run.keys, job.info, job.options)
    job.work.remove()
    report.total_s = time.perf_counter() - run.started
    log.info("%s: %d frames at %.2f frame/s", run.dst.name, report.frames_out, report.fps)
    return report


@contextmanager
def cleanup_on_error(run: Run) -> Iterator[None]:
    """Whatever is raised inside tidies the work folder (`abandon`) on its way out."""
    try:
        yield
    except BaseException as e:
        error = abandon(run, e)
        if error is e:
            raise
        raise error from e


def abandon(run: Run, error: BaseException) -> BaseException:
    """Tidy the work folder of a run stopped by `error`; the exception to raise for it.

    After KeyboardInterrupt (Ctrl-C, SIGTERM) the folder is kept when it holds finished
    chunks; after an error it is removed, and an OSError (disk full, no permission) or an
    FFmpeg error (the encoder or muxer refused the video) becomes an OutputError naming dst."""
    work = run.job.work
    if isinstance(error, KeyboardInterrupt):
        if work.done:
            work.remove_partials()
        else:
            work.remove()
        return error
    work.remove()
    if isinstance(error, OSError | av.FFmpegError):
        return output_error(run.dst, error)
    return error


def _make_chunks(job: Job, todo: list[int], jobs: int, done: Callable[[ChunkResult], None]) -> None:
    """Make the chunks `todo`, here (jobs=1) or in `jobs` worker processes; `done` is called
    here with each result as it comes."""
    if jobs == 1 or len(todo) <= 1:
        for i in todo:
            done(_chunk(job, i))
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    blob = _portable(job.restorer)
    job = replace(job, restorer=None, options=replace(job.options, threads=threads))
    pool = ProcessPoolExecutor(
        min(jobs, len(todo)), multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(threads,)
    )
    try:
        pending = {pool.submit(_chunk_in_worker, job, blob, i) for i in todo}
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            for future in finished:
                done(future.result())  # a worker's error is raised here
    except BaseException:
        _stop(pool)
        job.work.remove_partials()
        raise
    pool.shutdown()


def _chunk(job: Job, index: int) -> ChunkResult:
    return encode_chunk(
        job.src, job.work.chunk_path(index), index, job.restorer, job.options, job.info, job.work.plan[index]
    )


def _portable(restorer: Restorer) -> tuple:
    """The restorer as it travels to a worker: a Debander as its weights and settings (plain
    bytes, so no tensor memory or file descriptor is shared with the workers); any other
    restorer (a test's stand-in) as itself."""
    from deband.restore.debander import Debander

    if isinstance(restorer, Debander):
        return ("debander", *restorer.portable(), str(restorer.device))
    return ("object", restorer)


_WORKER_RESTORER: dict[int, Restorer] = {}  # in a worker process: the restorer it has rebuilt


def _rebuilt(portable: tuple) -> Restorer:
    if portable[0] == "object":
        return portable[1]
    from deband.restore.debander import Debander

    key = hash(portable[1])  # the same weights bytes: build the model once per worker
    if key not in _WORKER_RESTORER:
        _WORKER_RESTORER.clear()
        _WORKER_RESTORER[key] = Debander.from_portable(portable[1], portable[2], torch.device(portable[3]))
    return _WORKER_RESTORER[key]


def _chunk_in_worker(job: Job, restorer: tuple, index: int) -> ChunkResult:
    return _chunk(replace(job, restorer=_rebuilt(restorer)), index)


def _init_worker(threads: int) -> None:
    """In each worker: Ctrl-C is left to the parent (which stops the workers), a worker dies
    with its parent (kill -9 of the command, Linux only), and takes its share of the cores.
    tqdm gets a thread lock: its default also makes a named semaphore, which a worker stopped
    by `_stop` cannot unlink (Python then warns of a leaked semaphore at exit)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    torch.set_num_threads(threads)
    tqdm.set_lock(threading.RLock())


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now: cancel what has not started, terminate what runs."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join()
    pool.shutdown(wait=True)  # the pool's thread sees the workers gone and frees its queues

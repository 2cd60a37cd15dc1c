"""Chunked runs over a Ray cluster: every chunk of every video a task, joined here.

The driver (this process) plans each video (`deband.video.jobs.start_run`: keyframes, chunk
plan, work folder, chunks an earlier run left), submits one task per chunk still to make,
and writes each finished chunk, sent back as bytes and checked against its sha256, into the
same work folder and manifest as a local run: a Ray run resumes a local one and the other
way round. A video is joined here as soon as its last chunk is in, while the cluster goes on
with the others. See `deband.cluster.tasks` for what travels to the workers, retries and cancelling.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from pathlib import Path

import torch

from deband.cluster.tasks import (
    NEED_INPUT,
    ClusterOptions,
    InputRef,
    RestorerSpec,
    Tasks,
    bar,
    input_ref,
    local_input,
    remote,
    ship_restorer,
    task_shape,
    worker_restorer,
)
from deband.errors import ClusterError, DebandError
from deband.io.outputs import atomic_output
from deband.video.chunks import ChunkResult, encode_chunk_in_memory
from deband.video.jobs import ChunkOptions, Run, abandon, add_chunk, finish_run, start_run
from deband.video.library import LibraryReport, plan_library
from deband.video.options import Restorer, VideoOptions, VideoReport
from deband.video.streams import Probe, Span

log = logging.getLogger(__name__)


def deband_video_ray(
    src: str | Path,
    dst: str | Path,
    debander: Restorer,
    options: VideoOptions | None = None,
    chunking: ChunkOptions | None = None,
    cluster: ClusterOptions | None = None,
    progress: bool = True,
) -> VideoReport:
    """`deband_video_chunked` with the chunks made as tasks of the connected Ray cluster
    (`deband.cluster.tasks.connect`); the same output, errors and work folder. `chunking.jobs`
    is not used: the cluster's free resources decide how many chunks run at once."""
    report = deband_videos_ray([(Path(src), Path(dst))], debander, options, chunking, cluster, progress, False)
    return report.done[0][2]


def deband_library_ray(
    src_dir: str | Path,
    out_dir: str | Path,
    debander: Restorer,
    options: VideoOptions | None = None,
    chunking: ChunkOptions | None = None,
    cluster: ClusterOptions | None = None,
    progress: bool = True,
) -> LibraryReport:
    """`deband_library` with the chunks of all its videos as tasks of the Ray cluster."""
    todo, report = plan_library(src_dir, out_dir, (options or VideoOptions()).overwrite)
    made = deband_videos_ray(todo, debander, options, chunking, cluster, progress, True)
    order = {src: i for i, (src, _) in enumerate(todo)}
    report.done = sorted(made.done, key=lambda d: order[d[0]])
    report.failed += sorted(made.failed, key=lambda f: order[f[0]])  # after those refused before the work
    return report


def deband_videos_ray(
    pairs: list[tuple[Path, Path]],
    debander: Restorer,
    options: VideoOptions | None,
    chunking: ChunkOptions | None,
    cluster: ClusterOptions | None,
    progress: bool,
    keep_going: bool,
) -> LibraryReport:
    """Make each (src, dst) of pairs; a video's failure is recorded in the report and the
    others go on (keep_going), or is raised at once. KeyboardInterrupt stops everything,
    keeping each work folder that holds finished chunks."""
    options, chunking, cluster = options or VideoOptions(), chunking or ChunkOptions(), cluster or ClusterOptions()
    spec = ship_restorer(debander, task_shape(cluster.device, 1).device)
    keyed = replace(debander, device=torch.device(spec.device))  # the work key names the tasks' device
    report, runs, left = LibraryReport(), [], {}  # left: chunks still to come, by video
    try:
        for src, dst in pairs:
            try:
                runs.append(start_run(src, dst, keyed, options, chunking))
                left[len(runs) - 1] = set(runs[-1].todo)
            except (DebandError, OSError) as e:
                if not keep_going:
                    raise
                report.failed.append((src, e))
        _make(runs, left, spec, options, cluster, progress, report, keep_going)
    except BaseException as e:
        for k in left:
            abandon(runs[k], e)
        raise
    return report


def _make(runs: list[Run], left: dict[int, set[int]], spec: RestorerSpec, options: VideoOptions,
          cluster: ClusterOptions, progress: bool, report: LibraryReport, keep_going: bool) -> None:
    """Submit every chunk still to make, keep each as it comes, join each video when complete."""
    shape = task_shape(cluster.device, sum(map(len, left.values())))
    fn = remote(_chunk_task, shape, cluster.retries)
    opts = replace(options, threads=shape.cpus)
    total = sum(len(run.job.work.plan) for run in runs)
    with Tasks(cluster.send_inputs) as tasks, bar(total, total - sum(map(len, left.values())), "chunk", progress) as b:
        for k, run in enumerate(runs):
            inp, job = input_ref(run.job.src), run.job
            for i in run.todo:
                tasks.submit((k, i), fn, inp, i, spec, opts, job.info, job.work.plan[i], shape.cpus)
        for k in [k for k, todo in left.items() if not todo]:  # every chunk was there already
            _join(k, runs, left, report, keep_going)
        for (k, i), value, error in tasks.gather():
            if k not in left:  # its video has failed already
                continue
            try:
                if error is not None:
                    raise error
                _keep(runs[k], *value)
            except (DebandError, OSError) as e:
                tasks.cancel(lambda tag, k=k: tag[0] == k)
                del left[k]
                _failed(runs[k], abandon(runs[k], e), report, keep_going)
                continue
            b.update(1)
            left[k].discard(i)
            if not left[k]:
                _join(k, runs, left, report, keep_going)


def _join(k: int, runs: list[Run], left: dict[int, set[int]], report: LibraryReport, keep_going: bool) -> None:
    """Join video k here (its work folder is tidied by finish_run whatever happens)."""
    del left[k]
    try:
        report.done.append((runs[k].job.src, runs[k].dst, finish_run(runs[k])))
    except (DebandError, OSError) as e:
        _failed(runs[k], e, report, keep_going)


def _failed(run: Run, error: BaseException, report: LibraryReport, keep_going: bool) -> None:
    if not keep_going:
        raise error
    log.warning("%s: failed (%s)", run.job.src.name, error)
    report.failed.append((run.job.src, error))


def _keep(run: Run, result: ChunkResult, data: bytes) -> None:
    """Write a chunk that came back into the work folder and record it in the manifest."""
    if hashlib.sha256(data).hexdigest() != result.sha256:
        raise ClusterError(f"{run.job.src}: chunk {result.index} arrived damaged from the Ray cluster")
    with atomic_output(run.job.work.chunk_path(result.index), overwrite=True) as tmp:
        tmp.write_bytes(data)
    add_chunk(run, result)


def _chunk_task(inp: InputRef, index: int, spec: RestorerSpec, options: VideoOptions, info: Probe, span: Span,
                threads: int) -> tuple[ChunkResult, bytes] | str:
    """In a worker: deband one chunk in memory (Ray kills the workers of a driver that goes
    away, so a file would be left behind); its result and bytes."""
    torch.set_num_threads(threads)
    with local_input(inp) as src:
        if src is None:
            return NEED_INPUT
        return encode_chunk_in_memory(src, index, worker_restorer(spec), options, info, span)

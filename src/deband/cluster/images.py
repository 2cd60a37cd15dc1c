"""A folder of images on a Ray cluster: each file one task, written back here (`deband image --ray`)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

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
from deband.errors import DebandError
from deband.io.outputs import atomic_output, check_output
from deband.restore.images import compare_path, plan_batch, process_image


def run_batch_ray(inputs: list[Path], out: Path, debander: Any, opts: Any, cluster: ClusterOptions,
                  progress: bool = True):
    """`deband.restore.images.run_batch` with one Ray task per image: the same outputs (written here)
    and the same BatchReport, in input order."""
    pairs, report = plan_batch(inputs, out, opts)  # the report starts with what was skipped or refused
    shape = task_shape(cluster.device, len(pairs))
    spec = ship_restorer(debander, shape.device)
    fn = remote(_image_task, shape, cluster.retries)
    results: dict[int, Path | BaseException] = {}
    with Tasks(cluster.send_inputs) as tasks:
        for i, (src, dst) in enumerate(pairs):
            try:
                check_output(dst, opts.overwrite, sources=[src])  # before the work, as process_image
                tasks.submit(i, fn, input_ref(src), str(dst), spec, opts, shape.cpus)
            except DebandError as e:
                results[i] = e
        with bar(len(pairs), len(results), "image", progress) as b:
            for i, value, error in tasks.gather():
                results[i] = error or _write_image(*pairs[i], value, opts.overwrite)
                b.update(1)
    for i, (src, _) in enumerate(pairs):
        if isinstance(results[i], BaseException):
            report.failed.append((src, results[i]))
        else:
            report.written.append(results[i])
    return report


def _write_image(src: Path, dst: Path, value: tuple[bytes, bytes | None], overwrite: bool) -> Path | DebandError:
    """Write a task's image (and comparison) here; dst, or the error that stopped it."""
    image, compare = value
    try:
        with atomic_output(dst, overwrite, sources=[src]) as tmp:
            tmp.write_bytes(image)
        if compare is not None:
            with atomic_output(compare_path(dst), overwrite, sources=[src]) as tmp:
                tmp.write_bytes(compare)
    except DebandError as e:
        return e
    return dst


def _image_task(inp: InputRef, dst: str, spec: RestorerSpec, opts: Any, threads: int) -> tuple | str:
    """In a worker: restore one image into a temporary folder; its bytes (and the comparison's)."""
    torch.set_num_threads(threads)
    with local_input(inp) as src, tempfile.TemporaryDirectory(prefix="deband-out-") as folder:
        if src is None:
            return NEED_INPUT
        out = Path(folder) / Path(dst).name
        try:
            process_image(src, out, worker_restorer(spec), replace(opts, overwrite=False))
        except DebandError as e:  # named as the driver names it
            raise type(e)(str(e).replace(str(out), dst)) from None
        compare = out.with_name(out.stem + "-compare.png")
        return out.read_bytes(), compare.read_bytes() if compare.is_file() else None

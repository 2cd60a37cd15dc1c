"""Work spread over a Ray cluster: connecting, task sizes, the restorer and inputs sent to the
workers, and tasks gathered as they finish. The jobs built on it: `deband.cluster.images`
(a folder of images, whole files as tasks) and `deband.cluster.video` (chunks of videos).

Ray is an optional extra (`pip install 'deband[cluster]'`); this module imports it inside
its functions. What a task needs travels with it, so the nodes need not share a filesystem:

- The restorer goes as the bytes of its .safetensors weights (put once in Ray's object
  store) and its settings; each worker process builds the Debander the first time it needs
  it and keeps it (`_WORKER_RESTORER`) for the tasks that follow. Plain tasks, not actors:
  Ray then schedules, retries and cancels each piece of work on its own.
- An input goes as its path plus its size and a hash of its ends. A worker that finds the
  same file under that path reads it there; one that does not answers NEED_INPUT, and the
  driver sends the whole file through the object store (once per input) and submits again.
- Outputs come back as bytes and are written by the driver, through `deband.io.outputs`.

Retries: a task whose worker or node dies is run again up to `retries` times, and so is
one that raised a transient error (TRANSIENT); bad input (a DebandError) fails at once.
Interrupts: leaving `gather` by an error cancels the tasks still pending; after Ctrl-C or
SIGTERM the driver's disconnect stops them.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from deband.errors import ClusterError, DebandError
from deband.io.outputs import input_identity

log = logging.getLogger(__name__)

NEED_INPUT = "deband: input not on this node"  # a task's answer when it cannot read its input
TRANSIENT = (ConnectionError, TimeoutError)  # errors worth another try (on any node)
MAX_THREADS = 8  # CPU tasks get at most this many cores (torch threads, encoder threads)
WAIT_S = 0.5  # longest wait for a task in one ray.wait, so that signals are seen
CONNECT_S = 5.0  # longest wait for a cluster's address to answer
CANCEL_WAIT_S = 3.0  # longest wait for cancelled tasks to stop


@dataclass(frozen=True)
class ClusterOptions:
    address: str | None = None  # None: a running local cluster, else a new one here; or "host:6379", "ray://host:10001"
    device: str = "auto"  # "auto": GPU tasks when the cluster has GPUs; "cuda": GPU tasks; "cpu"
    retries: int = 3  # runs again after a worker or node died or a transient error
    send_inputs: bool = False  # send every input through the object store, without trying its path first

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")


# ----------------------------------------------------------------------------- connecting


@contextmanager
def connect(address: str | None = None) -> Iterator[None]:
    """Connected to a Ray cluster while inside: the one this process is already connected
    to (left connected), the one at `address`, or with none a cluster running on this
    machine, else a new one on this machine's cores, shut down on leaving."""
    import ray

    if ray.is_initialized():
        yield
        return
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    with _own_sigterm():
        _init(ray, address, quiet)
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def _own_sigterm() -> Iterator[None]:
    """ray.init makes SIGTERM exit at once; put back the handler it replaced, so that
    SIGTERM cleans up as Ctrl-C does (`deband.io.outputs.terminate_as_interrupt`)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _init(ray: Any, address: str | None, quiet: dict) -> None:
    if address is not None:
        check_reachable(address)
    try:
        if address is None:
            try:
                ray.init(address="auto", **quiet)
                log.info("joined the Ray cluster running on this machine")
            except ConnectionError:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
                log.info("started a Ray cluster on this machine")
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError, ImportError) as e:
        raise ClusterError(f"cannot reach the Ray cluster at {address or 'this machine'} ({e})") from None


def check_reachable(address: str) -> None:
    """Refuse at once an address nothing answers at (Ray itself would retry for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"{address}: not a Ray address (HOST:PORT or ray://HOST:PORT)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_S).close()
    except OSError as e:
        raise ClusterError(f"cannot reach the Ray cluster at {address} ({e.strerror or e})") from None


# ----------------------------------------------------------------------------- task size


@dataclass(frozen=True)
class TaskShape:
    """What one task asks the cluster for, and how many threads it then uses."""

    cpus: int
    gpus: int

    @property
    def device(self) -> str:
        return "cuda" if self.gpus else "cpu"


def task_shape(device: str, tasks: int) -> TaskShape:
    """One GPU a task when the cluster has GPUs and `device` allows them ("auto", "cuda");
    else CPU tasks of an even share of the cluster's cores, at most MAX_THREADS and at most
    the smallest node's, so that every task fits on every node."""
    import ray

    res = ray.cluster_resources()
    total_cpus, gpus = int(res.get("CPU", 1)), res.get("GPU", 0)
    node_cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    smallest = min([c for c in node_cpus if c > 0] or [1])
    if device in ("auto", "cuda") and gpus > 0:
        return TaskShape(cpus=max(1, min(smallest, MAX_THREADS, int(total_cpus // gpus))), gpus=1)
    if device == "cuda":
        raise ClusterError("device 'cuda' was asked for, but the Ray cluster reports no GPU")
    return TaskShape(cpus=max(1, min(smallest, MAX_THREADS, total_cpus // max(tasks, 1))), gpus=0)


def remote(fn: Callable, shape: TaskShape, retries: int):
    """fn as a Ray task of this shape, retried after worker deaths and TRANSIENT errors."""
    import ray

    return ray.remote(fn).options(
        num_cpus=shape.cpus, num_gpus=shape.gpus, max_retries=retries, retry_exceptions=list(TRANSIENT)
    )


# ----------------------------------------------------------------------------- the restorer


@dataclass(frozen=True)
class RestorerSpec:
    """A Debander as it travels to the workers: no pickled model."""

    key: str  # names this model and settings in a worker's cache
    weights: list  # [ObjectRef] of the .safetensors bytes; in a list so Ray fetches it only when needed
    settings: dict  # the Debander's fields besides model and device
    device: str  # "cpu" | "cuda"


_WORKER_RESTORER: dict[str, Any] = {}  # in a Ray worker process: the one Debander it has built


def ship_restorer(debander: Any, device: str) -> RestorerSpec:
    """Put the Debander's weights into the object store; its spec for tasks on `device`."""
    import hashlib

    import ray

    from deband.restore.debander import Debander

    if not isinstance(debander, Debander):
        raise TypeError(f"a Ray run needs a deband.restore.debander.Debander, got {type(debander).__name__}")
    data, settings = debander.portable()
    key = hashlib.sha256(data + repr(sorted(settings.items())).encode() + device.encode()).hexdigest()
    return RestorerSpec(key, [ray.put(data)], settings, device)


def worker_restorer(spec: RestorerSpec):
    """The Debander of spec, built once per worker process (on its GPU for a GPU task)."""
    import ray

    from deband.restore.debander import Debander

    if spec.key not in _WORKER_RESTORER:
        _WORKER_RESTORER.clear()  # one model per process
        data = ray.get(spec.weights[0])
        _WORKER_RESTORER[spec.key] = Debander.from_portable(data, spec.settings, torch.device(spec.device))
    return _WORKER_RESTORER[spec.key]


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputRef:
    """An input file as a task receives it."""

    path: str  # as the driver names it
    identity: dict  # size and sha256 of the first and last MiB
    data: list | None = None  # [ObjectRef] of the whole file, once a worker could not read the path


def input_ref(path: Path) -> InputRef:
    ident = input_identity(path)
    return InputRef(str(path), {k: ident[k] for k in ("size", "ends_sha256")})


@contextmanager
def local_input(inp: InputRef) -> Iterator[Path | None]:
    """Inside a task: the input as a file on this node, or None when this node has no such
    file and none was sent. A sent input is written to a temporary folder; error messages
    then name the input as the driver does."""
    import ray

    if inp.data is None:
        path = Path(inp.path)
        yield path if path.is_file() and input_ref(path).identity == inp.identity else None
        return
    with tempfile.TemporaryDirectory(prefix="deband-input-") as folder:
        local = Path(folder) / Path(inp.path).name
        local.write_bytes(ray.get(inp.data[0]))
        try:
            yield local
        except DebandError as e:
            raise type(e)(str(e).replace(str(local), inp.path)) from None


# ----------------------------------------------------------------------------- gathering


@dataclass
class _Pending:
    tag: Any
    fn: Any  # the remote function
    args: tuple  # args[0] is the task's InputRef


class Tasks:
    """Tasks in flight, each with a tag; `gather` yields them as they finish. Leaving the
    `with` block cancels those still pending (Ctrl-C, SIGTERM, an error)."""

    def __init__(self, send_inputs: bool = False):
        self.pending: dict[Any, _Pending] = {}  # ObjectRef -> task
        self.sent: dict[str, list] = {}  # input path -> [ObjectRef] of its bytes
        self.send_inputs = send_inputs

    def __enter__(self) -> Tasks:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        import ray

        if kind is not None and issubclass(kind, KeyboardInterrupt):
            # Ctrl-C or SIGTERM: the driver disconnects next and Ray stops its tasks then.
            # ray.cancel here races with replies already on their way, which Ray 2.60's core
            # worker can abort the whole process on ("task that was not pending").
            self.pending.clear()
            return
        left = list(self.pending)
        self.cancel()
        if left:  # a moment for the cancelled tasks to tidy their temporary folders
            ray.wait(left, num_returns=len(left), timeout=CANCEL_WAIT_S)

    def submit(self, tag: Any, fn: Any, inp: InputRef, *args: Any) -> None:
        if self.send_inputs:
            inp = self._with_data(inp)
        self.pending[fn.remote(inp, *args)] = _Pending(tag, fn, (inp, *args))

    def cancel(self, tags: Callable[[Any], bool] = lambda tag: True) -> None:
        """Cancel the pending tasks whose tag passes (a running one gets KeyboardInterrupt)."""
        import ray

        for ref, task in list(self.pending.items()):
            if tags(task.tag):
                ray.cancel(ref)
                del self.pending[ref]

    def gather(self) -> Iterator[tuple[Any, Any, BaseException | None]]:
        """(tag, result, None) or (tag, None, error) for each task as it finishes. A task
        that answered NEED_INPUT is submitted again with its input's bytes."""
        import ray

        while self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=WAIT_S)
            for ref in ready:
                task = self.pending.pop(ref)
                try:
                    value = ray.get(ref)
                except ray.exceptions.RayError as e:
                    yield task.tag, None, _cause(e, task.args[0].path)
                    continue
                if isinstance(value, str) and value == NEED_INPUT:
                    log.info("%s: not on a worker's node; sending it through the object store", task.args[0].path)
                    inp = self._with_data(task.args[0])
                    self.pending[task.fn.remote(inp, *task.args[1:])] = replace(task, args=(inp, *task.args[1:]))
                else:
                    yield task.tag, value, None

    def _with_data(self, inp: InputRef) -> InputRef:
        import ray

        if inp.path not in self.sent:
            self.sent[inp.path] = [ray.put(Path(inp.path).read_bytes())]
        return replace(inp, data=self.sent[inp.path])


def _cause(error: BaseException, name: str) -> BaseException:
    """The task's own DebandError or OSError; anything else (a worker or node lost for
    good, a bug) as a ClusterError naming the input."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, DebandError | OSError | MemoryError):
        return cause
    first = str(cause or error).strip().splitlines()
    return ClusterError(f"{name}: the Ray task failed ({first[-1] if first else type(error).__name__})")


def bar(total: int, initial: int, unit: str, progress: bool) -> tqdm:
    return tqdm(total=total, initial=initial, unit=unit, file=sys.stderr, disable=not progress)

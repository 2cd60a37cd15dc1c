"""Stages of work in threads joined by small bounded queues, so that they overlap.

`Stages([("model", f), ("writer", g)])` runs f and g each in its own thread: the caller
`put`s items, f takes them in order and passes its results to g. PyAV and torch release
the GIL in their heavy calls, so a run is limited by its slowest stage rather than by the
sum of them. `Serial` has the same interface and runs every stage inline in the caller's
thread, one item after another.

Stopping: a failure anywhere stops every stage. The first exception raised by a stage
(any BaseException) sets a stop event; every wait on a queue is a short timed wait that
checks it, so no stage stays blocked on a full or empty queue, and the caller gets the
original exception back from its next `put` or from `close`. An exception in the caller's
thread (including KeyboardInterrupt) stops the stages on leaving the `with` block.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

Step = tuple[str, Callable[[Any], Any]]  # (thread name, item -> item for the next stage)
_END = object()  # after the last item


class Stopped(Exception):
    """Raised inside a stage's queue wait once the stages are stopping."""


class Stages:
    """Each step in its own thread, in order, joined by queues of `depth` items.

    On leaving the `with` block without `close` (an error), the stages are stopped; the
    last one is always waited for (it typically writes to a file the caller closes next),
    the earlier ones for up to `grace` seconds: one stuck in a call that never returns is
    left to end on its own (its thread is a daemon) and a warning is logged.
    """

    def __init__(self, steps: Sequence[Step], depth: int = 1, grace: float = 2.0, poll: float = 0.05):
        if not steps:
            raise ValueError("Stages needs at least one step")
        self.stop, self.poll, self.grace = threading.Event(), poll, grace
        self.failure: BaseException | None = None
        self._lock = threading.Lock()
        queues = [queue.Queue(depth) for _ in steps] + [None]
        self.inbox = queues[0]
        self.threads = [
            threading.Thread(target=self._work, args=(fn, queues[i], queues[i + 1]), name=name, daemon=True)
            for i, (name, fn) in enumerate(steps)
        ]

    def __enter__(self) -> Stages:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if any(t.is_alive() for t in self.threads):
            self.stop.set()
            self._join()

    def put(self, item: Any) -> None:
        """Queue an item for the first stage (waiting while its queue is full). Raises the
        first failure of any stage instead."""
        self.check()
        try:
            self._put(self.inbox, item)
        except Stopped:
            self.check()  # a stage failed: its exception, not ours
            raise

    def close(self) -> None:
        """Let every stage finish what is queued, wait for them, and raise the first failure."""
        self.put(_END)
        for t in self.threads:
            while t.is_alive():
                t.join(self.poll)  # timed: Ctrl-C is delivered while waiting
        self.check()

    def check(self) -> None:
        """Raise the first exception a stage raised, if any."""
        if self.failure is not None:
            raise self.failure

    def _work(self, fn: Callable[[Any], Any], inbox: queue.Queue, outbox: queue.Queue | None) -> None:
        try:
            while (item := self._get(inbox)) is not _END:
                result = fn(item)
                if outbox is not None:
                    self._put(outbox, result)
            if outbox is not None:
                self._put(outbox, _END)
        except Stopped:
            pass
        except BaseException as e:  # handed to the caller's thread
            with self._lock:
                self.failure = self.failure or e
            self.stop.set()

    def _get(self, q: queue.Queue) -> Any:
        while not self.stop.is_set():
            try:
                return q.get(timeout=self.poll)
            except queue.Empty:
                continue
        raise Stopped

    def _put(self, q: queue.Queue, item: Any) -> None:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=self.poll)
                return
            except queue.Full:
                continue
        raise Stopped

    def _join(self) -> None:
        deadline = time.monotonic() + self.grace
        for t in self.threads[:-1]:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("stage %s is still busy; left to end on its own", t.name)
        self.threads[-1].join()


class Serial:
    """The interface of `Stages`, every step run inline in the caller's thread."""

    def __init__(self, steps: Sequence[Step]):
        self.fns = [fn for _, fn in steps]

    def __enter__(self) -> Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def put(self, item: Any) -> None:
        for fn in self.fns:
            item = fn(item)

    def close(self) -> None:
        pass

    def check(self) -> None:
        pass

"""Writing outputs safely: every file deband writes goes through `atomic_output`.

A file is written under a hidden temporary name beside its destination
(`.NAME.partial-XXXXXXXX.EXT`, the extension kept because muxers and encoders choose
the format from it) and renamed over the destination only when complete. On any error,
KeyboardInterrupt or SIGTERM (see `terminate_as_interrupt`) the temporary file is removed,
so no half-written file ever stands under a final name. An existing destination is only
replaced when asked, and never when it is one of the inputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from deband.errors import OutputError, OutputExistsError, SameFileError

MIB = 1 << 20  # an input's fingerprint hashes its first and last MiB


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when both paths exist and name the same file (links and case folding included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(dst: str | Path, overwrite: bool = False, sources: Iterable[str | Path] = ()) -> Path:
    """Refuse an output that is an input, exists (unless `overwrite`) or has no folder.

    Raises SameFileError, OutputExistsError or OutputError; returns dst as a Path.
    """
    dst = Path(dst)
    if any(same_file(src, dst) for src in sources):
        raise SameFileError(f"{dst}: output would replace the input; choose another name")
    if dst.exists() and not overwrite:
        raise OutputExistsError(f"{dst}: already exists")
    if dst.exists() and dst.is_dir():
        raise OutputError(f"{dst}: is a folder")
    if not dst.parent.is_dir():
        raise OutputError(f"{dst.parent}: output folder does not exist")
    return dst


def _temporary_name(dst: Path) -> Path:
    """A fresh hidden name `.NAME.partial-XXXXXXXX.EXT` beside dst (nothing is made)."""
    return dst.parent / f".{dst.stem}.partial-{secrets.token_hex(4)}{dst.suffix}"


def _made(tmp: Path) -> bool:
    """Make tmp, empty, mode 0666 less umask: True, or False where that name exists already."""
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        return False
    except OSError as e:
        raise OutputError(f"{tmp.parent}: cannot write there ({e.strerror})") from None
    return True


@contextlib.contextmanager
def atomic_output(
    dst: str | Path, overwrite: bool = False, sources: Iterable[str | Path] = ()
) -> Iterator[Path]:
    """Yield a temporary path beside dst; rename it to dst on success, remove it on failure.

    The checks of `check_output` run first. Writing errors (OSError) pass through unchanged,
    for the caller to word; whatever is raised, the temporary file is gone afterwards. Its
    name is chosen before it is made, inside the block that removes it, so an interrupt at
    any instruction (a signal may reach the main thread through any other thread, whatever
    the main thread's mask) finds either nothing made or a file the block removes.
    """
    dst = check_output(dst, overwrite, sources)
    tmp = _temporary_name(dst)
    try:
        while not _made(tmp):
            tmp = _temporary_name(dst)
        yield tmp
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM (kill, timeout, systemd, docker stop) raises KeyboardInterrupt in
    the main thread, as Ctrl-C does, so that every `atomic_output` cleans up. The previous
    handler is put back on exit. Does nothing outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def input_identity(src: Path) -> dict:
    """The fingerprint of an input file: size, mtime_ns and a sha256 of its first and last MiB
    (what a rerun or a cluster node checks before it trusts a file by its path)."""
    st = src.stat()
    h = hashlib.sha256()
    with open(src, "rb") as f:
        h.update(f.read(MIB))
        f.seek(max(st.st_size - MIB, 0))
        h.update(f.read(MIB))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ends_sha256": h.hexdigest()}

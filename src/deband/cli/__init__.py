"""The `deband` command: parse, validate, call the library. Errors are one line and an exit code.

Library modules raise the typed errors of `deband.errors`; this package alone turns them into
exit codes (`EXIT_CODES`) and adds hints about its options (`describe`). Each command lives in
a module of its own (`image`, `video`, `train`) that adds its subcommands to the parser and
runs them; heavy modules (torch, PyAV, OpenCV, training) are imported inside the commands, so
`build_parser` stays light.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

from deband.cli.options import Parser, UsageError
from deband.errors import (
    BitDepthError,
    ClusterError,
    DebandError,
    InputError,
    OutputError,
    OutputExistsError,
    ResourceError,
    TooManyPixelsError,
    UnsupportedError,
)
from deband.io.outputs import terminate_as_interrupt

if TYPE_CHECKING:
    from deband.io.folders import FolderReport

# Exit codes, as documented in the README
USAGE = 2  # bad command line or option value
UNREADABLE = 3  # input missing, unreadable, truncated or corrupt
UNSUPPORTED = 4  # input readable but of a kind deband does not handle
OUTPUT = 5  # output exists, cannot be written, or the disk is full
RESOURCES = 6  # too large for --max-pixels, out of memory
INTERRUPTED = 130  # Ctrl-C or SIGTERM
BROKEN_PIPE = 141  # the reader of `deband video - -o -` closed the pipe (128 + SIGPIPE)

# the first entry whose type matches wins
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (UsageError, USAGE),
    (InputError, UNREADABLE),
    (UnsupportedError, UNSUPPORTED),
    (OutputError, OUTPUT),
    (OSError, OUTPUT),  # writing failed (disk full, no permission)
    (ResourceError, RESOURCES),
    (ClusterError, RESOURCES),
    (MemoryError, RESOURCES),
    (KeyboardInterrupt, INTERRUPTED),
)


def exit_code(error: BaseException) -> int:
    """The exit code for an error, from EXIT_CODES."""
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    return 1


def describe(error: DebandError) -> str:
    """The error's message plus a hint naming the option that gets around it, if one does."""
    if isinstance(error, OutputExistsError):
        return f"{error} (use --overwrite to replace it)"
    if isinstance(error, TooManyPixelsError):
        return f"{error} (raise it with --max-pixels)"
    if isinstance(error, BitDepthError):
        return f"{error} or --bit-depth 8"
    if isinstance(error, ResourceError):  # out of memory
        return f"{error} (try a smaller --tile)"
    return str(error)


def summarise(report: FolderReport, done: int, kind: str) -> None:
    """The last lines of a folder mode (`deband.io.folders`): the files it left out, and the tally."""
    if report.left_out:
        names = [p.name for p in report.left_out]
        more = f" and {len(names) - 8} more" if len(names) > 8 else ""
        print(f"left out (not {kind}): {', '.join(names[:8])}{more}")
    failed, skipped = len(report.failed), len(report.skipped)
    line = f"{done} done, {failed} failed, {skipped} skipped of {done + failed + skipped}"
    print(line + (" (skipped: made by an earlier run; --overwrite makes them again)" if skipped else ""))


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; each command module adds its own subcommands."""
    from deband.cli import export, image, serve, train, video

    p = Parser(prog="deband", description="Remove banding from images and videos.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    image.add_parsers(sub)
    video.add_parsers(sub)
    train.add_parsers(sub)
    export.add_parsers(sub)
    serve.add_parsers(sub)
    return p


def yielding_threads() -> None:
    """Have OpenMP's worker threads sleep, not spin, while they wait for work (unless the user
    set OMP_WAIT_POLICY). Spinning threads fight the encoder's threads and other programs for
    the cores: on a busy 2-core machine a network call took several times as long. Takes
    effect only before torch is imported, so the command calls it first."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    yielding_threads()
    if hasattr(signal, "SIGXFSZ"):  # a file-size limit becomes an OSError we report, not a crash
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    debug = "--debug" in argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        with terminate_as_interrupt():  # SIGTERM cleans up as Ctrl-C does
            args = build_parser().parse_args(argv)
            return args.run(args)
    except DebandError as e:
        if debug:
            raise
        print(f"deband: error: {describe(e)}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt as e:
        print("deband: interrupted; no partial output was left", file=sys.stderr)
        return exit_code(e)
    except MemoryError as e:
        print("deband: error: out of memory (try a smaller --tile)", file=sys.stderr)
        return exit_code(e)
    except OSError as e:
        if debug:
            raise
        print(f"deband: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return exit_code(e)


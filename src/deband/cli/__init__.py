"""The `deband` command: parse, validate, call the library. Errors are one line and an exit code.

Library modules raise the typed errors of `deband.errors`; this package alone turns them into
exit codes and one-line messages (`deband.cli.exits`). Each command lives in
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

from deband.cli.exits import describe, exit_code
from deband.cli.options import Parser
from deband.errors import DebandError
from deband.io.outputs import terminate_as_interrupt


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


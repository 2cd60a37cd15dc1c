"""Exit codes, and the one line a user reads for each error (`deband.cli.main` applies them).

Library modules raise the typed errors of `deband.errors`; only the command line turns them
into exit codes (`EXIT_CODES`) and adds hints about its options (`describe`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deband.cli.options import UsageError
from deband.errors import (
    BitDepthError,
    ClusterError,
    DebandError,
    InputError,
    OutputError,
    OutputExistsError,
    ResourceError,
    SettingError,
    TooManyPixelsError,
    UnsupportedError,
)

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
    (SettingError, USAGE),  # an option's value out of range
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
    if isinstance(error, SettingError):  # the library names the setting, the command line its option
        return f"argument --{error.setting.replace('_', '-')}: {error.problem}"
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

"""User-facing failures: one line of text and a documented exit code."""

from __future__ import annotations

USAGE = 2  # bad command line or option value
UNREADABLE = 3  # input missing, unreadable, truncated or corrupt
UNSUPPORTED = 4  # input readable but of a kind deband does not handle
OUTPUT = 5  # output exists, cannot be written, or the disk is full
RESOURCES = 6  # too large for --max-pixels, out of memory


class DebandError(Exception):
    """An error to show the user as one line, exiting with `code`."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code

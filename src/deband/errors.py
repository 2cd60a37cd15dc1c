"""What can go wrong for a user, as exception types.

Library code raises these with messages that name files and values; only `deband.cli`
turns them into exit codes and adds hints about command-line options. Messages are one
line and start with the file they concern where there is one.
"""

from __future__ import annotations


class DebandError(Exception):
    """Base of every failure a user can cause or fix (bad input, output, resources)."""


class SettingError(DebandError, ValueError):
    """A setting out of its range; `setting` names it ("steps", "strength", ...)."""

    def __init__(self, setting: str, problem: str):
        super().__init__(f"{setting}: {problem}")
        self.setting, self.problem = setting, problem

    def __reduce__(self):  # picklable (Ray hands errors back) despite the two arguments
        return type(self), (self.setting, self.problem)


class InputError(DebandError):
    """An input is missing, unreadable, truncated or corrupt."""


class UnsupportedError(DebandError):
    """An input is readable but of a kind deband does not handle."""


class OutputError(DebandError):
    """An output cannot be written: no folder, no permission, disk full, a bad suffix."""


class OutputExistsError(OutputError):
    """The output exists and replacing it was not asked for."""


class BitDepthError(OutputError):
    """The output's format cannot hold the pixels' bit depth (16 bits into JPEG)."""


class SameFileError(OutputError):
    """The output is one of the inputs."""


class ResourceError(DebandError):
    """Too large for the configured pixel limit, or out of memory."""


class TooManyPixelsError(ResourceError):
    """An image holds more pixels than the limit it was read with."""


class ClusterError(DebandError):
    """A Ray cluster cannot be reached, lacks what a run needs, or lost a task for good."""

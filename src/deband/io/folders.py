"""Folder modes (`deband image DIR -o OUT`, `deband video DIR -o OUT`): one policy for both.

* Inputs: files given by name, and the files directly inside a given folder whose suffix the
  command reads, in name order. Hidden files (an interrupted run's temporary files and work
  folders) are passed over; other files of the folder are listed as left out, so the command
  can say what it did not take.
* The output folder is never one of the input folders: a rerun would take the first run's
  outputs for inputs. It is created when missing, unless its name has a suffix (`-o two.png`
  is a file name, not a folder).
* Every file a job writes (its output and side outputs such as a comparison picture) is
  checked before any work starts: none may be an input, no two jobs may write the same file,
  and none is written over unless `overwrite`. A job whose files all exist was finished by an
  earlier run and is skipped, so a rerun carries on where the last one stopped; a job whose
  files exist only in part is refused.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from deband.errors import DebandError, OutputError, OutputExistsError, SameFileError
from deband.io.outputs import check_output, same_file


@dataclass(frozen=True)
class Job:
    """One input and the files made from it: its output first, then any side outputs."""

    src: Path
    outputs: tuple[Path, ...]

    @property
    def dst(self) -> Path:
        return self.outputs[0]


@dataclass
class FolderReport:
    """What a folder mode did not make, and why (the commands' reports add what they made)."""

    failed: list[tuple[Path, BaseException]] = field(default_factory=list)  # (src, error)
    skipped: list[tuple[Path, Path]] = field(default_factory=list)  # (src, its existing output)
    left_out: list[Path] = field(default_factory=list)  # files of an input folder not of the kind read


def gather(paths: Iterable[Path], suffixes: Collection[str], report: FolderReport) -> list[Path]:
    """Files as given, and the files directly inside given folders whose suffix (lower case) is
    in suffixes, by name; the folders' other files go to report.left_out, hidden ones nowhere."""
    inputs: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            inputs.append(path)
            continue
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        inputs += [p for p in files if p.suffix.lower() in suffixes]
        report.left_out += [p for p in files if p.suffix.lower() not in suffixes]
    return inputs


def output_folder(out: Path, input_folders: Iterable[Path]) -> Path:
    """Check that out can hold a folder mode's outputs and create it if missing.

    Raises SameFileError when out is one of input_folders, OutputError when it is a file,
    a missing name with a suffix (a file name) or cannot be created.
    """
    out = Path(out)
    if any(same_file(out, folder) for folder in input_folders):
        raise SameFileError(f"{out}: the output folder is the input folder; give another one")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file; the outputs of a folder or of several inputs need a folder")
    if not out.exists() and out.suffix:
        raise OutputError(f"{out}: a file name, but the outputs of a folder or of several inputs need a folder "
                          "(to use a folder whose name has a dot, create it first)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    return out


def plan(jobs: list[Job], overwrite: bool, skip_finished: bool, report: FolderReport) -> list[Job]:
    """The jobs to run, after every file of every job was checked (see the module docstring).

    Jobs refused (an output is an input, is a folder, has no folder, or exists without
    `overwrite`) go to report.failed; finished ones to report.skipped when `skip_finished`.
    Raises OutputError when two jobs would write one file.
    """
    check_distinct(jobs)
    sources = [job.src for job in jobs]
    todo = []
    for job in jobs:
        try:
            if is_finished(job, sources, overwrite, skip_finished):
                report.skipped.append((job.src, job.dst))
            else:
                todo.append(job)
        except DebandError as e:
            report.failed.append((job.src, e))
    return todo


def is_finished(job: Job, sources: list[Path], overwrite: bool, skip_finished: bool) -> bool:
    """True when every file of job exists and finished jobs are skipped; False when it is to
    be made. Raises SameFileError, OutputError or OutputExistsError when it may not be made."""
    for path in job.outputs:
        check_output(path, True, sources)  # an input or a folder is refused even with overwrite
    there = [path for path in job.outputs if path.exists()]
    if not there or overwrite:
        return False
    if skip_finished and len(there) == len(job.outputs):
        return True
    raise OutputExistsError(f"{there[0]}: already exists")


def check_distinct(jobs: list[Job]) -> None:
    """Raise OutputError when two jobs (or two files of one job) would write the same file."""
    seen: dict[Path, Path] = {}
    for job in jobs:
        for path in job.outputs:
            key = Path(os.path.abspath(path))
            if key in seen:
                raise OutputError(f"{seen[key]} and {job.src} would both be written to {path}")
            seen[key] = job.src

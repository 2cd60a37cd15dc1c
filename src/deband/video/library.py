"""A folder of videos: each one debanded into an output folder, resumably, past bad files.

Every file of the folder (not its subfolders) with a common video suffix is processed in
name order with `deband_video_chunked`. MP4, M4V, MOV and MKV inputs keep their container;
the others are written as .mkv (which holds whatever they carry). An output that already
exists is skipped unless `overwrite`; one whose run was interrupted resumes from its work
folder; a file that fails is recorded and the next one goes on. What is taken, skipped and
refused follows `deband.io.folders`, as for a folder of images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from deband.errors import DebandError, InputError
from deband.io.folders import FolderReport, Job, gather, output_folder, plan
from deband.video.jobs import ChunkOptions, deband_video_chunked
from deband.video.options import Restorer, VideoOptions, VideoReport

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".wmv", ".flv",
     ".3gp", ".ogv", ".vob"}
)
KEPT_CONTAINERS = frozenset({".mp4", ".m4v", ".mkv", ".mov"})  # the rest become .mkv


@dataclass
class LibraryReport(FolderReport):
    """What happened to each video of a folder: made (`done`), refused, skipped or left out."""

    done: list[tuple[Path, Path, VideoReport]] = field(default_factory=list)  # (src, dst, report)


def list_videos(folder: Path) -> list[Path]:
    """Video files directly inside folder, by name; hidden files (work folders, partial
    outputs) are left out."""
    return gather([folder], VIDEO_SUFFIXES, FolderReport())


def output_paths(inputs: list[Path], out_dir: Path) -> list[Path]:
    """One output per input in out_dir: same stem, a container that can hold its streams;
    two inputs that would meet under one name keep their whole names (a.avi.mkv)."""
    def name(p: Path) -> str:
        return p.stem + (p.suffix if p.suffix.lower() in KEPT_CONTAINERS else ".mkv")

    names = [name(p) for p in inputs]
    clash = {n for n in names if names.count(n) > 1}
    return [out_dir / (p.name + ".mkv" if n in clash and p.suffix.lower() not in KEPT_CONTAINERS else n)
            for p, n in zip(inputs, names)]


def deband_library(
    src_dir: str | Path,
    out_dir: str | Path,
    debander: Restorer,
    options: VideoOptions | None = None,
    chunking: ChunkOptions | None = None,
    progress: bool = True,
) -> LibraryReport:
    """Deband every video of src_dir into out_dir (created if missing). Raises InputError
    when the folder holds no video and OutputError when out_dir cannot be made; errors of
    single files are collected in the report. KeyboardInterrupt stops the whole run."""
    options = options or VideoOptions()
    todo, report = plan_library(src_dir, out_dir, options.overwrite)
    for src, dst in todo:
        try:
            report.done.append((src, dst, deband_video_chunked(src, dst, debander, options, chunking, progress)))
        except (DebandError, OSError) as e:
            log.warning("%s: failed (%s)", src.name, e)
            report.failed.append((src, e))
    return report


def plan_library(
    src_dir: str | Path, out_dir: str | Path, overwrite: bool
) -> tuple[list[tuple[Path, Path]], LibraryReport]:
    """The (input, output) pairs to make, and a report of what was left out, skipped (its
    output exists, unless `overwrite`) or refused before any work (the policy of
    `deband.io.folders`). Creates out_dir. Raises InputError when the folder holds no video and
    OutputError (SameFileError) when out_dir is src_dir, a file or cannot be made."""
    src_dir, out_dir, report = Path(src_dir), Path(out_dir), LibraryReport()
    videos = gather([src_dir], VIDEO_SUFFIXES, report)
    if not videos:
        raise InputError(f"{src_dir}: no video files found (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
    output_folder(out_dir, [src_dir])
    jobs = [Job(src, (dst,)) for src, dst in zip(videos, output_paths(videos, out_dir))]
    todo = plan(jobs, overwrite, True, report)
    return [(job.src, job.dst) for job in todo], report

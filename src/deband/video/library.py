"""A folder of videos: each one debanded into an output folder, resumably, past bad files.

Every file of the folder (not its subfolders) with a common video suffix is processed in
name order with `deband_video_chunked`. MP4, M4V, MOV and MKV inputs keep their container;
the others are written as .mkv (which holds whatever they carry). An output that already
exists is skipped unless `overwrite`; one whose run was interrupted resumes from its work
folder; a file that fails is recorded and the next one goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from deband.errors import DebandError, InputError, OutputError
from deband.video.jobs import ChunkOptions, deband_video_chunked
from deband.video.options import Restorer, VideoOptions, VideoReport

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".wmv", ".flv",
     ".3gp", ".ogv", ".vob"}
)
KEPT_CONTAINERS = frozenset({".mp4", ".m4v", ".mkv", ".mov"})  # the rest become .mkv


@dataclass
class LibraryReport:
    """What happened to each video of a folder."""

    done: list[tuple[Path, Path, VideoReport]] = field(default_factory=list)  # (src, dst, report)
    failed: list[tuple[Path, BaseException]] = field(default_factory=list)  # (src, error)
    skipped: list[tuple[Path, Path]] = field(default_factory=list)  # (src, existing dst)


def list_videos(folder: Path) -> list[Path]:
    """Video files directly inside folder, by name; hidden files (work folders, partial
    outputs) are left out."""
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )


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
    """The (input, output) pairs to make, and a report that lists those skipped because their
    output exists (unless `overwrite`). Creates out_dir. Raises InputError when the folder
    holds no video and OutputError when out_dir cannot be made."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    videos = list_videos(src_dir)
    if not videos:
        raise InputError(f"{src_dir}: no video files found (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out_dir}: cannot create the output folder ({e.strerror or e})") from e
    todo, report = [], LibraryReport()
    for src, dst in zip(videos, output_paths(videos, out_dir)):
        if dst.exists() and not overwrite:
            report.skipped.append((src, dst))
        else:
            todo.append((src, dst))
    return todo, report

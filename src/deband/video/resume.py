"""The work folder of a chunked run: where finished chunks wait, and how a rerun finds them.

The folder `.NAME.deband-work-<16 hex>/` lies beside the output NAME. Its key hashes the
input's identity (size, mtime_ns, sha256 of its first and last MiB), every setting that
changes the output (VideoOptions less overwrite/threads/pipeline, the chunk length, the restorer's
settings and a sha256 of its weights) and the deband version: a changed input, setting or
model gives another folder, never a reused one. `manifest.json` inside records each
finished chunk (index, time range, frame count, sha256 of the file) and is replaced
atomically after each one; a rerun reuses a chunk only if its file is there with that hash
and frame count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

import deband
from deband.errors import OutputError
from deband.io.outputs import atomic_output, input_identity
from deband.video.chunks import CHUNK_SUFFIX, ChunkResult, count_frames, file_sha256
from deband.video.options import Restorer, VideoOptions
from deband.video.streams import Span

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_RUN_ONLY = ("overwrite", "threads", "pipeline")  # VideoOptions fields that do not change the output


def restorer_identity(restorer: Restorer) -> dict:
    """A Debander's settings, device kind and a sha256 of its weights; for any other
    restorer, its class name."""
    from deband.restore.debander import Debander

    if not isinstance(restorer, Debander):
        return {"restorer": f"{type(restorer).__module__}.{type(restorer).__qualname__}"}
    h = hashlib.sha256()
    for name, tensor in sorted(restorer.model.state_dict().items()):
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        h.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    settings = {f.name: getattr(restorer, f.name) for f in dataclasses.fields(restorer) if f.name != "model"}
    settings["device"] = torch.device(settings["device"]).type
    return {"weights_sha256": h.hexdigest(), **settings}


def work_key(src: Path, options: VideoOptions, chunk_seconds: float, restorer: Restorer) -> str:
    """16 hex digits naming the work folder of this input, these settings and this model."""
    opts = {k: v for k, v in dataclasses.asdict(options).items() if k not in _RUN_ONLY}
    what = {
        "deband": deband.__version__,
        "input": input_identity(src),
        "options": opts,
        "chunk_seconds": chunk_seconds,
        "restorer": restorer_identity(restorer),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _span_json(span: Span) -> list[str | None]:
    return [None if t is None else str(t) for t in (span.lo, span.hi)]


@dataclass
class WorkFolder:
    """Finished chunks of one run, and their manifest."""

    path: Path
    plan: list[Span]
    done: dict[int, dict]  # chunk index -> its manifest entry

    @classmethod
    def open(cls, dst: Path, key: str, plan: list[Span], fresh: bool = False) -> WorkFolder:
        """The folder for `key` beside dst (created), with its manifest read; partial files of
        an interrupted run inside it are removed. Work folders of dst made with other
        settings are removed when fresh, else named in a warning."""
        path = dst.parent / f".{dst.name}.deband-work-{key}"
        for old in work_folders(dst):
            if fresh:
                shutil.rmtree(old)
            elif old != path:
                log.warning("%s: %s left by an earlier run with other settings; remove it with rm -r "
                            "(a fresh run removes it too)", old, _size(old))
        try:
            path.mkdir(exist_ok=True)
        except OSError as e:
            raise OutputError(f"{path}: cannot create the work folder ({e.strerror})") from e
        for stale in path.glob(".*.partial-*"):
            stale.unlink(missing_ok=True)
        return cls(path, plan, _read_manifest(path / MANIFEST, plan))

    def chunk_path(self, index: int) -> Path:
        return self.path / f"chunk-{index:05d}{CHUNK_SUFFIX}"

    def files(self) -> list[Path]:
        """Every chunk file of the plan, in order."""
        return [self.chunk_path(i) for i in range(len(self.plan))]

    def verified(self) -> set[int]:
        """Indices of recorded chunks whose file is there with its hash and frame count."""
        good = set()
        for i, entry in self.done.items():
            f = self.chunk_path(i)
            if f.is_file() and file_sha256(f) == entry["sha256"] and count_frames(f) == entry["frames"]:
                good.add(i)
            else:
                log.warning("chunk %d in %s is damaged or missing; it is made again", i, self.path)
        self.done = {i: e for i, e in self.done.items() if i in good}
        return good

    def record(self, result: ChunkResult) -> None:
        """Add a finished chunk to the manifest (replaced atomically)."""
        self.done[result.index] = {
            "index": result.index,
            "span": _span_json(self.plan[result.index]),
            "frames": result.frames,
            "sha256": result.sha256,
        }
        text = json.dumps(
            {"plan": [_span_json(s) for s in self.plan], "chunks": [self.done[i] for i in sorted(self.done)]}, indent=1
        )
        with atomic_output(self.path / MANIFEST, overwrite=True) as tmp:
            tmp.write_text(text)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def remove_partials(self) -> None:
        """Partial chunk files left by workers that were stopped."""
        for stale in self.path.glob(".*.partial-*"):
            stale.unlink(missing_ok=True)


def work_folders(dst: Path) -> list[Path]:
    """The work folders beside dst, whatever settings made them."""
    prefix = f".{dst.name}.deband-work-"
    try:
        return sorted(p for p in dst.parent.iterdir() if p.name.startswith(prefix) and p.is_dir())
    except OSError:  # no folder to look in: none
        return []


def _size(folder: Path) -> str:
    """What the files in a folder hold, in words: "512 bytes", "12.3 kB", "4.5 GB"."""
    size = float(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()))
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            break
        size /= 1000
    return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"


def _read_manifest(path: Path, plan: list[Span]) -> dict[int, dict]:
    """Entries of a manifest written for the same plan; none if it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
        if data["plan"] != [_span_json(s) for s in plan]:
            log.warning("%s was written for another chunk plan; starting over", path)
            return {}
        return {int(e["index"]): e for e in data["chunks"]}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s cannot be read (%s); starting over", path, e)
        return {}

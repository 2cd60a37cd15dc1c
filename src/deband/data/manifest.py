"""The corpus manifest: which images of a corpus folder are for training and which are held out.

`deband corpus build` (`deband.data.corpus`) writes FOLDER/manifest.json, whose "images"
entries each name a file of the folder and its `split`, "train" or "held-out". Every reader
of a corpus goes through `split_files`, so training never sees a held-out image and the
real-content sets of `deband eval` never see a train one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from deband.errors import InputError

MANIFEST = "manifest.json"  # the manifest's name inside a corpus folder
CORPUS_ENV = "DEBAND_CORPUS"  # environment variable naming the default corpus folder
CORPUS_CACHE = Path("~/.cache/deband/corpus")  # the default when it is unset


def corpus_folder(folder: str | Path | None = None) -> Path:
    """The corpus folder: `folder`, else $DEBAND_CORPUS, else ~/.cache/deband/corpus."""
    return Path(folder or os.environ.get(CORPUS_ENV) or CORPUS_CACHE).expanduser()


def split_files(folder: str | Path, split: str) -> list[Path]:
    """The images of `folder` whose manifest entry has this `split`, in manifest order.

    Raises InputError when the manifest is missing, unreadable or not a corpus manifest, or
    names a file that is not there."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["images"]
        names = [e["file"] for e in entries if e["split"] == split]
    except FileNotFoundError:
        raise InputError(f"{manifest}: no such file (not a corpus folder)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{manifest}: not a corpus manifest ({e})") from None
    for name in names:
        if Path(name).name != name or not (folder / name).is_file():
            raise InputError(f"{manifest}: lists {name!r}, which is not a file in {folder}")
    return [folder / name for name in names]

"""Which installed package a file came from, its version, and its licence.

Debian packages are found by reading dpkg's file lists (`/var/lib/dpkg/info/*.list`) and
status file once; a package's licence is read from `/usr/share/doc/PKG/copyright`: the
`License:` of the last machine-readable (DEP-5) stanza whose `Files:` pattern matches the
file, else the first `License:` line, else a short summary of the licences the text names.
Files installed by pip (scikit-image's sample data) are found through the distributions'
RECORD files, their licence from the distribution's metadata or licence file.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp")

# Licence names looked for in a copyright file without a `License:` line, in this order.
_KNOWN_LICENCES = (
    ("CC-BY-SA", r"creative commons attribution[- ]share ?alike|cc[- ]by[- ]sa"),
    ("CC-BY", r"creative commons attribution(?![- ]share)(?! ?-? ?sharealike)|cc[- ]by\b(?![- ]sa)"),
    ("CC0", r"\bcc0\b|public domain dedication"),
    ("LGPL", r"lesser general public|library general public|\blgpl"),
    ("GPL", r"general public license|\bgpl"),
    ("BSD", r"\bbsd\b"),
    ("MIT", r"\bmit\b|permission is hereby granted, free of charge"),
    ("Apache-2.0", r"apache license"),
    ("public-domain", r"public domain"),
)


@dataclass(frozen=True)
class Owner:
    """Where an installed file comes from."""

    package: str  # package name, e.g. "gnome-backgrounds" or "scikit-image"
    version: str  # its installed version
    origin: str  # "debian" (dpkg) or "pypi" (pip)
    licence: str  # short licence name, e.g. "CC-BY-SA-3.0"


def _stanzas(text: str) -> list[dict[str, str]]:
    """Paragraphs of a Debian control-style file as {field: first line of value}; `Files:`
    keeps its continuation lines (space separated)."""
    out: list[dict[str, str]] = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t"):
                if key == "files":
                    fields[key] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if sep and " " not in name:
                key = name.strip().lower()
                fields[key] = value.strip()
        if fields:
            out.append(fields)
    return out


def _matches(path: PurePosixPath, pattern: str) -> bool:
    """Does a DEP-5 `Files:` pattern (a path in the source tree) name this installed file?"""
    pattern = pattern.lstrip("./")
    if pattern == "*" or not pattern:
        return False
    if fnmatch.fnmatchcase(str(path), "*/" + pattern):
        return True
    name = PurePosixPath(pattern).name
    return not any(c in name for c in "*?[") and name == path.name


def licence_from_copyright(text: str, path: str | Path) -> str:
    """The licence a Debian copyright file gives `path` (an installed file); "" when it names none."""
    stanzas = _stanzas(text)
    licences = [s for s in stanzas if s.get("license")]
    chosen = ""
    for s in licences:
        if "files" in s and any(_matches(PurePosixPath(path), p) for p in s["files"].split()):
            chosen = s["license"]  # the last matching stanza wins (DEP-5)
    if chosen or licences:
        return chosen or licences[0]["license"]
    low = text.lower()
    names = [name for name, rx in _KNOWN_LICENCES if re.search(rx, low)]
    return " / ".join(names[:3])


@dataclass
class PackageIndex:
    """Owners of installed image files, from dpkg's database (and pip's RECORDs if `python`).

    dpkg_info: folder of `PKG[:ARCH].list` files. dpkg_status: dpkg's status file.
    doc_root: folder of `PKG/copyright` files. Tests point all three at a fake tree.
    """

    dpkg_info: Path = Path("/var/lib/dpkg/info")
    dpkg_status: Path = Path("/var/lib/dpkg/status")
    doc_root: Path = Path("/usr/share/doc")
    python: bool = True  # also look files up among installed Python distributions
    _files: dict[str, str] | None = field(default=None, repr=False)
    _versions: dict[str, str] | None = field(default=None, repr=False)
    _python_files: dict[str, importlib.metadata.Distribution] | None = field(default=None, repr=False)

    def owner(self, path: str | Path) -> Owner | None:
        """The package that installed `path` (looked up as given and with links resolved)."""
        path = Path(path)
        for p in dict.fromkeys((str(path), str(path.resolve()))):
            package = self._dpkg_files().get(p)
            if package:
                return Owner(package, self._dpkg_versions().get(package, ""), "debian",
                             self._debian_licence(package, Path(p)))
        if self.python:
            dist = self._pip_files().get(str(path.resolve()))
            if dist is not None:
                return Owner(dist.metadata["Name"], dist.version, "pypi", _pip_licence(dist))
        return None

    def _dpkg_files(self) -> dict[str, str]:
        if self._files is None:
            self._files = {}
            for lst in sorted(self.dpkg_info.glob("*.list")):
                package = lst.stem.split(":")[0]
                for line in lst.read_text(errors="replace").splitlines():
                    if line.lower().endswith(IMAGE_SUFFIXES):
                        self._files.setdefault(line, package)
        return self._files

    def _dpkg_versions(self) -> dict[str, str]:
        if self._versions is None:
            text = self.dpkg_status.read_text(errors="replace") if self.dpkg_status.is_file() else ""
            self._versions = {s["package"]: s.get("version", "") for s in _stanzas(text)
                              if "package" in s and s.get("status", "").endswith(" installed")}
        return self._versions

    def _debian_licence(self, package: str, path: Path) -> str:
        copyright_file = self.doc_root / package / "copyright"
        try:
            text = copyright_file.read_text(errors="replace")
        except OSError:
            return "unknown (no copyright file)"
        return licence_from_copyright(text, path) or f"see {copyright_file}"

    def _pip_files(self) -> dict[str, importlib.metadata.Distribution]:
        if self._python_files is None:
            self._python_files = {}
            for dist in importlib.metadata.distributions():
                for f in dist.files or ():
                    if str(f).lower().endswith(IMAGE_SUFFIXES):
                        self._python_files.setdefault(str(Path(dist.locate_file(f)).resolve()), dist)
        return self._python_files


def _pip_licence(dist: importlib.metadata.Distribution) -> str:
    """License-Expression, else the first `License:` line of a licence file, else a classifier."""
    meta = dist.metadata
    if meta.get("License-Expression"):
        return meta["License-Expression"]
    for f in dist.files or ():
        if re.match(r"(licen[cs]e|copying)", f.name, re.I):
            text = f.read_text() or ""
            found = licence_from_copyright(text, "")
            if found:
                return found
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or () if c.startswith("License ::")]
    if classifiers:
        return classifiers[0]
    short = (meta.get("License") or "").strip()
    return short if short and "\n" not in short and len(short) < 80 else "unknown"

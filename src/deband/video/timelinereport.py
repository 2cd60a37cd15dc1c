"""A banding timeline (`deband.video.timeline.Timeline`) written out: CSV tables or one HTML page.

* `.csv`: NAME.csv has one row per scored frame (frame, pts_s, cambi, scene);
  NAME-scenes.csv beside it has one row per scene.
* `.html`: one self-contained page, CAMBI over time as an inline PNG (scene cuts as lines,
  banded scenes shaded) above the scene table; no external resources.

Every file goes through `deband.io.outputs.atomic_output`.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING

from deband.errors import OutputError
from deband.io.outputs import atomic_output, check_output

if TYPE_CHECKING:
    from deband.video.timeline import Timeline

SUFFIXES = (".csv", ".html", ".htm")
FRAME_COLUMNS = ("frame", "pts_s", "cambi", "scene")
SCENE_COLUMNS = ("scene", "first_frame", "last_frame", "start_s", "end_s", "frames", "scored",
                 "mean_cambi", "max_cambi", "banded")


def write_report(line: Timeline, dst: str | Path, overwrite: bool = False) -> list[Path]:
    """Write `line` as CSV or HTML, chosen by dst's suffix (see SUFFIXES). Returns the files
    written. Raises OutputError (unknown suffix, exists without overwrite, no folder)."""
    dst = check_report(dst, overwrite, line.source)[0]
    if dst.suffix.lower() == ".csv":
        return write_csv(line, dst, overwrite)
    return [write_html(line, dst, overwrite)]


def check_report(dst: str | Path, overwrite: bool = False, source: str | Path | None = None) -> list[Path]:
    """The files `write_report` would write to dst, checked before any work is done.
    Raises OutputError (unknown suffix, exists without overwrite, is the source, no folder)."""
    dst = Path(dst)
    suffix = dst.suffix.lower()
    if suffix not in SUFFIXES:
        raise OutputError(f"{dst}: a timeline is written as .csv or .html")
    paths = [dst, scenes_path(dst)] if suffix == ".csv" else [dst]
    for path in paths:
        check_output(path, overwrite, sources=[] if source is None else [source])
    return paths


def scenes_path(dst: Path) -> Path:
    """Where the scene table goes beside the frame table: NAME-scenes.csv."""
    return dst.with_name(f"{dst.stem}-scenes{dst.suffix}")


def scene_rows(line: Timeline) -> list[tuple]:
    """One tuple per scene, in SCENE_COLUMNS order (times and scores rounded for reading)."""
    return [
        (s.id, s.first, s.last, f"{s.start:.3f}", f"{s.end:.3f}", s.last - s.first + 1, s.scored,
         f"{s.mean:.3f}", f"{s.max:.3f}", "yes" if s.banded else "no")
        for s in line.scenes
    ]


def write_csv(line: Timeline, dst: Path, overwrite: bool = False) -> list[Path]:
    """NAME.csv (scored frames) and NAME-scenes.csv; both are checked before either is written."""
    extra = check_report(dst, overwrite, line.source)[1]
    with atomic_output(dst, overwrite, sources=[line.source]) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FRAME_COLUMNS)
        w.writerows((r.index, f"{r.seconds:.6f}", f"{r.cambi:.4f}", r.scene) for r in line.frames
                    if r.cambi is not None)
    with atomic_output(extra, overwrite, sources=[line.source]) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(SCENE_COLUMNS)
        w.writerows(scene_rows(line))
    return [dst, extra]


def timeline_png(line: Timeline) -> bytes:
    """CAMBI of the scored frames against time, scene cuts dashed, banded scenes shaded, the
    threshold dotted; a PNG (about 1000x320) as bytes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.2), dpi=100)
    ax = fig.add_subplot()
    for s in line.scenes:
        if s.banded:
            ax.axvspan(s.start, s.end, color="tab:red", alpha=0.12, lw=0)
        if s.id > 0:
            ax.axvline(s.start, color="0.5", ls="--", lw=0.8)
    for s in line.scenes:  # one line per scene: no slope drawn across a cut
        scored = [f for f in line.frames[s.first : s.last + 1] if f.cambi is not None]
        ax.plot([f.seconds for f in scored], [f.cambi for f in scored], marker=".", ms=3, lw=1, color="tab:blue")
    top = max([s.max for s in line.scenes] + [line.options.threshold])
    ax.axhline(line.options.threshold, color="tab:red", ls=":", lw=1, label=f"threshold {line.options.threshold:g}")
    ax.set(xlabel="time (s)", ylabel=f"CAMBI (max_log_contrast {line.options.max_log_contrast})",
           title=f"{line.source.name}: banding over time ({len(line.scenes)} scenes; shaded: banded)")
    ax.set_xlim(line.scenes[0].start, line.scenes[-1].end)
    ax.set_ylim(0, top * 1.2 + 0.1)  # room for the legend
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def clock(seconds: float) -> str:
    """Seconds as H:MM:SS.mmm."""
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


_STYLE = """body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}tr.banded{background:#fde2e2}
img{max-width:100%}"""


def render_html(line: Timeline) -> str:
    """The whole page as a string (see the module docstring)."""
    o, name = line.options, html.escape(line.source.name)
    banded = [s for s in line.scenes if s.banded]
    png = base64.b64encode(timeline_png(line)).decode("ascii")
    head = "".join(f"<th>{c}</th>" for c in ("scene", "frames", "start", "end", "mean CAMBI", "max CAMBI", "banded"))
    rows = "\n".join(
        f'<tr class="{"banded" if s.banded else "clean"}"><td>{s.id}</td><td>{s.first}&ndash;{s.last}</td>'
        f"<td>{clock(s.start)}</td><td>{clock(s.end)}</td><td>{s.mean:.3f}</td><td>{s.max:.3f}</td>"
        f'<td>{"yes" if s.banded else "no"}</td></tr>'
        for s in line.scenes
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Banding timeline: {name}</title>
<style>{_STYLE}</style></head><body>
<h1>Banding timeline: {name}</h1>
<p>{len(line.frames)} frames, {sum(f.cambi is not None for f in line.frames)} scored (every {o.every}
and each scene's first), {len(line.scenes)} scenes, {len(banded)} banded: mean CAMBI above {o.threshold:g}
(max_log_contrast {o.max_log_contrast}, cut threshold {o.cut_threshold:g}).</p>
<img alt="CAMBI over time" src="data:image/png;base64,{png}">
<table><thead><tr>{head}</tr></thead><tbody>
{rows}
</tbody></table></body></html>
"""


def write_html(line: Timeline, dst: Path, overwrite: bool = False) -> Path:
    """The self-contained HTML page, written atomically."""
    page = render_html(line)
    with atomic_output(dst, overwrite, sources=[line.source]) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return dst

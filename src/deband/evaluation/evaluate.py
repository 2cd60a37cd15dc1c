"""`deband eval`: every method on every benchmark set, ours against FFmpeg's debanders.

Real content first: crops of the corpus's held-out images under delivery banding
(`realsets`) and the faint-detail set (`faintsets`); then the procedural sets (`evalsets`).
Rows are scored in `scoring`; `evalreport` writes the quality report with its figures.
"""

from __future__ import annotations

import json
from pathlib import Path

from deband.config import DEFAULT_STEPS
from deband.evaluation.evalreport import make_report
from deband.evaluation.evalsets import (
    DEGRADATIONS,
    Pair,
    folder_set,
    has_frames,
    seed_restored,
    synthetic_set,
    unbanded_set,
)
from deband.evaluation.faintsets import faint_set
from deband.evaluation.realsets import (
    colour_set_names,
    corpus_crops,
    gentle_map,
    load_held_out,
    real_set,
    real_set_names,
    texture_map,
)
from deband.evaluation.scoring import (
    Method,
    Row,
    as_dicts,
    baseline_methods,
    clean_reference,
    markdown,
    mean_rows,
    our_methods,
    score,
    smooth_reference,
)
from deband.io.outputs import atomic_output

__all__ = ["as_dicts", "make_report", "markdown", "run_eval", "save_json"]

SYNTHETIC_MEAN = "all synthetic (mean)"  # the set averaging every synthetic set's rows
REAL_MEAN = "all real-content (mean)"  # the set averaging every real-content banding set's rows
COLOUR_MEAN = "all colour (mean)"  # the set averaging the colour sets' rows (textured crops)
FAINT = "faint detail"  # the faint-detail set


def run_eval(
    weights: str | None = None,
    n: int = 12,
    size: int = 384,
    steps: tuple[int, ...] = (1, 2, 4, 8, 30),
    strengths: tuple[float, ...] = (1.0, 0.7, 0.5),
    reference: Path | None = None,
    device: str = "cpu",
    default_steps: int = DEFAULT_STEPS,
    corpus: Path | None = None,
) -> dict[str, list[Row]]:
    """Every method on every set. Returns set name -> rows (the clean reference's rows first):
    with a `corpus` folder, its real-content banding sets (n crops of `size` pixels each)
    and their mean, and the colour sets on n textured crops and their mean; the faint-detail
    set (n corpus crops when there is a corpus, and n procedural scenes); then the
    procedural sets (n scenes each) as before."""
    ours = our_methods(weights, list(steps), [1.0], device)
    ours |= {k: v for s in strengths if s != 1.0 for k, v in our_methods(weights, [default_steps], [s], device).items()}
    ours |= our_methods(weights, [default_steps], [1.0], device, guard=False)
    methods = baseline_methods() | ours
    images = load_held_out(corpus) if corpus is not None else []
    results: dict[str, list[Row]] = {}
    crops = corpus_crops(images, n, size, gentle_map)  # none when no window is mostly smooth gradient
    if crops:
        for name in real_set_names():
            results[name] = paired_table(real_set(name, crops), name, methods)
        results[REAL_MEAN] = mean_rows(list(results.values()), REAL_MEAN)
    textured = corpus_crops(images, n, size, texture_map)  # windows mostly of texture
    if textured:
        names = colour_set_names()
        for name in names:
            results[name] = paired_table(real_set(name, textured), name, methods)
        results[COLOUR_MEAN] = mean_rows([results[name] for name in names], COLOUR_MEAN)
    results[FAINT] = paired_table(faint_set(images, n, size), FAINT, methods)
    return results | procedural_tables(methods, n, size, reference)


def paired_table(pairs: list[Pair], name: str, methods: dict[str, Method]) -> list[Row]:
    """The clean reference's row, then one row per method."""
    return [clean_reference(pairs, name)] + [score(m, pairs, name, k) for k, m in methods.items()]


def procedural_tables(methods: dict[str, Method], n: int, size: int, reference: Path | None) -> dict[str, list[Row]]:
    """The procedural sets, their mean, the unbanded set and, given real frames in
    `reference`, the reference examples."""
    results: dict[str, list[Row]] = {}
    for name in DEGRADATIONS:
        pairs = synthetic_set(name, n, size)
        results[name] = paired_table(pairs, name, methods)
        results[name].insert(1, smooth_reference(pairs, name))
    results[SYNTHETIC_MEAN] = mean_rows([results[name] for name in DEGRADATIONS], SYNTHETIC_MEAN)
    photos = unbanded_set(size)
    results["unbanded photos"] = [score(m, photos, "unbanded photos", k, with_cambi=False) for k, m in methods.items()]
    if has_frames(reference):
        real = folder_set(reference)
        full = {k: m for k, m in methods.items() if getattr(m, "strength", 1.0) == 1.0}  # no partial strengths
        picked = full | {"original implementation": seed_restored(reference)}
        results["reference examples"] = [score(m, real, "reference examples", k) for k, m in picked.items()]
    return results


def save_json(results: dict[str, list[Row]], path: str | Path) -> None:
    """All numbers as JSON: set name -> list of {method, set, metrics}."""
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps({k: as_dicts(v) for k, v in results.items()}, indent=1))

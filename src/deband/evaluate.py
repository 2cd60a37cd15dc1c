"""`deband eval`: every method on every benchmark set, ours against FFmpeg's debanders.

The sets are built in `deband.evalsets`, scored in `deband.scoring`; `deband.evalreport`
writes the quality report with its figures.
"""

from __future__ import annotations

import json
from pathlib import Path

from deband.config import DEFAULT_STEPS
from deband.evalreport import make_report
from deband.evalsets import DEGRADATIONS, folder_set, has_frames, seed_restored, synthetic_set, unbanded_set
from deband.outputs import atomic_output
from deband.scoring import (
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

__all__ = ["as_dicts", "make_report", "markdown", "run_eval", "save_json"]

SYNTHETIC_MEAN = "all synthetic (mean)"  # the set averaging every synthetic set's rows


def run_eval(
    weights: str | None = None,
    n: int = 12,
    size: int = 384,
    steps: tuple[int, ...] = (1, 2, 4, 8, 30),
    strengths: tuple[float, ...] = (1.0, 0.7, 0.5),
    reference: Path | None = None,
    device: str = "cpu",
    default_steps: int = DEFAULT_STEPS,
) -> dict[str, list[Row]]:
    """Every method on every set. Returns set name -> rows (the clean reference's rows first)."""
    ours = our_methods(weights, list(steps), [1.0], device)
    ours |= {k: v for s in strengths if s != 1.0 for k, v in our_methods(weights, [default_steps], [s], device).items()}
    methods = baseline_methods() | ours
    results: dict[str, list[Row]] = {}
    for name in DEGRADATIONS:
        pairs = synthetic_set(name, n, size)
        floors = [clean_reference(pairs, name), smooth_reference(pairs, name)]
        results[name] = floors + [score(m, pairs, name, k) for k, m in methods.items()]
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

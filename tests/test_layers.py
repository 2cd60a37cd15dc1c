"""The package's shape (docs/architecture.md): no import circle, and no import running back up
the layers. Every `import` counts, those inside functions and under TYPE_CHECKING too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "deband"

# Lowest first. A module may import its own package and those of lower layers, never one of
# its own layer or above. The layers of docs/architecture.md, in the same order.
LAYERS = (
    ("errors", "config"),
    ("io",),
    ("metrics", "model"),
    ("restore", "synthesis"),
    ("data", "video"),
    ("training", "evaluation"),
    ("cluster", "apps"),
    ("cli",),
)
LAYER = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}
MOST_TOP_LEVEL = 14  # modules and packages directly under src/deband (__init__, __main__ aside)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The deband modules `name` imports (a name imported from a package counts as its
    submodule when there is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported(name, path, set(mods)) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle of each strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def part_of(module: str) -> str | None:
    """The top-level part (package or module under deband) a module belongs to; None for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in sorted(edges.items()):
        here = part_of(src)
        if here is None:  # deband/__init__: the public names, imported lazily
            continue
        for dst in sorted(targets):
            there = part_of(dst)
            if there is None or there == here:
                continue
            if LAYER[there] >= LAYER[here]:
                bad.append(f"{src} imports {dst} ({there}: layer {LAYER[there]}, {here}: layer {LAYER[here]})")
    return bad


def test_cycles_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    assert cycles(graph()) == []


def test_upward_finds_an_import_running_back_up():
    edges = {"deband.io.pixels": {"deband.restore.guard"}, "deband.restore.guard": {"deband.io.pixels"}}
    assert upward(edges) == ["deband.io.pixels imports deband.restore.guard (restore: layer 3, io: layer 1)"]


def test_no_import_runs_back_up_the_layers():
    assert upward(graph()) == []


def test_every_top_level_part_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.stem not in ("__init__", "__main__")}
    assert parts == set(LAYER)
    assert len(parts) <= MOST_TOP_LEVEL


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_over_450_lines(name):
    lines = modules()[name].read_text(encoding="utf-8").count("\n")
    assert lines <= 450, f"{name}: {lines} lines"

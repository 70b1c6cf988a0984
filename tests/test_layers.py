"""The package's floors, read from the source: who may import whom, and no import cycle.

Every module under ``src/aestetik`` is parsed with :mod:`ast`; every import counts, at module level, inside
functions and under ``if TYPE_CHECKING:``, with relative imports resolved. ``from a import b`` is an edge to the
module ``a.b`` when there is one, else to ``a``. Importing a module also runs its parent packages'
``__init__``: that is Python's doing, not an edge (``aestetik/__init__.py`` imports the public layer, so an edge to
the package ``aestetik`` itself, e.g. ``from aestetik import __version__``, counts as one to the public layer).

The floors, from the bottom:

- shared: ``_keys``, ``_docs``, ``_validation``, ``_version``: import nothing of aestetik but each other.
- engine: ``_model``, ``_domains``, ``_space``, ``_image``: take and return arrays and the engine's own
  dataclasses (``aestetik._model._types``: ``Prepared``, ``Fitted``, ``PreparedSizes``); import the shared floor
  and each other, nothing above.
- readers: ``_records`` (what ``prepare``, ``fit`` and ``cluster`` stored in an AnnData, built into the engine's
  dataclasses) and ``_transfer`` (``Reference`` and ``DomainModel``, from a stored record or a model file: it reads
  model files through ``_model._io``, so it sits above the engine, and only the readers and the public layer use
  it), and ``_spatialdata`` (the decorator through which the public functions take a SpatialData): import the
  floors below, never the public layer.
- public: the package ``aestetik`` itself, ``pp``, ``tl``, ``pl``, ``datasets`` and ``__main__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "aestetik"

SHARED = ("aestetik._keys", "aestetik._docs", "aestetik._validation", "aestetik._version")
ENGINE = ("aestetik._model", "aestetik._domains", "aestetik._space", "aestetik._image")
READERS = ("aestetik._records", "aestetik._transfer", "aestetik._spatialdata")
PUBLIC = ("aestetik.pp", "aestetik.tl", "aestetik.pl", "aestetik.datasets", "aestetik.__main__")
FLOORS = {"shared": SHARED, "engine": ENGINE, "readers": READERS, "public": PUBLIC}
#: What each floor may import: itself and the floors below.
ALLOWED = {
    "shared": {"shared"},
    "engine": {"shared", "engine"},
    "readers": {"shared", "engine", "readers"},
    "public": {"shared", "engine", "readers", "public"},
}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its ``__init__.py``)."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _floor(module: str) -> str:
    if module == PACKAGE:
        return "public"  # aestetik/__init__.py imports pp, tl, pl, datasets
    for floor, prefixes in FLOORS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return floor
    msg = f"{module} belongs to no floor: add it to one in tests/test_layers.py"
    raise AssertionError(msg)


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """``name``, or the longest package prefix of it that is a module of aestetik; ``None`` outside aestetik."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The aestetik modules that ``module`` imports anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(_known(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in modules else _known(target, modules))
    out.discard(None)
    out.discard(module)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    assert "aestetik._model._train" in modules
    assert "aestetik.tl._fit" in modules
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_graph_reads_relative_and_lazy_imports(graph):
    assert "aestetik._model._memory" in graph["aestetik._model._train"]  # `from ._memory import ...`
    assert "aestetik._model._module" in graph["aestetik._model._train"]  # inside a function
    assert "aestetik.tl._fit" in graph["aestetik.tl"]  # `from ._fit import fit` in tl/__init__.py
    assert {"aestetik.pp", "aestetik.tl", "aestetik.pl", "aestetik.datasets"} <= graph["aestetik"]


def test_every_module_has_a_floor(graph):
    for module in graph:
        _floor(module)


def test_no_floor_imports_one_above(graph):
    bad = [
        f"{module} ({_floor(module)}) imports {target} ({_floor(target)})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if _floor(target) not in ALLOWED[_floor(module)]
    ]
    assert not bad, "\n".join(bad)


def test_engine_imports_no_reader_or_public_module(graph):
    upper = {"aestetik", "aestetik._records", "aestetik._transfer", "aestetik._spatialdata"}
    for module, targets in graph.items():
        if _floor(module) == "engine":
            hits = {t for t in targets if t in upper or _floor(t) == "public"}
            assert not hits, f"{module} imports {sorted(hits)}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle(graph):
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)

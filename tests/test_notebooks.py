"""The tutorial notebooks: committed with their outputs, and still running against the current API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))

#: Per notebook, ``tests/notebooks/<notebook name>.py`` holds ``QUICK`` (values appended to its cell tagged
#: 'parameters'), ``MIN_FIGURES`` and ``CHECKS`` (code appended to the executed notebook).
SPECS = Path(__file__).parent / "notebooks"


def _spec(path: Path) -> dict:
    spec = SPECS / f"{path.stem}.py"
    assert spec.is_file(), f"add {spec} with QUICK, MIN_FIGURES and CHECKS for {path.name}"
    namespace: dict = {}
    exec(compile(spec.read_text(), str(spec), "exec"), namespace)
    return namespace


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_notebooks_found():
    assert NOTEBOOKS, "no notebooks in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_with_outputs(path):
    """Docs render notebooks without executing them: every code cell must carry its outputs, none an error."""
    nb = _read(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code
    counts = [c["execution_count"] for c in code]
    assert all(isinstance(n, int) for n in counts), "a code cell was not executed"
    assert counts == sorted(counts), "cells were executed out of order"
    outputs = [o for c in code for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    figures = [o for o in outputs if {"image/png", "image/jpeg"} & set(o.get("data", {}))]
    assert len(figures) >= _spec(path)["MIN_FIGURES"], "the figures are missing"
    parameters = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(parameters) == 1, "one cell tagged 'parameters' holds the runtime-deciding values"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_runs(path, tmp_path, monkeypatch):
    """Execute the notebook with the quick parameters and check what it wrote."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.setenv(var, "1")  # the kernel is a fresh process: conftest's thread limit does not reach it
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    spec = _spec(path)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # nbclient replaces each cell's outputs when it runs it
        if "parameters" in cell.metadata.get("tags", []):
            cell.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in spec["QUICK"].items())
    nb.cells.append(nbformat.v4.new_code_cell(spec["CHECKS"]))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    client.execute()  # raises CellExecutionError naming the failing cell
    assert not list(tmp_path.iterdir()), "the notebook wrote files"

"""benchmarks/figures.py: the figures plot the numbers of the committed result files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@pytest.fixture(scope="module")
def figures():
    spec = importlib.util.spec_from_file_location("benchmark_figures", ROOT / "benchmarks" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _json(name):
    return json.loads((RESULTS / name).read_text())


def _stats(table, section, method):
    row = table[(table["section"] == section) & (table["method"] == method)]
    assert len(row) == 1, (section, method)
    return row.iloc[0]


def _png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size < 300_000


def _aris(runs, section, method):
    return [r["ari"] for r in runs if r["section"] == section and r["method"] == method]


def test_ari_by_section_plots_the_result_files(figures, tmp_path):
    table = figures.ari_by_section(RESULTS, tmp_path)
    _png(tmp_path / "ari_by_section.png")
    runs = _json("accuracy.json")["runs"]
    for section in {r["section"] for r in runs}:
        ours = _aris(runs, section, figures.OURS)
        row = _stats(table, section, figures.OURS)
        assert row["aris"] == ours
        np.testing.assert_allclose([row["mean"], row["min"], row["max"]], [np.mean(ours), min(ours), max(ours)])
        assert _stats(table, section, figures.PCA_KMEANS)["aris"] == _aris(runs, section, figures.PCA_KMEANS)
        banksy = {r["method"] for r in runs if r["section"] == section and r["method"].startswith("BANKSY")}
        if banksy:  # the best of its clusterings by mean ARI
            best = max(banksy, key=lambda m: np.mean(_aris(runs, section, m)))
            row = _stats(table, section, figures.BANKSY)
            assert (row["detail"], row["aris"]) == (best, _aris(runs, section, best))
    if (RESULTS / "peers.json").exists():
        peers = _json("peers.json")["runs"]
        for section in {r["section"] for r in peers}:
            assert _stats(table, section, figures.LEIDEN)["aris"] == _aris(peers, section, figures.LEIDEN)
    assert list(dict.fromkeys(table["group"])) == [g for g in figures.GROUPS if g in set(table["group"])]


def test_ari_table_reads_only_the_files_it_finds(figures, tmp_path):
    runs = [
        {"section": "starmap_bz5", "method": figures.OURS, "seed": 0, "ari": 0.8, "seconds": 1.0},
        {"section": "starmap_bz5", "method": figures.OURS, "seed": 1, "ari": 0.9, "seconds": 1.0},
        {"section": "starmap_bz5", "method": "BANKSY, k-means", "seed": 0, "ari": 0.5, "seconds": 1.0},
        {"section": "starmap_bz5", "method": "BANKSY, Leiden", "seed": 0, "ari": 0.7, "seconds": 1.0},
        {"section": "dlpfc_151676", "method": figures.OURS, "seed": 0, "ari": 0.6, "seconds": 1.0},
    ]
    (tmp_path / "accuracy.json").write_text(json.dumps({"runs": runs}))
    table = figures.ari_table(tmp_path)
    assert list(table["section"]) == ["dlpfc_151676", "starmap_bz5", "starmap_bz5"]  # Visium before cells
    ours = _stats(table, "starmap_bz5", figures.OURS)
    assert (ours["aris"], ours["min"], ours["max"], ours["n"]) == ([0.8, 0.9], 0.8, 0.9, 2)
    assert _stats(table, "starmap_bz5", figures.BANKSY)["detail"] == "BANKSY, Leiden"
    figures.ari_by_section(tmp_path, tmp_path)
    _png(tmp_path / "ari_by_section.png")


def test_scaling_plots_the_result_files(figures, tmp_path):
    table = figures.scaling(RESULTS, tmp_path)
    _png(tmp_path / "scaling.png")

    def values(quantity, style):
        part = table[(table["quantity"] == quantity) & (table["style"] == style)].sort_values("n_spots")
        return part["n_spots"].tolist(), part["value"].tolist()

    runs = [r for r in _json("scaling_cpu.json")["runs"] if r["status"] == "ok"]
    n, train = values("train, s per epoch", figures.CPU_RUNS)
    assert n == [r["n_obs"] for r in runs]
    np.testing.assert_allclose(train, [r["seconds"]["train"] / r["epochs"] for r in runs])
    assert values("peak host memory (RSS)", figures.CPU_RUNS)[1] == [r["peak_rss_mb"] for r in runs]
    if (RESULTS / "grid_kernel.json").exists():
        rows = _json("grid_kernel.json")["rows"]
        assert values("window index, s", figures.CPU_RUNS) == (
            [r["spots"] for r in rows],
            [r["index_seconds"] for r in rows],
        )
    ref = next(
        r for r in _json("reference.json")["runs"] if r["case"] == "synthetic" and r["implementation"] == "reference"
    )
    n, epoch = values("train, s per epoch", figures.REF)
    assert (n[0], epoch[0]) == (ref["n_spots"], pytest.approx(ref["seconds"]["train"] / ref["epochs"]))
    gpu = {r["config"]: r for r in _json("scaling_gpu.json")["runs"]}
    big = next(r for c, r in gpu.items() if "batch_size=65536" in c)
    n, epoch = values("train, s per epoch", "ours, GPU, batch_size=65536")
    assert epoch == [pytest.approx(big["seconds"]["train"] / big["epochs"])]
    assert values("peak GPU memory", "ours, GPU, batch_size=65536")[1] == [big["peak_gpu_mb"]]


def test_method_figure_window(figures, tmp_path):
    d = figures.method(tmp_path)
    _png(tmp_path / "method.png")
    index, centre = d["index"], d["centre"]
    assert index.shape == (7, 7)
    assert index[3, 3] == centre
    lattice = d["lattice"]
    for i, j in zip(*np.nonzero(index >= 0), strict=True):  # each window position holds the spot at that offset
        assert tuple(lattice[index[i, j]] - lattice[centre]) == (i - 3, j - 3)
    gaps = index < 0
    assert gaps.any()  # the hexagonal lattice leaves every other position empty
    np.testing.assert_allclose(d["window"][gaps], np.median(d["pc1"][index[~gaps]]))
    np.testing.assert_allclose(d["window"][~gaps], d["pc1"][index[~gaps]])

"""benchmarks/figures.py: the figures plot the numbers of the committed result files."""

from __future__ import annotations

import importlib.util
import json
import shutil
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


def test_ari_by_section_plots_the_result_files(figures, tmp_path):
    table = figures.ari_by_section(RESULTS, tmp_path)
    _png(tmp_path / "ari_by_section.png")
    defaults = [r["ari"] for r in _json("dlpfc_defaults.json")["records"] if r["config"] == "default"]
    candidates = _json("defaults_candidates.json") if (RESULTS / "defaults_candidates.json").exists() else None
    if candidates and "151676 normalised" in candidates["sections"]:  # the defaults after issue 19 replace them
        adopted = {s: c for c, secs in candidates.get("adopted", {}).get("runs", {}).items() for s in secs}
        config = adopted.get("151676 normalised", "default")
        defaults = [
            r["ari"] for r in candidates["runs"] if r["section"] == "151676 normalised" and r["config"] == config
        ]
    row = _stats(table, figures.DLPFC, figures.OURS)
    assert row["n"] == len(defaults) >= 3
    np.testing.assert_allclose([row["mean"], row["min"], row["max"]], [np.mean(defaults), min(defaults), max(defaults)])
    runs = _json("dlpfc_vs_reference.json")["runs"]
    ref = _stats(table, figures.DLPFC, figures.REFERENCE)
    assert ref["aris"] == [r["ari"] for r in runs if r["implementation"] == "reference"]
    leiden = _stats(table, figures.DLPFC, figures.LEIDEN)
    expected = _json("dlpfc_defaults.json")["scanpy_leiden"]
    if (RESULTS / "dlpfc_peers.json").exists():  # measured beside the new defaults, it replaces the older runs
        peers = _json("dlpfc_peers.json")["runs"]
        expected = [
            r["ari"] for r in peers if r["section"] == "151676 normalised" and r["method"] == "scanpy PCA + Leiden"
        ]
        banksy = _stats(table, "DLPFC 151674 counts", "BANKSY")  # the best of its two clusterings there
        best = max(
            ([r["ari"] for r in peers if r["section"] == "151674 counts" and r["method"] == m] for m in
             {r["method"] for r in peers if r["method"].startswith("BANKSY")}),
            key=np.mean,
        )  # fmt: skip
        assert banksy["aris"] == best
    assert leiden["aris"] == expected
    starmap = _json("starmap.json")["results"]
    ours = _stats(table, figures.CELLS, figures.OURS)
    if (RESULTS / figures.STARMAP_CURRENT).exists():  # the current defaults' run replaces the former one
        (expected_cells,) = [r["ari"] for r in _json(figures.STARMAP_CURRENT)["results"].values()]
    else:
        expected_cells = starmap["AESTETIK default (w 7, 2 sites per cell, smoothing 3 sites)"]["ari"]
    assert ours["aris"] == expected_cells
    banksy = _stats(table, figures.CELLS, "BANKSY")  # the best of BANKSY's settings
    best = max(np.mean(v["ari"]) for k, v in starmap.items() if k.startswith("BANKSY"))
    assert banksy["mean"] == pytest.approx(best)
    assert banksy["detail"] == "BANKSY λ=0.8, k-means (normalised, no log)"
    published = _stats(table, "synthetic square", figures.PUBLISHED)
    records = _json("synthetic_defaults.json")["records"]
    expected = [
        r["ari"] for r in records if r["setting"] == "square, noise 0.8" and r["config"].startswith("published")
    ]
    assert published["aris"] == expected
    assert set(table["source"]) >= {"dlpfc_vs_reference.json", "starmap.json"}


def test_defaults_candidates_replace_the_defaults_on_their_sections(figures, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(RESULTS / "synthetic_defaults.json", results)
    before = figures.ari_table(results)
    old = [r["ari"] for r in _json("synthetic_defaults.json")["records"] if r["config"].startswith("default (")]
    assert _stats(before, "synthetic hex", figures.OURS)["aris"] == old[:3]  # hex: the first three records
    runs = [
        {"section": "synthetic hex", "config": "default", "seed": 0, "ari": 0.91, "seconds": 1.0},
        {"section": "synthetic hex", "config": "default", "seed": 1, "ari": 0.97, "seconds": 1.0},
        {"section": "synthetic hex", "config": "30 PCs", "seed": 0, "ari": 0.10, "seconds": 1.0},
        {"section": "151674 counts", "config": "default", "seed": 0, "ari": 0.55, "seconds": 1.0},
    ]
    fake = {"device": "test", "sections": ["synthetic hex", "151674 counts"], "configs": {"default": "d"}, "runs": runs}
    (results / "defaults_candidates.json").write_text(json.dumps(fake))
    after = figures.ari_table(results)
    hex_ours = _stats(after, "synthetic hex", figures.OURS)
    assert hex_ours["aris"] == [0.91, 0.97]
    assert hex_ours["source"] == "defaults_candidates.json"
    assert (hex_ours["min"], hex_ours["max"]) == (0.91, 0.97)
    assert _stats(after, "DLPFC 151674 counts", figures.OURS)["aris"] == [0.55]
    untouched = _stats(after, "synthetic square", figures.OURS)  # not in the fake file: still synthetic_defaults
    assert untouched["source"] == "synthetic_defaults.json"
    assert _stats(after, "synthetic hex", figures.PUBLISHED)["source"] == "synthetic_defaults.json"
    figures.ari_by_section(results, tmp_path)
    _png(tmp_path / "ari_by_section.png")


def test_scaling_plots_the_result_files(figures, tmp_path):
    table = figures.scaling(RESULTS, tmp_path)
    _png(tmp_path / "scaling.png")

    def values(quantity, style):
        part = table[(table["quantity"] == quantity) & (table["style"] == style)].sort_values("n_spots")
        return part["n_spots"].tolist(), part["value"].tolist()

    runs = _json("synthetic_scaling.json")["runs"]
    n, train = values("train, s per epoch", figures.CPU_RUNS)
    assert n == [r["n_obs"] for r in runs]
    np.testing.assert_allclose(train, [r["seconds"]["train"] / r["params"]["max_epochs"] for r in runs])
    assert values("peak host memory (RSS)", figures.CPU_RUNS)[1] == [r["peak_rss_mb"] for r in runs]
    rows = _json("grid_scaling.json")["rows"]
    assert values("window index, s", figures.CPU_RUNS) == (
        [r["spots"] for r in rows],
        [r["index_seconds"] for r in rows],
    )
    ref = next(r for r in _json("synthetic_vs_reference.json")["runs"] if r["implementation"] == "reference")
    n, epoch = values("train, s per epoch", "aestetik 0.3.1 (reference), CPU")
    assert (n[0], epoch[0]) == (ref["n_spots"], ref["record"]["rates"]["epoch"])
    gpu = {r["config"]: r for r in _json("gpu/gpu_training.json")["runs"]}
    assert values("peak GPU memory", "ours, GPU, batch 8,192")[1] == [gpu["batch:high"]["peak_gpu_mb"]]
    n, epoch = values("train, s per epoch", "ours, GPU, batch_size=65536")
    big = gpu["batch:high:65536"]
    assert epoch == [pytest.approx(big["train_s"] / big["epochs"])]


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

"""Scales that follow the data: the default pseudo-label smoothing, the domains' method, a wide representation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import aestetik as ae
from aestetik._domains._clustering import cluster_features
from aestetik._domains._spectral import kept_neighbours, knn_affinity
from aestetik._space._cells import CELL_DOMAIN_WIDTHS, CELL_SMOOTHING, CELL_SMOOTHING_MAX, cell_smoothing
from aestetik._space._smoothing import DOMAIN_WIDTHS, HEX_ROW, domain_smoothing
from aestetik.pp._prepare import DEFAULT_SMOOTHING


def test_domain_smoothing_is_a_fraction_of_a_domains_side_up_to_one_spacing():
    # a Visium section of 3,460 spots in 7 domains: one spot spacing (the first ring of neighbours)
    assert np.sqrt(HEX_ROW * 3460 / 7) / DOMAIN_WIDTHS > 1
    assert domain_smoothing(3460, 7, "hex") == 1.0
    assert domain_smoothing(100_000, 7, "square") == 1.0
    # a legacy ST section of 282 spots 200 µm apart in 5 domains: well under one spacing
    assert domain_smoothing(282, 5, "square") == pytest.approx(np.sqrt(282 / 5) / DOMAIN_WIDTHS)
    assert domain_smoothing(282, 5, "square") < 0.5
    # four times the spots: twice the width; more domains asked for: narrower
    assert domain_smoothing(4 * 282, 5, "square") == pytest.approx(2 * domain_smoothing(282, 5, "square"))
    assert domain_smoothing(282, 10, "square") < domain_smoothing(282, 5, "square")


def test_cell_smoothing_is_a_fraction_of_a_domains_side_up_to_a_cap():
    # STARmap BZ5 (1,049 cells, 4 layers): about 3 sites; MERFISH (5,488 cells, 8 domains): about 5
    assert cell_smoothing(1049, 4) == pytest.approx(np.sqrt(2 * 1049 / 4) / CELL_DOMAIN_WIDTHS)
    assert 3.0 < cell_smoothing(1049, 4) < 3.1
    assert 4.9 < cell_smoothing(5488, 8) < 5.0
    # the Gaussian (4 pi sigma^2 times half a cell per site) averages about a fifth of one domain's cells
    sigma = cell_smoothing(5488, 8)
    assert 4 * np.pi * sigma**2 * 0.5 / (5488 / 8) == pytest.approx(4 * np.pi / CELL_DOMAIN_WIDTHS**2)
    assert 0.2 < 4 * np.pi * sigma**2 * 0.5 / (5488 / 8) < 0.25
    # four times the cells: twice the width, up to the cap on sections of millions of cells
    assert cell_smoothing(4 * 300, 4) == pytest.approx(2 * cell_smoothing(300, 4))
    assert cell_smoothing(10**6, 8) == CELL_SMOOTHING_MAX
    assert cell_smoothing(1049, 8) < cell_smoothing(1049, 4)


def test_prepare_records_the_default_smoothing_of_each_kind_of_data():
    adata = ae.datasets.synthetic(n_spots=600, n_domains=4, lattice="square", random_state=0)
    out = ae.pp.prepare(adata, n_clusters=4, morphology_key=None, copy=True)
    recorded = out.uns["aestetik"]["prepare"]["params"]["pseudo_label_smoothing"]
    assert recorded == pytest.approx(domain_smoothing(adata.n_obs, 4, "square"))
    # two samples: the mean size of a sample
    two = ae.datasets.synthetic(n_spots=600, n_domains=4, lattice="square", n_samples=2, random_state=0)
    out = ae.pp.prepare(two, n_clusters=4, morphology_key=None, batch_key="sample", copy=True)
    sizes = two.obs["sample"].value_counts().to_numpy()
    expected = domain_smoothing(sizes.mean(), 4, "square")
    assert out.uns["aestetik"]["prepare"]["params"]["pseudo_label_smoothing"] == pytest.approx(expected)
    # a resolution instead of a number of domains: one spot spacing
    out = ae.pp.prepare(adata, n_clusters=0.5, clustering_method="leiden", morphology_key=None, copy=True)
    assert out.uns["aestetik"]["prepare"]["params"]["pseudo_label_smoothing"] == DEFAULT_SMOOTHING
    # single cells: sites of their grid, by the domains' size; a resolution: 3 sites
    cells = adata.copy()
    cells.obsm["spatial"] = cells.obsm["spatial"] + np.random.default_rng(0).normal(0, 0.2, cells.obsm["spatial"].shape)
    out = ae.pp.prepare(cells, n_clusters=4, morphology_key=None, coords="cells", copy=True)
    assert out.uns["aestetik"]["prepare"]["params"]["pseudo_label_smoothing"] == pytest.approx(
        cell_smoothing(cells.n_obs, 4)
    )
    out = ae.pp.prepare(
        cells, n_clusters=0.5, clustering_method="leiden", morphology_key=None, coords="cells", copy=True
    )
    assert out.uns["aestetik"]["prepare"]["params"]["pseudo_label_smoothing"] == CELL_SMOOTHING


def test_kept_neighbours_equals_a_plain_count():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 3))
    labels = rng.integers(0, 3, 90)
    affinity, _, _ = knn_affinity(x, n_neighbors=7)
    dense = affinity.toarray()
    same = labels[:, None] == labels[None, :]
    assert kept_neighbours(affinity, labels) == pytest.approx(dense[same].sum() / dense.sum())
    assert kept_neighbours(affinity, np.zeros(90, dtype=int)) == pytest.approx(1.0)


def _imbalanced(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One large domain and four small ones, each tight: a tumour section's embedding."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (5, 16))
    sizes = [300, 12, 16, 20, 28]
    x = np.vstack(
        [rng.normal(c, 1.0 if i == 0 else 0.5, (n, 16)) for i, (c, n) in enumerate(zip(centres, sizes, strict=True))]
    )
    return x, np.repeat(np.arange(5), sizes)


def _rings(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three concentric rings: connected domains that are not compact."""
    rng = np.random.default_rng(seed)
    parts, truth = [], []
    for i, r in enumerate([2.0, 6.0, 10.0]):
        n = int(150 * r)
        a = rng.uniform(0, 2 * np.pi, n)
        parts.append(np.c_[r * np.cos(a), r * np.sin(a)] + rng.normal(0, 0.3, (n, 2)))
        truth += [i] * n
    return np.vstack(parts), np.array(truth)


@pytest.mark.parametrize(
    ("make", "k", "kept", "loses"), [(_imbalanced, 5, "kmeans", "spectral"), (_rings, 3, "spectral", "kmeans")]
)
def test_auto_keeps_the_partition_that_cuts_fewer_neighbours(make, k, kept, loses):
    for seed in range(2):
        x, truth = make(seed)
        auto = cluster_features(x, k, method="auto", random_state=0)
        other = cluster_features(x, k, method=loses, random_state=0)
        assert auto.method == kept
        np.testing.assert_array_equal(auto.labels, cluster_features(x, k, method=kept, random_state=0).labels)
        assert adjusted_rand_score(truth, auto.labels) > 0.95
        assert adjusted_rand_score(truth, other.labels) < 0.8  # the failure that auto avoids


def test_cluster_records_the_method_auto_kept(small):
    ae.pp.prepare(small, n_clusters=3, morphology_key=None)
    small.obsm["X_aestetik"] = small.obsm["aestetik_input"]
    ae.tl.cluster(small, n_clusters=3)
    info = small.uns["aestetik"]["cluster"]
    assert info["params"]["method"] == "auto"
    assert info["method_used"] in ("spectral", "kmeans")
    expected = cluster_features(small.obsm["X_aestetik"], 3, method=info["method_used"]).labels
    ae.tl.cluster(small, n_clusters=3, refine=False, key_added="plain")
    assert adjusted_rand_score(expected, small.obs["plain"].astype(int)) == pytest.approx(1.0)
    ae.tl.cluster(small, n_clusters=3, method="kmeans", key_added="km")
    assert small.uns["km"]["cluster"]["method_used"] == "kmeans"


def test_a_wide_given_representation_is_reduced_with_a_log_line():
    import io
    import sys

    import scanpy as sc

    adata = ae.datasets.synthetic(n_spots=500, n_domains=4, random_state=0)
    rng = np.random.default_rng(0)
    wide = np.c_[adata.X[:, :30], rng.normal(size=(adata.n_obs, 10))].astype(np.float32)
    adata.obsm["given"] = wide
    verbosity, log = sc.settings.verbosity, io.StringIO()
    sc.settings.verbosity, sc.settings.logfile = "info", log
    try:
        out = ae.pp.prepare(adata, n_clusters=4, transcriptomics_key="given", morphology_key=None, n_comps=8, copy=True)
    finally:
        sc.settings.verbosity, sc.settings.logfile = verbosity, sys.stderr
    assert "`adata.obsm['given']` has 40 columns: using its 8 axes" in log.getvalue()
    record = out.uns["aestetik"]["prepare"]
    assert record["n_transcriptomics"] == 8
    assert out.obsm["aestetik_input"].shape[1] == 8
    np.testing.assert_array_equal(out.obsm["given"], wide)  # the user's representation is left as it is
    reduction = record["transforms"]["transcriptomics_reduction"]
    assert reduction["components"].shape == (40, 8)
    # the input is the min-max scaled projection onto those axes
    t = (wide - reduction["mean"]) @ reduction["components"]
    t = (t - t.min(0)) / (t.max(0) - t.min(0))
    np.testing.assert_allclose(out.obsm["aestetik_input"], t, atol=1e-4)
    # the same section projected with that model gets the same input
    again = ae.pp.prepare(adata, transcriptomics_key="given", reference=out, copy=True)
    np.testing.assert_allclose(again.obsm["aestetik_input"], out.obsm["aestetik_input"], atol=1e-4)
    # n_comps at the width keeps every column
    full = ae.pp.prepare(adata, n_clusters=4, transcriptomics_key="given", morphology_key=None, n_comps=40, copy=True)
    assert full.uns["aestetik"]["prepare"]["n_transcriptomics"] == 40
    assert "transcriptomics_reduction" not in full.uns["aestetik"]["prepare"]["transforms"]


def test_refinement_neighbours_follow_the_domains():
    from aestetik._domains._assign import REFINE_FRACTION, refine_neighbours

    assert REFINE_FRACTION == 0.02
    assert refine_neighbours(3460, 7) == 10  # a Visium section: the published 10
    assert refine_neighbours(282, 5) == 1  # a legacy ST section: no refinement
    assert refine_neighbours(4 * 3460, 7) == 40  # the same tissue in bins half as wide: the same reach

    import anndata as ad
    import pandas as pd

    rows, cols = np.divmod(np.arange(2500), 50)
    truth = (rows >= 25) * 2 + (cols >= 25)  # 4 quadrants of 625 spots: 1/50 is 12 neighbours
    rng = np.random.default_rng(0)
    emb = 6 * np.eye(4, 5)[truth] + rng.normal(size=(2500, 5))
    flip = rng.random(2500) < 0.03  # some spots embedded in another quadrant's blob
    emb[flip] = 6 * np.eye(4, 5)[(truth[flip] + 1) % 4] + rng.normal(size=(int(flip.sum()), 5))
    adata = ad.AnnData(obs=pd.DataFrame(index=[f"s{i}" for i in range(2500)]))
    adata.obsm["X_aestetik"] = emb.astype(np.float32)
    adata.obsm["spatial"] = np.c_[rows, cols].astype(float)
    ae.tl.cluster(adata, n_clusters=4, show_progress_bar=False)
    assert adata.uns["aestetik"]["cluster"]["params"]["n_neighbors"] == 12
    assert adjusted_rand_score(truth, adata.obs["aestetik"]) > 0.99
    ae.tl.cluster(adata, n_clusters=4, refine=False, key_added="raw", show_progress_bar=False)
    assert adata.uns["raw"]["cluster"]["params"]["n_neighbors"] == 0
    assert adjusted_rand_score(truth, adata.obs["raw"]) < 0.95

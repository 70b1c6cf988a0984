"""Several sections in one AnnData: per-sample scaling and windows, joint pseudo-labels, one label set."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _data import FAST_FIT

import aestetik as ae
from aestetik._space._grid import minmax_ranges, minmax_scale


def snapshot(adata: ad.AnnData) -> tuple:
    """Everything a failed call must leave as it was."""
    return (
        adata.obs.copy(),
        {k: np.array(v) for k, v in adata.obsm.items()},
        sorted(adata.uns),
        {k: sorted(v) if isinstance(v, dict) else None for k, v in adata.uns.items()},
    )


def assert_same(a: tuple, b: tuple) -> None:
    pd.testing.assert_frame_equal(a[0], b[0])
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k])
    assert a[2:] == b[2:]


def _two_sections(seed: int = 0, scale: float = 1.0) -> ad.AnnData:
    adata = ae.datasets.synthetic(n_spots=800, n_samples=2, random_state=seed)
    rng = np.random.default_rng(seed)
    # a fixed representation, so that each section alone sees the same values as the joint run
    adata.obsm["rep"] = (adata.X[:, :6] + rng.normal(size=(adata.n_obs, 6))).astype(np.float32)
    adata.obsm["rep"][(adata.obs["sample"] == "sample_1").to_numpy()] *= scale
    return adata


PREPARE = {
    "transcriptomics_key": "rep",
    "morphology_key": "X_morphology",
    "n_clusters": 4,
    "clustering_method": "kmeans",
}


def test_minmax_scale_per_sample_equals_each_sample_alone():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)) * [1, 10, 0]  # a constant column too
    samples = np.repeat([0, 1, 2], [20, 20, 10])
    scaled = minmax_scale(x, samples)
    for s in range(3):
        np.testing.assert_array_equal(scaled[samples == s], minmax_scale(x[samples == s]))
    lo, hi = minmax_ranges(x, samples)
    np.testing.assert_array_equal(lo[1], x[samples == 1].min(axis=0))
    # one sample: exactly the scaling over all spots
    np.testing.assert_array_equal(minmax_scale(x, np.zeros(50, dtype=int)), minmax_scale(x))
    # fixed ranges: plain arithmetic
    np.testing.assert_allclose(
        minmax_scale(x, ranges=(lo[0], hi[0]))[:, 0], (x[:, 0] - lo[0, 0]) / (hi[0, 0] - lo[0, 0]), rtol=1e-6
    )


def test_joint_prepare_scales_and_windows_per_section():
    adata = _two_sections(scale=3.0)  # another scale in the second section
    ae.pp.prepare(adata, batch_key="sample", **PREPARE)
    record = adata.uns["aestetik"]["prepare"]
    assert list(record["samples"]) == ["sample_0", "sample_1"]
    assert record["transforms"]["minmax_lo"].shape == (2, 6 + adata.obsm["X_morphology"].shape[1])
    codes = adata.obs["sample"].cat.codes.to_numpy()
    grid = adata.obsm["aestetik_grid"]
    for s in range(2):
        rows = np.flatnonzero(codes == s)
        # windows never reach into the other section, although both use the same lattice positions
        assert np.all(np.isin(grid[rows], np.r_[rows, -1]))
        alone = adata[rows].copy()
        ae.pp.prepare(alone, **PREPARE)
        np.testing.assert_array_equal(adata.obsm["aestetik_input"][rows], alone.obsm["aestetik_input"])
        lookup = np.full(adata.n_obs, -1)
        lookup[rows] = np.arange(rows.size)
        np.testing.assert_array_equal(np.where(grid[rows] >= 0, lookup[grid[rows]], -1), alone.obsm["aestetik_grid"])


def test_joint_pseudo_labels_are_shared():
    adata = _two_sections()
    ae.pp.prepare(adata, batch_key="sample", **PREPARE)
    codes = adata.obs["sample"].cat.codes.to_numpy()
    # one clustering of both sections: every label occurs in both and follows the same domains
    labels = adata.obs["aestetik_transcriptomics_cluster"]
    assert set(labels[codes == 0]) == set(labels[codes == 1]) == set(labels.cat.categories)


def test_joint_fit_and_cluster_give_one_label_set():
    adata = _two_sections()
    ae.pp.prepare(adata, batch_key="sample", **PREPARE)
    ae.tl.fit(adata, **FAST_FIT)
    ae.tl.cluster(adata, 4)
    assert adata.uns["aestetik"]["cluster"]["params"]["batch_key"] == "sample"
    domains = adata.obs["aestetik"]
    assert list(domains.cat.categories) == ["0", "1", "2", "3"]
    assert adata.uns["aestetik"]["cluster"]["centres"].shape == (4, FAST_FIT["latent_dim"])


def _one_missing(adata: ad.AnnData) -> None:
    adata.obs["sample"] = adata.obs["sample"].astype(object).where(adata.obs.index != adata.obs.index[3])


def _nan_float(adata: ad.AnnData) -> None:
    adata.obs["sample"] = np.where(np.arange(adata.n_obs) == 0, np.nan, 1.0)


def _no_column(adata: ad.AnnData) -> None:
    del adata.obs["sample"]


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (_one_missing, ValueError, r"`adata.obs\['sample'\]` has 1 missing values.*Fill them"),
        (_nan_float, ValueError, "missing values"),
        (_no_column, KeyError, r"Did not find `adata.obs\['sample'\]`"),
    ],
)
def test_bad_batch_key_is_refused_and_changes_nothing(edit, error, match):
    adata = _two_sections()
    edit(adata)
    before = snapshot(adata)
    with pytest.raises(error, match=match):
        ae.pp.prepare(adata, batch_key="sample", **PREPARE)
    assert_same(before, snapshot(adata))

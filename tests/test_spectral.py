"""``method='spectral'``: scikit-learn's spectral clustering, with the graph kept in at most ``n_clusters`` pieces."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import SpectralClustering
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

import aestetik as ae
from aestetik._domains import _spectral
from aestetik._domains._clustering import MAX_FIT_SPOTS, PREDICT_NEIGHBORS, _consecutive, cluster_features
from aestetik._domains._spectral import SPECTRAL_N_NEIGHBORS, knn_affinity, spectral_partition


def _sklearn(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    return SpectralClustering(
        k, affinity="nearest_neighbors", n_neighbors=SPECTRAL_N_NEIGHBORS, random_state=seed, assign_labels="cluster_qr"
    ).fit_predict(x)


def _broken_bands(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two parallel bands, each broken into 4 pieces by small gaps, and a blob: 3 groups."""
    rng = np.random.default_rng(seed)
    parts, truth = [], []
    for band, y in enumerate([0.0, 6.0]):
        for piece in range(4):
            parts.append(np.c_[rng.uniform(11.5 * piece, 11.5 * piece + 10, 200), rng.normal(y, 0.3, 200)])
            truth += [band] * 200
    parts.append(rng.normal((20, 30), 1, (300, 2)))
    truth += [2] * 300
    return np.vstack(parts), np.array(truth)


def test_spectral_equals_scikit_learn_on_a_connected_graph():
    """The plain computation: ``SpectralClustering(affinity='nearest_neighbors', n_neighbors=30, cluster_qr)``."""
    x, truth = make_blobs(n_samples=600, centers=5, n_features=6, cluster_std=3.0, random_state=1)
    _, k, pieces = knn_affinity(x, max_pieces=5)
    assert (k, pieces) == (SPECTRAL_N_NEIGHBORS, 1)
    expected = _sklearn(x, 5)
    np.testing.assert_array_equal(spectral_partition(x, 5, 0)[0], expected)
    res = cluster_features(x, 5, method="spectral", random_state=0)
    np.testing.assert_array_equal(res.labels, _consecutive(expected))
    assert (res.n_clusters, res.proba, res.resolution) == (5, None, None)
    assert adjusted_rand_score(truth, res.labels) > 0.9


def test_affinity_is_the_symmetrised_knn_graph():
    x = np.random.default_rng(0).normal(size=(120, 3))
    affinity, k, pieces = knn_affinity(x)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    nearest = np.argsort(d, axis=1, kind="stable")[:, :k]  # each row its own first neighbour
    a = np.zeros((120, 120))
    a[np.repeat(np.arange(120), k), nearest.ravel()] = 1
    np.testing.assert_allclose(affinity.toarray(), 0.5 * (a + a.T))
    assert pieces == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_graph_in_more_pieces_than_clusters_gets_more_neighbours(seed, monkeypatch):
    """At 30 neighbours the gaps break the graph into more pieces than clusters; the guard doubles the neighbours to 60 and finds the bands."""
    x, truth = _broken_bands(seed)
    _, k, pieces = knn_affinity(x, max_pieces=x.shape[0])
    assert k == SPECTRAL_N_NEIGHBORS
    assert pieces > 3  # the premise: more pieces than clusters at the default k
    _, k, pieces = knn_affinity(x, max_pieces=3)
    assert k == 2 * SPECTRAL_N_NEIGHBORS
    assert pieces <= 3
    logged = []
    monkeypatch.setattr(_spectral.logg, "warning", lambda msg, *a, **k: logged.append(msg))
    labels = cluster_features(x, 3, method="spectral", random_state=0).labels
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)
    assert len(logged) == 1
    assert "used 60 neighbours (3 pieces)" in logged[0]


def test_fewer_pieces_than_clusters_are_kept():
    """Three far blobs and 3 clusters: the 30-NN graph in 3 pieces is used as it is, one piece per cluster."""
    x, truth = make_blobs(n_samples=300, centers=[(0, 0), (50, 0), (0, 50)], cluster_std=1.0, random_state=0)
    _, k, pieces = knn_affinity(x, max_pieces=3)
    assert (k, pieces) == (SPECTRAL_N_NEIGHBORS, 3)
    with warnings.catch_warnings(record=True) as record:  # scikit-learn's "not fully connected" is not passed on
        warnings.simplefilter("always")
        labels = spectral_partition(x, 3, 0)[0]
    assert [str(w.message) for w in record] == []
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)


def test_neighbours_never_exceed_the_rows():
    x = np.r_[np.zeros((4, 2)), np.ones((4, 2)) * 100]  # 8 rows in 2 pieces
    _, k, pieces = knn_affinity(x, max_pieces=1)
    assert (k, pieces) == (7, 1)
    assert np.unique(spectral_partition(x, 1, 0)[0]).tolist() == [0]


def test_spectral_clusters_a_subsample_and_labels_the_rest_by_neighbours():
    """Above ``max_fit_spots`` a random subsample is clustered and every other row takes the majority label of
    its 15 nearest clustered rows (brute force here)."""
    assert MAX_FIT_SPOTS["spectral"] == 10_000
    x, truth = make_blobs(n_samples=900, centers=4, n_features=5, cluster_std=4.0, random_state=0)
    got = cluster_features(x, 4, method="spectral", random_state=0, max_fit_spots=300)
    rows = np.sort(np.random.default_rng(0).choice(900, size=300, replace=False))
    part = _sklearn(x[rows], 4)
    distances = ((x[:, None, :] - x[rows][None, :, :]) ** 2).sum(axis=-1)
    nearest = np.argsort(distances, axis=1)[:, :PREDICT_NEIGHBORS]
    expected = np.array([np.bincount(part[n], minlength=4).argmax() for n in nearest])
    expected[rows] = part
    np.testing.assert_array_equal(got.labels, _consecutive(expected))
    everything = cluster_features(x, 4, method="spectral", random_state=0).labels  # the blobs overlap (sd 4)
    assert adjusted_rand_score(truth, got.labels) > adjusted_rand_score(truth, everything) - 0.05 > 0.6


def test_tl_cluster_spectral_writes_domains_and_chooses_k():
    rng = np.random.default_rng(0)
    rows, cols = np.divmod(np.arange(400), 20)
    truth = (rows >= 10) * 2 + (cols >= 10)
    centres = 8 * np.eye(4, 6)
    adata = ad.AnnData(obs=pd.DataFrame(index=[f"s{i}" for i in range(400)]))
    adata.obsm["X_aestetik"] = (centres[truth] + rng.normal(size=(400, 6))).astype(np.float32)
    adata.obsm["spatial"] = np.c_[rows, cols].astype(float)
    ae.tl.cluster(adata, n_clusters=4, method="spectral", show_progress_bar=False)
    assert adata.obs["aestetik"].cat.categories.tolist() == ["0", "1", "2", "3"]
    assert adjusted_rand_score(truth, adata.obs["aestetik"]) == pytest.approx(1.0)
    assert adata.uns["aestetik"]["cluster"]["params"]["method"] == "spectral"
    assert "aestetik_proba" not in adata.obs
    auto = ae.tl.cluster(adata, n_clusters=range(2, 7), method="spectral", show_progress_bar=False, copy=True)
    assert auto.uns["aestetik"]["cluster"]["stability"]["chosen"] == 4


def test_pseudo_labels_by_spectral_clustering():
    """``prepare(clustering_method='spectral')``: step 1 cuts the neighbourhood average by spectral clustering."""
    from aestetik._domains._pseudo_labels import pseudo_labels
    from aestetik._space._smoothing import gaussian_smooth

    rows, cols = np.divmod(np.arange(400), 20)
    truth = (rows >= 10) * 2 + (cols >= 10)
    x = (8 * np.eye(4, 6)[truth] + np.random.default_rng(0).normal(scale=5.0, size=(400, 6))).astype(np.float32)
    positions = np.c_[rows, cols].astype(np.float64)
    samples = np.zeros(400, dtype=np.int32)
    got = pseudo_labels(x, positions, samples, n_clusters=4, method="spectral", sigma=1.0, random_state=0)
    smoothed = gaussian_smooth(x, positions, samples, sigma=1.0)
    np.testing.assert_array_equal(got.labels, _consecutive(_sklearn(smoothed, 4)))
    # the average over neighbours is what makes the groups separable here
    assert adjusted_rand_score(truth, got.labels) > 0.9 > adjusted_rand_score(truth, _sklearn(x, 4)) + 0.2

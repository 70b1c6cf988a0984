from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

from aestetik._domains import _clustering
from aestetik._domains._clustering import (
    APPROXIMATE_NEIGHBORS_MIN_SPOTS,
    GRAPH_N_NEIGHBORS,
    cluster_features,
    knn_connectivities,
)


def _random(n: int, dim: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim))


def _blobs(n_per: int = 75, n_centres: int = 4, dim: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = 8 * rng.normal(size=(n_centres, dim))
    return centres[np.repeat(np.arange(n_centres), n_per)] + rng.normal(size=(n_per * n_centres, dim))


def _n_neighbors(n: int) -> int:
    return max(min(GRAPH_N_NEIGHBORS, n - 1), 2)  # as cluster_features asks


def _scanpy(x: np.ndarray, n_neighbors: int, random_state: int = 0) -> tuple[sparse.csr_matrix, int]:
    """Connectivities of ``sc.pp.neighbors`` on an AnnData holding ``x`` (as the clustering did before), and the
    number of distances it stored: ``n_neighbors - 1`` per row from its brute-force search, ``n_neighbors + 1``
    (the row itself included) from pynndescent."""
    adata = ad.AnnData(obs=pd.DataFrame(index=pd.RangeIndex(x.shape[0]).astype(str)), obsm={"X_rep": x})
    sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep="X_rep", random_state=random_state)
    return sparse.csr_matrix(adata.obsp["connectivities"]), adata.obsp["distances"].nnz


def _assert_identical(got, expected) -> None:
    """Same shape, sparsity pattern (in stored order), dtype and values, bit for bit."""
    got, expected = sparse.csr_matrix(got), sparse.csr_matrix(expected)
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got.indptr, expected.indptr)
    np.testing.assert_array_equal(got.indices, expected.indices)
    assert got.data.tobytes() == expected.data.tobytes()


@pytest.mark.parametrize(
    ("name", "x"),
    [
        ("random 300", _random(300)),
        ("random 5000", _random(5000)),  # above 4096, still scanpy's exact search (euclidean: below 8192)
        ("blobs", _blobs()),
        ("float32", _random(400, 6, seed=1).astype(np.float32)),
        ("duplicated rows", np.repeat(_random(100, 4, seed=2), 3, axis=0)),
        ("fortran order", np.asfortranarray(_random(200, 5, seed=3))),
        ("three rows", _random(3, 2, seed=4)),
    ],
)
def test_connectivities_equal_scanpy_exact_search(name, x):
    n_neighbors = _n_neighbors(x.shape[0])
    expected, n_distances = _scanpy(x, n_neighbors, random_state=0)
    assert n_distances == x.shape[0] * (n_neighbors - 1)  # scanpy searched by brute force
    _assert_identical(knn_connectivities(x, n_neighbors, random_state=0), expected)


@pytest.mark.slow  # ~30 s, mostly compiling pynndescent's numba functions
def test_connectivities_equal_scanpy_approximate_search(monkeypatch):
    """From 8192 rows on, scanpy (and the engine) search with pynndescent, seeded."""
    import pynndescent

    n = APPROXIMATE_NEIGHBORS_MIN_SPOTS + 808
    x = np.concatenate([_random(n - 3000, 10, seed=5), _blobs(n_per=1000, n_centres=3, dim=10, seed=6)])
    got = knn_connectivities(x, GRAPH_N_NEIGHBORS, random_state=0)
    # pynndescent 0.7 returns a csr_array, on which scanpy 1.11 calls `getnnz`, a method scipy's sparse arrays lack
    # (scipy 1.17): sc.pp.neighbors raises AttributeError here. The same neighbours as a csr_matrix let it run (the
    # engine reads indptr, indices and data, alike in both)
    transform = pynndescent.PyNNDescentTransformer.transform
    monkeypatch.setattr(
        pynndescent.PyNNDescentTransformer, "transform", lambda self, X, y=None: sparse.csr_matrix(transform(self, X))
    )
    expected, n_distances = _scanpy(x, GRAPH_N_NEIGHBORS, random_state=0)
    assert n_distances == n * (GRAPH_N_NEIGHBORS + 1)  # scanpy searched with pynndescent
    _assert_identical(got, expected)
    # the search is approximate and seeded there
    assert (knn_connectivities(x, GRAPH_N_NEIGHBORS, random_state=1) != got).nnz > 0


def _old_neighbour_graph(x: np.ndarray, method: str, random_state: int):
    """The graph as the clustering built it before (scanpy on a throw-away AnnData)."""
    import igraph as ig

    n = x.shape[0]
    adjacency, _ = _scanpy(x, _n_neighbors(n), random_state)
    directed = method == "leiden"
    if not directed:
        adjacency = sparse.triu(adjacency, k=1, format="csr")
    sources, targets = adjacency.nonzero()
    weights = np.asarray(adjacency[sources, targets], dtype=np.float64).reshape(-1)
    graph = ig.Graph(n=n, edges=list(zip(sources.tolist(), targets.tolist(), strict=True)), directed=directed)
    return graph, weights


@pytest.mark.parametrize("method", ["leiden", "louvain"])
@pytest.mark.parametrize("n_clusters", [4, 0.8])
def test_graph_clustering_unchanged(monkeypatch, method, n_clusters):
    x = _random(150, 6, seed=7)  # 4 clusters at resolution 0.68 (after 30 tried)
    new = cluster_features(x, n_clusters, method=method, random_state=3)
    graph, weights = _clustering._neighbour_graph(x, method, 3)
    old_graph, old_weights = _old_neighbour_graph(x, method, 3)
    assert graph.get_edgelist() == old_graph.get_edgelist()
    assert graph.is_directed() == old_graph.is_directed() == (method == "leiden")
    assert weights.tobytes() == old_weights.tobytes()
    monkeypatch.setattr(_clustering, "_neighbour_graph", _old_neighbour_graph)
    old = cluster_features(x, n_clusters, method=method, random_state=3)
    np.testing.assert_array_equal(new.labels, old.labels)
    assert new.resolution == old.resolution
    assert new.n_clusters == old.n_clusters

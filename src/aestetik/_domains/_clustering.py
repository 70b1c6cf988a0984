"""Clustering back-ends (bgm, k-means, Leiden, Louvain, spectral) and the resolution search, on plain arrays.

Semantics follow the reference implementation (``aestetik.utils.utils_clustering`` of aestetik 0.3.1):

- ``bgm``: the Bayesian Gaussian mixture of :mod:`aestetik._domains._mixture`.
- ``kmeans``: :class:`~sklearn.cluster.KMeans` with ``n_init=100``.
- ``leiden``/``louvain``: scanpy's 50-nearest-neighbour graph (:func:`knn_connectivities`, the connectivities of
  ``sc.pp.neighbors`` computed on the array). Leiden runs ``leidenalg`` exactly as the reference's
  ``sc.tl.leiden`` (flavor ``'leidenalg'``) did: directed weighted graph,
  :class:`~leidenalg.RBConfigurationVertexPartition`, ``n_iterations=-1``, seeded. Louvain is
  igraph's multilevel algorithm with resolution on the same (undirected) graph: the same quality function that the
  ``louvain`` package (scanpy's default flavor, not a dependency) optimised. For an int ``K`` the resolution is
  searched upward from 0.1 in steps of 0.02.
- ``spectral`` (not in the reference): see :mod:`aestetik._domains._spectral`.
- refinement: see :mod:`aestetik._domains._refine`.
- number of domains (not in the reference): see :mod:`aestetik._domains._stability`.

Deliberate differences: labels are relabelled to consecutive ``0..k-1``; when no resolution gives exactly ``K``
clusters the closest count is used (the reference kept the last resolution tried), after trying
:data:`LOW_RESOLUTIONS` when every resolution gave more clusters; every method is fitted on at
most :data:`MAX_FIT_SPOTS` random spots (the graph methods and spectral clustering label the others by their
nearest neighbours).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
from scanpy import logging as logg

from ._mixture import _bgm
from ._spectral import kept_neighbours, spectral_partition

if TYPE_CHECKING:
    import igraph
    from scipy import sparse

ClusterMethod = Literal["auto", "bgm", "kmeans", "leiden", "louvain", "spectral"]
CLUSTER_METHODS: tuple[str, ...] = get_args(ClusterMethod)
GRAPH_METHODS: tuple[str, ...] = ("leiden", "louvain")

#: Resolutions tried for an int ``n_clusters`` with ``leiden``/``louvain`` (reference: start 0.1, end 3, step 0.02).
RESOLUTIONS: np.ndarray = np.round(np.arange(0.1, 3.0, 0.02), 6)
#: Tried downward when no resolution of :data:`RESOLUTIONS` gives exactly ``n_clusters`` and all give more (not in
#: the reference, which then returned another number of clusters): on embeddings with few, large domains the
#: lowest resolution of :data:`RESOLUTIONS` can already give more clusters than asked for.
LOW_RESOLUTIONS: np.ndarray = np.round(np.r_[np.arange(0.09, 0.005, -0.01), 0.005, 0.002, 0.001], 6)
#: Neighbours of the graph for ``leiden``/``louvain``.
GRAPH_N_NEIGHBORS = 50
#: ``'bgm'`` and ``'kmeans'`` fit on at most this many random spots, then predict all (see cluster_features).
#: The mixture's random initialisation (random responsibilities, as published) starts every component at
#: nearly the global mean once there are many spots, and then converges to a degenerate split (see the
#: method page). The k-means start of :data:`~aestetik._domains._mixture.BGM_INITS` rescues such fits, but 11
#: fits on every spot would dominate the run time, so the mixture is fitted on at most 5,000 spots, more than any
#: Visium section holds (4,992).
#: ``'leiden'``/``'louvain'`` partition the neighbour graph of at most 50,000 random spots; every other spot takes the
#: majority label of its :data:`PREDICT_NEIGHBORS` nearest partitioned spots, which is faster on larger data and
#: gives the same labels (see the method page). ``'spectral'`` does the same from 10,000 spots: its
#: eigen-solver's time grows faster than the number of spots.
MAX_FIT_SPOTS = {
    "bgm": 5_000,
    "kmeans": 100_000,
    "leiden": 50_000,
    "louvain": 50_000,
    "spectral": 10_000,
    "auto": 10_000,
}
#: ``method='auto'`` keeps k-means' domains instead of the spectral ones when they cut at most this fraction of the
#: neighbour pairs that the spectral ones cut (a fifth fewer or better): a clear difference, not the noise between
#: two sound partitions (see the method page).
KMEANS_CUT_RATIO = 0.8
#: Neighbours that label a spot left out of the graph partition (scanpy's default ``n_neighbors``).
PREDICT_NEIGHBORS = 15
#: From this many rows on, ``sc.pp.neighbors`` (euclidean metric) searches the neighbours approximately with
#: pynndescent, below exactly by brute force; :func:`knn_connectivities` does the same.
APPROXIMATE_NEIGHBORS_MIN_SPOTS = 8192


@dataclass
class ClusterResult:
    """Outcome of :func:`cluster_features`.

    Attributes
    ----------
    labels
        int64, consecutive ``0..k-1`` (original order of the cluster ids kept).
    proba
        Maximum posterior of the assigned component per spot (``bgm`` only), else ``None``.
    resolution
        Resolution used by ``leiden``/``louvain``, else ``None``.
    n_clusters
        Number of distinct labels found.
    method
        The method that made ``labels``: the one asked for, or for ``'auto'`` the one it kept.
    agreement
        ``bgm`` with several starts: the adjusted Rand index between the clusters of the two starts with the
        highest lower bounds (see :func:`~aestetik._domains._mixture._bgm`), else ``None``.
    """

    labels: np.ndarray
    proba: np.ndarray | None
    resolution: float | None
    n_clusters: int
    method: str = ""
    agreement: float | None = None


def cluster_features(
    x: np.ndarray,
    n_clusters: int | float,
    *,
    method: ClusterMethod = "bgm",
    random_state: int = 0,
    max_fit_spots: int | None = None,
    n_jobs: int = 1,
    n_components: int | None = None,
    bgm_inits: tuple[tuple[str, int], ...] | None = None,
) -> ClusterResult:
    """Cluster the rows of ``x`` into ``n_clusters`` groups (or at resolution ``n_clusters`` for graph methods).

    ``'bgm'`` and ``'kmeans'`` are fitted on at most ``max_fit_spots`` random rows (default
    :data:`MAX_FIT_SPOTS`: 5,000 for the mixture, whose random initialisation degenerates on many spots,
    100,000 for k-means) and then predict every row; ``'leiden'``/``'louvain'`` partition the graph of at most
    50,000 random rows (``'spectral'``: 10,000), and every other row takes the majority label of its
    :data:`PREDICT_NEIGHBORS` nearest partitioned rows. The mixture's starts run in ``n_jobs`` processes
    (joblib's meaning; the result does not depend on it). ``n_components`` (``'bgm'`` only; default
    ``n_clusters``) fits a mixture of that many components and merges the most overlapping ones into
    ``n_clusters`` clusters (:func:`~aestetik._domains._mixture.merge_components`); ``bgm_inits`` are its starts
    (default :data:`~aestetik._domains._mixture.BGM_INITS`).
    """
    if method not in CLUSTER_METHODS:
        msg = f"Unknown method={method!r}; choose one of {', '.join(repr(m) for m in CLUSTER_METHODS)}."
        raise ValueError(msg)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)  # float32 stays float32, as sklearn saw it in the reference
    if x.ndim != 2:
        msg = f"Expected a 2-D feature matrix, got shape {x.shape}."
        raise ValueError(msg)
    is_int = isinstance(n_clusters, int | np.integer) and not isinstance(n_clusters, bool)
    if not is_int and method not in GRAPH_METHODS:
        msg = f"method={method!r} needs an int number of clusters, got {n_clusters!r}; a float resolution is only for 'leiden'/'louvain'."
        raise ValueError(msg)
    if is_int and not 1 <= n_clusters <= x.shape[0]:
        msg = f"n_clusters={n_clusters} must be between 1 and the number of rows ({x.shape[0]})."
        raise ValueError(msg)
    if n_components is not None and (method != "bgm" or not is_int or not n_clusters <= n_components <= x.shape[0]):
        msg = (
            f"n_components={n_components} needs method='bgm' and an int between n_clusters ({n_clusters}) and the "
            f"number of rows ({x.shape[0]})."
        )
        raise ValueError(msg)

    proba = resolution = agreement = None
    used = "spectral" if method == "auto" else method
    limit = MAX_FIT_SPOTS.get(method, 0) if max_fit_spots is None else int(max_fit_spots)
    fit_rows = None
    if x.shape[0] > limit:
        rng = np.random.default_rng(random_state)
        fit_rows = np.sort(rng.choice(x.shape[0], size=limit, replace=False))
    if method == "bgm":
        labels, proba, agreement = _bgm(x, int(n_clusters), random_state, fit_rows, n_jobs, n_components, bgm_inits)
    elif method == "kmeans":
        labels = _kmeans(x, int(n_clusters), random_state, fit_rows)
    else:  # the graph methods and spectral clustering: cut the subsample, label the rest by neighbours
        data = x if fit_rows is None else x[fit_rows]
        if method in ("spectral", "auto"):
            labels, affinity = spectral_partition(data, int(n_clusters), random_state)
            if method == "auto" and affinity is not None:
                used, labels = _spectral_or_kmeans(data, int(n_clusters), random_state, labels, affinity)
        else:
            partitions = GraphPartitions(data, method, random_state)
            if is_int:
                labels, resolution = partitions.search(int(n_clusters))
            else:
                resolution = float(n_clusters)
                labels = partitions(resolution)
        if fit_rows is not None:
            labels = _predict_by_neighbours(x, fit_rows, labels)

    labels = _consecutive(labels)
    found = int(labels.max()) + 1 if labels.size else 0
    if is_int and method not in GRAPH_METHODS and found < n_clusters:
        logg.warning(f"{method} left {n_clusters - found} of {n_clusters} clusters empty; found {found}.")
    return ClusterResult(
        labels=labels, proba=proba, resolution=resolution, n_clusters=found, method=used, agreement=agreement
    )


def _spectral_or_kmeans(
    x: np.ndarray, n_clusters: int, random_state: int, spectral: np.ndarray, affinity: sparse.spmatrix
) -> tuple[str, np.ndarray]:
    """``method='auto'``: the spectral partition, unless the k-means one cuts clearly fewer k-NN edges of ``x``.

    Both are partitions of the same embedding into ``n_clusters``. The weight of the spectral clustering's
    k-nearest-neighbour graph that each cuts (edges between clusters, :func:`kept_neighbours`) is compared, and
    k-means is kept when it cuts at most :data:`KMEANS_CUT_RATIO` times as much. The normalised cut of spectral
    clustering prefers clusters of similar volume and splits a large dense domain when the others are small;
    k-means splits a domain that is connected but not compact. Each failure cuts many neighbour pairs, which this
    criterion, blind to cluster sizes, sees; where both partitions are sound they cut about as much, and the graph
    cut stays.
    """
    kmeans = _consecutive(_kmeans(x, n_clusters, random_state))
    cut_spectral = 1.0 - kept_neighbours(affinity, spectral)
    cut_kmeans = 1.0 - kept_neighbours(affinity, kmeans)
    if cut_kmeans <= KMEANS_CUT_RATIO * cut_spectral:
        return "kmeans", kmeans
    return "spectral", spectral


def _predict_by_neighbours(x: np.ndarray, fit_rows: np.ndarray, fit_labels: np.ndarray) -> np.ndarray:
    """Labels of every row of ``x``: ``fit_labels`` on ``fit_rows``, elsewhere by their nearest ``fit_rows``.

    The majority of the :data:`PREDICT_NEIGHBORS` nearest ``fit_rows`` (euclidean; ties: the smallest label).
    """
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.empty(x.shape[0], dtype=np.int64)
    labels[fit_rows] = fit_labels
    rest = np.setdiff1d(np.arange(x.shape[0]), fit_rows)
    knn = KNeighborsClassifier(n_neighbors=min(PREDICT_NEIGHBORS, fit_rows.size)).fit(x[fit_rows], fit_labels)
    labels[rest] = knn.predict(x[rest])
    return labels


def _consecutive(labels: np.ndarray) -> np.ndarray:
    """Map label ids to ``0..k-1``, keeping their order."""
    return np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1).astype(np.int64)


@contextmanager
def _convergence_to_log(what: str) -> Iterator[None]:
    """Turn sklearn's ConvergenceWarning into a log message; other warnings are re-emitted unchanged."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield
    logged: set[str] = set()
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            if str(w.message) not in logged:
                logged.add(str(w.message))
                logg.warning(f"{what}: {w.message}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _kmeans(x: np.ndarray, n_clusters: int, random_state: int, fit_rows: np.ndarray | None = None) -> np.ndarray:
    from sklearn.cluster import KMeans

    with _convergence_to_log("k-means"):
        km = KMeans(n_clusters=n_clusters, n_init=100, random_state=random_state)
        if fit_rows is None:
            return km.fit_predict(x)
        return km.fit(x[fit_rows]).predict(x)


def _neighbour_graph(x: np.ndarray, method: str, random_state: int) -> tuple[igraph.Graph, np.ndarray]:
    """The k-NN connectivities of ``x`` (:func:`knn_connectivities`) as an igraph graph with edge weights.

    Directed (both directions of every edge) for Leiden, as ``sc.tl.leiden`` builds it; undirected for Louvain.
    """
    import igraph as ig
    from scipy import sparse

    n = x.shape[0]
    connectivities = knn_connectivities(x, max(min(GRAPH_N_NEIGHBORS, n - 1), 2), random_state=random_state)
    adjacency = sparse.csr_matrix(connectivities)
    directed = method == "leiden"
    if not directed:
        adjacency = sparse.triu(adjacency, k=1, format="csr")  # the connectivities are symmetric
    sources, targets = adjacency.nonzero()
    weights = np.asarray(adjacency[sources, targets], dtype=np.float64).reshape(-1)
    graph = ig.Graph(n=n, edges=list(zip(sources.tolist(), targets.tolist(), strict=True)), directed=directed)
    return graph, weights


def knn_connectivities(x: np.ndarray, n_neighbors: int, *, random_state: int = 0) -> sparse.csr_matrix:
    """UMAP connectivities of the ``n_neighbors`` nearest neighbours (euclidean; each row is its own first one).

    The matrix that ``sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep=key, random_state=random_state)``
    (scanpy 1.11, ``method='umap'``) writes to ``adata.obsp['connectivities']`` when ``adata.obsm[key]`` is ``x``,
    computed as scanpy does, on the array: below :data:`APPROXIMATE_NEIGHBORS_MIN_SPOTS` rows the exact
    neighbours (:class:`~sklearn.neighbors.KNeighborsTransformer`, brute force), from there on approximate ones
    (:class:`~pynndescent.PyNNDescentTransformer`, seeded, with UMAP's ``n_trees`` and ``n_iters``), both with
    :attr:`scanpy.settings.n_jobs`; then :func:`umap.umap_.fuzzy_simplicial_set`. Scanpy's details are kept: the
    row itself is prepended only when no row's search returned it first, the brute-force distance of a row to
    itself is set to 0, and ``n_neighbors`` above the number of rows becomes ``1 + n // 2`` (with its warning).
    """
    import scanpy as sc
    from scipy import sparse

    n = x.shape[0]
    if n_neighbors > n:
        n_neighbors = 1 + int(0.5 * n)
        logg.warning(f"n_obs too small: adjusting to `n_neighbors = {n_neighbors}`")
    exact = n < APPROXIMATE_NEIGHBORS_MIN_SPOTS
    if exact:
        from sklearn.neighbors import KNeighborsTransformer

        transformer = KNeighborsTransformer(
            algorithm="brute",
            n_jobs=sc.settings.n_jobs,
            n_neighbors=min(n - 1, n_neighbors),
            metric="euclidean",
            metric_params={},
        )
    else:
        from pynndescent import PyNNDescentTransformer

        transformer = PyNNDescentTransformer(
            n_neighbors=n_neighbors,
            metric="euclidean",
            metric_kwds={},
            random_state=random_state,
            n_jobs=sc.settings.n_jobs,
            n_trees=min(64, 5 + round(n**0.5 / 20.0)),
            n_iters=max(5, round(np.log2(n))),
        )
    # CSR: per row the n_neighbors + 1 nearest (normally the row itself first), nearest first
    distance_graph = transformer.fit_transform(x)
    per_row = np.diff(distance_graph.indptr)
    if np.any(per_row != per_row[0]):
        msg = "The neighbour search returned rows with different numbers of neighbours."
        raise AssertionError(msg)
    indices = distance_graph.indices.reshape(n, int(per_row[0]))
    distances = distance_graph.data.reshape(n, int(per_row[0]))
    if not np.any(indices[:, 0] == np.arange(n)):
        indices = np.hstack([np.arange(n)[:, None], indices])
        distances = np.hstack([np.zeros(n)[:, None], distances])
    elif exact:
        # scanpy zeroes the diagonal of the brute-force distances (sklearn's distance of a row to itself is not
        # always 0), in place, so in the neighbours' distances, which share that memory unless copied just above
        distances = distances.copy()
        distances[indices == np.arange(n)[:, None]] = 0
    indices, distances = indices[:, :n_neighbors], distances[:, :n_neighbors]

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Tensorflow not installed")
        from umap.umap_ import fuzzy_simplicial_set

    connectivities, _, _ = fuzzy_simplicial_set(
        sparse.coo_matrix((n, 1)),
        n_neighbors,
        None,
        None,
        knn_indices=indices,
        knn_dists=distances,
        set_op_mix_ratio=1.0,
        local_connectivity=1.0,
    )
    return connectivities.tocsr()


def _partition(
    graph: igraph.Graph, weights: np.ndarray, resolution: float, *, method: str, random_state: int
) -> np.ndarray:
    """Leiden (leidenalg, until stable) or Louvain (igraph's multilevel) at ``resolution``."""
    if method == "leiden":
        import leidenalg as la

        part = la.find_partition(
            graph,
            la.RBConfigurationVertexPartition,
            weights=weights,
            resolution_parameter=resolution,
            n_iterations=-1,
            seed=random_state,
        )
        return np.asarray(part.membership, dtype=np.int64)
    # Modularity with resolution on the undirected graph equals the RB-configuration quality of the symmetric
    # directed graph that the reference's `louvain` package optimised. (leidenalg's optimiser without refinement
    # would be Louvain too, but `refine_partition = False` crashes leidenalg 0.12.)
    import random

    import igraph as ig

    try:
        ig.set_random_number_generator(random.Random(random_state))
        part = graph.community_multilevel(weights=weights, resolution=resolution)
    finally:
        ig.set_random_number_generator(random)
    return np.asarray(part.membership, dtype=np.int64)


class GraphPartitions:
    """The Leiden/Louvain partitions of one neighbour graph of ``x``, each resolution computed once.

    ``self(resolution)`` partitions (remembered, so a search for several numbers of clusters sweeps the
    resolutions once); :meth:`search` finds the resolution for ``n_clusters`` (:func:`_search_resolution` over
    :data:`RESOLUTIONS`, then :data:`LOW_RESOLUTIONS`).
    """

    def __init__(self, x: np.ndarray, method: str, random_state: int) -> None:
        self.graph, self.weights = _neighbour_graph(x, method, random_state)
        self.method, self.random_state = method, random_state
        self._memo: dict[float, np.ndarray] = {}

    def __call__(self, resolution: float) -> np.ndarray:
        if resolution not in self._memo:
            self._memo[resolution] = _partition(
                self.graph, self.weights, resolution, method=self.method, random_state=self.random_state
            )
        return self._memo[resolution]

    def search(self, n_clusters: int) -> tuple[np.ndarray, float]:
        return _search_resolution(self, n_clusters, RESOLUTIONS, LOW_RESOLUTIONS)


def _search_resolution(
    run: Callable[[float], np.ndarray], n_clusters: int, resolutions: np.ndarray, low: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """First resolution (upward) giving exactly ``n_clusters``; else the closest count (ties: the first tried).

    When none of ``resolutions`` gives ``n_clusters`` and every one gives more, the ``low`` resolutions are tried
    in their order (downward) before falling back to the closest count over all.
    """
    best: tuple[int, float, np.ndarray] | None = None
    tried: list[np.ndarray] = []
    fewest = np.inf  # the fewest clusters any resolution gave
    for values in [resolutions] if low is None else [resolutions, low]:
        if fewest <= n_clusters:  # a lower resolution would not help
            break
        tried.append(values)
        for res in values:
            labels = run(float(res))
            count = np.unique(labels).size
            fewest = min(fewest, count)
            if count == n_clusters:
                return labels, float(res)
            if best is None or abs(count - n_clusters) < abs(best[0] - n_clusters):
                best = (count, float(res), labels)
    if best is None:
        msg = "No resolution to search."
        raise ValueError(msg)
    count, res, labels = best
    lo, hi = min(float(v.min()) for v in tried), max(float(v.max()) for v in tried)
    logg.warning(
        f"No resolution in [{lo:g}, {hi:g}] gave exactly {n_clusters} clusters; "
        f"using resolution {res:g} with {count} clusters."
    )
    return labels, res

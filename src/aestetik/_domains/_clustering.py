"""Clustering back-ends (bgm, k-means, Leiden, Louvain) and the spatial k-NN refinement, on plain arrays.

Semantics follow the reference implementation (``aestetik.utils.utils_clustering`` of aestetik 0.3.1):

- ``bgm``: :class:`~sklearn.mixture.BayesianGaussianMixture` (tied covariance, random init, ``n_init=10``,
  ``max_iter=1000``), plus one k-means-initialised fit; the fit with the highest lower bound wins (see
  :data:`BGM_INITS`). The posterior of the assigned component is returned as confidence.
- ``kmeans``: :class:`~sklearn.cluster.KMeans` with ``n_init=100``.
- ``leiden``/``louvain``: scanpy's 50-nearest-neighbour graph. Leiden runs ``leidenalg`` exactly as the reference's
  ``sc.tl.leiden`` (flavor ``'leidenalg'``) did: directed weighted graph,
  :class:`~leidenalg.RBConfigurationVertexPartition`, ``n_iterations=-1``, seeded. Louvain is
  igraph's multilevel algorithm with resolution on the same (undirected) graph: the same quality function that the
  ``louvain`` package (scanpy's default flavor, not a dependency) optimised. For an int ``K`` the resolution is
  searched upward from 0.1 in steps of 0.02.
- refinement: per sample, a k-NN classifier on the coordinates of confident spots relabels every spot.
- number of domains (not in the reference): see :mod:`aestetik._domains._stability`.

Deliberate differences: labels are relabelled to consecutive ``0..k-1``; when no resolution gives exactly ``K``
clusters the closest count is used (the reference kept the last resolution tried); refinement caps
``n_neighbors`` at the number of confident spots (the reference raised).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
from scanpy import logging as logg

if TYPE_CHECKING:
    import igraph

ClusterMethod = Literal["bgm", "kmeans", "leiden", "louvain"]
CLUSTER_METHODS: tuple[str, ...] = get_args(ClusterMethod)
GRAPH_METHODS: tuple[str, ...] = ("leiden", "louvain")

#: Resolutions tried for an int ``n_clusters`` with ``leiden``/``louvain`` (reference: start 0.1, end 3, step 0.02).
RESOLUTIONS: np.ndarray = np.round(np.arange(0.1, 3.0, 0.02), 6)
#: Neighbours of the graph for ``leiden``/``louvain``.
GRAPH_N_NEIGHBORS = 50
#: How many times ``reg_covar`` is multiplied by 10 when the mixture's covariance is ill-conditioned.
BGM_REG_COVAR_RETRIES = 3
#: Initialisations of the mixture: ``(init_params, n_init)``. The published 10 random initialisations, plus
#: one from k-means; as within sklearn's ``n_init``, the fit with the highest variational lower bound (the
#: mixture's own objective) is kept, so the result is never worse by that objective than the published one.
#: Random responsibilities start every component near the global mean and can all converge to one poor
#: split (a trained synthetic embedding: ARI 0.42 from all 10, 0.92 from k-means, which also has the
#: higher bound); where the random fits are better (DLPFC pseudo-labels) their bound is the higher one.
BGM_INITS: tuple[tuple[str, int], ...] = (("random", 10), ("kmeans", 1))
#: ``'bgm'`` and ``'kmeans'`` fit on at most this many random spots, then predict all (see cluster_features).
#: The mixture's random initialisation (random responsibilities, as published) starts every component at
#: nearly the global mean once there are many spots, and then converges to a degenerate split (measured on
#: the synthetic sections: ARI 0.98 fitted on 5,000 of 100,000 spots, 0.02 on 20,000 or more). The k-means
#: start of :data:`BGM_INITS` rescues such fits, but 11 fits on every spot would dominate the run time, so
#: the mixture is fitted on at most 5,000 spots, more than any Visium section holds (4,992).
MAX_FIT_SPOTS = {"bgm": 5_000, "kmeans": 100_000}
#: The spatial refinement searches neighbours by brute force up to this many confident spots, else a KD-tree.
BRUTE_FORCE_MAX_SPOTS = 50_000


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
    """

    labels: np.ndarray
    proba: np.ndarray | None
    resolution: float | None
    n_clusters: int


def cluster_features(
    x: np.ndarray,
    n_clusters: int | float,
    *,
    method: ClusterMethod = "bgm",
    random_state: int = 0,
    max_fit_spots: int | None = None,
    n_jobs: int = 1,
) -> ClusterResult:
    """Cluster the rows of ``x`` into ``n_clusters`` groups (or at resolution ``n_clusters`` for graph methods).

    ``'bgm'`` and ``'kmeans'`` are fitted on at most ``max_fit_spots`` random rows (default
    :data:`MAX_FIT_SPOTS`: 5,000 for the mixture, whose random initialisation degenerates on many spots,
    100,000 for k-means) and then predict every row. The mixture's starts run in ``n_jobs`` processes
    (joblib's meaning; the result does not depend on it).
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

    proba = resolution = None
    limit = MAX_FIT_SPOTS.get(method, 0) if max_fit_spots is None else int(max_fit_spots)
    fit_rows = None
    if method in ("bgm", "kmeans") and x.shape[0] > limit:
        rng = np.random.default_rng(random_state)
        fit_rows = np.sort(rng.choice(x.shape[0], size=limit, replace=False))
    if method == "bgm":
        labels, proba = _bgm(x, int(n_clusters), random_state, fit_rows, n_jobs)
    elif method == "kmeans":
        labels = _kmeans(x, int(n_clusters), random_state, fit_rows)
    else:
        graph, weights = _neighbour_graph(x, method, random_state)
        run = lambda res: _partition(graph, weights, res, method=method, random_state=random_state)
        if is_int:
            labels, resolution = _search_resolution(run, int(n_clusters), RESOLUTIONS)
        else:
            resolution = float(n_clusters)
            labels = run(resolution)

    labels = _consecutive(labels)
    found = int(labels.max()) + 1 if labels.size else 0
    if is_int and method not in GRAPH_METHODS and found < n_clusters:
        logg.warning(f"{method} left {n_clusters - found} of {n_clusters} clusters empty; found {found}.")
    return ClusterResult(labels=labels, proba=proba, resolution=resolution, n_clusters=found)


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


def _bgm(
    x: np.ndarray, n_clusters: int, random_state: int, fit_rows: np.ndarray | None = None, n_jobs: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Bayesian Gaussian mixture (fitted on ``fit_rows`` if given) with the best of :data:`BGM_INITS`."""
    data = x if fit_rows is None else x[fit_rows]
    bgm = best_bgm(data, n_clusters, random_state, n_jobs=n_jobs)
    labels = bgm.predict(x)
    proba = bgm.predict_proba(x).max(axis=1)
    return labels, proba


def _lower_bound(model) -> float:
    return float(np.asarray(model.lower_bound_).reshape(-1)[-1])


def best_bgm(x: np.ndarray, n_clusters: int, random_state: int, *, n_jobs: int = 1):
    """The fitted mixture with the highest lower bound over the starts of :data:`BGM_INITS`, in ``n_jobs`` processes.

    Every start is fitted on its own (``n_init=1``): random start ``s`` of an ``(init, n_init)`` entry draws its
    responsibilities from ``RandomState(random_state)`` after skipping the ``s`` draws of the starts before it,
    which is the stream sklearn's ``n_init`` loop reads, so the starts are those of one sklearn fit with
    ``n_init`` starts and the first start with the highest bound wins as there. The result does not depend on
    ``n_jobs``. Each fit runs with one BLAS thread. A group whose covariance is ill-conditioned is refitted
    with 10x ``reg_covar``, as a whole (as its single sklearn fit would be). Entries other than ``'random'``
    have one start (further k-means starts would read a stream of no fixed length).
    """
    if any(n_init != 1 for init, n_init in BGM_INITS if init != "random"):
        msg = "Only the 'random' initialisation can have several starts."
        raise AssertionError(msg)
    # one task per start: (entry of BGM_INITS, init, start)
    starts = [(g, init, start) for g, (init, n_init) in enumerate(BGM_INITS) for start in range(n_init)]
    reg_covar = [1e-6] * len(BGM_INITS)  # sklearn's default, per entry
    fits: list[Any] = [None] * len(starts)
    todo = list(range(len(starts)))
    for attempt in range(BGM_REG_COVAR_RETRIES + 1):
        tasks = [
            (x, n_clusters, random_state, init, start, reg_covar[g]) for g, init, start in (starts[i] for i in todo)
        ]
        for i, out in zip(todo, _run(_fit_bgm_start, tasks, n_jobs), strict=True):
            fits[i] = out
        errors = {starts[i][0]: fits[i] for i in reversed(todo) if isinstance(fits[i], Exception)}  # first per entry
        if not errors:
            break
        for g, err in sorted(errors.items()):
            if attempt == BGM_REG_COVAR_RETRIES:
                msg = (
                    f"The Gaussian mixture failed even with reg_covar={reg_covar[g]:g} (ill-conditioned covariance). "
                    "Use fewer clusters, or check the representation for duplicated or constant spots."
                )
                raise ValueError(msg) from err
            reg_covar[g] *= 10
            logg.warning(f"Gaussian mixture covariance ill-conditioned; retrying with reg_covar={reg_covar[g]:g}.")
        todo = [i for i, (g, _, _) in enumerate(starts) if g in errors]
    # the best start of each entry (first wins ties, as in sklearn), then the best entry (first wins ties)
    entry_best = [
        max((i for i, (h, _, _) in enumerate(starts) if h == g), key=lambda i: _lower_bound(fits[i]))
        for g in range(len(BGM_INITS))
    ]
    if any(not fits[i].converged_ for i in entry_best):
        logg.warning(
            "Bayesian Gaussian mixture: Best performing initialization did not converge. Try different init "
            "parameters, or increase max_iter, tol, or check for degenerate data."
        )
    return fits[max(entry_best, key=lambda i: _lower_bound(fits[i]))]


def _run(function: Callable, tasks: list[tuple], n_jobs: int) -> list:
    """``[function(*t) for t in tasks]``, in up to ``n_jobs`` worker processes (joblib's meaning: -1 = all cores)."""
    from joblib import Parallel, delayed, effective_n_jobs

    n_jobs = min(effective_n_jobs(n_jobs), len(tasks))
    if n_jobs <= 1:
        return [function(*t) for t in tasks]
    return Parallel(n_jobs=n_jobs, backend="loky")(delayed(function)(*t) for t in tasks)


def _fit_bgm_start(x: np.ndarray, n_clusters: int, random_state: int, init: str, start: int, reg_covar: float):
    """Start ``start`` of a mixture fit with ``init_params=init`` (see :func:`best_bgm`), or the error it raised.

    An ill-conditioned covariance comes back as the exception (the caller retries the group); any other error is
    raised. Convergence warnings are silenced here and judged on the chosen fit by the caller.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture
    from threadpoolctl import threadpool_limits

    rng = np.random.RandomState(random_state)  # what sklearn makes of the int seed
    if init == "random":
        for _ in range(start):  # the responsibilities of the starts before this one
            rng.uniform(size=(x.shape[0], n_clusters))
    bgm = BayesianGaussianMixture(
        n_components=n_clusters,
        init_params=init,
        covariance_type="tied",
        max_iter=1000,
        n_init=1,
        random_state=rng,
        reg_covar=reg_covar,
    )
    try:
        with threadpool_limits(1), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return bgm.fit(x)
    except (ValueError, np.linalg.LinAlgError) as err:
        if isinstance(err, np.linalg.LinAlgError) or "reg_covar" in str(err):
            return err
        raise


def _kmeans(x: np.ndarray, n_clusters: int, random_state: int, fit_rows: np.ndarray | None = None) -> np.ndarray:
    from sklearn.cluster import KMeans

    with _convergence_to_log("k-means"):
        km = KMeans(n_clusters=n_clusters, n_init=100, random_state=random_state)
        if fit_rows is None:
            return km.fit_predict(x)
        return km.fit(x[fit_rows]).predict(x)


def _neighbour_graph(x: np.ndarray, method: str, random_state: int) -> tuple[igraph.Graph, np.ndarray]:
    """Scanpy's k-NN connectivities of ``x`` (on a private AnnData) as an igraph graph with edge weights.

    Directed (both directions of every edge) for Leiden, as ``sc.tl.leiden`` builds it; undirected for Louvain.
    """
    import anndata as ad
    import igraph as ig
    import pandas as pd
    import scanpy as sc
    from scipy import sparse

    n = x.shape[0]
    tmp = ad.AnnData(obs=pd.DataFrame(index=pd.RangeIndex(n).astype(str)), obsm={"X_rep": x})
    sc.pp.neighbors(tmp, n_neighbors=max(min(GRAPH_N_NEIGHBORS, n - 1), 2), use_rep="X_rep", random_state=random_state)
    adjacency = sparse.csr_matrix(tmp.obsp["connectivities"])
    directed = method == "leiden"
    if not directed:
        adjacency = sparse.triu(adjacency, k=1, format="csr")  # the connectivities are symmetric
    sources, targets = adjacency.nonzero()
    weights = np.asarray(adjacency[sources, targets], dtype=np.float64).reshape(-1)
    graph = ig.Graph(n=n, edges=list(zip(sources.tolist(), targets.tolist(), strict=True)), directed=directed)
    return graph, weights


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


def _search_resolution(
    run: Callable[[float], np.ndarray], n_clusters: int, resolutions: np.ndarray
) -> tuple[np.ndarray, float]:
    """First resolution (upward) giving exactly ``n_clusters``; else the closest count (ties: smallest resolution)."""
    best: tuple[int, float, np.ndarray] | None = None
    for res in resolutions:
        labels = run(float(res))
        count = np.unique(labels).size
        if count == n_clusters:
            return labels, float(res)
        if best is None or abs(count - n_clusters) < abs(best[0] - n_clusters):
            best = (count, float(res), labels)
    if best is None:
        msg = "No resolution to search."
        raise ValueError(msg)
    count, res, labels = best
    logg.warning(
        f"No resolution in [{resolutions[0]:g}, {resolutions[-1]:g}] gave exactly {n_clusters} clusters; "
        f"using resolution {res:g} with {count} clusters."
    )
    return labels, res


def refine_labels(
    labels: np.ndarray,
    coords: np.ndarray,
    *,
    confidence: np.ndarray | None = None,
    threshold: float = 0.9,
    n_neighbors: int = 10,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Relabel every spot by majority vote of its ``n_neighbors`` nearest confident spots of the same group.

    Confident spots are those with ``confidence > threshold`` (all spots when ``confidence`` is ``None``).
    A group whose confident spots carry fewer than 2 labels is left unchanged. Ties go to the smallest label.
    """
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    coords = np.asarray(coords, dtype=np.float64)
    n = labels.shape[0]
    if coords.ndim != 2 or coords.shape[0] != n:
        msg = f"coords has shape {coords.shape}; expected ({n}, d)."
        raise ValueError(msg)
    if n_neighbors < 1:
        msg = f"n_neighbors must be positive, got {n_neighbors}."
        raise ValueError(msg)
    confident = np.ones(n, dtype=bool) if confidence is None else np.asarray(confidence).reshape(-1) > threshold
    if confident.shape[0] != n:
        msg = f"confidence has {confident.shape[0]} values; expected {n}."
        raise ValueError(msg)
    if groups is None:
        group_ids = np.zeros(n, dtype=np.int64)
    else:
        group_ids = np.unique(np.asarray(groups).reshape(-1), return_inverse=True)[1].reshape(-1)
        if group_ids.shape[0] != n:
            msg = f"groups has {group_ids.shape[0]} values; expected {n}."
            raise ValueError(msg)

    refined = labels.copy()
    for g in np.unique(group_ids):
        members = np.flatnonzero(group_ids == g)
        train = members[confident[members]]
        if np.unique(labels[train]).size < 2:
            continue
        # brute force as the reference (same choice among equidistant lattice neighbours); a KD-tree at scale,
        # where brute force would compare every spot with every confident spot
        algorithm = "brute" if train.size <= BRUTE_FORCE_MAX_SPOTS else "kd_tree"
        knn = KNeighborsClassifier(n_neighbors=min(n_neighbors, train.size), weights="uniform", algorithm=algorithm)
        knn.fit(coords[train], labels[train])
        refined[members] = knn.predict(coords[members])
    return refined

"""The number of domains by stability (not in the reference implementation).

Each candidate ``K`` is clustered on random subsamples of 80% of the spots; its stability is the mean pairwise
ARI on the spots two subsamples share. The largest ``K`` within a tolerance of the most stable one is chosen
(coarser partitions nested in the true one are trivially stable too).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ._clustering import GRAPH_METHODS, ClusterMethod, GraphPartitions, _consecutive, cluster_features

#: Candidates for ``n_clusters='auto'``.
AUTO_N_CLUSTERS: tuple[int, ...] = tuple(range(2, 16))
#: Fraction of the spots in each subsample of the stability analysis.
RESAMPLE_FRACTION = 0.8
#: The stability analysis runs on a random base sample of at most this many spots.
STABILITY_MAX_SPOTS = 10_000


@dataclass
class Stability:
    """Outcome of :func:`stability_curve`.

    Attributes
    ----------
    n_clusters
        The candidate numbers of clusters, int64, increasing.
    mean
        Mean adjusted Rand index (ARI) over all pairs of subsamples, per candidate.
    sd
        Standard deviation of those ARIs (``ddof=1``).
    n_found
        Mean number of clusters found in the subsamples (``bgm`` may leave components empty).
    chosen
        The largest candidate whose ``mean`` is within the tolerance of the best ``mean`` (among the candidates that
        every subsample filled).
    n_spots
        Spots the subsamples were drawn from (all, or a random base sample of :data:`STABILITY_MAX_SPOTS`).
    """

    n_clusters: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    n_found: np.ndarray
    chosen: int
    n_spots: int


def pairwise_shared_ari(subsets: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> np.ndarray:
    """ARI of every pair of clusterings ``labels[i]`` of the sorted row sets ``subsets[i]``, on the rows both hold."""
    from sklearn.metrics import adjusted_rand_score

    out = []
    for a, b in combinations(range(len(subsets)), 2):
        _, ia, ib = np.intersect1d(subsets[a], subsets[b], assume_unique=True, return_indices=True)
        out.append(adjusted_rand_score(labels[a][ia], labels[b][ib]))
    return np.asarray(out, dtype=np.float64)


def choose_n_clusters(
    candidates: np.ndarray, mean: np.ndarray, tolerance: float, n_found: np.ndarray | None = None
) -> int:
    """The largest candidate whose stability is at least ``max(mean) - tolerance``.

    With ``n_found``, only candidates that every subsample filled (``n_found == candidate``) compete: a mixture that
    leaves components empty at ``K`` repeats the stability of a smaller ``K`` (unless no candidate was filled).
    """
    candidates = np.asarray(candidates)
    mean = np.asarray(mean, dtype=np.float64)
    eligible = np.ones(candidates.size, dtype=bool) if n_found is None else np.asarray(n_found) == candidates
    if not eligible.any():
        eligible[:] = True
    best = mean[eligible].max()
    return int(candidates[np.flatnonzero(eligible & (mean >= best - tolerance)).max()])


@contextmanager
def _quiet_log() -> Iterator[None]:
    """Hide scanpy log messages (e.g. empty mixture components in every subsample)."""
    from scanpy import settings

    verbosity = settings.verbosity
    settings.verbosity = 0
    try:
        yield
    finally:
        settings.verbosity = verbosity


def stability_curve(
    x: np.ndarray,
    candidates: Sequence[int],
    *,
    method: ClusterMethod = "bgm",
    n_resamples: int = 5,
    tolerance: float = 0.02,
    random_state: int = 0,
    n_jobs: int = 1,
    show_progress_bar: bool = False,
) -> Stability:
    """Stability of each number of clusters across ``n_resamples`` random subsamples of 80% of the rows of ``x``.

    Every candidate is clustered on the same subsamples (subsample ``b`` with seed ``random_state + b``); its
    stability is the mean ARI over all pairs of subsamples, on the rows both share. Data with more than
    :data:`STABILITY_MAX_SPOTS` rows are first reduced to a random base sample of that size. ``n_jobs`` goes to
    :func:`~aestetik._domains._clustering.cluster_features` (the mixture's starts). For ``'leiden'``/``'louvain'``
    each subsample's graph is built once and each resolution partitioned once for all candidates
    (:class:`~aestetik._domains._clustering.GraphPartitions`), the same labels as one ``cluster_features`` call
    per candidate.
    """
    from tqdm.auto import tqdm

    x = np.asarray(x)
    candidates = np.asarray(sorted({int(k) for k in candidates}), dtype=np.int64)
    rng = np.random.default_rng(random_state)
    n = x.shape[0]
    base = np.arange(n) if n <= STABILITY_MAX_SPOTS else np.sort(rng.choice(n, STABILITY_MAX_SPOTS, replace=False))
    size = round(RESAMPLE_FRACTION * base.size)
    if n_resamples < 2 or candidates.size == 0 or candidates.min() < 2 or candidates.max() > size:
        msg = f"Need >= 2 resamples and candidates in [2, {size}]; got {n_resamples} and {candidates.tolist()}."
        raise ValueError(msg)
    subsets = [np.sort(rng.choice(base.size, size, replace=False)) for _ in range(n_resamples)]
    xb = x[base]
    graphs = (
        [GraphPartitions(xb[rows], method, random_state + b) for b, rows in enumerate(subsets)]
        if method in GRAPH_METHODS
        else None
    )
    mean, sd, found = (np.empty(candidates.size) for _ in range(3))
    bar = tqdm(total=candidates.size * n_resamples, desc="stability", disable=not show_progress_bar)
    with bar, _quiet_log():
        for i, k in enumerate(candidates):
            labels = []
            for b, rows in enumerate(subsets):
                if graphs is not None:
                    labels.append(_consecutive(graphs[b].search(int(k))[0]))
                else:
                    labels.append(
                        cluster_features(
                            xb[rows], int(k), method=method, random_state=random_state + b, n_jobs=n_jobs
                        ).labels
                    )
                bar.update()
            ari = pairwise_shared_ari(subsets, labels)
            mean[i], sd[i] = ari.mean(), ari.std(ddof=1) if ari.size > 1 else 0.0
            found[i] = np.mean([lab.max() + 1 for lab in labels])
    return Stability(
        n_clusters=candidates,
        mean=mean,
        sd=sd,
        n_found=found,
        chosen=choose_n_clusters(candidates, mean, tolerance, found),
        n_spots=int(base.size),
    )

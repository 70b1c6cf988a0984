"""Domains of an embedding (METHOD §7): checked options, the number of domains by stability, clustering, refinement.

:func:`find_domains` is what :func:`aestetik.tl.cluster` computes, on arrays: it is also run by
:func:`aestetik.tl.consensus` for every seed and by :func:`aestetik.tl.ablation` for every setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scanpy import logging as logg

from aestetik._validation import assert_choice, assert_int, assert_n_clusters, assert_n_jobs

from ._clustering import CLUSTER_METHODS, GRAPH_METHODS, cluster_features
from ._refine import refine_labels
from ._stability import AUTO_N_CLUSTERS, RESAMPLE_FRACTION, STABILITY_MAX_SPOTS, Stability, stability_curve

#: Spots whose mixture posterior exceeds this value train the refinement classifier (reference: 0.9).
REFINE_CONFIDENCE = 0.9


def n_cluster_candidates(n_clusters: Any, n_obs: int) -> np.ndarray | None:
    """The candidates of ``n_clusters='auto'`` or of a range/list of ints (``None`` for an int or a resolution).

    Raises (naming the fix) for candidates that are not ints of at least 2 or exceed the spots of a subsample.
    """
    if isinstance(n_clusters, str):
        if n_clusters != "auto":
            msg = f"`n_clusters` must be an int, a float resolution, 'auto' or a range of ints, got {n_clusters!r}."
            raise ValueError(msg)
        size = round(RESAMPLE_FRACTION * min(n_obs, STABILITY_MAX_SPOTS))
        candidates = np.asarray([k for k in AUTO_N_CLUSTERS if k <= size], dtype=np.int64)
        if candidates.size < 2:
            msg = f"`n_clusters='auto'` needs at least {round(3 / RESAMPLE_FRACTION)} spots, got {n_obs}. Pass an int."
            raise ValueError(msg)
        return candidates
    if not isinstance(n_clusters, Sequence | range | np.ndarray):
        assert_n_clusters(n_clusters, n_obs)
        return None
    values = list(np.asarray(n_clusters).reshape(-1)) if isinstance(n_clusters, np.ndarray) else list(n_clusters)
    if not all(isinstance(k, int | np.integer) and not isinstance(k, bool) for k in values):
        msg = f"A range of `n_clusters` must hold ints (numbers of domains), got {n_clusters!r}."
        raise TypeError(msg)
    candidates = np.asarray(sorted({int(k) for k in values}), dtype=np.int64)
    if candidates.size < 2:
        msg = (
            f"A range of `n_clusters` needs at least 2 different values, got {n_clusters!r}; pass a single int instead."
        )
        raise ValueError(msg)
    size = round(RESAMPLE_FRACTION * min(n_obs, STABILITY_MAX_SPOTS))
    if candidates[0] < 2 or candidates[-1] > size:
        msg = (
            f"`n_clusters` candidates must lie in [2, {size}] (the spots of an {RESAMPLE_FRACTION:.0%} subsample), "
            f"got {candidates[0]}..{candidates[-1]}."
        )
        raise ValueError(msg)
    return candidates


@dataclass(frozen=True)
class DomainOptions:
    """The checked options of :func:`find_domains` (see :func:`aestetik.tl.cluster` for their meaning)."""

    method: str
    refine: bool  # refine was asked and n_neighbors is None (resolved later) or > 1
    n_neighbors: int | None  # None: refine_neighbours() once the number of domains is known
    n_resamples: int
    stability_tolerance: float
    random_state: int
    n_jobs: int
    show_progress_bar: bool


def domain_options(
    n_clusters: Any,
    n_obs: int,
    *,
    method: str,
    refine: bool,
    n_neighbors: int | None,
    n_resamples: int,
    stability_tolerance: float,
    random_state: int,
    n_jobs: int | None,
    show_progress_bar: bool,
    model: Any = None,
) -> tuple[np.ndarray | None, DomainOptions]:
    """Check the arguments of :func:`aestetik.tl.cluster`: the candidates of ``n_clusters`` (or ``None``) and options.

    ``model`` (labelling with trained domains) is only for :func:`aestetik.tl.cluster` itself: the loops over seeds
    or settings (``consensus``, ``ablation``) pass it through their ``cluster_kwargs`` and are refused here.
    """
    if model is not None:
        msg = (
            "`model` labels a new section with trained domains; call `aestetik.tl.cluster(adata, model=...)` directly."
        )
        raise ValueError(msg)
    assert_choice(method, CLUSTER_METHODS, name="method")
    candidates = n_cluster_candidates(n_clusters, n_obs)
    if candidates is not None:
        assert_int(minimum=2, n_resamples=n_resamples)
        number = isinstance(stability_tolerance, int | float | np.integer | np.floating)
        if isinstance(stability_tolerance, bool) or not number or not 0 <= stability_tolerance < 1:
            msg = f"`stability_tolerance` must be a number in [0, 1), got {stability_tolerance!r}."
            raise ValueError(msg)
    elif isinstance(n_clusters, float | np.floating) and method not in GRAPH_METHODS:
        msg = (
            f"method={method!r} needs an int `n_clusters` (number of domains), got the float {n_clusters!r}. "
            "A float resolution is only accepted by 'leiden' and 'louvain'."
        )
        raise ValueError(msg)
    if n_neighbors is not None:
        assert_int(n_neighbors=n_neighbors)
    n_jobs = assert_n_jobs(n_jobs)
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        msg = f"`random_state` must be an int seed, got {random_state!r}."
        raise TypeError(msg)
    options = DomainOptions(
        method=method,
        refine=bool(refine) and (n_neighbors is None or n_neighbors > 1),
        n_neighbors=None if n_neighbors is None else int(n_neighbors),
        n_resamples=int(n_resamples),
        stability_tolerance=stability_tolerance,
        random_state=int(random_state),
        n_jobs=n_jobs,
        show_progress_bar=bool(show_progress_bar),
    )
    return candidates, options


#: ``n_neighbors=None``: the refinement's vote takes this fraction of the spots of one domain (see
#: :func:`refine_neighbours`).
REFINE_FRACTION = 0.02


def refine_neighbours(n_spots: float, n_domains: int) -> int:
    """Default ``n_neighbors`` of the refinement: ``REFINE_FRACTION`` of one domain's spots, rounded.

    A domain of a sample of ``n_spots`` spots cut into ``n_domains`` holds ``n_spots / n_domains`` spots on
    average; the vote takes 1/50 of them, so it reaches as far, relative to the domains, on every section: 10 spots on
    a Visium section of 3,500 spots and 7 domains (the published value), fewer on a small section of coarse spots,
    where layers are one or two spots wide, and none (under 2: no refinement) on a few hundred spots in 5 domains.
    """
    return round(REFINE_FRACTION * float(n_spots) / max(int(n_domains), 1))


def resolve_refinement(
    options: DomainOptions, n_domains: int, groups: np.ndarray | None, n_spots: int
) -> DomainOptions:
    """``options`` with ``n_neighbors=None`` resolved for ``n_domains`` (mean spots per group) and ``refine`` updated."""
    if options.n_neighbors is not None or not options.refine:
        return options
    per_group = n_spots / (np.unique(groups).size if groups is not None and n_spots else 1)
    k = refine_neighbours(per_group, n_domains)
    return replace(options, n_neighbors=k, refine=k > 1)


@dataclass
class Domains:
    """Outcome of :func:`find_domains`.

    Attributes
    ----------
    labels
        int64 domain per spot, consecutive ``0..k-1`` (after refinement when asked).
    proba
        Mixture posterior of the assigned component before refinement (``'bgm'`` only), else ``None``.
    resolution
        Resolution used by ``'leiden'``/``'louvain'``, else ``None``.
    n_clusters
        The number of domains asked for or chosen (an int), or the resolution (a float).
    stability
        The stability curve when ``n_clusters`` was chosen, else ``None``.
    centres, centre_labels
        The mean of ``x`` over each domain of ``labels`` (k, d) and the domain of each centre (k,): what
        :func:`assign_domains` labels new spots with.
    method
        The clustering method that made the domains (for ``'auto'``, the one it kept).
    n_neighbors
        The neighbours of the refinement's vote (0: not refined).
    """

    labels: np.ndarray
    proba: np.ndarray | None
    resolution: float | None
    n_clusters: int | float
    stability: Stability | None
    centres: np.ndarray | None = None
    centre_labels: np.ndarray | None = None
    method: str = ""
    n_neighbors: int = 0


def find_domains(
    x: np.ndarray,
    n_clusters: int | float,
    candidates: np.ndarray | None,
    options: DomainOptions,
    *,
    coords: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> Domains:
    """Cluster ``x`` into domains: choose their number among ``candidates`` (when given), cluster, refine.

    The refinement (``options.refine``) relabels each spot by its ``n_neighbors`` nearest confident spots in
    ``coords``, per group of ``groups`` (samples).
    """
    stability = None
    if candidates is not None:
        stability = stability_curve(
            x,
            candidates,
            method=options.method,
            n_resamples=options.n_resamples,
            tolerance=float(options.stability_tolerance),
            random_state=options.random_state,
            n_jobs=options.n_jobs,
            show_progress_bar=options.show_progress_bar,
        )
        log_stability(stability, tolerance=float(options.stability_tolerance))
        k: int | float = stability.chosen
    else:
        k = int(n_clusters) if isinstance(n_clusters, int | np.integer) else float(n_clusters)
    result = cluster_features(x, k, method=options.method, random_state=options.random_state, n_jobs=options.n_jobs)
    options = resolve_refinement(options, result.n_clusters, groups, x.shape[0])
    labels = _refined(result.labels, result.proba, result.n_clusters, options, coords=coords, groups=groups)
    centres = domain_centres(x, labels)
    return Domains(
        labels=labels,
        proba=result.proba,
        resolution=result.resolution,
        n_clusters=k,
        stability=stability,
        centres=centres,
        centre_labels=np.arange(centres.shape[0], dtype=np.int64),
        method=result.method,
        n_neighbors=int(options.n_neighbors or 0) if options.refine else 0,
    )


def domain_centres(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean of ``x`` over each domain of the consecutive ``labels`` ``0..k-1``: (k, d), float64."""
    k = int(labels.max()) + 1 if labels.size else 0
    centres = np.zeros((k, x.shape[1]), dtype=np.float64)
    for c in range(k):
        centres[c] = x[labels == c].mean(axis=0)
    return centres


def assign_domains(
    x: np.ndarray,
    centres: np.ndarray,
    centre_labels: np.ndarray,
    options: DomainOptions,
    *,
    coords: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Label new spots with trained domains: nearest centre (Euclidean), then the refinement per group.

    Returns indices into the domains of ``centre_labels`` (not renumbered: a domain may get no spot).
    """
    from scipy.spatial import cKDTree

    nearest = cKDTree(np.asarray(centres, dtype=np.float64)).query(np.asarray(x, dtype=np.float64), k=1)[1]
    labels = np.asarray(centre_labels, dtype=np.int64)[nearest]
    options = resolve_refinement(options, np.unique(centre_labels).size, groups, labels.size)
    if not options.refine:
        return labels
    if coords is None:
        msg = "Refinement needs the spot coordinates."
        raise ValueError(msg)
    return refine_labels(
        labels, coords, confidence=None, threshold=REFINE_CONFIDENCE, n_neighbors=options.n_neighbors, groups=groups
    )


def _refined(
    labels: np.ndarray,
    proba: np.ndarray | None,
    n_clusters: int,
    options: DomainOptions,
    *,
    coords: np.ndarray | None,
    groups: np.ndarray | None,
) -> np.ndarray:
    """The refinement of :func:`find_domains` (when asked), renumbered to consecutive labels."""
    if options.refine:
        if coords is None:
            msg = "Refinement needs the spot coordinates."
            raise ValueError(msg)
        labels = refine_labels(
            labels,
            coords,
            confidence=proba,
            threshold=REFINE_CONFIDENCE,
            n_neighbors=options.n_neighbors,
            groups=groups,
        )
        absorbed = n_clusters - np.unique(labels).size
        if absorbed > 0:
            logg.warning(f"The spatial refinement absorbed {absorbed} of {n_clusters} domains.")
        labels = np.unique(labels, return_inverse=True)[1].reshape(-1)  # consecutive again
    return labels


def stability_record(stability: Stability, *, n_resamples: int, tolerance: float) -> dict[str, Any]:
    """The stability curve as stored in ``uns`` (h5ad-writable)."""
    return {
        "n_clusters": stability.n_clusters.astype(np.int64),
        "mean": stability.mean.astype(np.float64),
        "sd": stability.sd.astype(np.float64),
        "n_found": stability.n_found.astype(np.float64),
        "chosen": int(stability.chosen),
        "tolerance": float(tolerance),
        "n_resamples": int(n_resamples),
        "resample_fraction": float(RESAMPLE_FRACTION),
        "n_spots": int(stability.n_spots),
    }


def log_stability(stability: Stability, *, tolerance: float) -> None:
    """Log the stability curve and the chosen number of domains."""
    curve = ", ".join(f"{k}: {m:.3f}" for k, m in zip(stability.n_clusters, stability.mean, strict=True))
    logg.info(
        f"    stability (mean pairwise ARI of subsamples) {curve}; chose n_clusters={stability.chosen} "
        f"(largest within {tolerance:g} of the best)"
    )

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from natsort import natsorted
from scanpy import logging as logg

from aestetik._docs import doc_params
from aestetik._domains._clustering import CLUSTER_METHODS, GRAPH_METHODS, cluster_features, refine_labels
from aestetik._domains._stability import (
    AUTO_N_CLUSTERS,
    RESAMPLE_FRACTION,
    STABILITY_MAX_SPOTS,
    Stability,
    stability_curve,
)
from aestetik._keys import Key
from aestetik._validation import (
    assert_choice,
    assert_finite,
    assert_int,
    assert_n_clusters,
    assert_n_jobs,
    assert_not_view,
    assert_obs_key,
    assert_obsm_key,
    uns_results,
)

if TYPE_CHECKING:
    from anndata import AnnData

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


@doc_params
def cluster(
    adata: AnnData,
    n_clusters: int | float | Literal["auto"] | Sequence[int] = 7,
    *,
    method: Literal["bgm", "kmeans", "leiden", "louvain"] = "kmeans",
    refine: bool = True,
    n_neighbors: int = 10,
    n_resamples: int = 5,
    stability_tolerance: float = 0.02,
    use_rep: str = "X_aestetik",
    prepare_key: str = "aestetik",
    spatial_key: str = "spatial",
    random_state: int = 0,
    n_jobs: int | None = None,
    show_progress_bar: bool = True,
    key_added: str = "aestetik",
    copy: bool = False,
) -> AnnData | None:
    """Cluster the AESTETIK embedding into spatial domains, optionally refined by spatial neighbours.

    The embedding is clustered with ``method`` as in :cite:p:`Nonchev2024`. With ``refine=True`` each spot is then
    relabelled by majority vote of its ``n_neighbors`` nearest spots on the lattice whose assignment is confident
    (mixture posterior > 0.9 for ``'bgm'``; every spot for the other methods). Refinement never crosses samples:
    with several samples (the ``batch_key`` given to :func:`aestetik.pp.prepare`) it runs per sample.

    With ``n_clusters='auto'`` or a range, the number of domains is chosen by stability: every candidate ``K`` is
    clustered (with ``method``, without refinement) on ``n_resamples`` random subsamples of 80% of the spots (of a
    random base sample of at most 10,000 spots), and its stability is the mean pairwise adjusted Rand index (ARI)
    between these clusterings on the spots they share. Coarse partitions that merge true domains are often as stable
    as the true one, so the *largest* ``K`` whose stability is within ``stability_tolerance`` of the best is chosen.

    Parameters
    ----------
    {adata}
    n_clusters
        Number of domains (int); for ``'leiden'``/``'louvain'`` also a resolution (float). ``'auto'`` chooses among
        2..15 by stability (see above); a range or list of ints (e.g. ``range(3, 11)``) chooses among those.
    method
        ``'kmeans'`` (100 initialisations; the default), ``'bgm'`` (Bayesian Gaussian mixture, tied
        covariance, 10 random initialisations and one from k-means, the published default), ``'leiden'`` or
        ``'louvain'`` (on a 50-nearest-neighbour graph of the embedding; for an int ``n_clusters`` the
        resolution is searched upward from 0.1 to 3 in steps of 0.02 until exactly ``n_clusters`` clusters
        appear, else the closest count is used). The triplet loss pulls the pseudo-label groups apart by a
        Euclidean margin, so domains are compact groups in the embedding, k-means' model; the tied mixture
        sometimes merges two of them and splits another (see the method page, difference 13).
    refine
        Spatially refine the domains with a k-nearest-neighbour vote. Skipped when ``n_neighbors`` is 1
        (as in the reference implementation).
    n_neighbors
        Number of confident neighbours voting in the refinement (fewer when a sample has fewer confident spots).
    n_resamples
        Subsamples per candidate when choosing ``n_clusters`` (cost: candidates x ``n_resamples`` clusterings).
    stability_tolerance
        How far below the best stability the chosen ``n_clusters`` may lie.
    use_rep
        Key in :attr:`~anndata.AnnData.obsm` of the representation to cluster.
    {prepare_key}
        The refinement uses its lattice ``adata.obsm[prepare_key + '_lattice']`` and its ``batch_key``;
        without a lattice, ``adata.obsm[spatial_key]`` is used.
    spatial_key
        Key in :attr:`~anndata.AnnData.obsm` of the spot coordinates, used for refinement when there is no lattice.
    {random_state}
    n_jobs
        Worker processes for the 11 starts of each mixture fit (``method='bgm'`` only, including the fits that
        choose ``n_clusters``); ``None`` uses :attr:`scanpy.settings.n_jobs`, ``-1`` every core. The domains do
        not depend on it. k-means already uses every core through its threads.
    {show_progress_bar}
        Only used when choosing ``n_clusters``.
    key_added
        Name of the domains in :attr:`~anndata.AnnData.obs` and of the results in :attr:`~anndata.AnnData.uns`.
    {copy}

    Returns
    -------
    {returns_copy} Sets the following fields:

    `adata.obs[key_added]` : :class:`pandas.Categorical`
        Domain per spot, categories ``'0'``, ``'1'``, ... (after refinement if ``refine``; a domain that the
        refinement absorbs is dropped and the others renumbered in order).
    `adata.obs[key_added + '_proba']` : float32
        Only for ``'bgm'``: the mixture posterior of the spot's component *before* refinement, i.e. the confidence
        that selected the spots training the refinement. A stale column from an earlier run is removed.
    `adata.uns[key_added]['cluster']` : :class:`dict`
        ``params`` (the resolved arguments and ``aestetik_version``), ``n_clusters`` (number of domains written)
        and, for ``'leiden'``/``'louvain'``, the ``resolution`` used. Other entries of ``adata.uns[key_added]``
        are kept. When ``n_clusters`` was chosen, ``params['n_clusters']`` is ``'auto'`` or the candidates and
        ``stability`` holds the curve: ``n_clusters`` (candidates), ``mean`` and ``sd`` of the pairwise ARIs,
        ``n_found`` (mean clusters found), ``chosen``, ``tolerance``, ``n_resamples``, ``resample_fraction`` and
        ``n_spots``; draw it with :func:`aestetik.pl.n_clusters`.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.dlpfc_151676()  # doctest: +SKIP
    >>> ae.pp.prepare(adata)  # doctest: +SKIP
    >>> ae.tl.fit(adata)  # doctest: +SKIP
    >>> ae.tl.cluster(adata, 7)  # doctest: +SKIP
    >>> adata.obs["aestetik"].value_counts()  # doctest: +SKIP
    >>> ae.tl.cluster(adata, "auto")  # doctest: +SKIP
    >>> adata.uns["aestetik"]["cluster"]["stability"]["chosen"]  # doctest: +SKIP
    """
    # --- validate everything before touching adata
    assert_not_view(adata, copy=copy)
    x = assert_obsm_key(adata, use_rep, fix="Run `aestetik.tl.fit(adata)` first or pass `use_rep`.")
    assert_finite(x, where=f"`adata.obsm[{use_rep!r}]`")
    assert_choice(method, CLUSTER_METHODS, name="method")
    candidates = n_cluster_candidates(n_clusters, adata.n_obs)
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
    assert_int(n_neighbors=n_neighbors)
    n_jobs = assert_n_jobs(n_jobs)
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        msg = f"`random_state` must be an int seed, got {random_state!r}."
        raise TypeError(msg)
    previous = uns_results(adata, key_added)
    do_refine = bool(refine) and n_neighbors > 1
    coords_key, coords, batch_key = None, None, None
    if do_refine:
        coords_key, coords = _refine_coordinates(adata, prepare_key=prepare_key, spatial_key=spatial_key)
        batch_key = _batch_key(adata, prepare_key)

    start = logg.info(f"clustering `adata.obsm[{use_rep!r}]` with {method!r}")
    adata = adata.copy() if copy else adata
    previous = adata.uns.get(key_added, {})  # from the copy: its nested dicts are not shared with the input

    # --- compute into locals
    stability = None
    if candidates is not None:
        stability = stability_curve(
            x,
            candidates,
            method=method,
            n_resamples=int(n_resamples),
            tolerance=float(stability_tolerance),
            random_state=int(random_state),
            n_jobs=n_jobs,
            show_progress_bar=show_progress_bar,
        )
        log_stability(stability, tolerance=float(stability_tolerance))
        k: int | float = stability.chosen
    else:
        k = int(n_clusters) if isinstance(n_clusters, int | np.integer) else float(n_clusters)
    result = cluster_features(x, k, method=method, random_state=random_state, n_jobs=n_jobs)
    labels = result.labels
    if do_refine:
        groups = adata.obs[batch_key].to_numpy() if batch_key else None
        labels = refine_labels(
            labels,
            coords,
            confidence=result.proba,
            threshold=REFINE_CONFIDENCE,
            n_neighbors=int(n_neighbors),
            groups=groups,
        )
        absorbed = result.n_clusters - np.unique(labels).size
        if absorbed > 0:
            logg.warning(f"The spatial refinement absorbed {absorbed} of {result.n_clusters} domains.")
        labels = np.unique(labels, return_inverse=True)[1].reshape(-1)  # consecutive again
    names = natsorted(str(c) for c in np.unique(labels))

    from aestetik import __version__

    params: dict = {
        "n_clusters": k if candidates is None else ("auto" if isinstance(n_clusters, str) else candidates),
        "method": method,
        "refine": do_refine,
        "n_neighbors": int(n_neighbors),
        "use_rep": use_rep,
        "random_state": int(random_state),
        "aestetik_version": __version__,
    }
    if do_refine:
        params["coords_key"] = coords_key
        if batch_key:
            params["batch_key"] = batch_key
    if stability is not None:
        params["n_resamples"] = int(n_resamples)
        params["stability_tolerance"] = float(stability_tolerance)
    info: dict = {"params": params, "n_clusters": len(names)}
    if result.resolution is not None:
        info["resolution"] = float(result.resolution)
    if stability is not None:
        info["stability"] = stability_record(stability, n_resamples=int(n_resamples), tolerance=stability_tolerance)

    # --- write all keys at once
    proba_key = Key.proba(key_added)
    adata.obs[key_added] = pd.Categorical(labels.astype(str), categories=names)
    if result.proba is not None:
        adata.obs[proba_key] = result.proba.astype(np.float32)
    elif proba_key in adata.obs.columns:
        del adata.obs[proba_key]
    adata.uns[key_added] = {**dict(previous), "cluster": info}

    added = f"    {key_added!r}, the domains (adata.obs, categorical)\n"
    if result.proba is not None:
        added += f"    {proba_key!r}, the mixture posterior (adata.obs)\n"
    added += f"    {key_added!r}['cluster'], parameters (adata.uns)"
    logg.info("    finished", time=start, deep=f"found {len(names)} domains and added\n{added}")
    return adata if copy else None


def _refine_coordinates(adata: AnnData, *, prepare_key: str, spatial_key: str) -> tuple[str, np.ndarray]:
    """The lattice written by ``prepare`` if present, else ``adata.obsm[spatial_key]``."""
    lattice = Key.lattice(prepare_key)
    key = lattice if lattice in adata.obsm else spatial_key
    coords = assert_obsm_key(
        adata,
        key,
        fix=(
            f"Refinement needs spot coordinates: run `aestetik.pp.prepare(adata)` (writes `adata.obsm[{lattice!r}]`), "
            "pass `spatial_key`, or call with `refine=False`."
        ),
    )
    assert_finite(coords, where=f"`adata.obsm[{key!r}]`")
    return key, coords


def _batch_key(adata: AnnData, prepare_key: str) -> str | None:
    """The ``batch_key`` that ``prepare`` recorded, if any (refinement then runs per sample)."""
    prepared = adata.uns.get(prepare_key, {})
    params = prepared.get("prepare", {}).get("params", {}) if isinstance(prepared, Mapping) else {}
    batch_key = params.get("batch_key") if isinstance(params, Mapping) else None
    if not isinstance(batch_key, str) or not batch_key:
        return None
    assert_obs_key(
        adata,
        batch_key,
        fix=f"`aestetik.pp.prepare` recorded batch_key={batch_key!r}; restore that column or call with `refine=False`.",
    )
    return batch_key

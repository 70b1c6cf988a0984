from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from natsort import natsorted
from scanpy import logging as logg

from aestetik._clustering import CLUSTER_METHODS, GRAPH_METHODS, cluster_features, refine_labels
from aestetik._docs import doc_params
from aestetik._keys import Key
from aestetik._validation import (
    assert_choice,
    assert_finite,
    assert_int,
    assert_n_clusters,
    assert_not_view,
    assert_obs_key,
    assert_obsm_key,
)

if TYPE_CHECKING:
    from anndata import AnnData

#: Spots whose mixture posterior exceeds this value train the refinement classifier (reference: 0.9).
REFINE_CONFIDENCE = 0.9


@doc_params
def cluster(
    adata: AnnData,
    n_clusters: int | float = 7,
    *,
    method: Literal["bgm", "kmeans", "leiden", "louvain"] = "bgm",
    refine: bool = True,
    n_neighbors: int = 10,
    use_rep: str = "X_aestetik",
    prepare_key: str = "aestetik",
    spatial_key: str = "spatial",
    random_state: int = 0,
    key_added: str = "aestetik",
    copy: bool = False,
) -> AnnData | None:
    """Cluster the AESTETIK embedding into spatial domains, optionally refined by spatial neighbours.

    The embedding is clustered with ``method`` as in :cite:p:`Nonchev2024`. With ``refine=True`` each spot is then
    relabelled by majority vote of its ``n_neighbors`` nearest spots on the lattice whose assignment is confident
    (mixture posterior > 0.9 for ``'bgm'``; every spot for the other methods). Refinement never crosses samples:
    with several samples (the ``batch_key`` given to :func:`aestetik.pp.prepare`) it runs per sample.

    Parameters
    ----------
    {adata}
    {n_clusters}
    method
        ``'bgm'`` (Bayesian Gaussian mixture, tied covariance, 10 random initialisations), ``'kmeans'``
        (100 initialisations), ``'leiden'`` or ``'louvain'`` (on a 50-nearest-neighbour graph of the embedding;
        for an int ``n_clusters`` the resolution is searched upward from 0.1 to 3 in steps of 0.02 until exactly
        ``n_clusters`` clusters appear, else the closest count is used).
    refine
        Spatially refine the domains with a k-nearest-neighbour vote. Skipped when ``n_neighbors`` is 1
        (as in the reference implementation).
    n_neighbors
        Number of confident neighbours voting in the refinement (fewer when a sample has fewer confident spots).
    use_rep
        Key in :attr:`~anndata.AnnData.obsm` of the representation to cluster.
    {prepare_key}
        The refinement uses its lattice ``adata.obsm[prepare_key + '_lattice']`` and its ``batch_key``;
        without a lattice, ``adata.obsm[spatial_key]`` is used.
    spatial_key
        Key in :attr:`~anndata.AnnData.obsm` of the spot coordinates, used for refinement when there is no lattice.
    {random_state}
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
        are kept.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.dlpfc_151676()  # doctest: +SKIP
    >>> ae.pp.prepare(adata)  # doctest: +SKIP
    >>> ae.tl.fit(adata)  # doctest: +SKIP
    >>> ae.tl.cluster(adata, 7)  # doctest: +SKIP
    >>> adata.obs["aestetik"].value_counts()  # doctest: +SKIP
    """
    # --- validate everything before touching adata
    assert_not_view(adata, copy=copy)
    x = assert_obsm_key(adata, use_rep, fix="Run `aestetik.tl.fit(adata)` first or pass `use_rep`.")
    assert_finite(x, where=f"`adata.obsm[{use_rep!r}]`")
    assert_choice(method, CLUSTER_METHODS, name="method")
    assert_n_clusters(n_clusters, adata.n_obs)
    if isinstance(n_clusters, float | np.floating) and method not in GRAPH_METHODS:
        msg = (
            f"method={method!r} needs an int `n_clusters` (number of domains), got the float {n_clusters!r}. "
            "A float resolution is only accepted by 'leiden' and 'louvain'."
        )
        raise ValueError(msg)
    assert_int(n_neighbors=n_neighbors)
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        msg = f"`random_state` must be an int seed, got {random_state!r}."
        raise TypeError(msg)
    previous = adata.uns.get(key_added, {})
    if not isinstance(previous, Mapping):
        msg = (
            f"`adata.uns[{key_added!r}]` holds a {type(previous).__name__}, not a dict of results. "
            "Pass another `key_added` or delete that entry."
        )
        raise TypeError(msg)
    do_refine = bool(refine) and n_neighbors > 1
    coords_key, coords, batch_key = None, None, None
    if do_refine:
        coords_key, coords = _refine_coordinates(adata, prepare_key=prepare_key, spatial_key=spatial_key)
        batch_key = _batch_key(adata, prepare_key)

    start = logg.info(f"clustering `adata.obsm[{use_rep!r}]` with {method!r}")
    adata = adata.copy() if copy else adata
    previous = adata.uns.get(key_added, {})  # from the copy: its nested dicts are not shared with the input

    # --- compute into locals
    n_clusters = int(n_clusters) if isinstance(n_clusters, int | np.integer) else float(n_clusters)
    result = cluster_features(x, n_clusters, method=method, random_state=random_state)
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
        "n_clusters": n_clusters,
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
    info: dict = {"params": params, "n_clusters": len(names)}
    if result.resolution is not None:
        info["resolution"] = float(result.resolution)

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

"""Consensus domains over several runs (seeds): Hungarian alignment to the medoid run and a majority vote."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from natsort import natsorted
from scanpy import logging as logg

from aestetik._docs import doc_params
from aestetik._domains._assign import domain_options, find_domains, stability_record
from aestetik._domains._consensus import medoid, pairwise_ari, vote
from aestetik._keys import Key
from aestetik._model._checks import assert_own_pseudo_labels, check_accelerator
from aestetik._model._train import fit_prepared
from aestetik._records import assert_batch_column, h5ad_value, read_prepared, refinement_coordinates
from aestetik._spatialdata import spatialdata_input
from aestetik._validation import (
    assert_finite,
    assert_int,
    assert_no_checkpoints,
    assert_not_view,
    checked_kwargs,
    signature_defaults,
    uns_results,
)
from aestetik.tl._cluster import cluster
from aestetik.tl._fit import fit

if TYPE_CHECKING:
    from anndata import AnnData


#: Arguments that :func:`consensus` sets itself and that ``fit_kwargs``/``cluster_kwargs`` may not hold.
_OWN_FIT = ("random_state", "prepare_key", "key_added", "copy", "show_progress_bar")
_OWN_CLUSTER = ("n_clusters", "method", "refine", "random_state", "use_rep", "prepare_key", "key_added", "copy")


@spatialdata_input
@doc_params
def consensus(
    adata: AnnData,
    *,
    n_seeds: int = 5,
    n_clusters: int | Literal["auto"] | Sequence[int] = 7,
    method: Literal["auto", "bgm", "kmeans", "leiden", "louvain", "spectral"] = "auto",
    refine: bool = True,
    random_state: int = 0,
    vary_pseudo_labels: bool = True,
    fit_kwargs: Mapping[str, Any] | None = None,
    cluster_kwargs: Mapping[str, Any] | None = None,
    prepare_key: str = "aestetik",
    show_progress_bar: bool = True,
    key_added: str = "aestetik",
    copy: bool = False,
) -> AnnData | None:
    """Train AESTETIK with several seeds and combine their domains into consensus domains with a confidence.

    Runs :func:`aestetik.tl.fit` and :func:`aestetik.tl.cluster` with the seeds ``random_state``,
    ``random_state + 1``, ... (the seed of a run is used for both, and for its pseudo-labels: below). The runs
    are compared by their pairwise adjusted Rand index (ARI); the *reference* is the medoid run, the one with the
    highest mean ARI to the others. Each run's domains are renamed to match the reference by Hungarian matching on
    their contingency table, every spot gets the label most runs agree on (ties: the reference's), and the runs are
    aligned once more to that consensus and vote again. Memory grows with spots x runs, never spots^2. The embedding
    and training record of the reference run are kept, so :func:`aestetik.pl.loss` and :func:`aestetik.tl.cluster`
    work as after a single :func:`aestetik.tl.fit`. Nothing is written when any run fails.

    By default every run also computes its own pseudo-labels (``vary_pseudo_labels``): :func:`aestetik.pp.prepare`
    runs again with the run's seed and the arguments it recorded, on a copy of ``adata`` (one at a time; the
    representations it computed are reused; the run whose seed ``prepare`` already used trains on ``adata``'s own),
    so the runs differ in their pseudo-labels as well as in their training: the consensus is one of whole runs.
    On a section where the pseudo-labels change with the seed (the legacy ST sections of a few hundred spots, or a
    mixture whose two best starts disagree, kept with ``mixture_fallback=None``), this is where most of the spread
    between seeds comes from, and a vote over training seeds alone misses it (see the benchmarks page).
    ``adata``'s own pseudo-labels and inputs are left as they are.

    Parameters
    ----------
    {adata}
    n_seeds
        Number of runs (at least 2).
    n_clusters
        Number of domains of every run; with ``'auto'`` or a range of ints it is chosen once, by the stability
        analysis of :func:`aestetik.tl.cluster` on the first run's embedding, and used for all runs.
    method
        Clustering method of :func:`aestetik.tl.cluster`.
    refine
        Spatially refine every run's domains (see :func:`aestetik.tl.cluster`).
    random_state
        Seed of the first run; run ``i`` uses ``random_state + i``.
    vary_pseudo_labels
        Recompute the pseudo-labels in every run with its seed (see above); ``False`` trains every run on the
        pseudo-labels of ``adata``, so that only the training seed varies (the consensus of earlier versions).
    fit_kwargs
        Further arguments of :func:`aestetik.tl.fit` (e.g. ``{'max_epochs': 50}``).
    cluster_kwargs
        Further arguments of :func:`aestetik.tl.cluster` (e.g. ``{'n_neighbors': 6}``).
    {prepare_key}
    {show_progress_bar}
    key_added
        Name of the consensus in :attr:`~anndata.AnnData.obs` and of the results in :attr:`~anndata.AnnData.uns`.
    {copy}

    Returns
    -------
    {returns_copy} Sets:

    `adata.obs[key_added]` : :class:`pandas.Categorical`
        Consensus domain per spot, ``'0'``, ``'1'``, ... A stale ``adata.obs[key_added + '_proba']`` and
        ``adata.uns[key_added]['cluster']`` of an earlier :func:`aestetik.tl.cluster` call are removed.
    `adata.obs[key_added + '_confidence']` : float32
        Fraction of the runs whose (aligned) domain equals the consensus; show it with
        ``aestetik.pl.spatial(adata, color=key_added + '_confidence')``.
    `adata.obsm['X_' + key_added]` : ndarray (n, latent_dim), float32
        The embedding of the reference run.
    `adata.obsm[key_added + '_seed_labels']` : ndarray (n, n_seeds), int32
        Every run's domains, renamed to the consensus ids (a domain without counterpart gets an id after them).
    `adata.uns[key_added]['fit']` : dict
        The :func:`aestetik.tl.fit` record of the reference run.
    `adata.uns[key_added]['consensus']` : dict
        ``params`` (with ``vary_pseudo_labels``), ``seeds``, ``ari`` (pairwise ARI between the runs, n_seeds x
        n_seeds), ``mean_ari`` and ``min_ari`` (over distinct pairs), ``reference`` (index of the medoid run) and
        ``reference_seed``, ``n_clusters`` (domains per run, asked), ``n_domains`` (consensus domains),
        ``mean_confidence`` and, when ``n_clusters`` was chosen, ``stability`` (see :func:`aestetik.tl.cluster`).
        Draw it with :func:`aestetik.pl.consensus`.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.dlpfc_151676()  # doctest: +SKIP
    >>> ae.pp.prepare(adata)  # doctest: +SKIP
    >>> ae.tl.consensus(adata, n_seeds=5, n_clusters=7)  # doctest: +SKIP
    >>> adata.uns["aestetik"]["consensus"]["mean_ari"]  # doctest: +SKIP
    >>> ax = ae.pl.spatial(adata, color=["aestetik", "aestetik_confidence"])  # doctest: +SKIP
    """
    from aestetik._version import __version__

    # --- validate everything before touching adata
    assert_not_view(adata, copy=copy)
    prepared = read_prepared(adata, prepare_key)
    assert_int(minimum=2, n_seeds=n_seeds)
    assert_own_pseudo_labels(prepared)
    prepare_args = prepare_arguments(prepared.record, prepare_key) if vary_pseudo_labels else None
    if isinstance(n_clusters, float | np.floating):
        msg = "`aestetik.tl.consensus` needs the same number of domains in every run: pass an int, not a resolution."
        raise TypeError(msg)
    fit_defaults, cluster_defaults = signature_defaults(fit, _OWN_FIT), signature_defaults(cluster, _OWN_CLUSTER)
    fit_kw = checked_kwargs(fit_kwargs, fit_defaults, _OWN_FIT, name="fit_kwargs", caller="consensus", target="fit")
    assert_no_checkpoints(fit_kw, caller="consensus")
    check_accelerator(
        fit_kw.get("accelerator", fit_defaults["accelerator"]), fit_kw.get("devices", fit_defaults["devices"])
    )
    cluster_kw = checked_kwargs(
        cluster_kwargs, cluster_defaults, _OWN_CLUSTER, name="cluster_kwargs", caller="consensus", target="cluster"
    )
    cluster_args = {**cluster_defaults, "show_progress_bar": show_progress_bar, **cluster_kw}
    spatial_key = cluster_args.pop("spatial_key")
    candidates, options = domain_options(
        n_clusters, adata.n_obs, method=method, refine=refine, random_state=random_state, **cluster_args
    )
    uns_results(adata, key_added)
    assert_batch_column(adata, prepare_key, fix="`aestetik.pp.prepare` recorded batch_key={batch_key!r}; restore it.")
    coords = None
    if options.refine:
        coords = refinement_coordinates(adata, prepare_key=prepare_key, spatial_key=spatial_key)[1]

    # --- compute into locals
    seeds = [int(random_state) + i for i in range(n_seeds)]
    varied = "whole runs, each with its own pseudo-labels" if vary_pseudo_labels else "runs on one set of pseudo-labels"
    start = logg.info(
        f"consensus of {n_seeds} AESTETIK {varied} (seeds {seeds[0]}..{seeds[-1]}) on {adata.n_obs} spots"
    )
    fit_args = {**fit_defaults, **fit_kw, "show_progress_bar": show_progress_bar}
    labels, embeddings, records = [], [], []
    k: int | float = 0
    stability = None
    for i, seed in enumerate(seeds):
        logg.info(f"    run {i + 1}/{n_seeds} (seed {seed})")
        inputs = prepared
        if prepare_args is not None and seed != int(prepared.params["random_state"]):  # else adata's own are these
            inputs = _prepared_again(adata, prepare_args, prepare_key, seed)
        fitted, embedding = fit_prepared(inputs, random_state=seed, **fit_args)
        assert_finite(embedding, where=f"The embedding of seed {seed}")
        domains = find_domains(
            embedding,
            n_clusters if i == 0 else k,
            candidates if i == 0 else None,  # the number of domains is chosen on the first run
            replace(options, random_state=seed),
            coords=coords,
            groups=prepared.batch,
        )
        if i == 0:
            k = domains.n_clusters
            if domains.stability is not None:
                stability = stability_record(
                    domains.stability, n_resamples=options.n_resamples, tolerance=options.stability_tolerance
                )
        labels.append(domains.labels.astype(np.int64))
        embeddings.append(embedding)
        records.append(fitted.record())
    labels_ = np.column_stack(labels)
    ari = pairwise_ari(labels_)
    reference = medoid(ari)
    domains, confidence, aligned = vote(labels_, reference)
    names = natsorted(str(c) for c in np.unique(domains))
    off = ari[~np.eye(n_seeds, dtype=bool)]
    params: dict[str, Any] = {
        "n_seeds": int(n_seeds),
        "n_clusters": "auto" if isinstance(n_clusters, str) else (candidates if candidates is not None else int(k)),
        "method": method,
        "refine": bool(refine),
        "random_state": int(random_state),
        "vary_pseudo_labels": bool(vary_pseudo_labels),
        "prepare_key": prepare_key,
        "fit_kwargs": h5ad_value(fit_kw),
        "cluster_kwargs": h5ad_value(cluster_kw),
        "aestetik_version": __version__,
    }
    info: dict[str, Any] = {
        "params": params,
        "seeds": np.asarray(seeds, dtype=np.int64),
        "ari": ari,
        "mean_ari": float(off.mean()),
        "min_ari": float(off.min()),
        "reference": int(reference),
        "reference_seed": int(seeds[reference]),
        "n_clusters": int(k),
        "n_domains": len(names),
        "mean_confidence": float(confidence.mean()),
    }
    if stability is not None:
        info["stability"] = stability

    # --- write all keys at once
    adata = adata.copy() if copy else adata
    previous = {name: v for name, v in adata.uns.get(key_added, {}).items() if name != "cluster"}
    adata.obs[key_added] = pd.Categorical(domains.astype(str), categories=names)
    adata.obs[f"{key_added}_confidence"] = confidence.astype(np.float32)
    if Key.proba(key_added) in adata.obs.columns:
        del adata.obs[Key.proba(key_added)]
    adata.obsm[Key.embedding(key_added)] = np.asarray(embeddings[reference], dtype=np.float32)
    adata.obsm[f"{key_added}_seed_labels"] = aligned.astype(np.int32)
    adata.uns[key_added] = {**previous, "fit": records[reference], "consensus": info}

    upper = ari[np.triu_indices(n_seeds, k=1)]
    logg.info(
        f"    pairwise ARI between runs: mean {upper.mean():.3f}, min {upper.min():.3f}, max {upper.max():.3f}; "
        f"reference seed {seeds[reference]}; mean confidence {confidence.mean():.3f}",
    )
    logg.info(
        "    finished",
        time=start,
        deep=(
            f"found {len(names)} consensus domains and added\n"
            f"    {key_added!r}, {key_added + '_confidence'!r} (adata.obs)\n"
            f"    {Key.embedding(key_added)!r}, {key_added + '_seed_labels'!r} (adata.obsm)\n"
            f"    {key_added!r}['fit'], {key_added!r}['consensus'] (adata.uns)"
        ),
    )
    return adata if copy else None


def prepare_arguments(record: Mapping[str, Any], prepare_key: str) -> dict[str, Any]:
    """The arguments of the :func:`aestetik.pp.prepare` call that wrote ``record`` (its ``uns[key]['prepare']``).

    Without ``random_state`` and ``copy``; the morphology is the one that call used (``'auto'`` resolved). A
    section projected onto a model has no ``prepare`` call of its own to repeat: the caller refuses it first
    (:func:`~aestetik._model._checks.assert_own_pseudo_labels`).
    """
    p = record["params"]
    source = str(record["lattice"]["source"])
    columns = [str(c) for c in np.asarray(p["coords"]).ravel()]
    coords: Any = "cells" if source == "cells" else (tuple(columns) if source == "obs" else None)
    n_clusters = p["n_clusters"]  # an int, or a resolution for the graph methods
    n_clusters = int(n_clusters) if isinstance(n_clusters, int | np.integer) else float(n_clusters)
    return {
        "transcriptomics_key": str(p["transcriptomics_key"]),
        "morphology_key": str(p["morphology_key"]) or None,
        "n_clusters": n_clusters,
        "clustering_method": str(p["clustering_method"]),
        "window_size": int(p["window_size"]),
        "spatial_key": str(p["spatial_key"]),
        "coords": coords,
        "batch_key": str(p["batch_key"]) or None,
        "n_comps": int(p["n_comps"]),
        "n_top_genes": int(p["n_top_genes"]),
        "spatial_pca": bool(p["spatial_pca"]),
        "pseudo_label_smoothing": float(p["pseudo_label_smoothing"]),
        "mixture_components": int(p["mixture_components"]) or None,
        "mixture_starts": int(p["mixture_starts"]),
        "mixture_fallback": str(p.get("mixture_fallback", "")) or None,  # none before it existed
        "key_added": prepare_key,
    }


def _prepared_again(adata: AnnData, args: Mapping[str, Any], prepare_key: str, seed: int):
    """:func:`aestetik.pp.prepare` with ``args`` and ``random_state=seed`` on a copy of ``adata``, read back.

    When the transcriptomics representation is in ``obsm`` (``prepare`` computed it, or it was given), the genes are
    not read again: the copy leaves them out, so that a large ``X`` is not copied once per run.
    """
    from aestetik.pp import prepare

    again = adata[:, :0].copy() if args["transcriptomics_key"] in adata.obsm else adata.copy()
    prepare(again, **args, random_state=seed)
    return read_prepared(again, prepare_key)

"""Modality ablation: train and cluster on transcriptomics only, morphology only and both."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from natsort import natsorted
from scanpy import logging as logg
from sklearn.metrics import adjusted_rand_score

from aestetik._docs import doc_params
from aestetik._domains._assign import domain_options, find_domains
from aestetik._domains._scores import ari_known, known_labels, silhouette
from aestetik._model._checks import check_accelerator
from aestetik._model._train import fit_prepared
from aestetik._records import h5ad_value, read_prepared, refinement_coordinates
from aestetik._spatialdata import spatialdata_input
from aestetik._validation import (
    assert_n_clusters,
    assert_no_checkpoints,
    assert_not_view,
    assert_obs_key,
    assert_obsm_key,
    checked_kwargs,
    signature_defaults,
    uns_results,
)
from aestetik.tl._cluster import cluster
from aestetik.tl._fit import fit

if TYPE_CHECKING:
    from anndata import AnnData

#: The settings compared, in the order of every per-setting result.
SETTINGS: tuple[str, ...] = ("transcriptomics", "morphology", "both")
#: Spots drawn (without replacement, the same for every setting) for the silhouette score.
SILHOUETTE_MAX_SPOTS = 5000
#: Arguments that :func:`ablation` sets itself.
_FIT_FIXED = ("prepare_key", "key_added", "copy", "random_state", "show_progress_bar")
_CLUSTER_FIXED = ("n_clusters", "use_rep", "prepare_key", "key_added", "copy", "random_state")


@spatialdata_input
@doc_params
def ablation(
    adata: AnnData,
    *,
    n_clusters: int | float = 7,
    ground_truth_key: str | None = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    cluster_kwargs: Mapping[str, Any] | None = None,
    random_state: int = 0,
    prepare_key: str = "aestetik",
    key_added: str = "aestetik_ablation",
    copy: bool = False,
    show_progress_bar: bool = True,
) -> AnnData | None:
    """How much each modality contributes: domains from transcriptomics only, morphology only and both.

    Starting from data prepared by :func:`aestetik.pp.prepare` with a transcriptomics and a morphology
    representation, trains (:func:`aestetik.tl.fit`) and clusters (:func:`aestetik.tl.cluster`) three
    settings that differ only in their input channels :cite:p:`Nonchev2024`:

    * ``'transcriptomics'``: prepared with ``morphology_key=None`` (the transcriptomics channels only),
    * ``'morphology'``: the morphology representation alone as the input channels,
    * ``'both'``: the prepared setting, with :func:`aestetik.tl.fit`'s default modality weights.

    The single-modality settings reuse the prepared data: that modality's scaled input channels, its
    pseudo-labels and the window index, which is what :func:`aestetik.pp.prepare` computes for that
    representation alone with the recorded parameters (window, smoothing, clustering method and
    ``n_clusters`` of the pseudo-labels), so no mixture is fitted again.
    All three train and cluster with the same ``fit_kwargs``, ``cluster_kwargs`` and ``random_state`` on the
    prepared arrays (``X`` is never copied). The settings are compared with the adjusted Rand index
    (ARI) between their domains, against ``ground_truth_key`` when given, and with the silhouette of the
    domains in each setting's embedding, which needs no ground truth. Nothing is written unless all three
    settings succeed.

    Parameters
    ----------
    {adata}
    n_clusters
        Number of domains (int) or, with ``cluster_kwargs={'method': 'leiden'}``/``'louvain'``, a
        resolution (float), for :func:`aestetik.tl.cluster`.
    ground_truth_key
        ``adata.obs`` column with the true domains; spots whose label is missing or ``'NA'``/``'nan'`` are left
        out of the ARI.
    fit_kwargs
        Keyword arguments of :func:`aestetik.tl.fit` (e.g. ``max_epochs``). A ``morphology_weight`` applies to
        ``'both'`` only; a single-modality setting puts the whole ``total_weight`` on its modality.
    cluster_kwargs
        Keyword arguments of :func:`aestetik.tl.cluster` (e.g. ``method``, ``refine``).
    {random_state}
        Passed to :func:`aestetik.tl.fit`, :func:`aestetik.tl.cluster` and the silhouette's subsample.
    {prepare_key}
    key_added
        Prefix of the domain columns and key of the report in ``adata.uns``.
    {copy}
    {show_progress_bar}

    Returns
    -------
    {returns_copy} Sets:

    `adata.obs[key_added + '_' + setting]` : categorical
        Domains of each setting (``'transcriptomics'``, ``'morphology'``, ``'both'``).
    `adata.uns[key_added]` : dict
        ``params``; ``settings`` (the order of the rows of every matrix); ``pairwise_ari`` (3 x 3, symmetric,
        unit diagonal); ``silhouette`` per setting (NaN when fewer than two domains) over ``n_silhouette``
        spots (all, or a random subset of 5000); per setting ``n_domains``, ``n_channels`` (input channels),
        ``channels`` (transcriptomics and morphology channels), ``weights`` (the calibrated modality weights)
        and ``seconds``. With ``ground_truth_key`` also ``ari`` per setting over the ``n_truth`` spots with a
        known label (``n_truth_missing`` left out).

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.synthetic(n_spots=1000, random_state=0)
    >>> ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=4)  # doctest: +SKIP
    >>> ae.tl.ablation(adata, n_clusters=4, ground_truth_key="ground_truth", fit_kwargs={"max_epochs": 20})  # doctest: +SKIP
    >>> adata.uns["aestetik_ablation"]["ari"]  # doctest: +SKIP
    >>> ae.pl.ablation(adata)  # doctest: +SKIP
    """
    from aestetik._version import __version__

    # --- validate everything before touching adata
    assert_not_view(adata, copy=copy)
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        msg = f"`random_state` must be an int seed, got {random_state!r}."
        raise TypeError(msg)
    fit_defaults, cluster_defaults = signature_defaults(fit, _FIT_FIXED), signature_defaults(cluster, _CLUSTER_FIXED)
    fit_kw = checked_kwargs(fit_kwargs, fit_defaults, _FIT_FIXED, name="fit_kwargs", caller="ablation", target="fit")
    assert_no_checkpoints(fit_kw, caller="ablation")
    check_accelerator(
        fit_kw.get("accelerator", fit_defaults["accelerator"]), fit_kw.get("devices", fit_defaults["devices"])
    )
    cluster_kw = checked_kwargs(
        cluster_kwargs, cluster_defaults, _CLUSTER_FIXED, name="cluster_kwargs", caller="ablation", target="cluster"
    )
    morphology_weight = fit_kw.get("morphology_weight")
    total_weight = fit_kw.get("total_weight", fit_defaults["total_weight"])
    if morphology_weight is not None and not 0 <= morphology_weight <= total_weight:
        msg = (
            f"`fit_kwargs['morphology_weight']` must lie in [0, total_weight={total_weight}], got {morphology_weight}."
        )
        raise ValueError(msg)
    assert_n_clusters(n_clusters, adata.n_obs)
    cluster_args = {**cluster_defaults, **cluster_kw}
    if isinstance(n_clusters, float | np.floating) and cluster_args["method"] not in ("leiden", "louvain"):
        msg = "A float `n_clusters` is a resolution, which only 'leiden'/'louvain' take; pass an int, or `cluster_kwargs={'method': 'leiden'}`."
        raise ValueError(msg)
    prepared = read_prepared(adata, prepare_key)
    params = prepared.params
    redo = f"Run `aestetik.pp.prepare(adata, morphology_key=..., key_added={prepare_key!r})` again."
    if prepared.n_morphology == 0 or not str(params["morphology_key"]):
        msg = (
            f"`adata.uns[{prepare_key!r}]['prepare']` was prepared without a morphology representation, so there is "
            f"nothing to ablate. Run `aestetik.pp.prepare(adata, morphology_key='X_morphology', key_added={prepare_key!r})` "
            "with your morphology representation first."
        )
        raise ValueError(msg)
    for modality in ("transcriptomics", "morphology"):
        rep_key = str(params[f"{modality}_key"])
        rep = assert_obsm_key(
            adata, rep_key, fix=f"`aestetik.pp.prepare` read the {modality} representation there. {redo}"
        )
        if rep.shape[1] != int(prepared.record[f"n_{modality}"]) or not np.all(np.isfinite(rep)):
            msg = f"`adata.obsm[{rep_key!r}]` changed after `aestetik.pp.prepare` (shape {rep.shape} or non-finite values). {redo}"
            raise ValueError(msg)
    for column in [str(c) for c in params["coords"]] + ([prepared.batch_key] if prepared.batch_key else []):
        assert_obs_key(
            adata, column, fix=f"`aestetik.pp.prepare` read it (key_added={prepare_key!r}); restore the column."
        )
    known = None
    if ground_truth_key is not None:
        assert_obs_key(
            adata, ground_truth_key, fix="Pass the obs column that holds the true domains as `ground_truth_key`."
        )
        known = known_labels(adata.obs[ground_truth_key])
        if not known.any():
            msg = f"`adata.obs[{ground_truth_key!r}]` has no known label (all missing or 'NA'); pass another `ground_truth_key` or None."
            raise ValueError(msg)
    spatial_key = cluster_args.pop("spatial_key")
    candidates, options = domain_options(n_clusters, adata.n_obs, random_state=random_state, **cluster_args)
    coords = None
    if options.refine:
        coords = refinement_coordinates(adata, prepare_key=prepare_key, spatial_key=spatial_key)[1]
    uns_results(adata, key_added)

    # --- compute into locals
    start = logg.info(f"modality ablation on {adata.n_obs} spots: {', '.join(SETTINGS)}")
    results: dict[str, dict[str, Any]] = {}
    for setting in SETTINGS:
        t0 = time.perf_counter()
        data = replace(prepared, key=setting) if setting == "both" else prepared.modality(setting)  # one alone
        logg.info(f"    {setting!r}: training on {data.n_channels} input channels")
        kw = fit_kw if setting == "both" else {k: v for k, v in fit_kw.items() if k != "morphology_weight"}
        fitted, embedding = fit_prepared(
            data, **{**fit_defaults, **kw, "random_state": random_state, "show_progress_bar": show_progress_bar}
        )
        labels = find_domains(embedding, n_clusters, candidates, options, coords=coords, groups=data.batch).labels
        w_first, w_second = fitted.modality_weights
        if setting == "both":
            channels = {"transcriptomics": data.n_transcriptomics, "morphology": data.n_morphology}
            weights = {"transcriptomics": w_first, "morphology": w_second}
        else:
            channels = {m: data.n_channels if m == setting else 0 for m in ("transcriptomics", "morphology")}
            weights = {m: w_first if m == setting else 0.0 for m in ("transcriptomics", "morphology")}
        results[setting] = {
            "labels": labels,
            "embedding": embedding,
            "n_channels": data.n_channels,
            "channels": channels,
            "weights": weights,
            "seconds": time.perf_counter() - t0,
        }

    codes = {s: results[s]["labels"] for s in SETTINGS}
    pairwise = np.array([[adjusted_rand_score(codes[a], codes[b]) for b in SETTINGS] for a in SETTINGS])
    n = adata.n_obs
    rng = np.random.default_rng(random_state)
    spots = np.sort(rng.choice(n, SILHOUETTE_MAX_SPOTS, replace=False)) if n > SILHOUETTE_MAX_SPOTS else np.arange(n)
    report: dict[str, Any] = {
        "params": h5ad_value(
            {
                "n_clusters": n_clusters,
                "ground_truth_key": ground_truth_key or "",
                "fit_kwargs": fit_kw,
                "cluster_kwargs": cluster_kw,
                "random_state": int(random_state),
                "prepare_key": prepare_key,
                "aestetik_version": __version__,
            }
        ),
        "settings": list(SETTINGS),
        "pairwise_ari": pairwise,
        "silhouette": {s: silhouette(results[s]["embedding"], codes[s], spots) for s in SETTINGS},
        "n_silhouette": int(spots.size),
        "n_domains": {s: int(np.unique(codes[s]).size) for s in SETTINGS},
        "n_channels": {s: results[s]["n_channels"] for s in SETTINGS},
        "channels": {s: results[s]["channels"] for s in SETTINGS},
        "weights": {s: results[s]["weights"] for s in SETTINGS},
        "seconds": {s: float(results[s]["seconds"]) for s in SETTINGS},
    }
    if known is not None:
        truth = adata.obs[ground_truth_key]
        report["ari"] = {s: ari_known(truth, codes[s]) for s in SETTINGS}
        report["n_truth"] = int(known.sum())
        report["n_truth_missing"] = int((~known).sum())

    # --- write all keys at once
    adata = adata.copy() if copy else adata
    for s in SETTINGS:
        names = natsorted(str(c) for c in np.unique(codes[s]))
        adata.obs[f"{key_added}_{s}"] = pd.Categorical(codes[s].astype(str), categories=names)
    adata.uns[key_added] = report
    summary = ", ".join(
        f"{s}: " + (f"ARI {report['ari'][s]:.3f}" if known is not None else f"silhouette {report['silhouette'][s]:.3f}")
        for s in SETTINGS
    )
    logg.info(
        "    finished",
        time=start,
        deep=f"{summary}; added\n    'obs[{key_added!r} + _<setting>]' (domains), 'uns[{key_added!r}]' (report)",
    )
    return adata if copy else None

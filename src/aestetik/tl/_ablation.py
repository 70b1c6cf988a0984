"""Modality ablation: train and cluster on transcriptomics only, morphology only and both."""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scanpy import logging as logg
from sklearn.metrics import adjusted_rand_score, silhouette_score

from aestetik._docs import doc_params
from aestetik._domains._clustering import GRAPH_METHODS
from aestetik._keys import Key
from aestetik._validation import assert_n_clusters, assert_not_view, assert_obs_key, assert_obsm_key, checked_kwargs
from aestetik.tl._cluster import cluster
from aestetik.tl._fit import _prepared, fit

if TYPE_CHECKING:
    from anndata import AnnData

#: The settings compared, in the order of every per-setting result.
SETTINGS: tuple[str, ...] = ("transcriptomics", "morphology", "both")
#: Spots drawn (without replacement, the same for every setting) for the silhouette score.
SILHOUETTE_MAX_SPOTS = 5000
_MISSING = ("NA", "nan")
#: Arguments that :func:`ablation` sets itself.
_FIT_FIXED = ("prepare_key", "key_added", "copy", "random_state", "show_progress_bar")
_CLUSTER_FIXED = ("n_clusters", "use_rep", "prepare_key", "key_added", "copy", "random_state")
_FIT_PARAMS = frozenset(inspect.signature(fit).parameters) - {"adata"}
_CLUSTER_PARAMS = frozenset(inspect.signature(cluster).parameters) - {"adata"}
_FIT_TOTAL_WEIGHT = inspect.signature(fit).parameters["total_weight"].default


def _recorded(value: Any) -> Any:
    """``value`` as recorded in ``uns`` (h5ad-writable: ``None`` dropped, sequences as lists)."""
    if isinstance(value, Mapping):
        return {str(k): _recorded(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple):
        return list(value)
    return value


def _known(truth: pd.Series) -> np.ndarray:
    """Spots with a ground-truth label: neither missing nor the string ``'NA'``/``'nan'``."""
    return np.asarray(~(truth.isna() | truth.astype(str).isin(_MISSING)))


def _light(adata: AnnData, prepare_key: str, params: Mapping[str, Any], prep: Mapping[str, Any]) -> AnnData:
    """A small AnnData with only what the three settings read (no ``X``); the prepared setting as ``'both'``."""
    from anndata import AnnData

    columns = list(params["coords"]) + ([params["batch_key"]] if params["batch_key"] else [])
    obs = adata.obs[columns].copy()
    for cluster_key in (Key.transcriptomics_cluster, Key.morphology_cluster):
        obs[cluster_key("both")] = adata.obs[cluster_key(prepare_key)].to_numpy()
    obsm = {
        Key.input("both"): np.asarray(adata.obsm[Key.input(prepare_key)]),
        Key.grid("both"): np.asarray(adata.obsm[Key.grid(prepare_key)]),
        Key.lattice("both"): np.asarray(adata.obsm[Key.lattice(prepare_key)]),
    }
    if params["spatial_key"] in adata.obsm:
        obsm[params["spatial_key"]] = np.asarray(adata.obsm[params["spatial_key"]])
    light = AnnData(obs=obs, obsm=obsm)
    light.uns["both"] = {"prepare": dict(prep)}
    return light


def _prepare_single(light: AnnData, setting: str, prep: Mapping[str, Any]) -> None:
    """Write ``setting`` (one modality alone) into ``light``, cut from the prepared ``'both'`` setting.

    This is what :func:`aestetik.pp.prepare` writes for that modality's representation alone with the recorded
    parameters (smoothing and clustering of the pseudo-labels included), without computing it again: the
    min-max scaling is per column, each modality's pseudo-labels are clustered on that modality alone, and the
    window index depends on the lattice only. The modality takes the transcriptomics slot, so its
    pseudo-labels drive the triplet loss with the whole ``total_weight``.
    """
    n_t, n_m = int(prep["n_transcriptomics"]), int(prep["n_morphology"])
    columns = slice(0, n_t) if setting == "transcriptomics" else slice(n_t, n_t + n_m)
    cluster_key = Key.transcriptomics_cluster if setting == "transcriptomics" else Key.morphology_cluster
    light.obsm[Key.input(setting)] = np.ascontiguousarray(light.obsm[Key.input("both")][:, columns])
    light.obsm[Key.grid(setting)] = light.obsm[Key.grid("both")]
    light.obsm[Key.lattice(setting)] = light.obsm[Key.lattice("both")]
    light.obs[Key.transcriptomics_cluster(setting)] = light.obs[cluster_key("both")].to_numpy()
    params = dict(prep["params"])
    params["transcriptomics_key"], params["morphology_key"] = str(params[f"{setting}_key"]), ""
    record = dict(prep)
    record.update(
        params=params,
        n_transcriptomics=n_t if setting == "transcriptomics" else n_m,
        n_morphology=0,
        n_clusters_transcriptomics=int(prep[f"n_clusters_{setting}"]),
        n_clusters_morphology=0,
        transcriptomics_pca_computed=False,
        morphology_computed=False,
    )
    light.uns[setting] = {"prepare": record}


def _prepare_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded ``prepare`` keys and columns that ablation reads, as plain strings (after an h5ad round trip too)."""
    return {
        "transcriptomics_key": str(params["transcriptomics_key"]),
        "morphology_key": str(params["morphology_key"]),
        "spatial_key": str(params["spatial_key"]),
        "coords": [str(c) for c in params["coords"]],
        "batch_key": str(params["batch_key"]),
    }


def _silhouette(embedding: np.ndarray, labels: np.ndarray, spots: np.ndarray) -> float:
    """Silhouette of ``labels`` in ``embedding`` over ``spots``; NaN when undefined (one domain, or one per spot)."""
    k = np.unique(labels[spots]).size
    if not 2 <= k < spots.size:
        return float("nan")
    return float(silhouette_score(embedding[spots], labels[spots]))


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
    All three train and cluster with the same ``fit_kwargs``, ``cluster_kwargs`` and ``random_state`` on a
    small internal AnnData (``X`` is never copied). The settings are compared with the adjusted Rand index
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
    from aestetik import __version__

    # --- validate everything before touching adata
    assert_not_view(adata, copy=copy)
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        msg = f"`random_state` must be an int seed, got {random_state!r}."
        raise TypeError(msg)
    fit_kw = checked_kwargs(fit_kwargs, _FIT_PARAMS, _FIT_FIXED, name="fit_kwargs", caller="ablation", target="fit")
    cluster_kw = checked_kwargs(
        cluster_kwargs, _CLUSTER_PARAMS, _CLUSTER_FIXED, name="cluster_kwargs", caller="ablation", target="cluster"
    )
    morphology_weight = fit_kw.get("morphology_weight")
    total_weight = fit_kw.get("total_weight", _FIT_TOTAL_WEIGHT)
    if morphology_weight is not None and not 0 <= morphology_weight <= total_weight:
        msg = (
            f"`fit_kwargs['morphology_weight']` must lie in [0, total_weight={total_weight}], got {morphology_weight}."
        )
        raise ValueError(msg)
    assert_n_clusters(n_clusters, adata.n_obs)
    if isinstance(n_clusters, float | np.floating) and cluster_kw.get("method", "kmeans") not in GRAPH_METHODS:
        msg = "A float `n_clusters` is a resolution, which only 'leiden'/'louvain' take; pass an int, or `cluster_kwargs={'method': 'leiden'}`."
        raise ValueError(msg)
    prep = _prepared(adata, prepare_key)
    params = _prepare_params(prep["params"])
    redo = f"Run `aestetik.pp.prepare(adata, morphology_key=..., key_added={prepare_key!r})` again."
    if int(prep["n_morphology"]) == 0 or not params["morphology_key"]:
        msg = (
            f"`adata.uns[{prepare_key!r}]['prepare']` was prepared without a morphology representation, so there is "
            f"nothing to ablate. Run `aestetik.pp.prepare(adata, morphology_key='X_morphology', key_added={prepare_key!r})` "
            "with your morphology representation first."
        )
        raise ValueError(msg)
    for modality, rep_key in (
        ("transcriptomics", params["transcriptomics_key"]),
        ("morphology", params["morphology_key"]),
    ):
        rep = assert_obsm_key(
            adata, rep_key, fix=f"`aestetik.pp.prepare` read the {modality} representation there. {redo}"
        )
        if rep.shape[1] != int(prep[f"n_{modality}"]) or not np.all(np.isfinite(rep)):
            msg = f"`adata.obsm[{rep_key!r}]` changed after `aestetik.pp.prepare` (shape {rep.shape} or non-finite values). {redo}"
            raise ValueError(msg)
    for column in list(params["coords"]) + ([params["batch_key"]] if params["batch_key"] else []):
        assert_obs_key(
            adata, column, fix=f"`aestetik.pp.prepare` read it (key_added={prepare_key!r}); restore the column."
        )
    known = None
    if ground_truth_key is not None:
        assert_obs_key(
            adata, ground_truth_key, fix="Pass the obs column that holds the true domains as `ground_truth_key`."
        )
        known = _known(adata.obs[ground_truth_key])
        if not known.any():
            msg = f"`adata.obs[{ground_truth_key!r}]` has no known label (all missing or 'NA'); pass another `ground_truth_key` or None."
            raise ValueError(msg)
    previous = adata.uns.get(key_added)
    if previous is not None and not isinstance(previous, Mapping):
        msg = f"`adata.uns[{key_added!r}]` holds a {type(previous).__name__}, not a dict of results. Pass another `key_added` or delete that entry."
        raise TypeError(msg)

    # --- compute into locals
    start = logg.info(f"modality ablation on {adata.n_obs} spots: {', '.join(SETTINGS)}")
    light = _light(adata, prepare_key, params, prep)
    results: dict[str, dict[str, Any]] = {}
    for setting in SETTINGS:
        t0 = time.perf_counter()
        if setting != "both":  # the modality alone, in the transcriptomics slot
            _prepare_single(light, setting, prep)
        n_input = int(light.obsm[Key.input(setting)].shape[1])
        logg.info(f"    {setting!r}: training on {n_input} input channels")
        kw = fit_kw if setting == "both" else {k: v for k, v in fit_kw.items() if k != "morphology_weight"}
        fit(
            light,
            prepare_key=setting,
            key_added=setting,
            random_state=random_state,
            show_progress_bar=show_progress_bar,
            **kw,
        )
        cluster(
            light,
            n_clusters,
            use_rep=Key.embedding(setting),
            prepare_key=setting,
            key_added=setting,
            random_state=random_state,
            **cluster_kw,
        )
        record = light.uns[setting]["fit"]
        w_first, w_second = float(record["transcriptomics_weight"]), float(record["morphology_weight"])
        if setting == "both":
            channels = {"transcriptomics": int(prep["n_transcriptomics"]), "morphology": int(prep["n_morphology"])}
            weights = {"transcriptomics": w_first, "morphology": w_second}
        else:
            channels = {m: n_input if m == setting else 0 for m in ("transcriptomics", "morphology")}
            weights = {m: w_first if m == setting else 0.0 for m in ("transcriptomics", "morphology")}
        results[setting] = {
            "labels": light.obs[setting].copy(),
            "embedding": light.obsm[Key.embedding(setting)],
            "n_channels": n_input,
            "channels": channels,
            "weights": weights,
            "seconds": time.perf_counter() - t0,
        }
        for k in (Key.input, Key.grid, Key.lattice):  # free the setting's arrays early
            light.obsm.pop(k(setting), None)
    del light

    codes = {s: results[s]["labels"].cat.codes.to_numpy() for s in SETTINGS}
    pairwise = np.array([[adjusted_rand_score(codes[a], codes[b]) for b in SETTINGS] for a in SETTINGS])
    n = adata.n_obs
    rng = np.random.default_rng(random_state)
    spots = np.sort(rng.choice(n, SILHOUETTE_MAX_SPOTS, replace=False)) if n > SILHOUETTE_MAX_SPOTS else np.arange(n)
    report: dict[str, Any] = {
        "params": _recorded(
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
        "silhouette": {s: _silhouette(results[s]["embedding"], codes[s], spots) for s in SETTINGS},
        "n_silhouette": int(spots.size),
        "n_domains": {s: int(results[s]["labels"].cat.categories.size) for s in SETTINGS},
        "n_channels": {s: results[s]["n_channels"] for s in SETTINGS},
        "channels": {s: results[s]["channels"] for s in SETTINGS},
        "weights": {s: results[s]["weights"] for s in SETTINGS},
        "seconds": {s: float(results[s]["seconds"]) for s in SETTINGS},
    }
    if known is not None:
        truth = adata.obs[ground_truth_key].astype(str).to_numpy()[known]
        report["ari"] = {s: float(adjusted_rand_score(truth, codes[s][known])) for s in SETTINGS}
        report["n_truth"] = int(known.sum())
        report["n_truth_missing"] = int((~known).sum())

    # --- write all keys at once
    adata = adata.copy() if copy else adata
    for s in SETTINGS:
        labels = results[s]["labels"]
        adata.obs[f"{key_added}_{s}"] = pd.Categorical(labels.to_numpy(), categories=labels.cat.categories)
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

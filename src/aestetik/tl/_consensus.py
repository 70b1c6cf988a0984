"""Consensus domains over several training seeds: Hungarian alignment to the medoid seed and a majority vote."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from natsort import natsorted
from scanpy import logging as logg

from aestetik._docs import doc_params
from aestetik._domains._clustering import CLUSTER_METHODS
from aestetik._keys import Key
from aestetik._validation import assert_choice, assert_int, assert_not_view, assert_obs_key, checked_kwargs, uns_results
from aestetik.tl._cluster import cluster, n_cluster_candidates
from aestetik.tl._fit import _prepared, fit

if TYPE_CHECKING:
    from anndata import AnnData


def _params(func) -> set[str]:
    return set(inspect.signature(func).parameters) - {"adata"}


#: Arguments that :func:`consensus` sets itself and that ``fit_kwargs``/``cluster_kwargs`` may not hold.
_OWN_FIT = ("random_state", "prepare_key", "key_added", "copy", "show_progress_bar")
_OWN_CLUSTER = ("n_clusters", "method", "refine", "random_state", "use_rep", "prepare_key", "key_added", "copy")


def pairwise_ari(labels: np.ndarray) -> np.ndarray:
    """Adjusted Rand index between every pair of columns of ``labels`` (n, s): symmetric, unit diagonal."""
    from sklearn.metrics import adjusted_rand_score

    s = labels.shape[1]
    ari = np.eye(s)
    for i in range(s):
        for j in range(i + 1, s):
            ari[i, j] = ari[j, i] = adjusted_rand_score(labels[:, i], labels[:, j])
    return ari


def medoid(ari: np.ndarray) -> int:
    """The run with the highest mean ARI to the others (ties: the first)."""
    s = ari.shape[0]
    return int(np.argmax((ari.sum(axis=1) - np.diag(ari)) / max(s - 1, 1)))


def align_labels(labels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rename ``labels`` to maximise the spots on which they equal ``reference`` (Hungarian matching).

    Both are non-negative ints. Matching runs on the contingency table (``k_labels x k_reference``), never on
    spot pairs. Labels left unmatched (more clusters than the reference has) get new ids after the reference's.
    """
    from scipy.optimize import linear_sum_assignment

    labels = np.asarray(labels, dtype=np.int64)
    reference = np.asarray(reference, dtype=np.int64)
    k_l, k_r = int(labels.max()) + 1, int(reference.max()) + 1
    table = np.bincount(labels * k_r + reference, minlength=k_l * k_r).reshape(k_l, k_r)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping = np.full(k_l, -1, dtype=np.int64)
    mapping[rows] = cols
    unmatched = np.flatnonzero(mapping < 0)
    mapping[unmatched] = k_r + np.arange(unmatched.size)
    return mapping[labels]


def majority_vote(aligned: np.ndarray, order: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Most frequent label per row of ``aligned`` (n, s) and the fraction of columns that carry it.

    A tie goes to the label of the first column in ``order`` (e.g. the reference run) that voted for a tied label.
    Memory is O(n x labels), never O(n^2).
    """
    n, s = aligned.shape
    rows = np.arange(n)
    counts = np.zeros((n, int(aligned.max()) + 1), dtype=np.int32)
    for j in range(s):
        counts[rows, aligned[:, j]] += 1  # one vote per row and run: no repeated indices
    best = counts.max(axis=1)
    winner = np.full(n, -1, dtype=np.int64)
    for j in order:
        pick = (winner < 0) & (counts[rows, aligned[:, j]] == best)
        winner[pick] = aligned[pick, j]
    return winner, best / s


def vote(labels: np.ndarray, reference: int, *, realign: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Consensus of the runs ``labels`` (n, s): align to run ``reference``, majority vote, optionally realign once.

    Returns the consensus (consecutive ids), the confidence (fraction of runs agreeing with it) and the runs'
    labels aligned to the consensus (ids of the consensus; clusters without a match get ids after them).
    """
    s = labels.shape[1]
    order = [reference] + [j for j in range(s) if j != reference]
    aligned = np.column_stack([align_labels(labels[:, j], labels[:, reference]) for j in range(s)])
    consensus, confidence = majority_vote(aligned, order)
    if realign:
        aligned = np.column_stack([align_labels(labels[:, j], consensus) for j in range(s)])
        consensus, confidence = majority_vote(aligned, order)
    # consecutive consensus ids; labels of the runs that the consensus lacks go after them
    used = np.unique(consensus)
    mapping = np.full(int(aligned.max()) + 1, -1, dtype=np.int64)
    mapping[used] = np.arange(used.size)
    rest = np.flatnonzero(mapping < 0)
    mapping[rest] = used.size + np.arange(rest.size)
    return mapping[consensus], confidence, mapping[aligned]


def _light(adata: AnnData, prepare_key: str, prep: Mapping[str, Any], spatial_key: str | None) -> AnnData:
    """An AnnData holding only what :func:`fit` and :func:`cluster` read (no ``X``, arrays shared, not copied)."""
    from anndata import AnnData

    columns = [Key.transcriptomics_cluster(prepare_key)]
    if int(prep["n_morphology"]):
        columns.append(Key.morphology_cluster(prepare_key))
    batch_key = prep.get("params", {}).get("batch_key")
    if isinstance(batch_key, str) and batch_key:
        columns.append(batch_key)
    obs = pd.DataFrame({c: adata.obs[c].to_numpy() for c in columns}, index=adata.obs_names.copy())
    keys = [Key.input(prepare_key), Key.grid(prepare_key), Key.lattice(prepare_key), spatial_key]
    obsm = {k: adata.obsm[k] for k in keys if k is not None and k in adata.obsm}
    light = AnnData(obs=obs, obsm=obsm)
    light.uns[prepare_key] = {"prepare": prep}
    return light


def _recorded(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments as stored in ``uns`` (h5ad-writable: ``None`` dropped, sequences as arrays)."""
    out: dict[str, Any] = {}
    for k, v in kwargs.items():
        if v is None:
            continue
        out[k] = np.asarray(v) if isinstance(v, Sequence | range) and not isinstance(v, str) else v
    return out


@doc_params
def consensus(
    adata: AnnData,
    *,
    n_seeds: int = 5,
    n_clusters: int | Literal["auto"] | Sequence[int] = 7,
    method: Literal["bgm", "kmeans", "leiden", "louvain"] = "kmeans",
    refine: bool = True,
    random_state: int = 0,
    fit_kwargs: Mapping[str, Any] | None = None,
    cluster_kwargs: Mapping[str, Any] | None = None,
    prepare_key: str = "aestetik",
    show_progress_bar: bool = True,
    key_added: str = "aestetik",
    copy: bool = False,
) -> AnnData | None:
    """Train AESTETIK with several seeds and combine their domains into consensus domains with a confidence.

    Runs :func:`aestetik.tl.fit` and :func:`aestetik.tl.cluster` with the seeds ``random_state``,
    ``random_state + 1``, ... (the seed of a run is used for both) on a light copy of the prepared inputs (``X`` is
    never copied). The runs are compared by their pairwise adjusted Rand index (ARI); the *reference* is the medoid
    run, the one with the highest mean ARI to the others. Each run's domains are renamed to match the reference by
    Hungarian matching on their contingency table, every spot gets the label most runs agree on (ties: the
    reference's), and the runs are aligned once more to that consensus and vote again. Memory grows with spots x
    runs, never spots^2. The embedding and training record of the reference run are kept, so
    :func:`aestetik.pl.loss` and :func:`aestetik.tl.cluster` work as after a single :func:`aestetik.tl.fit`.
    Nothing is written when any run fails.

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
        ``params``, ``seeds``, ``ari`` (pairwise ARI between the runs, n_seeds x n_seeds), ``mean_ari`` and
        ``min_ari`` (over distinct pairs), ``reference`` (index of the medoid run) and ``reference_seed``,
        ``n_clusters`` (domains per run, asked), ``n_domains`` (consensus domains), ``mean_confidence`` and, when
        ``n_clusters`` was chosen, ``stability`` (see :func:`aestetik.tl.cluster`). Draw it with
        :func:`aestetik.pl.consensus`.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.dlpfc_151676()  # doctest: +SKIP
    >>> ae.pp.prepare(adata)  # doctest: +SKIP
    >>> ae.tl.consensus(adata, n_seeds=5, n_clusters=7)  # doctest: +SKIP
    >>> adata.uns["aestetik"]["consensus"]["mean_ari"]  # doctest: +SKIP
    >>> ax = ae.pl.spatial(adata, color=["aestetik", "aestetik_confidence"])  # doctest: +SKIP
    """
    from aestetik import __version__

    # --- validate everything before touching adata
    assert_not_view(adata, copy=copy)
    prep = _prepared(adata, prepare_key)
    assert_int(minimum=2, n_seeds=n_seeds)
    assert_choice(method, CLUSTER_METHODS, name="method")
    if isinstance(n_clusters, float | np.floating):
        msg = "`aestetik.tl.consensus` needs the same number of domains in every run: pass an int, not a resolution."
        raise TypeError(msg)
    candidates = n_cluster_candidates(n_clusters, adata.n_obs)
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        msg = f"`random_state` must be an int seed, got {random_state!r}."
        raise TypeError(msg)
    fit_kw = checked_kwargs(fit_kwargs, _params(fit), _OWN_FIT, name="fit_kwargs", caller="consensus", target="fit")
    cluster_kw = checked_kwargs(
        cluster_kwargs, _params(cluster), _OWN_CLUSTER, name="cluster_kwargs", caller="consensus", target="cluster"
    )
    previous = uns_results(adata, key_added)
    batch_key = prep.get("params", {}).get("batch_key")
    if isinstance(batch_key, str) and batch_key:
        assert_obs_key(adata, batch_key, fix=f"`aestetik.pp.prepare` recorded batch_key={batch_key!r}; restore it.")

    # --- compute into locals
    seeds = [int(random_state) + i for i in range(n_seeds)]
    start = logg.info(f"consensus of {n_seeds} AESTETIK runs (seeds {seeds[0]}..{seeds[-1]}) on {adata.n_obs} spots")
    light = _light(adata, prepare_key, prep, cluster_kw.get("spatial_key", "spatial"))
    run = "consensus_run"
    while run in light.obs.columns or run == prepare_key:
        run = "_" + run
    labels, embeddings, records = [], [], []
    k: int | Literal["auto"] | Sequence[int] = n_clusters
    stability = None
    for i, seed in enumerate(seeds):
        logg.info(f"    run {i + 1}/{n_seeds} (seed {seed})")
        fit(
            light,
            random_state=seed,
            prepare_key=prepare_key,
            key_added=run,
            show_progress_bar=show_progress_bar,
            **fit_kw,
        )
        cluster(
            light,
            k,
            method=method,
            refine=refine,
            random_state=seed,
            use_rep=Key.embedding(run),
            prepare_key=prepare_key,
            key_added=run,
            **({"show_progress_bar": show_progress_bar} | cluster_kw),
        )
        if candidates is not None and i == 0:
            stability = dict(light.uns[run]["cluster"]["stability"])
            k = int(stability["chosen"])
        labels.append(light.obs[run].cat.codes.to_numpy().astype(np.int64))
        embeddings.append(light.obsm[Key.embedding(run)])
        records.append(light.uns[run]["fit"])
    del light
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
        "prepare_key": prepare_key,
        "fit_kwargs": _recorded(fit_kw),
        "cluster_kwargs": _recorded(cluster_kw),
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

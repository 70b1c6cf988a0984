from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from natsort import natsorted
from scanpy import logging as logg

from aestetik._docs import doc_params
from aestetik._domains._assign import (
    Domains,
    assign_domains,
    domain_options,
    find_domains,
    resolve_refinement,
    stability_record,
)
from aestetik._domains._pseudo_labels import domain_agreement, warn_if_domains_left
from aestetik._keys import Key
from aestetik._records import assert_batch_column, read_domain_model, refinement_coordinates
from aestetik._spatialdata import spatialdata_input
from aestetik._validation import assert_finite, assert_not_view, assert_obsm_key, uns_results

if TYPE_CHECKING:
    from os import PathLike

    from anndata import AnnData


@spatialdata_input
@doc_params
def cluster(
    adata: AnnData,
    n_clusters: int | float | Literal["auto"] | Sequence[int] = 7,
    *,
    method: Literal["auto", "bgm", "kmeans", "leiden", "louvain", "spectral"] = "auto",
    refine: bool = True,
    n_neighbors: int | None = None,
    n_resamples: int = 5,
    stability_tolerance: float = 0.02,
    use_rep: str = "X_aestetik",
    prepare_key: str = "aestetik",
    spatial_key: str = "spatial",
    random_state: int = 0,
    n_jobs: int | None = None,
    show_progress_bar: bool = True,
    model: AnnData | str | PathLike | None = None,
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
    Read the curve (:func:`aestetik.pl.n_clusters`) rather than trusting the choice alone: the choice is often
    near the annotated number with spectral clustering (and ``'auto'``), while ``method='kmeans'``, which reproduces
    finer cuts of an embedding as well as the annotated one, tends to choose more domains (see the benchmarks
    page). A range around the number you expect narrows it.

    With ``model`` (a trained and clustered AnnData, or a file of :func:`aestetik.tl.save_model` written after
    ``cluster``) a new section embedded with that model (``aestetik.tl.embed(adata, model=model)``) is labelled
    with the training domains instead: every spot takes the domain of the nearest domain centre of the training
    clustering (the mean training embedding of each domain), then the refinement runs on this section's
    lattice. ``n_clusters``, ``method`` and the stability options are then not used.

    Parameters
    ----------
    {adata}
    n_clusters
        Number of domains (int); for ``'leiden'``/``'louvain'`` also a resolution (float). ``'auto'`` chooses among
        2..15 by stability (see above); a range or list of ints (e.g. ``range(3, 11)``) chooses among those.
    method
        ``'auto'`` (the default; not in the reference): spectral clustering (below), unless k-means cuts at least a
        fifth fewer edges of the 30-nearest-neighbour graph of the embedding (keeps more of each spot's neighbours
        in its own domain); the method kept is logged and recorded in ``uns[key_added]['cluster']['method_used']``.
        Spectral clustering's normalised cut prefers domains of similar size and cuts a large domain when the others
        are small (a tumour section); k-means cuts a domain that is connected but not compact in the embedding;
        either failure cuts many neighbour pairs (see the method page).
        ``'spectral'`` (not in the reference): spectral clustering of the 30-nearest-neighbour graph
        of the embedding (scikit-learn's ``SpectralClustering(affinity='nearest_neighbors')``, labels assigned by
        QR pivoting, so no random start); when that graph falls into more pieces than ``n_clusters`` the neighbours
        are doubled until it does not; above 10,000 spots it clusters 10,000 random ones and the others take the
        majority domain of their 15 nearest in the embedding. ``'kmeans'`` (100 initialisations), ``'bgm'``
        (Bayesian Gaussian mixture, tied covariance, 10 random initialisations and one from k-means; the published
        default), ``'leiden'`` or ``'louvain'`` (on a 50-nearest-neighbour graph of the embedding; for an int
        ``n_clusters`` the resolution is searched upward from 0.1 to 3 in steps of 0.02 until exactly
        ``n_clusters`` clusters appear, then, if every one gave more, downward from 0.09 to 0.001, else the
        closest count is used; above 50,000 spots the graph of 50,000 random ones, the others take the majority
        domain of their 15 nearest). The triplet loss pulls the pseudo-label groups apart, but a domain can be
        connected in the embedding without being compact, where k-means splits one domain and merges two; the
        graph cut follows the neighbours instead, which suits domains that are elongated or curved in the
        embedding (see the method page). ``'kmeans'`` suits compact, similarly sized domains;
        ``'leiden'`` and ``'louvain'`` suit graphs whose domains are well connected, and take a resolution when the
        number of domains is unknown; the tied mixture (``'bgm'``) reproduces the published method but sometimes
        merges two domains and splits another.
    refine
        Spatially refine the domains with a k-nearest-neighbour vote. Skipped when ``n_neighbors`` is 1
        (as in the reference implementation) or, by default, when a domain is too small for a vote of 2 (below).
    n_neighbors
        Number of confident neighbours voting in the refinement (fewer when a sample has fewer confident spots).
        ``None`` (default): 1/50 of the spots of one domain (a sample's spots divided by the number of domains),
        rounded, so that the vote reaches as far relative to the domains on every section: 10 on a Visium section
        of 3,500 spots and 7 domains (the published value); under 2, as on a legacy ST section of 300 spots and 5
        domains whose layers are one or two spots wide, the refinement is skipped (see the method page).
    n_resamples
        Subsamples per candidate when choosing ``n_clusters`` (cost: candidates x ``n_resamples`` clusterings).
    stability_tolerance
        How far below the best stability the chosen ``n_clusters`` may lie.
    use_rep
        Key in :attr:`~anndata.AnnData.obsm` of the representation to cluster.
    {prepare_key}
        The refinement uses its lattice ``adata.obsm[prepare_key + '_lattice']`` and its ``batch_key``;
        without a lattice, ``adata.obsm[spatial_key]`` is used. The domains are compared with its pseudo-labels
        (``pseudo_label_agreement`` below).
    spatial_key
        Key in :attr:`~anndata.AnnData.obsm` of the spot coordinates, used for refinement when there is no lattice.
    {random_state}
    n_jobs
        Worker processes for the 11 starts of each mixture fit (``method='bgm'`` only, including the fits that
        choose ``n_clusters``); ``None`` uses :attr:`scanpy.settings.n_jobs`, ``-1`` every core. With one process
        the starts run side by side in as many threads as BLAS uses. The domains do not depend on it.
    {show_progress_bar}
        Only used when choosing ``n_clusters``.
    model
        Training AnnData or model file whose domains label this section (their centres are
        ``model.uns[key_added]['cluster']['centres']``); see above.
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
        ``params`` (the resolved arguments and ``aestetik_version``), ``n_clusters`` (number of domains written),
        ``method_used`` (the method that made the domains: ``method``, or the one ``'auto'`` kept),
        ``pseudo_label_agreement`` (without ``model``, when the pseudo-labels of ``prepare_key`` are in ``obs``: the
        adjusted Rand index between the domains and each modality's pseudo-labels; for an int ``n_clusters`` a
        warning is logged when every one is below 0.4, where the domains may change with the seed; see the method
        page) and, for ``'leiden'``/``'louvain'``, the ``resolution`` used. Other entries of ``adata.uns[key_added]``
        are kept. When ``n_clusters`` was chosen, ``params['n_clusters']`` is ``'auto'`` or the candidates and
        ``stability`` holds the curve: ``n_clusters`` (candidates), ``mean`` and ``sd`` of the pairwise ARIs,
        ``n_found`` (mean clusters found), ``chosen``, ``tolerance``, ``n_resamples``, ``resample_fraction`` and
        ``n_spots``; draw it with :func:`aestetik.pl.n_clusters`. ``centres`` (k, d) float32, the mean embedding
        of each domain, and ``centre_domains`` (k,) the domain of each, which label new sections
        (``model=``); with ``model``, these are the model's and ``params['model']`` says where they came from.

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
    candidates, options = domain_options(
        n_clusters,
        adata.n_obs,
        method=method,
        refine=refine,
        n_neighbors=n_neighbors,
        n_resamples=n_resamples,
        stability_tolerance=stability_tolerance,
        random_state=random_state,
        n_jobs=n_jobs,
        show_progress_bar=show_progress_bar,
    )
    uns_results(adata, key_added)
    trained = None
    if model is not None:
        trained = read_domain_model(model, key_added)
        if trained.centres.shape[1] != x.shape[1]:
            msg = (
                f"`adata.obsm[{use_rep!r}]` has {x.shape[1]} dimensions but the domain centres of {trained.source} "
                f"have {trained.centres.shape[1]}. Embed this section with that model first "
                "(`aestetik.tl.embed(adata, model=model)`)."
            )
            raise ValueError(msg)
    coords_key, coords, batch_key = None, None, None
    if options.refine:
        coords_key, coords = refinement_coordinates(adata, prepare_key=prepare_key, spatial_key=spatial_key)
        batch_key = assert_batch_column(
            adata,
            prepare_key,
            fix="`aestetik.pp.prepare` recorded batch_key={batch_key!r}; restore that column or call with `refine=False`.",
        )

    start = logg.info(f"clustering `adata.obsm[{use_rep!r}]` with {method!r}")
    adata = adata.copy() if copy else adata
    previous = adata.uns.get(key_added, {})  # from the copy: its nested dicts are not shared with the input

    # --- compute into locals
    groups = adata.obs[batch_key].to_numpy() if batch_key else None
    if trained is not None:
        names = trained.names
        index = {name: i for i, name in enumerate(names)}
        owners = np.asarray([index[d] for d in trained.domains], dtype=np.int64)
        used = resolve_refinement(options, np.unique(owners).size, groups, adata.n_obs)
        labels = assign_domains(x, trained.centres, owners, used, coords=coords, groups=groups)
        domains = Domains(
            labels=labels,
            proba=None,
            resolution=None,
            n_clusters=len(names),
            stability=None,
            centres=trained.centres,
            centre_labels=owners,
            n_neighbors=int(used.n_neighbors or 0) if used.refine else 0,
        )
        labels_out = np.asarray(names, dtype=object)[labels]
    else:
        domains = find_domains(x, n_clusters, candidates, options, coords=coords, groups=groups)
        names = natsorted(str(c) for c in np.unique(domains.labels))
        labels_out = domains.labels.astype(str)

    from aestetik._version import __version__

    params: dict = {
        "n_clusters": domains.n_clusters
        if candidates is None
        else ("auto" if isinstance(n_clusters, str) else candidates),
        "method": method,
        "refine": options.refine,
        "n_neighbors": int(domains.n_neighbors),
        "use_rep": use_rep,
        "random_state": int(random_state),
        "model": "" if trained is None else trained.source,
        "aestetik_version": __version__,
    }
    if options.refine:
        params["coords_key"] = coords_key
        if batch_key:
            params["batch_key"] = batch_key
    if candidates is not None:
        params["n_resamples"] = int(n_resamples)
        params["stability_tolerance"] = float(stability_tolerance)
    info: dict = {"params": params, "n_clusters": len(names)}
    if trained is None:
        info["method_used"] = domains.method
        if method == "auto":
            kept = "k-means cut clearly fewer" if domains.method == "kmeans" else "k-means cut no fewer"
            logg.info(f"    {kept} neighbour pairs of the embedding than spectral clustering: kept {domains.method}")
        pseudo = {
            modality: adata.obs[column]
            for modality, column in (
                ("transcriptomics", Key.transcriptomics_cluster(prepare_key)),
                ("morphology", Key.morphology_cluster(prepare_key)),
            )
            if column in adata.obs.columns
        }
        if pseudo:
            info["pseudo_label_agreement"] = domain_agreement(labels_out, pseudo)
            if candidates is None:
                warn_if_domains_left(info["pseudo_label_agreement"])
    if domains.centres is not None:
        info["centres"] = domains.centres.astype(np.float32)
        info["centre_domains"] = np.asarray(
            [names[i] if trained is not None else str(i) for i in domains.centre_labels], dtype=object
        ).astype(str)
    if domains.resolution is not None:
        info["resolution"] = float(domains.resolution)
    if domains.stability is not None:
        info["stability"] = stability_record(
            domains.stability, n_resamples=int(n_resamples), tolerance=stability_tolerance
        )

    # --- write all keys at once
    proba_key = Key.proba(key_added)
    adata.obs[key_added] = pd.Categorical(labels_out, categories=names)
    if domains.proba is not None:
        adata.obs[proba_key] = domains.proba.astype(np.float32)
    elif proba_key in adata.obs.columns:
        del adata.obs[proba_key]
    adata.uns[key_added] = {**dict(previous), "cluster": info}

    added = f"    {key_added!r}, the domains (adata.obs, categorical)\n"
    if domains.proba is not None:
        added += f"    {proba_key!r}, the mixture posterior (adata.obs)\n"
    added += f"    {key_added!r}['cluster'], parameters (adata.uns)"
    logg.info("    finished", time=start, deep=f"found {len(names)} domains and added\n{added}")
    return adata if copy else None

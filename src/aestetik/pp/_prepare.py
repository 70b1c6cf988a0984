from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from scanpy import logging as logg

from aestetik._docs import doc_params
from aestetik._domains._pseudo_labels import pseudo_labels, warn_if_unsettled
from aestetik._keys import Key
from aestetik._space._cells import CELL_SMOOTHING, cell_smoothing
from aestetik._space._grid import minmax_ranges, minmax_scale, window_index
from aestetik._space._lattice import sample_codes
from aestetik._space._layout import DEFAULT_COORDS, Coords, describe, lattice_layout
from aestetik._space._smoothing import domain_smoothing
from aestetik._spatialdata import spatialdata_input
from aestetik._validation import (
    assert_finite,
    assert_not_view,
    assert_obsm_key,
)

from ._default_morphology import default_morphology, incoherent_image
from ._prepare_checks import check_batch_column, check_options, resolve_morphology
from ._prepare_record import PrepareOutputs, write_prepared
from ._reference import check_lattice, input_transforms, project
from ._transcriptomics import reduce_given, transcriptomics_pca

if TYPE_CHECKING:
    from os import PathLike

    from anndata import AnnData


#: ``pseudo_label_smoothing`` (spot spacings) on a lattice when the number of domains is not an int (a resolution).
DEFAULT_SMOOTHING = 1.0


def default_smoothing(source: str, kind: str, samples: np.ndarray, n_clusters: int | float) -> float:
    """``pseudo_label_smoothing=None``: a fixed fraction of a domain's size, for cells and on a lattice."""
    if not isinstance(n_clusters, int | np.integer) or isinstance(n_clusters, bool):
        return CELL_SMOOTHING if source == "cells" else DEFAULT_SMOOTHING
    if source == "cells":
        return cell_smoothing(float(np.bincount(samples).mean()), int(n_clusters))
    return domain_smoothing(float(np.bincount(samples).mean()), int(n_clusters), kind)


@spatialdata_input(image=True)
@doc_params
def prepare(
    adata: AnnData,
    *,
    transcriptomics_key: str = "X_pca",
    morphology_key: str | None = "auto",
    n_clusters: int | float = 7,
    clustering_method: Literal["bgm", "kmeans", "leiden", "louvain", "spectral"] = "bgm",
    window_size: int = 7,
    spatial_key: str = "spatial",
    coords: Coords = DEFAULT_COORDS,
    batch_key: str | None = None,
    n_comps: int = 15,
    n_top_genes: int = 5000,
    spatial_pca: bool = True,
    pseudo_label_smoothing: float | None = None,
    mixture_components: int | None = None,
    mixture_starts: int = 40,
    mixture_fallback: Literal["kmeans"] | None = "kmeans",
    n_jobs: int | None = None,
    random_state: int = 0,
    reference: AnnData | str | PathLike | None = None,
    key_added: str = "aestetik",
    copy: bool = False,
) -> AnnData | None:
    """Prepare AESTETIK's inputs: representations, pseudo-labels, lattice and neighbourhood grid index.

    Reads (or computes) the transcriptomics representation and, when given, the morphology representation,
    clusters each into pseudo-labels that define the triplets of :func:`aestetik.tl.fit`, scales both to
    [0, 1] per column, reads the integer lattice position of every spot and builds, with numba, the index of
    the ``window_size`` x ``window_size`` lattice window around every spot :cite:p:`Nonchev2024`.

    **Several sections** (``batch_key``): one model for all of them. The transcriptomics PCA (when computed) and
    the morphology PCA are fitted on all spots together, so that every section lives in one space (use the genes
    all sections share: ``anndata.concat(..., join='inner')``); the pseudo-labels are clustered jointly, so that a
    label means the same group in every section; everything spatial is per section: the min-max scaling (METHOD
    §3), the neighbourhood average of the pseudo-labels, the lattice and the windows (never across sections),
    and later the refinement of :func:`aestetik.tl.cluster`. The morphology is cut from each section's own image
    when the values of ``batch_key`` name the libraries of ``adata.uns[spatial_key]`` (e.g.
    ``anndata.concat(sections, join='inner', label='library_id', keys=[...], uns_merge='unique')``).

    **New sections** (``reference``): the section is projected into the space of a trained one instead of
    fitting its own transforms: the reference's genes, normalisation, highly variable genes, PCA mean and
    loadings (when ``prepare`` computed its PCA), its morphology standardisation and PCA (when
    :func:`aestetik.pp.morphology` computed it; the same method, patch size and image key), and its per-channel
    min-max ranges (over all its sections; values may then fall slightly outside [0, 1]). The lattice and the
    windows are built for the new section (same ``window_size`` and lattice type as the reference, else an
    error). No pseudo-labels are computed (nothing is trained): continue with
    ``aestetik.tl.embed(adata, model=reference)`` and ``aestetik.tl.cluster(adata, model=reference)``.
    Genes may come in any order; up to 10% of the reference's highly variable genes may be missing (said in the
    log, filled with their training mean so that they add nothing to the PCs), more is refused.

    Parameters
    ----------
    {adata}
    transcriptomics_key
        ``adata.obsm`` key of the transcriptomics representation. When absent, PCs of ``X`` (log1p unless
        ``uns['log1p']`` exists, after normalising integer counts per spot to 10^4, or for single cells
        (``coords='cells'``) to their median depth; ``n_top_genes`` highly variable genes, centred but not scaled,
        ``n_comps`` components; axes as ``spatial_pca`` says) are computed on a copy and stored under this key;
        ``X`` is left unchanged.
    morphology_key
        ``adata.obsm`` key of the morphology representation (e.g. PCs of image features), or ``None`` to
        train on transcriptomics and neighbourhood only. ``'auto'`` uses ``obsm['X_morphology']`` if
        present, else computes it with :func:`aestetik.pp.morphology` (defaults; per library with
        ``batch_key`` when it names the libraries) when ``adata.uns[spatial_key]`` holds a tissue image whose
        spots are at least 10 pixels wide, else trains without morphology. Under 10 pixels (Visium's lowres
        image: about 4 px) a patch shows the tissue's colour rather than cells, so it adds little beyond the
        transcriptomics (see the method page); the log then says so and how to use the image anyway
        (``aestetik.pp.morphology`` first, then ``morphology_key='X_morphology'``), and
        ``uns[key_added]['prepare']['morphology_skipped']`` records it. Features that ``'auto'`` computed from the
        image are then used only when their pseudo-labels are at least as spatially coherent as the
        transcriptome's (Cohen's kappa of each spot's label against those of its 6 nearest spots, computed
        without labels): features whose clusters are more scattered than the transcriptome's pull the embedding
        away from the domains (see the method page). Otherwise the log says so, ``morphology_skipped`` records
        why, and ``obsm['X_morphology']`` stays, to pass as ``morphology_key`` anyway;
        ``uns[key_added]['prepare']['morphology_coherence']`` holds both values.
    n_clusters
        Number of pseudo-label clusters per modality (int; usually the number of domains expected) or, for
        ``'leiden'``/``'louvain'``, a resolution (float). When the domains come out with two layers merged,
        one cluster more than :func:`aestetik.tl.cluster`'s ``n_clusters`` can separate them; on sections whose
        domains are already well separated it tends to split one instead. The default mixture already has one
        component more, merged (``mixture_components``, below).
    {clustering_method}
    window_size
        Odd side ``w >= 3`` of the lattice window around each spot.
    spatial_key
        ``adata.obsm`` key of the spot coordinates (and ``adata.uns`` key of the image for
        ``morphology_key='auto'``); otherwise only checked and recorded (a warning when absent). Refinement
        uses the lattice written here; plots read ``obsm['spatial']``.
    coords
        Where the lattice position of every spot comes from. Two ``adata.obs`` columns holding the integer
        lattice row and column (10x Visium: ``array_row``, ``array_col``; hexagonal: horizontal neighbours differ
        by 2 columns; regular non-integer values are snapped). ``None``: derived from the positions
        ``adata.obsm[spatial_key]`` (µm or pixels), which must lie on a hexagonal (Visium spots) or square (Visium
        HD, Stereo-seq bins) lattice: its layout, spacing and orientation are detected per sample from the
        vectors to each spot's nearest neighbours and every spot is mapped to its integer position, hexagonal in
        Visium's convention; also used, with a log line, when the default columns are absent. ``'cells'``: single
        cells or other irregular positions (from ``adata.obsm[spatial_key]``) get a square grid of two sites per
        cell at the median local density (the occupancy of the Visium lattice indices), every cell its own site,
        a collision resolved to the nearest free site; the window of a cell is then the sites around it, the
        pseudo-label smoothing uses the real positions (in site spacings) and :func:`aestetik.tl.cluster` refines
        on the real positions. Irregular positions are not turned into a cell grid unless asked for: ``None``
        refuses them, pointing here.
    batch_key
        ``adata.obs`` column naming the sample of each spot; windows never reach into another sample.
    n_comps
        Components of the transcriptomics PCA computed when ``transcriptomics_key`` is absent. A given
        representation with more columns (e.g. 50 PCs, or the 154 PCs of a MERFISH section) is reduced to
        ``n_comps`` columns, said in the log: its ``n_comps`` principal axes of the neighbourhood average (the
        Gaussian of ``pseudo_label_smoothing``), onto which every spot's own values are projected; the pseudo-labels
        and the network then see these (see the method page). ``obsm[transcriptomics_key]`` is left as it is.
    n_top_genes
        Highly variable genes (scanpy's ``'seurat'`` flavour on the log values) of that PCA; all genes when there
        are fewer.
    spatial_pca
        Whether that PCA takes its axes from the expression averaged over each spot's neighbourhood (the
        Gaussian of ``pseudo_label_smoothing``, per sample) instead of from the single spots; each spot's own
        expression is then projected onto these axes, so the network still sees the spot itself. The axes then
        follow the variation between neighbourhoods (layers, regions), which is what the pseudo-labels cluster,
        rather than the counting noise of single spots; it suits sections whose domains are layers or regions
        many spots wide (see the method page). Single cells (``coords='cells'``) take these axes among their own
        first 50 principal components: a cell's expression carries its type, and its domain is the mix of types
        around it. ``False``: scanpy's PCA of the spots (or cells), the published method's choice.
    pseudo_label_smoothing
        Width ``sigma``, in spot spacings, of the Gaussian neighbourhood average of each representation that is
        clustered into pseudo-labels (per sample, within ``3 * sigma``; on a hexagonal lattice rows are
        ``sqrt(3) / 2`` spots apart). The representations fed to the network are not smoothed. Clustering the
        neighbourhood average gives spatially coherent pseudo-labels, which the triplet loss then teaches the
        encoder; on single spots the mixture often collapses or follows noise. ``0`` clusters the spots
        themselves, as the published method. ``None`` (default): on a lattice, one spot spacing (the first ring
        of neighbours), or less where the domains are small relative to the lattice: at most ``1 / 20`` of the side
        of a square with the area of one domain (the sample's spots times the area of one lattice cell, divided by
        the int ``n_clusters``). A Visium section of thousands of spots gets 1; a legacy ST section of 300 spots and
        5 domains, whose domains are a few spots wide, about 0.4. For single cells (``coords='cells'``) wider, as a
        cell, unlike a spot, shows its layer only through its neighbours: ``1 / 7.5`` of the side of a square with
        the area of one domain in sites of their grid (two per cell), so that the average covers about a fifth of a
        domain's cells, and at most 6 sites: about 3 sites on a section of 1,000 cells and 4 layers, about 5 on one
        of 5,500 cells and 8 domains. A resolution (float ``n_clusters``) gets 1 spot spacing, or 3 sites for
        cells. See the method page.
    mixture_components
        Components of the Gaussian mixture that makes the pseudo-labels (``clustering_method='bgm'``, an int
        ``n_clusters``). With more components than ``n_clusters`` the two whose means are closest under the
        mixture's shared covariance (the two that overlap most) are merged, again and again, until ``n_clusters``
        remain: a band of tissue with a gradient across it takes two Gaussian components, and the merge keeps it
        one pseudo-label instead of cutting another band in two. ``None`` (default): ``n_clusters + 1``, one
        component to merge (not in the reference; ``n_clusters`` with ``mixture_starts=10`` is the published
        mixture). The merge suits sections whose domains are bands with gradients across them, such as cortical
        layers, and makes the pseudo-labels of different seeds agree more (see the method page); the extra
        component and starts make the mixture slower than the published one. ``mixture_components=n_clusters``
        turns the merge off.
    mixture_starts
        Random starts of that mixture; one start from k-means is added and the fit with the highest lower bound
        is kept. Default 40, so that a poor random start rarely decides the pseudo-labels; the published
        method's choice is 10, which is faster.
    mixture_fallback
        What gives the pseudo-labels of a modality where the mixture's two best starts cut it differently
        (``clustering_method='bgm'``; adjusted Rand index between them below 0.5): there the mixture's objective
        does not tell two partitions apart and the seed picks one, sometimes one that merges two domains.
        ``'kmeans'`` (default, not in the reference): k-means with 100 starts on the same neighbourhood-averaged
        representation, whose partition the seed does not change; the log says so and
        ``uns[key_added]['prepare']['pseudo_label_method']`` records it. ``None`` keeps the mixture's (the published
        method) and warns that they are not settled. Where the starts agree, nothing changes. See the method page.
    n_jobs
        Worker processes for the starts of the mixture (``clustering_method='bgm'``: ``mixture_starts + 1`` per
        modality); ``None`` uses :attr:`scanpy.settings.n_jobs`, ``-1`` every core. With one process (scanpy's
        default) the starts run side by side in as many threads as BLAS uses (every core unless limited, e.g. by
        ``OMP_NUM_THREADS``), one BLAS thread each. The pseudo-labels do not depend on it. Worker processes start
        once per session (mostly importing scikit-learn).
    {random_state}
    reference
        A trained AnnData (prepared with the same ``key_added``) or a model file of
        :func:`aestetik.tl.save_model`: project this section with its transforms (see above). The clustering
        arguments are then not used.
    key_added
        Prefix of every key written.
    {copy}

    Returns
    -------
    {returns_copy} Sets:

    `adata.obsm[key_added + '_input']` : ndarray (n, C), float32
        Min-max scaled transcriptomics then morphology features (per sample with ``batch_key``; with the
        reference's ranges with ``reference``).
    `adata.obsm[key_added + '_lattice']` : ndarray (n, 2), int32
        Lattice (row, col) per spot.
    `adata.obsm[key_added + '_grid']` : ndarray (n, w * w), int32
        Index of the spot at each window position, ``-1`` where none.
    `adata.obs[key_added + '_transcriptomics_cluster']`, `adata.obs[key_added + '_morphology_cluster']` : categorical
        Pseudo-labels per modality (the morphology column only with a ``morphology_key``; none with
        ``reference``, and stale ones are removed).
    `adata.obsm[transcriptomics_key]` : ndarray (n, n_comps)
        Only when it was computed (with ``reference``: the projection, replacing an existing one).
    `adata.obsm['X_morphology']`, `adata.obs['morphology_outside']`, `adata.uns['morphology']`
        Only when ``morphology_key='auto'`` computed them from the image (see :func:`aestetik.pp.morphology`).
    `adata.uns[key_added]['prepare']` : dict
        ``params`` (with ``reference``: where it came from, ``''`` without), the sizes ``fit`` needs,
        ``pseudo_labels`` (``False`` with ``reference``), ``pseudo_label_agreement`` (per modality trained on, with
        ``clustering_method='bgm'``: the adjusted Rand index between the pseudo-labels of the mixture's two best
        starts; below 0.5 ``mixture_fallback`` applies), ``pseudo_label_method`` (per modality: ``'bgm'``,
        ``'kmeans'`` where ``mixture_fallback`` replaced the mixture's, or the ``clustering_method``),
        ``morphology_skipped`` (the images ``'auto'`` left out for spots under 10 px, ``''`` when none)
        and ``transforms``: ``minmax_lo`` / ``minmax_hi``
        (per sample and channel), ``transcriptomics`` (when the PCA was computed here: ``genes``, ``hvg`` (their
        indices), ``normalize``, ``target_sum``, ``log1p``, ``mean``, ``components``) and ``morphology`` (when
        it came from :func:`aestetik.pp.morphology`: its ``params`` and ``transform``).

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.dlpfc_151676()
    >>> ae.pp.prepare(adata, n_clusters=7)
    >>> adata.obsm["aestetik_grid"].shape
    (3460, 49)
    """
    from aestetik._version import __version__

    assert_not_view(adata, copy=copy)
    coords, n_jobs = check_options(
        adata.n_obs,
        clustering_method=clustering_method,
        window_size=window_size,
        coords=coords,
        n_clusters=n_clusters,
        pseudo_label_smoothing=pseudo_label_smoothing,
        n_jobs=n_jobs,
        n_top_genes=n_top_genes,
        mixture_components=mixture_components,
        mixture_starts=mixture_starts,
        mixture_fallback=mixture_fallback,
        spatial_pca=spatial_pca,
    )
    if mixture_components is None and clustering_method == "bgm" and isinstance(n_clusters, int | np.integer):
        mixture_components = min(int(n_clusters) + 1, adata.n_obs)  # one to merge (the default, not published)
    compute_pca = transcriptomics_key not in adata.obsm
    if not compute_pca:
        t = assert_obsm_key(adata, transcriptomics_key, fix="")
        assert_finite(t, where=f"`adata.obsm[{transcriptomics_key!r}]`")
    check_batch_column(adata, batch_key)
    morphology_key, auto_morphology, ref, m = resolve_morphology(
        adata, morphology_key, spatial_key=spatial_key, reference=reference, key_added=key_added
    )
    samples, sample_names = sample_codes(adata.obs, batch_key)
    layout = lattice_layout(
        adata.obs, adata.obsm.get(spatial_key), coords, samples, sample_names, spatial_key=spatial_key
    )
    lattice = layout.lattice
    if spatial_key not in adata.obsm:
        logg.warning(f"`adata.obsm[{spatial_key!r}]` not found; plots will use the lattice positions.")

    start = logg.info(f"preparing AESTETIK inputs ({adata.n_obs} spots, window {window_size})")
    morphology = None
    pca_transform = None
    if ref is not None:
        t, m, morphology, compute_pca = project(
            adata, ref, transcriptomics_key=transcriptomics_key, spatial_key=spatial_key, batch_key=batch_key
        )
    coarse: list[str] = []
    if auto_morphology:
        morphology, coarse = default_morphology(
            adata, spatial_key=spatial_key, batch_key=batch_key, random_state=random_state, key_added=Key.morphology()
        )
        if morphology is None:
            morphology_key, auto_morphology = None, False
        else:
            m = morphology.embedding
    kind, positions = layout.kind, layout.positions
    if pseudo_label_smoothing is None:
        pseudo_label_smoothing = default_smoothing(layout.record["source"], kind, samples, n_clusters)
    if compute_pca and ref is None:
        t, pca_transform = transcriptomics_pca(
            adata,
            n_comps=n_comps,
            n_top_genes=n_top_genes,
            random_state=random_state,
            smoothing=(positions, samples, pseudo_label_smoothing) if spatial_pca else None,
            cells=layout.record["source"] == "cells",
        )
    t = np.asarray(t, dtype=np.float32)
    logg.info(f"    {describe(layout)}")
    reduction = None
    if not compute_pca and ref is None and t.shape[1] > n_comps:
        width = t.shape[1]
        t, reduction = reduce_given(
            t,
            n_comps=n_comps,
            positions=positions,
            samples=samples,
            sigma=pseudo_label_smoothing,
            random_state=random_state,
        )
        logg.info(
            f"    `adata.obsm[{transcriptomics_key!r}]` has {width} columns: using its {n_comps} axes along which "
            f"neighbourhoods differ most (`n_comps={width}` keeps every column)"
        )

    def labels_of(x: np.ndarray, key: str, *, warn: bool = True):
        return pseudo_labels(
            x,
            positions,
            samples,
            n_clusters=n_clusters,
            method=clustering_method,
            sigma=pseudo_label_smoothing,
            random_state=random_state,
            n_jobs=n_jobs,
            n_components=mixture_components,
            mixture_starts=mixture_starts,
            fallback=mixture_fallback,
            name=f"`adata.obsm[{key!r}]`",
            warn=warn,
        )

    res_t = res_m = None
    coherence: dict[str, float] = {}
    if m is not None:
        m = np.asarray(m, dtype=np.float32)
    if ref is None:
        res_t = labels_of(t, transcriptomics_key)
        if m is not None:  # features 'auto' computed warn only once they are kept (an image left out is no concern)
            res_m = labels_of(m, morphology_key, warn=not auto_morphology)
        if auto_morphology and res_m is not None:
            coherence, reason = incoherent_image(res_t.labels, res_m.labels, positions, samples)
            if reason:
                m = res_m = morphology_key = None
                coarse.append(reason)
            else:
                warn_if_unsettled(res_m, name=f"`adata.obsm[{morphology_key!r}]`")
        blocks = [t] + ([m] if m is not None else [])
        ranges = [minmax_ranges(x, samples) for x in blocks]
        features = np.concatenate([minmax_scale(x, samples) for x in blocks], axis=1)
        used = morphology if m is not None else None
        transforms = input_transforms(adata, ranges, pca_transform, used, morphology_key, reduction)
    else:
        check_lattice(ref, kind=kind, window_size=int(window_size))
        lo, hi = ref.ranges
        features = np.concatenate([t] + ([m] if m is not None else []), axis=1)
        features = minmax_scale(features, ranges=(lo, hi))
        transforms = {**dict(ref.transforms), "minmax_lo": lo[None], "minmax_hi": hi[None]}
    prepared = PrepareOutputs(
        transcriptomics=t,
        morphology=m,
        computed_pca=bool(compute_pca),
        computed_morphology=morphology,
        morphology_computed=bool(auto_morphology),
        features=features,
        lattice=lattice,
        index=window_index(lattice, samples, window_size),
        transcriptomics_labels=res_t,
        morphology_labels=res_m,
        transforms=transforms,
        coherence=coherence,
        skipped=coarse,
        layout=layout,
        sample_names=sample_names,
    )
    params = {
        "transcriptomics_key": transcriptomics_key,
        "morphology_key": morphology_key or "",
        "n_clusters": n_clusters,
        "clustering_method": clustering_method,
        "window_size": int(window_size),
        "spatial_key": spatial_key,
        "coords": list(layout.columns),
        "batch_key": batch_key or "",
        "n_comps": int(n_comps),
        "n_top_genes": int(n_top_genes),
        "spatial_pca": bool(spatial_pca),
        "pseudo_label_smoothing": float(pseudo_label_smoothing),
        "mixture_components": int(mixture_components or n_clusters) if clustering_method == "bgm" else 0,
        "mixture_starts": int(mixture_starts),
        "mixture_fallback": mixture_fallback or "",
        "random_state": int(random_state),
        "reference": "" if ref is None else ref.source,
        "aestetik_version": __version__,
    }
    adata = adata.copy() if copy else adata
    write_prepared(adata, prepared, params=params, key_added=key_added, transcriptomics_key=transcriptomics_key)
    logg.info(
        "    finished",
        time=start,
        deep=(
            f"added\n    'obsm[{Key.input(key_added)!r}]', 'obsm[{Key.lattice(key_added)!r}]', "
            f"'obsm[{Key.grid(key_added)!r}]', pseudo-labels in obs, 'uns[{key_added!r}][\"prepare\"]'"
        ),
    )
    return adata if copy else None

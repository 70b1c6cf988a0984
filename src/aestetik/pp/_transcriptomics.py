"""The transcriptomics PCs that :func:`aestetik.pp.prepare` computes when they are absent, and their transform."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from anndata import AnnData

#: The depth that counts of spots (on a lattice) are normalised to, as in scanpy's tutorials.
SPOT_DEPTH = 1e4

#: The cells' own principal components, among which single cells take the axes of their neighbourhoods.
CELL_PCS = 50


def median_depth(x: Any) -> float:
    """The median total count of the spots (or cells) with any count: scanpy's default ``normalize_total`` target."""
    totals = np.asarray(x.sum(axis=1), dtype=np.float64).reshape(-1)
    totals = totals[totals > 0]
    return float(np.median(totals)) if totals.size else SPOT_DEPTH


def transcriptomics_pca(
    adata: AnnData,
    *,
    n_comps: int,
    n_top_genes: int,
    random_state: int,
    smoothing: tuple[np.ndarray, np.ndarray, float] | None = None,
    cells: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """PCA of ``X`` (log1p unless logged, highly variable genes, centred, not scaled) computed on a copy.

    Genes are not scaled to unit variance: on sparse spot data that would give a gene seen in a few spots,
    whose variance is mostly counting noise, the weight of a layer marker (see the method page). Integer counts
    are first normalised to :data:`SPOT_DEPTH` per spot, or with ``cells`` to the cells' median depth. With
    ``smoothing = (positions, samples, sigma)`` the axes are those of the expression averaged over each spot's
    neighbourhood (:func:`aestetik._space._smoothing.smoothed_principal_axes`) and every spot's own expression is
    projected onto them; with ``cells`` too, those axes are taken among the cells' own first :data:`CELL_PCS`
    principal components (a cell's expression is its type; its domain is the mix of types around it). Without
    ``smoothing``, scanpy's PCA. Also returns the transform (genes, normalisation, highly variable genes, mean
    and loadings) that :func:`aestetik._model._transforms.project_expression` applies to new sections.
    """
    import scanpy as sc
    from anndata import AnnData
    from scipy import sparse

    x = adata.X
    if x is None:
        msg = "`adata.X` is empty, so no transcriptomics PCA can be computed. Pass `transcriptomics_key` naming an obsm representation."
        raise ValueError(msg)
    tmp = AnnData(X=x.copy().astype(np.float32), var=pd.DataFrame(index=adata.var_names.copy()))
    values = tmp.X.data if sparse.issparse(tmp.X) else np.asarray(tmp.X)
    if not np.all(np.isfinite(values)) or (values.size and values.min() < 0):
        msg = "`adata.X` holds negative, NaN or infinite values; pass expression counts or a `transcriptomics_key`."
        raise ValueError(msg)
    log1p = "log1p" not in adata.uns
    normalize = bool(log1p and values.size and np.all(values == np.round(values)))
    target_sum = median_depth(tmp.X) if cells and normalize else SPOT_DEPTH
    if log1p:
        if normalize:
            sc.pp.normalize_total(tmp, target_sum=target_sum)
        sc.pp.log1p(tmp)
    genes = np.asarray(adata.var_names, dtype=object).astype(str)
    hvg = np.arange(tmp.n_vars)
    n_top = min(n_top_genes, tmp.n_vars)
    if n_top < tmp.n_vars:
        sc.pp.highly_variable_genes(tmp, flavor="seurat", n_top_genes=n_top)
        hvg = np.flatnonzero(tmp.var["highly_variable"].to_numpy())
        tmp = tmp[:, hvg].copy()
    limit = min(tmp.n_vars - 1, tmp.n_obs - 1)
    n_comps = min(n_comps, limit)
    mean = np.asarray(tmp.X.mean(axis=0), dtype=np.float64).reshape(-1)
    if smoothing is None:
        sc.pp.pca(tmp, n_comps=n_comps, random_state=random_state)
        components = np.asarray(tmp.varm["PCs"], dtype=np.float64)
        pcs = tmp.obsm["X_pca"]
    else:
        from aestetik._space._smoothing import smoothed_principal_axes

        positions, samples, sigma = smoothing
        width = min(CELL_PCS, limit)
        if cells and n_comps < width:  # the cells' own PCs first, then the neighbourhood axes among them
            sc.pp.pca(tmp, n_comps=width, random_state=random_state)
            own = np.asarray(tmp.obsm["X_pca"], dtype=np.float64)  # centred
            axes = smoothed_principal_axes(
                own, positions, samples, sigma=sigma, n_comps=n_comps, random_state=random_state
            )
            components = np.asarray(tmp.varm["PCs"], dtype=np.float64) @ axes
            pcs = own @ axes
        else:
            components = smoothed_principal_axes(
                tmp.X, positions, samples, sigma=sigma, n_comps=n_comps, random_state=random_state
            )
            pcs = np.asarray(tmp.X @ components, dtype=np.float64) - mean @ components
    transform = {
        "genes": genes,
        "hvg": hvg.astype(np.int64),
        "normalize": normalize,
        "target_sum": float(target_sum),
        "log1p": bool(log1p),
        "mean": mean,
        "components": components,
    }
    return np.asarray(pcs, dtype=np.float32), transform


def reduce_given(
    x: np.ndarray, *, n_comps: int, positions: np.ndarray, samples: np.ndarray, sigma: float, random_state: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """A given representation wider than ``n_comps`` reduced to the ``n_comps`` axes of its neighbourhood average.

    The axes are those of ``x`` averaged over each spot's neighbourhood (the Gaussian of the pseudo-labels,
    :func:`aestetik._space._smoothing.smoothed_principal_axes`): of the given columns (already a reduction, such as
    the PCs of single cells), the directions along which neighbourhoods differ, which the pseudo-labels cluster.
    Every spot's own values are projected onto them. Returns the projection and the transform (``mean``,
    ``components``: columns x ``n_comps``) that a new section is projected with.
    """
    from aestetik._space._smoothing import smoothed_principal_axes

    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    axes = smoothed_principal_axes(centred, positions, samples, sigma=sigma, n_comps=n_comps, random_state=random_state)
    reduced = (centred @ axes).astype(np.float32)
    return reduced, {"mean": mean.astype(np.float32), "components": axes.astype(np.float32)}

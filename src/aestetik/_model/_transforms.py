"""The input transforms of a training section applied to new sections (arrays only).

:func:`aestetik.pp.prepare` records how it computed the transcriptomics PCs (genes, normalisation, highly variable
genes, PCA mean and loadings) and the min-max ranges of every channel; :func:`aestetik.pp.morphology` records the
standardisation and PCA of the image features (:func:`aestetik._image._patches.apply_transform`). With
``prepare(reference=...)`` a new section is projected with these instead of fitting its own, so that the trained
network sees inputs on the training scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Largest fraction of the reference's highly variable genes that a new section may lack (filled with the
#: training mean); above it ``prepare(reference=...)`` refuses.
MAX_MISSING_GENES = 0.1


def gene_positions(genes: np.ndarray, reference_genes: np.ndarray) -> np.ndarray:
    """Position of every reference gene among ``genes`` (``-1`` where missing); any order, names unique."""
    where = {g: i for i, g in enumerate(map(str, genes))}
    return np.asarray([where.get(str(g), -1) for g in reference_genes], dtype=np.int64)


def project_expression(x: Any, positions: np.ndarray, transform: dict[str, Any]) -> np.ndarray:
    """Transcriptomics PCs of expression ``x`` (n, genes) with a reference's recorded transform.

    ``positions`` maps the reference genes to columns of ``x`` (:func:`gene_positions`). As the reference: per-spot
    normalisation to ``target_sum`` over the reference genes present (when ``normalize``), ``log1p`` (when
    ``log1p``), its highly variable genes, minus the training mean, times the loadings. A missing highly variable
    gene takes the training mean, so it adds nothing to the PCs.
    """
    from scipy import sparse

    present = positions >= 0
    n = x.shape[0]
    cols = positions[present]
    sub = x[:, cols]
    sub = sub.toarray() if sparse.issparse(sub) else np.asarray(sub)
    sub = sub.astype(np.float32)
    if bool(transform["normalize"]):
        totals = sub.sum(axis=1, keepdims=True)
        totals[totals == 0] = 1
        sub = sub / totals * np.float32(transform["target_sum"])
    if bool(transform["log1p"]):
        sub = np.log1p(sub)
    full = np.zeros((n, positions.shape[0]), dtype=np.float32)
    full[:, present] = sub
    hvg = np.asarray(transform["hvg"], dtype=np.int64)
    mean = np.asarray(transform["mean"], dtype=np.float64)
    xh = full[:, hvg].astype(np.float64)
    missing = ~present[hvg]
    xh[:, missing] = mean[missing]
    return ((xh - mean) @ np.asarray(transform["components"], dtype=np.float64)).astype(np.float32)

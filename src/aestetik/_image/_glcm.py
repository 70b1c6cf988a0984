"""Grey-level co-occurrence (GLCM) properties of many patches at once, equal to skimage's ``graycoprops``.

Shared by squidpy's texture features (:mod:`aestetik._image._features`, 256 levels) and the histology texture
(:mod:`aestetik._image._histology`, 32 levels).
"""

from __future__ import annotations

import numpy as np

PROPS = ("contrast", "dissimilarity", "homogeneity", "correlation", "ASM")
"""The properties of :func:`glcm_props`, in the order of its columns (squidpy's ``features_texture``)."""

#: Grey levels up to which :func:`glcm_props` counts the co-occurrence matrix (one ``bincount`` of the batch's
#: ``levels**2`` cells per patch) instead of sorting the pairs.
COUNT_LEVELS = 64


def glcm_pairs(g: np.ndarray, dr: int, dc: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixel pairs ``(g[r, c], g[r + dr, c + dc])`` (``dr >= 0``) of images ``g`` (..., h, w), flattened.

    As skimage's ``graycomatrix`` for one offset; an offset not smaller than the image gives no pairs.
    """
    h, w = g.shape[-2:]
    r1, c0 = max(h - dr, 0), min(max(0, -dc), w)
    c1 = max(min(w, w - dc), c0)
    lead = g.shape[:-2]
    i = g[..., :r1, c0:c1].reshape(*lead, -1)
    j = g[..., dr : dr + r1, c0 + dc : c1 + dc].reshape(*lead, -1)
    return i, j


def glcm_props(i: np.ndarray, j: np.ndarray, levels: int = 256) -> np.ndarray:
    """The ``graycoprops`` of skimage for the co-occurrence matrix of the pairs (i, j) along the last axis.

    ``i`` and ``j`` hold grey levels ``0..levels-1``. Up to :data:`COUNT_LEVELS` levels the matrices of the batch
    are counted with one ``bincount`` and every property is read from them; with more levels the properties are
    means over the pairs and ASM comes from the runs of the sorted pairs (the same values).
    """
    m = i.shape[-1]
    out = np.zeros((*i.shape[:-1], len(PROPS)))
    if m == 0:  # skimage: an empty matrix gives 0, and correlation 1
        out[..., 3] = 1.0
        return out
    if levels <= COUNT_LEVELS:
        return _counted(i, j, levels, out)
    d = (i - j).astype(np.float64)
    out[..., 0] = (d**2).mean(-1)
    out[..., 1] = np.abs(d).mean(-1)
    out[..., 2] = (1.0 / (1.0 + d**2)).mean(-1)
    di = i - i.mean(-1, keepdims=True)
    dj = j - j.mean(-1, keepdims=True)
    std_i, std_j = np.sqrt((di**2).mean(-1)), np.sqrt((dj**2).mean(-1))
    flat = (std_i < 1e-15) | (std_j < 1e-15)
    out[..., 3] = np.where(flat, 1.0, (di * dj).mean(-1) / np.where(flat, 1.0, std_i * std_j))
    codes = np.sort(i.astype(np.int32) * 256 + j.astype(np.int32), axis=-1)
    new = np.ones(codes.shape, dtype=bool)
    new[..., 1:] = codes[..., 1:] != codes[..., :-1]
    pos = np.arange(m)
    run = pos - np.maximum.accumulate(np.where(new, pos, 0), axis=-1)  # index within each run of equal pairs
    out[..., 4] = (2 * run + 1).sum(-1) / m**2  # sum of squared run lengths / m^2
    return out


def _counted(i: np.ndarray, j: np.ndarray, levels: int, out: np.ndarray) -> np.ndarray:
    """:func:`glcm_props` from the normalised co-occurrence matrices ``p`` (one ``bincount`` for the batch)."""
    lead = i.shape[:-1]
    n = int(np.prod(lead))
    pair = i.reshape(n, -1).astype(np.int64) * levels + j.reshape(n, -1).astype(np.int64)
    codes = np.arange(n)[:, None] * levels**2 + pair
    p = np.bincount(codes.ravel(), minlength=n * levels**2).reshape(n, -1) / pair.shape[1]
    li, lj = (v.astype(np.float64) for v in np.divmod(np.arange(levels**2), levels))
    diff = li - lj
    props = out.reshape(n, -1)
    props[:, 0] = p @ diff**2
    props[:, 1] = p @ np.abs(diff)
    props[:, 2] = p @ (1.0 / (1.0 + diff**2))
    di = li - (p @ li)[:, None]  # as graycoprops: around each matrix's means
    dj = lj - (p @ lj)[:, None]
    std_i, std_j = np.sqrt((p * di**2).sum(axis=1)), np.sqrt((p * dj**2).sum(axis=1))
    flat = (std_i < 1e-15) | (std_j < 1e-15)
    props[:, 3] = np.where(flat, 1.0, (p * di * dj).sum(axis=1) / np.where(flat, 1.0, std_i * std_j))
    props[:, 4] = (p**2).sum(axis=1)
    return props.reshape(*lead, -1)

"""Gaussian smoothing of a representation over each spot's physical neighbourhood on the lattice.

Used for the pseudo-labels: clustering a representation averaged over the neighbourhood gives spatially
coherent clusters, which the triplet loss then teaches the encoder (see ``docs/method.md``).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

#: Physical spacing of lattice rows on a hexagonal (Visium) lattice, in spots: rows are sqrt(3)/2 apart.
HEX_ROW = np.sqrt(3.0) / 2.0


def physical_positions(lattice: np.ndarray, kind: str) -> np.ndarray:
    """(n, 2) positions in units of the spot spacing.

    On a hexagonal lattice (Visium ``array_row``/``array_col``) horizontal neighbours differ by 2 columns
    and rows are ``sqrt(3) / 2`` spots apart; on a square lattice one step is one spot.
    """
    lattice = np.asarray(lattice, dtype=np.float64)
    if kind == "hex":
        return np.column_stack([lattice[:, 0] * HEX_ROW, lattice[:, 1] / 2.0])
    return lattice.copy()


def gaussian_smooth(
    x: np.ndarray,
    positions: np.ndarray,
    samples: np.ndarray,
    *,
    sigma: float,
    truncate: float = 3.0,
    chunk_size: int = 1 << 15,
) -> np.ndarray:
    """Weighted mean of ``x`` over the spots within ``truncate * sigma`` (Gaussian weights), per sample.

    Never builds an n x n matrix: neighbours are queried with a KD-tree in chunks of ``chunk_size`` spots.
    ``sigma = 0`` returns ``x`` unchanged.
    """
    from sklearn.neighbors import KDTree

    x = np.asarray(x, dtype=np.float32)
    if sigma <= 0:
        return x.copy()
    out = np.empty_like(x)
    radius = truncate * sigma
    for s in np.unique(samples):
        members = np.flatnonzero(samples == s)
        tree = KDTree(positions[members])
        xs = x[members]
        for start in range(0, members.size, chunk_size):
            rows = members[start : start + chunk_size]
            ind, dist = tree.query_radius(positions[rows], r=radius, return_distance=True)
            counts = np.fromiter((i.size for i in ind), dtype=np.int64, count=rows.size)
            weights = np.exp(-0.5 * (np.concatenate(dist) / sigma) ** 2)
            kernel = sparse.csr_matrix(
                (weights, np.concatenate(ind), np.concatenate([[0], np.cumsum(counts)])),
                shape=(rows.size, members.size),
            )
            total = np.asarray(kernel.sum(axis=1)).ravel()
            out[rows] = (kernel @ xs) / total[:, None]
    return out

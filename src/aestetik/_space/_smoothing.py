"""Gaussian smoothing of a representation over each spot's physical neighbourhood on the lattice.

Used for the pseudo-labels: clustering a representation averaged over the neighbourhood gives spatially
coherent clusters, which the triplet loss then teaches the encoder (see ``docs/method.md``). The transcriptomics
PCs that ``prepare`` computes take their axes from the same neighbourhood average (:func:`smoothed_principal_axes`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import sparse

#: Physical spacing of lattice rows on a hexagonal (Visium) lattice, in spots: rows are sqrt(3)/2 apart.
HEX_ROW = np.sqrt(3.0) / 2.0
#: The default pseudo-label smoothing on a lattice is at most one spot spacing and at most this many times narrower
#: than the side of a square of the area of one domain (the area of the sample's spots divided by the number of
#: domains); see :func:`domain_smoothing`.
DOMAIN_WIDTHS = 20.0


def domain_side(n_units: float, n_clusters: int, area: float) -> float:
    """The side of a square with the area of one domain: ``n_units`` of ``area`` each, cut into ``n_clusters``."""
    return float(np.sqrt(area * max(float(n_units), 1.0) / max(int(n_clusters), 1)))


def domain_smoothing(n_spots: float, n_clusters: int, kind: str) -> float:
    """Default ``pseudo_label_smoothing`` (spot spacings) on a lattice: one spacing, less for small domains.

    The average should mostly cover a spot's first ring of neighbours (one spacing) and stay well below the width
    of the domains. A domain of a sample of ``n_spots`` spots cut into ``n_clusters`` domains covers on average
    ``a * n_spots / n_clusters`` squared spacings (``a``: the area of one spot's cell of the lattice, ``sqrt(3) /
    2`` on a hexagonal lattice, 1 on a square one); the smoothing is one spacing or ``1 / DOMAIN_WIDTHS`` of the
    side of a square of that area, whichever is smaller. A Visium section of thousands of spots gets one spacing; a
    small section of coarse spots (legacy ST: a few hundred spots 200 µm apart, domains a few spots wide) less.
    """
    side = domain_side(n_spots, n_clusters, HEX_ROW if kind == "hex" else 1.0)
    return float(min(1.0, side / DOMAIN_WIDTHS))


def physical_positions(lattice: np.ndarray, kind: str) -> np.ndarray:
    """(n, 2) positions in units of the spot spacing.

    On a hexagonal lattice (Visium ``array_row``/``array_col``) horizontal neighbours differ by 2 columns
    and rows are ``sqrt(3) / 2`` spots apart; on a square lattice one step is one spot.
    """
    lattice = np.asarray(lattice, dtype=np.float64)
    if kind == "hex":
        return np.column_stack([lattice[:, 0] * HEX_ROW, lattice[:, 1] / 2.0])
    return lattice.copy()


def _kernel_chunks(
    positions: np.ndarray, samples: np.ndarray, *, sigma: float, truncate: float, chunk_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, sparse.csr_matrix, np.ndarray]]:
    """The Gaussian kernel in row chunks: ``(rows, members, kernel, total)`` per chunk of each sample.

    ``kernel`` (``rows.size`` x ``members.size``) holds the Gaussian weights of the spots of the sample (``members``)
    within ``truncate * sigma`` of each spot of ``rows``; ``total`` its row sums, so that ``kernel / total`` is the
    row-normalised smoothing operator restricted to the chunk. A KD-tree per sample, never an n x n matrix.
    """
    from sklearn.neighbors import KDTree

    radius = truncate * sigma
    for s in np.unique(samples):
        members = np.flatnonzero(samples == s)
        tree = KDTree(positions[members])
        for start in range(0, members.size, chunk_size):
            rows = members[start : start + chunk_size]
            ind, dist = tree.query_radius(positions[rows], r=radius, return_distance=True)
            counts = np.fromiter((i.size for i in ind), dtype=np.int64, count=rows.size)
            weights = np.exp(-0.5 * (np.concatenate(dist) / sigma) ** 2)
            kernel = sparse.csr_matrix(
                (weights, np.concatenate(ind), np.concatenate([[0], np.cumsum(counts)])),
                shape=(rows.size, members.size),
            )
            yield rows, members, kernel, np.asarray(kernel.sum(axis=1)).ravel()


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
    x = np.asarray(x, dtype=np.float32)
    if sigma <= 0:
        return x.copy()
    out = np.empty_like(x)
    for rows, members, kernel, total in _kernel_chunks(
        positions, samples, sigma=sigma, truncate=truncate, chunk_size=chunk_size
    ):
        out[rows] = (kernel @ x[members]) / total[:, None]
    return out


#: Up to this many spots :func:`smoothed_principal_axes` keeps the kernel chunks between passes (about 37 weights
#: per spot at ``sigma=1`` on Visium); above, each pass queries the KD-trees again, which bounds the memory.
KERNEL_CACHE_MAX_SPOTS = 1_000_000


def smoothed_principal_axes(
    x: np.ndarray | sparse.spmatrix,
    positions: np.ndarray,
    samples: np.ndarray,
    *,
    sigma: float,
    n_comps: int,
    random_state: int = 0,
    n_iter: int = 10,
    n_oversamples: int = 20,
    truncate: float = 3.0,
    chunk_size: int = 1 << 15,
) -> np.ndarray:
    """The ``n_comps`` principal axes (genes x ``n_comps``) of ``x`` averaged over each spot's neighbourhood.

    The axes are the leading right singular vectors of ``W x`` centred, where ``W`` is the row-normalised
    Gaussian smoothing of :func:`gaussian_smooth` (per sample, width ``sigma``): the directions of expression
    that vary between neighbourhoods rather than between single spots, i.e. what the pseudo-labels cluster.
    ``W x`` is never formed (it would be dense, n x genes): a randomised SVD (Halko et al. 2011,
    ``n_iter`` power iterations, ``n_oversamples`` extra directions) applies ``W`` and ``W^T`` to n x
    (``n_comps`` + ``n_oversamples``) blocks only, so the memory is that of ``x`` plus a few such blocks. Signs
    follow scikit-learn's ``svd_flip`` (the largest loading of each axis is positive). ``sigma = 0`` gives the
    principal axes of ``x`` itself.
    """
    from sklearn.utils.extmath import svd_flip

    n, g = x.shape
    cache = None
    if sigma > 0 and n <= KERNEL_CACHE_MAX_SPOTS:
        cache = list(_kernel_chunks(positions, samples, sigma=sigma, truncate=truncate, chunk_size=chunk_size))

    def chunks():
        if cache is not None:
            return cache
        return _kernel_chunks(positions, samples, sigma=sigma, truncate=truncate, chunk_size=chunk_size)

    def smooth(y: np.ndarray) -> np.ndarray:  # W y
        if sigma <= 0:
            return y
        out = np.empty_like(y)
        for rows, members, kernel, total in chunks():
            out[rows] = (kernel @ y[members]) / total[:, None]
        return out

    def smooth_t(u: np.ndarray) -> np.ndarray:  # W^T u
        if sigma <= 0:
            return u
        out = np.zeros_like(u)
        for rows, members, kernel, total in chunks():
            out[members] += kernel.T @ (u[rows] / total[:, None])
        return out

    def xdot(y: np.ndarray) -> np.ndarray:  # x y
        return np.asarray(x @ y, dtype=np.float64)

    def xtdot(u: np.ndarray) -> np.ndarray:  # x^T u
        return np.asarray(x.T @ u, dtype=np.float64)

    mean = xtdot(smooth_t(np.full((n, 1), 1.0 / n))).ravel()  # column means of W x

    def s_dot(v: np.ndarray) -> np.ndarray:  # (W x - 1 mean^T) v
        return smooth(xdot(v)) - (mean @ v)[None, :]

    def st_dot(u: np.ndarray) -> np.ndarray:  # (W x - 1 mean^T)^T u
        return xtdot(smooth_t(u)) - np.outer(mean, u.sum(axis=0))

    size = min(n_comps + n_oversamples, n, g)
    rng = np.random.default_rng(random_state)
    q, _ = np.linalg.qr(s_dot(rng.standard_normal((g, size))))
    for _ in range(n_iter):
        z, _ = np.linalg.qr(st_dot(q))
        q, _ = np.linalg.qr(s_dot(z))
    _, _, vt = np.linalg.svd(st_dot(q).T, full_matrices=False)
    _, vt = svd_flip(None, vt[:n_comps], u_based_decision=False)
    return vt.T

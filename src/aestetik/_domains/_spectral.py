"""Spectral clustering of a k-nearest-neighbour graph (``method='spectral'``; not in the reference implementation).

The graph and the clustering are scikit-learn's ``SpectralClustering(affinity='nearest_neighbors',
assign_labels='cluster_qr')``: the symmetrised connectivity of the :data:`SPECTRAL_N_NEIGHBORS` nearest rows (each
row counted as its own first neighbour), the eigenvectors of its normalised Laplacian, and the QR-pivoted
assignment of Damle et al. (2019), which has no random start. One thing is added. On a graph in ``c`` pieces the
first ``c`` eigenvectors only say which piece a row is in: with at most as many pieces as clusters every piece is
one or more clusters, as it should be, but with more pieces than clusters the clusters become arbitrary unions
of pieces. So while the graph has more pieces than clusters the number of neighbours is doubled
(:func:`knn_affinity`). Every piece of a ``k``-nearest-neighbour graph holds at least ``k`` rows, so this only
happens with groups of rows far apart from the rest; a trained embedding of one section usually gives one piece
at 30 neighbours.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
from scanpy import logging as logg

if TYPE_CHECKING:
    from scipy import sparse

#: Neighbours of the spectral clustering graph (doubled while it has more pieces than clusters).
SPECTRAL_N_NEIGHBORS = 30


def knn_affinity(
    x: np.ndarray, max_pieces: int = 1, n_neighbors: int = SPECTRAL_N_NEIGHBORS
) -> tuple[sparse.csr_matrix, int, int]:
    """Symmetrised k-NN connectivity of the rows of ``x``, ``k`` doubled until it has at most ``max_pieces`` pieces.

    ``0.5 * (A + A.T)`` with ``A = kneighbors_graph(x, k, include_self=True)``, scikit-learn's affinity for
    ``affinity='nearest_neighbors'``. ``k`` starts at ``n_neighbors`` (at most ``n - 1``) and doubles (up to
    ``n - 1``, where the graph is complete) while the graph has more than ``max_pieces`` connected components.
    Returns the affinity, the ``k`` used and the number of pieces.
    """
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import kneighbors_graph

    n = x.shape[0]
    k = start = max(1, min(int(n_neighbors), n - 1))
    while True:
        knn = kneighbors_graph(x, n_neighbors=k, include_self=True)
        affinity = (0.5 * (knn + knn.T)).tocsr()
        pieces = connected_components(affinity, directed=False, return_labels=False)
        if pieces <= max_pieces or k >= n - 1:
            break
        logg.info(f"    the {k}-nearest-neighbour graph has {pieces} pieces; trying {min(2 * k, n - 1)} neighbours")
        k = min(2 * k, n - 1)
    if k != start:
        logg.warning(
            f"spectral: the {start}-nearest-neighbour graph fell into more than {max_pieces} pieces; used {k} "
            f"neighbours ({pieces} pieces), the fewest (doubling) that allow it. Groups of spots far apart from the "
            "rest: consider method='kmeans'."
        )
    return affinity, k, pieces


def spectral_partition(
    x: np.ndarray, n_clusters: int, random_state: int = 0
) -> tuple[np.ndarray, sparse.csr_matrix | None]:
    """Spectral clustering of the rows of ``x`` into ``n_clusters`` groups (see the module docstring).

    Returns the labels and the affinity they cut (the k-NN graph of :func:`knn_affinity`; ``None`` for 1 cluster).
    """
    from sklearn.cluster import spectral_clustering

    if n_clusters == 1:
        return np.zeros(x.shape[0], dtype=np.int64), None
    affinity, _, pieces = knn_affinity(x, max_pieces=n_clusters)
    with warnings.catch_warnings():
        if pieces > 1:  # fewer pieces than clusters: each piece is one or more clusters (said in the module docstring)
            warnings.filterwarnings("ignore", message="Graph is not fully connected")
        labels = spectral_clustering(
            affinity, n_clusters=n_clusters, random_state=random_state, assign_labels="cluster_qr"
        )
    return np.asarray(labels, dtype=np.int64), affinity


def kept_neighbours(affinity: sparse.spmatrix, labels: np.ndarray) -> float:
    """Fraction of the weight of the k-NN graph ``affinity`` that joins rows of the same label (1: no edge cut)."""
    coo = affinity.tocoo()
    same = labels[coo.row] == labels[coo.col]
    return float(coo.data[same].sum() / max(coo.data.sum(), 1e-300))

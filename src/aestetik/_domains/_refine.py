"""The spatial refinement of domain labels (``refine=True``), on plain arrays.

Per sample, a k-NN classifier on the coordinates of the confident spots relabels every spot (reference:
``aestetik.utils.utils_clustering`` of aestetik 0.3.1). Deliberate difference: ``n_neighbors`` is capped at the
number of confident spots (the reference raised).
"""

from __future__ import annotations

import numpy as np

#: The spatial refinement searches neighbours by brute force up to this many confident spots, else a KD-tree.
BRUTE_FORCE_MAX_SPOTS = 50_000


def refine_labels(
    labels: np.ndarray,
    coords: np.ndarray,
    *,
    confidence: np.ndarray | None = None,
    threshold: float = 0.9,
    n_neighbors: int = 10,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Relabel every spot by majority vote of its ``n_neighbors`` nearest confident spots of the same group.

    Confident spots are those with ``confidence > threshold`` (all spots when ``confidence`` is ``None``).
    A group whose confident spots carry fewer than 2 labels is left unchanged. Ties go to the smallest label.
    """
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    coords = np.asarray(coords, dtype=np.float64)
    n = labels.shape[0]
    if coords.ndim != 2 or coords.shape[0] != n:
        msg = f"coords has shape {coords.shape}; expected ({n}, d)."
        raise ValueError(msg)
    if n_neighbors < 1:
        msg = f"n_neighbors must be positive, got {n_neighbors}."
        raise ValueError(msg)
    confident = np.ones(n, dtype=bool) if confidence is None else np.asarray(confidence).reshape(-1) > threshold
    if confident.shape[0] != n:
        msg = f"confidence has {confident.shape[0]} values; expected {n}."
        raise ValueError(msg)
    if groups is None:
        group_ids = np.zeros(n, dtype=np.int64)
    else:
        group_ids = np.unique(np.asarray(groups).reshape(-1), return_inverse=True)[1].reshape(-1)
        if group_ids.shape[0] != n:
            msg = f"groups has {group_ids.shape[0]} values; expected {n}."
            raise ValueError(msg)

    refined = labels.copy()
    for g in np.unique(group_ids):
        members = np.flatnonzero(group_ids == g)
        train = members[confident[members]]
        if np.unique(labels[train]).size < 2:
            continue
        # brute force as the reference (same choice among equidistant lattice neighbours); a KD-tree at scale,
        # where brute force would compare every spot with every confident spot
        algorithm = "brute" if train.size <= BRUTE_FORCE_MAX_SPOTS else "kd_tree"
        knn = KNeighborsClassifier(n_neighbors=min(n_neighbors, train.size), weights="uniform", algorithm=algorithm)
        knn.fit(coords[train], labels[train])
        refined[members] = knn.predict(coords[members])
    return refined

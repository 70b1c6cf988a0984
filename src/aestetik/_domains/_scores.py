"""Scores of domains: which spots have a ground-truth label, ARI against it, silhouette in an embedding."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

#: Ground-truth labels that mean "not labelled": such spots are left out of every ARI.
MISSING_LABELS = ("NA", "nan")


def known_labels(truth: pd.Series) -> np.ndarray:
    """Spots with a ground-truth label: neither missing nor one of :data:`MISSING_LABELS`."""
    return np.asarray(~(truth.isna() | truth.astype(str).isin(MISSING_LABELS)))


def ari_known(truth: pd.Series, labels: np.ndarray) -> float | None:
    """ARI of ``labels`` against ``truth`` on the spots with a known label (``None`` when there are none)."""
    from sklearn.metrics import adjusted_rand_score

    known = known_labels(truth)
    if not known.any():
        return None
    return float(adjusted_rand_score(truth.astype(str).to_numpy()[known], np.asarray(labels)[known]))


def silhouette(embedding: np.ndarray, labels: np.ndarray, spots: np.ndarray) -> float:
    """Silhouette of ``labels`` in ``embedding`` over ``spots``; NaN when undefined (one domain, or one per spot)."""
    from sklearn.metrics import silhouette_score

    k = np.unique(labels[spots]).size
    if not 2 <= k < spots.size:
        return float("nan")
    return float(silhouette_score(embedding[spots], labels[spots]))

"""One-to-one matching of domains to reference labels on their contingency table (Hungarian algorithm)."""

from __future__ import annotations

import numpy as np


def contingency(labels: np.ndarray, reference: np.ndarray, n_labels: int, n_reference: int) -> np.ndarray:
    """Spots per pair ``(label, reference label)``: an int64 table of shape ``(n_labels, n_reference)``.

    Both are integer codes (``0..n-1``); spots where either is negative (missing) are left out.
    """
    labels = np.asarray(labels, dtype=np.int64).ravel()
    reference = np.asarray(reference, dtype=np.int64).ravel()
    if labels.shape != reference.shape:
        msg = f"`labels` and `reference` differ in length ({labels.size} and {reference.size})."
        raise ValueError(msg)
    keep = (labels >= 0) & (reference >= 0)
    if np.any(labels[keep] >= n_labels) or np.any(reference[keep] >= n_reference):
        msg = f"Codes must be below `n_labels` ({n_labels}) and `n_reference` ({n_reference})."
        raise ValueError(msg)
    flat = labels[keep] * n_reference + reference[keep]
    return np.bincount(flat, minlength=n_labels * n_reference).reshape(n_labels, n_reference)


def match(table: np.ndarray) -> np.ndarray:
    """The reference label each row of ``table`` is matched to, one-to-one, maximising the matched spots.

    Returns an int64 array with one entry per row: the matched column, or ``-1`` for a row left unmatched
    (more rows than columns, or a partner it shares no spot with).
    """
    from scipy.optimize import linear_sum_assignment

    table = np.asarray(table)
    mapping = np.full(table.shape[0], -1, dtype=np.int64)
    if table.size == 0:
        return mapping
    rows, cols = linear_sum_assignment(table, maximize=True)
    overlap = table[rows, cols] > 0
    mapping[rows[overlap]] = cols[overlap]
    return mapping


def match_labels(labels: np.ndarray, reference: np.ndarray, n_labels: int, n_reference: int) -> np.ndarray:
    """:func:`match` on the :func:`contingency` table of two label codings (negative codes: missing)."""
    return match(contingency(labels, reference, n_labels, n_reference))

"""Consensus of several runs' domains: pairwise ARI, the medoid run, Hungarian alignment and a majority vote."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aestetik._domains._matching import contingency


def pairwise_ari(labels: np.ndarray) -> np.ndarray:
    """Adjusted Rand index between every pair of columns of ``labels`` (n, s): symmetric, unit diagonal."""
    from sklearn.metrics import adjusted_rand_score

    s = labels.shape[1]
    ari = np.eye(s)
    for i in range(s):
        for j in range(i + 1, s):
            ari[i, j] = ari[j, i] = adjusted_rand_score(labels[:, i], labels[:, j])
    return ari


def medoid(ari: np.ndarray) -> int:
    """The run with the highest mean ARI to the others (ties: the first)."""
    s = ari.shape[0]
    return int(np.argmax((ari.sum(axis=1) - np.diag(ari)) / max(s - 1, 1)))


def align_labels(labels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rename ``labels`` to maximise the spots on which they equal ``reference`` (Hungarian matching).

    Both are non-negative ints. Matching runs on the contingency table (``k_labels x k_reference``), never on
    spot pairs. Labels left unmatched (more clusters than the reference has) get new ids after the reference's.
    """
    from scipy.optimize import linear_sum_assignment

    labels = np.asarray(labels, dtype=np.int64)
    reference = np.asarray(reference, dtype=np.int64)
    k_l, k_r = int(labels.max()) + 1, int(reference.max()) + 1
    table = contingency(labels, reference, k_l, k_r)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping = np.full(k_l, -1, dtype=np.int64)
    mapping[rows] = cols
    unmatched = np.flatnonzero(mapping < 0)
    mapping[unmatched] = k_r + np.arange(unmatched.size)
    return mapping[labels]


def majority_vote(aligned: np.ndarray, order: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Most frequent label per row of ``aligned`` (n, s) and the fraction of columns that carry it.

    A tie goes to the label of the first column in ``order`` (e.g. the reference run) that voted for a tied label.
    Memory is O(n x labels), never O(n^2).
    """
    n, s = aligned.shape
    rows = np.arange(n)
    counts = np.zeros((n, int(aligned.max()) + 1), dtype=np.int32)
    for j in range(s):
        counts[rows, aligned[:, j]] += 1  # one vote per row and run: no repeated indices
    best = counts.max(axis=1)
    winner = np.full(n, -1, dtype=np.int64)
    for j in order:
        pick = (winner < 0) & (counts[rows, aligned[:, j]] == best)
        winner[pick] = aligned[pick, j]
    return winner, best / s


def vote(labels: np.ndarray, reference: int, *, realign: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Consensus of the runs ``labels`` (n, s): align to run ``reference``, majority vote, optionally realign once.

    Returns the consensus (consecutive ids), the confidence (fraction of runs agreeing with it) and the runs'
    labels aligned to the consensus (ids of the consensus; clusters without a match get ids after them).
    """
    s = labels.shape[1]
    order = [reference] + [j for j in range(s) if j != reference]
    aligned = np.column_stack([align_labels(labels[:, j], labels[:, reference]) for j in range(s)])
    consensus, confidence = majority_vote(aligned, order)
    if realign:
        aligned = np.column_stack([align_labels(labels[:, j], consensus) for j in range(s)])
        consensus, confidence = majority_vote(aligned, order)
    # consecutive consensus ids; labels of the runs that the consensus lacks go after them
    used = np.unique(consensus)
    mapping = np.full(int(aligned.max()) + 1, -1, dtype=np.int64)
    mapping[used] = np.arange(used.size)
    rest = np.flatnonzero(mapping < 0)
    mapping[rest] = used.size + np.arange(rest.size)
    return mapping[consensus], confidence, mapping[aligned]

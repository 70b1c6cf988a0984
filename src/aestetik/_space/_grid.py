"""The neighbourhood grid (METHOD §3): min-max scaled channels and an int32 window index per spot, built with numba.

Instead of the dense float grid of the reference (n x C x w x w), :func:`window_index` stores, for every
spot, the index of the spot at each of the ``w * w`` lattice positions around it (``-1`` where there is
none). :func:`aestetik._model._windows.gather_windows` turns a batch of rows of that index into filled
windows on the training device.
"""

from __future__ import annotations

import numba
import numpy as np

_MAX_CELLS_PER_SPOT = 64


@numba.njit(parallel=True, cache=True)
def _fill_lookup(lookup, offsets, widths, rows, cols, samples, row0, col0):  # pragma: no cover - numba
    for i in numba.prange(rows.shape[0]):
        s = samples[i]
        lookup[offsets[s] + (rows[i] - row0[s]) * widths[s] + (cols[i] - col0[s])] = i


@numba.njit(parallel=True, cache=True)
def _window_index(lookup, offsets, widths, heights, rows, cols, samples, row0, col0, half, out):  # pragma: no cover
    w = 2 * half + 1
    for i in numba.prange(rows.shape[0]):
        s = samples[i]
        r = rows[i] - row0[s]
        c = cols[i] - col0[s]
        for a in range(w):
            rr = r + a - half
            for b in range(w):
                cc = c + b - half
                if rr < 0 or rr >= heights[s] or cc < 0 or cc >= widths[s]:
                    out[i, a * w + b] = -1
                else:
                    out[i, a * w + b] = lookup[offsets[s] + rr * widths[s] + cc]


def window_index(lattice: np.ndarray, samples: np.ndarray, window_size: int) -> np.ndarray:
    """Index of the spot at each position of the ``window_size`` x ``window_size`` window around every spot.

    Parameters
    ----------
    lattice
        (n, 2) integer (row, col) lattice positions, unique within each sample.
    samples
        (n,) integer sample code; windows never reach into another sample.
    window_size
        Odd window side ``w``.

    Returns
    -------
    (n, w * w) int32 array, row-major over (row offset, col offset) from ``-w // 2`` to ``w // 2``; ``-1`` where
    no spot sits.
    """
    n = lattice.shape[0]
    out = np.empty((n, window_size * window_size), dtype=np.int32)
    if n == 0:
        return out
    rows = np.ascontiguousarray(lattice[:, 0], dtype=np.int64)
    cols = np.ascontiguousarray(lattice[:, 1], dtype=np.int64)
    samples = np.ascontiguousarray(samples, dtype=np.int64)
    n_samples = int(samples.max()) + 1
    row0 = np.zeros(n_samples, np.int64)
    col0 = np.zeros(n_samples, np.int64)
    heights = np.zeros(n_samples, np.int64)
    widths = np.zeros(n_samples, np.int64)
    for s in range(n_samples):
        m = samples == s
        if not m.any():
            continue
        row0[s], col0[s] = rows[m].min(), cols[m].min()
        heights[s] = rows[m].max() - row0[s] + 1
        widths[s] = cols[m].max() - col0[s] + 1
    cells = heights * widths
    total = int(cells.sum())
    if total > _MAX_CELLS_PER_SPOT * n + (1 << 22):
        msg = (
            f"The lattice spans {total:,} positions for {n:,} spots; coordinates do not look like lattice indices. "
            "Pass integer lattice positions (Visium 'array_row'/'array_col'), not pixel coordinates."
        )
        raise ValueError(msg)
    offsets = np.concatenate([[0], np.cumsum(cells)[:-1]]).astype(np.int64)
    lookup = np.full(total, -1, dtype=np.int32)
    _fill_lookup(lookup, offsets, widths, rows, cols, samples, row0, col0)
    _window_index(lookup, offsets, widths, heights, rows, cols, samples, row0, col0, window_size // 2, out)
    return out


def minmax_ranges(x: np.ndarray, samples: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample column minima and maxima ``(lo, hi)``, each (n_samples, C) float64 (one row without ``samples``)."""
    x = np.asarray(x)
    if samples is None:
        return x.min(axis=0)[None].astype(np.float64), x.max(axis=0)[None].astype(np.float64)
    samples = np.asarray(samples)
    n_samples = int(samples.max()) + 1 if samples.size else 0
    lo = np.zeros((n_samples, x.shape[1]))
    hi = np.ones((n_samples, x.shape[1]))
    for s in range(n_samples):
        rows = x[samples == s]
        if rows.shape[0]:
            lo[s], hi[s] = rows.min(axis=0), rows.max(axis=0)
    return lo, hi


def minmax_scale(
    x: np.ndarray,
    samples: np.ndarray | None = None,
    *,
    ranges: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Scale each column to [0, 1] (constant columns become 0, as sklearn's MinMaxScaler).

    Over all spots by default; per sample with ``samples`` (integer code per spot, METHOD §3), each sample by its
    own minimum and maximum. ``ranges``: fixed ``(lo, hi)`` of shape (C,) or (1, C) (e.g. those of a training
    section, :func:`minmax_ranges`) applied to every spot; values of new spots may then fall outside [0, 1].
    """
    if ranges is not None:
        lo, hi = (np.asarray(r, dtype=np.float64).reshape(-1) for r in ranges)
        span = hi - lo
        span[span == 0] = 1.0
        return ((x - lo) / span).astype(np.float32)
    if samples is None or int(np.max(samples, initial=0)) == 0:
        lo, hi = x.min(axis=0), x.max(axis=0)
        span = hi - lo
        span[span == 0] = 1.0
        return ((x - lo) / span).astype(np.float32)
    out = np.empty(x.shape, dtype=np.float32)
    for s in np.unique(samples):
        rows = samples == s
        out[rows] = minmax_scale(x[rows])
    return out

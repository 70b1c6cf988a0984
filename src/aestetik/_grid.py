"""The neighbourhood grid: an int32 window index per spot (numba) and the median fill (torch).

Instead of the dense float grid of the reference (n x C x w x w), :func:`window_index` stores, for every
spot, the index of the spot at each of the ``w * w`` lattice positions around it (``-1`` where there is
none). :func:`gather_windows` turns a batch of rows of that index into filled windows on the training
device: positions without a spot take, per channel, the median of the present values in that window
(``numpy.nanmedian`` semantics: the mean of the two middle values for an even count).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

if TYPE_CHECKING:
    import torch

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


def window_medians(features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, C) per-window, per-channel median of the present values (``numpy.nanmedian`` semantics).

    ``features`` (n, C) and ``index`` (B, w * w) rows of :func:`window_index`, on the same device.
    """
    import torch

    present = index >= 0  # (B, P)
    values = features[index.clamp(min=0).long()]  # (B, P, C)
    nan = values.new_full((), float("nan"))  # on the device: no host-to-device copy
    ordered = torch.where(present[..., None], values, nan).sort(dim=1).values  # NaN sort last
    count = present.sum(dim=1, keepdim=True)  # (B, 1); >= 1 (the centre)
    lo = ((count - 1) // 2)[..., None].expand(-1, 1, values.shape[2])
    hi = (count // 2)[..., None].expand(-1, 1, values.shape[2])
    return (0.5 * (ordered.gather(1, lo) + ordered.gather(1, hi)))[:, 0]


def gather_windows(
    features: torch.Tensor, index: torch.Tensor, window_size: int, medians: torch.Tensor | None = None
) -> torch.Tensor:
    """Filled windows for a batch of spots.

    Parameters
    ----------
    features
        (n, C) scaled features of all spots, on the training device.
    index
        (B, w * w) rows of :func:`window_index` (int), on the same device.
    window_size
        ``w``.
    medians
        (B, C) :func:`window_medians` of these rows when already known.

    Returns
    -------
    (B, C, w, w) tensor; empty positions hold the per-window, per-channel median of the present values.
    """
    import torch

    if medians is None:
        medians = window_medians(features, index)
    present = index >= 0
    values = features[index.clamp(min=0).long()]  # (B, P, C)
    filled = torch.where(present[..., None], values, medians[:, None, :])
    b, _, c = filled.shape
    return filled.permute(0, 2, 1).reshape(b, c, window_size, window_size)

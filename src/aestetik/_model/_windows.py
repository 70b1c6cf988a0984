"""Filled lattice windows on the training device (torch), from the window index of :mod:`aestetik._space._grid`.

:func:`gather_windows` turns a batch of rows of the index into filled windows: positions without a spot take, per
channel, the median of the present values in that window (``numpy.nanmedian`` semantics: the mean of the two
middle values for an even count).
"""

from __future__ import annotations

import torch


def window_medians(features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, C) per-window, per-channel median of the present values (``numpy.nanmedian`` semantics).

    ``features`` (n, C) and ``index`` (B, w * w) rows of :func:`window_index`, on the same device.
    """
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
    if medians is None:
        medians = window_medians(features, index)
    present = index >= 0
    values = features[index.clamp(min=0).long()]  # (B, P, C)
    filled = torch.where(present[..., None], values, medians[:, None, :])
    b, _, c = filled.shape
    return filled.permute(0, 2, 1).reshape(b, c, window_size, window_size)

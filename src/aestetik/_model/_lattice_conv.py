"""The encoder convolution of many windows through one convolution per lattice cell.

Neighbouring spots' windows overlap: on a lattice, the ``k x k`` patch under output position ``p`` of spot
``i``'s window is a patch of the lattice itself, shared by every window that contains it (up to
``(w - k + 1)^2`` of them). Only the window's empty positions differ between windows: they hold that
window's per-channel median ``m_i`` (see :mod:`aestetik._model._windows`). The convolution is linear, so

    conv(x_i)[p] = sum_u W_u f[p + u] + sum_u e_i[p + u] (W_u m_i) + b

with ``f`` the lattice with zeros where no spot sits (the same for every window) and ``e_i`` the window's
empty-position indicator. The first sum is computed once per distinct lattice cell of a batch; the second
needs ``W_u m_i`` (``k^2`` vectors per spot) and a ``(w - k + 1)^2 x k^2`` 0/1 matrix per spot. On a section
that a batch covers, the convolution costs about ``(w - k + 1)^2`` times fewer multiply-adds than convolving
every window (25x for w = 7, k = 3); the result is the same up to floating-point summation order.

A cell is identified by the first spot of its patch (row-major) and that spot's offset in the patch, read
off the window index rows, so no lattice coordinates are needed and windows never share a cell across
samples (their patches hold different spots).
"""

from __future__ import annotations

from functools import lru_cache

import torch

#: Spots per piece when squaring the convolution output (keeps temporaries small).
_CHUNK = 512


def window_positions(side: int, kernel_size: int, stride: int = 1) -> torch.Tensor:
    """(n_windows, k^2) positions (row-major in a ``side x side`` map) under each ``k x k`` window at ``stride``."""
    count = (side - kernel_size) // stride + 1
    q = torch.arange(count) * stride
    u = torch.arange(kernel_size)
    rows = (q[:, None, None, None] + u[None, None, :, None]).expand(count, count, kernel_size, kernel_size)
    cols = (q[None, :, None, None] + u[None, None, None, :]).expand(count, count, kernel_size, kernel_size)
    return (rows * side + cols).reshape(count * count, kernel_size * kernel_size)


def patch_positions(window_size: int, kernel_size: int) -> torch.Tensor:
    """(P_conv, k^2) window positions (row-major in the ``w x w`` window) of each output position's patch."""
    return window_positions(window_size, kernel_size)


def pool_positions(side: int, kernel_size: int, stride: int = 3) -> torch.Tensor:
    """(P_pooled, k^2) output positions (row-major in the ``side x side`` map) under each max-pool window."""
    return window_positions(side, kernel_size, stride)


@lru_cache(maxsize=16)
def _position_tables(
    window_size: int, kernel_size: int, stride: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``patch_positions`` and ``pool_positions`` on ``device``, built once (no host-to-device copy per step)."""
    side = window_size - kernel_size + 1
    return (
        patch_positions(window_size, kernel_size).to(device),
        pool_positions(side, kernel_size, stride).to(device),
    )


def cell_keys(patches: torch.Tensor) -> torch.Tensor:
    """Identity of the lattice cell of each patch of spot indices (``-1`` = empty): ``j * k^2 + t``.

    ``j`` is the first spot of the patch and ``t`` its position in the patch; ``-1`` for an empty patch.
    """
    kk = patches.shape[-1]
    present = patches >= 0
    first = present.to(torch.uint8).argmax(dim=-1, keepdim=True)  # first True (0 when none)
    spot = patches.gather(-1, first).squeeze(-1).long()
    return torch.where(present.any(-1), spot * kk + first.squeeze(-1), -1)


def _pool_extremes(h: torch.Tensor, pool: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Max and min of ``h`` (B, P_conv, O) over each pooled window, and the position (in P_conv) of each.

    The first extreme position is kept, as ``max_pool2d`` picks it. On a CPU a loop over the ``k^2``
    positions of the window is faster than a reduction over a strided axis; on a GPU the reduction is one
    kernel where the loop is dozens.
    """
    if h.is_cuda:
        return _pool_extremes_reduce(h, pool)
    high, low = h[:, pool[:, 0]], h[:, pool[:, 0]]  # (B, P_pooled, O) copies
    i_high = pool[:, 0][None, :, None].expand_as(high).clone()
    i_low = i_high.clone()
    for t in range(1, pool.shape[1]):
        v = h[:, pool[:, t]]
        where = pool[:, t][None, :, None].expand_as(v)
        torch.where(v > high, where, i_high, out=i_high)  # strictly larger: the first maximum is kept
        torch.where(v < low, where, i_low, out=i_low)
        torch.maximum(v, high, out=high)
        torch.minimum(v, low, out=low)
    return high, i_high, low, i_low


def _pool_extremes_reduce(h: torch.Tensor, pool: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """:func:`_pool_extremes` as one gather and two reductions (``max``/``min`` return the first extreme)."""
    v = h[:, pool]  # (B, P_pooled, k^2, O)
    high, at_high = v.max(dim=2)
    low, at_low = v.min(dim=2)
    where = pool[None, :, :, None].expand_as(v)
    return high, where.gather(2, at_high[:, :, None]).squeeze(2), low, where.gather(2, at_low[:, :, None]).squeeze(2)


class _LatticeConvSummaryFn(torch.autograd.Function):
    """Per-spot sums, sums of squares and max-/min-pooled maps of the convolution (see the module doc)."""

    @staticmethod
    def forward(ctx, cell_x, inverse, empty, medians, weight, bias, pool):
        # cell_x (m, C * k^2) zero-filled patches of the distinct cells; inverse (B * P_conv,) cell of each
        # output position; empty (B, P_conv, k^2) 0/1; medians (B, C); pool (P_pooled, k^2) positions
        o, c = weight.shape[0], weight.shape[1]
        kk = weight.shape[2] * weight.shape[3]
        b, positions = empty.shape[0], empty.shape[1]
        cells = cell_x @ weight.reshape(o, c * kk).T  # (m, O)
        w_u = weight.reshape(o, c, kk).permute(1, 2, 0).reshape(c, kk * o)  # (C, k^2 * O)
        fill = (medians @ w_u).reshape(b, kk, o)  # W_u m_i
        h = cells.index_select(0, inverse).reshape(b, positions, o)
        h.baddbmm_(empty, fill).add_(bias)  # (B, P_conv, O)
        high, i_high, low, i_low = _pool_extremes(h, pool)
        squares = torch.empty((b, o), dtype=h.dtype, device=h.device)
        chunk = b if h.is_cuda else _CHUNK  # h * h in pieces on a CPU (no full-size temporary), at once on a GPU
        for rows in range(0, b, chunk):
            part = h[rows : rows + chunk]
            torch.sum(part * part, dim=1, out=squares[rows : rows + chunk])
        ctx.save_for_backward(cell_x, inverse, empty, medians, h, i_high, i_low)
        ctx.shape = (c, kk)
        return h.sum(1), squares, high.transpose(1, 2), low.transpose(1, 2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_total, g_squares, g_high, g_low):
        cell_x, inverse, empty, medians, h, i_high, i_low = ctx.saved_tensors
        c, kk = ctx.shape
        b, positions, o = h.shape
        grad = torch.addcmul(g_total[:, None, :].expand(b, positions, o), h, g_squares[:, None, :], value=2.0)
        grad.scatter_add_(1, i_high, g_high.transpose(1, 2))
        grad.scatter_add_(1, i_low, g_low.transpose(1, 2))
        g_bias = grad.sum((0, 1))
        g_cells = torch.zeros((cell_x.shape[0], o), dtype=grad.dtype, device=grad.device)
        g_cells.index_add_(0, inverse, grad.reshape(b * positions, o))
        g_weight = (g_cells.T @ cell_x).reshape(o, c, kk)
        g_fill = torch.bmm(empty.transpose(1, 2), grad)  # (B, k^2, O)
        g_weight += (medians.T @ g_fill.reshape(b, kk * o)).reshape(c, kk, o).permute(2, 0, 1)
        side = round(kk**0.5)
        return None, None, None, None, g_weight.reshape(o, c, side, side), g_bias, None


def lattice_conv_summary(
    features: torch.Tensor,
    medians: torch.Tensor,
    index: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    *,
    window_size: int,
    stride: int = 3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Convolution summaries of the windows of a batch of spots, one convolution per distinct lattice cell.

    Parameters
    ----------
    features
        (n, C) features of all spots.
    medians
        (B, C) per-window, per-channel medians of the batch's windows (the value of their empty positions).
    index
        (B, w * w) window index rows of the batch (``-1`` where no spot sits).
    weight, bias
        Convolution parameters, (O, C, k, k) and (O,).
    window_size
        ``w``.
    stride
        Stride of the max-pool (kernel ``k``) that follows the convolution.

    Returns
    -------
    Per spot: the sum (B, O) and sum of squares (B, O) of the convolution output over its positions, and its
    max- and min-pooled maps (B, O, P_pooled): what :class:`~aestetik._model._ensemble.ConvSummary` holds.
    """
    kernel_size = weight.shape[-1]
    kk = kernel_size * kernel_size
    device = features.device
    positions, pool = _position_tables(window_size, kernel_size, stride, device)
    patches = index[:, positions]  # (B, P_conv, k^2) spot indices (int32 as the window index)
    keys = cell_keys(patches).reshape(-1)
    distinct, inverse = torch.unique(keys, return_inverse=True)
    # one representative output position per distinct cell (all of them see the same patch)
    rep = torch.empty(distinct.shape[0], dtype=torch.long, device=device)
    rep.scatter_(0, inverse, torch.arange(keys.shape[0], device=device))
    cell_patch = patches.reshape(-1, kk)[rep]  # (m, k^2)
    cell_x = features[cell_patch.clamp(min=0).long()] * (cell_patch >= 0)[..., None].to(features.dtype)
    cell_x = cell_x.transpose(1, 2).reshape(distinct.shape[0], -1)  # (m, C * k^2), the weight's layout
    empty = (index < 0)[:, positions].to(features.dtype)
    return _LatticeConvSummaryFn.apply(cell_x, inverse, empty, medians.to(features.dtype), weight, bias, pool)

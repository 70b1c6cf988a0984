"""Batched operations over the members of the ensemble: median, per-member linear layers, dropout masks, sizes.

Each runs the ``n_ensemble`` members of the reference as one op; their custom backward passes are exact (tested
against autograd on the plain operations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Units of the published ensemble, and the fewest :func:`default_ensemble` gives.
ENSEMBLE_UNITS = 3
#: Windows that the units together see per epoch, at least, under :func:`default_ensemble`.
ENSEMBLE_WINDOWS = 3000
#: The most units :func:`default_ensemble` gives.
ENSEMBLE_MAX_UNITS = 9


def default_ensemble(n_spots: int) -> int:
    """Units of the ensemble for ``n_spots`` training spots: 3, or more on a section of under 1,000 spots.

    Each unit sees every spot's window once per epoch, and the embedding is the units' median. On a section of a
    few hundred spots 3 units see too few windows for that median to settle on the same embedding from one seed to
    the next; the units grow until they see :data:`ENSEMBLE_WINDOWS` windows per epoch together (about what 3
    units see on the smallest section whose domains hold across seeds, 1,049 STARmap cells), rounded up to an odd
    number (the median of an odd number of units is one of them), at most :data:`ENSEMBLE_MAX_UNITS`. Sections of
    1,000 spots or more keep the published 3.
    """
    need = math.ceil(ENSEMBLE_WINDOWS / max(int(n_spots), 1))
    need += 1 - need % 2
    return int(min(ENSEMBLE_MAX_UNITS, max(ENSEMBLE_UNITS, need)))


def conv_shapes(window_size: int, kernel_size: int) -> tuple[int, int]:
    """Side of the convolution output and of the pooled map (kernel ``k``, stride 3, no padding)."""
    conv_out = window_size - kernel_size + 1
    pooled = math.floor((conv_out - kernel_size) / 3 + 1)
    return conv_out, pooled


def effective_kernel(window_size: int, kernel_size: int) -> int:
    """The kernel shrinks to ``w - 1`` when it is not smaller than the window (as in the reference)."""
    return kernel_size if kernel_size < window_size else max(1, window_size - 1)


def ensemble_median(x: torch.Tensor) -> torch.Tensor:
    """Element-wise median over the ensemble axis 0, as ``torch.median`` (the lower middle for even counts).

    Three members (the default) use min/max operations, much faster than the generic kernel, and a backward
    pass that hands the gradient to the median member (the first one on ties, as ``torch.median``) with
    boolean masks instead of autograd's chain through the min/max operations.
    """
    if x.shape[0] == 3:
        if x.requires_grad and torch.is_grad_enabled():
            return _Median3Fn.apply(x)
        return _median3(x)
    return x.sort(dim=0).values[(x.shape[0] - 1) // 2]


def _median3(x: torch.Tensor) -> torch.Tensor:
    a, b, c = x.unbind(0)
    return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))


class _Median3Fn(torch.autograd.Function):
    """Median of three members whose gradient goes to one member per element."""

    @staticmethod
    def forward(ctx, x):
        m = _median3(x)
        ctx.save_for_backward(x, m)
        return m

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, m = ctx.saved_tensors
        first = x[0] == m
        second = (x[1] == m).logical_and_(first.logical_not())
        grad = torch.empty_like(x)
        torch.mul(g, first.to(g.dtype), out=grad[0])  # float masks: faster than where() or bool products
        torch.mul(g, second.to(g.dtype), out=grad[1])
        torch.sub(g, grad[0], out=grad[2]).sub_(grad[1])  # g where neither, else exactly 0
        return grad


#: Rows per piece of the weight gradient of the members' linear layers on a GPU (split over the long axis).
SPLIT_ROWS = 4096


def sum_outer(a: torch.Tensor, b: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """``a[e].T @ b[e]`` for every member: (E, N, F), (E, N, L) -> (E, F, L).

    With ``rows``, the ``N`` axis is cut into pieces of ``rows`` whose products are summed: one batched
    product of ``E * N / rows`` small matrices instead of ``E`` long, thin ones, which a GPU runs on a
    handful of its processors (the weight gradient of a linear layer over 10^5 occurrences).
    """
    e, n = a.shape[0], a.shape[1]
    pieces = n // rows if rows else 0
    if pieces < 2:
        return torch.bmm(a.transpose(1, 2), b)
    main = pieces * rows
    pa = a[:, :main].reshape(e * pieces, rows, a.shape[2])
    pb = b[:, :main].reshape(e * pieces, rows, b.shape[2])
    out = torch.bmm(pa.transpose(1, 2), pb).reshape(e, pieces, a.shape[2], b.shape[2]).sum(1)
    if main < n:
        out.baddbmm_(a[:, main:].transpose(1, 2), b[:, main:])
    return out


class _MembersLinearFn(torch.autograd.Function):
    """``bias + x @ weight`` per member, (E, N, F) @ (E, F, L); on a GPU the weight gradient in pieces."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias[:, None, :], x, weight)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        g_x = torch.bmm(g, weight.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        g_w = sum_outer(x, g, SPLIT_ROWS if g.is_cuda else None) if ctx.needs_input_grad[1] else None
        g_b = g.sum(1) if ctx.needs_input_grad[2] else None
        return g_x, g_w, g_b


def members_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(E, N, F) inputs -> (E, N, L): each member's linear layer (``weight`` (E, F, L), ``bias`` (E, L))."""
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or bias.requires_grad):
        return _MembersLinearFn.apply(x, weight, bias)
    return torch.baddbmm(bias[:, None, :], x, weight)


@dataclass
class ConvSummary:
    """Per-spot summary of the encoder convolution (see :meth:`EnsembleEncoder.summarize`)."""

    total: torch.Tensor  # (N, E * c_hid) sum over positions
    squares: torch.Tensor  # (N, E * c_hid) sum of squares over positions
    high: torch.Tensor  # (N, E * c_hid, P) max-pooled raw map
    low: torch.Tensor  # (N, E * c_hid, P) min-pooled raw map
    positions: int


def dropout_mask(
    shape: tuple[int, ...], p: float, *, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """A ``Dropout2d`` channel mask: 0 with probability ``p``, else ``1 / (1 - p)``."""
    keep = torch.rand(shape, generator=generator, device=device) >= p
    return keep.to(torch.float32).mul_(1.0 / (1.0 - p))

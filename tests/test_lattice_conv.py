"""The per-lattice-cell convolution against the plain convolution of the median-filled windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _step import STEP_PARAMS, assert_step_equals_plain_windows
from torch.nn import functional as F

from aestetik._model._lattice_conv import (
    _pool_extremes,
    _pool_extremes_reduce,
    cell_keys,
    lattice_conv_summary,
    patch_positions,
    pool_positions,
)
from aestetik._model._windows import gather_windows, window_medians
from aestetik._space._grid import window_index


def _plain_summary(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    """Sums, sums of squares and max/min-pooled maps of ``conv2d`` (kernel k, stride-3 pooling), plainly."""
    k = weight.shape[-1]
    h = F.conv2d(x, weight, bias)
    flat = h.flatten(2)
    high = F.max_pool2d(h, k, stride=3).flatten(2)
    low = -F.max_pool2d(-h, k, stride=3).flatten(2)
    return flat.sum(-1), flat.square().sum(-1), high, low


def _hex_lattice(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A hexagonal (Visium-like) lattice with random holes, split into two samples."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(18), np.arange(28), indexing="ij")
    on = (rows + cols) % 2 == 0
    lattice = np.stack([rows[on], cols[on]], axis=1)
    lattice = lattice[rng.random(len(lattice)) > 0.2]
    return lattice, (lattice[:, 1] >= 14).astype(np.int64)


@pytest.mark.parametrize(("w", "k"), [(7, 3), (5, 3), (9, 3), (7, 2)])
def test_lattice_conv_equals_plain_conv(w, k):
    """Values and gradients equal the convolution of every filled window (double precision)."""
    lattice, samples = _hex_lattice(0)
    index = torch.from_numpy(window_index(lattice, samples, w))
    gen = torch.Generator().manual_seed(1)
    feats = torch.rand(len(lattice), 5, dtype=torch.float64, generator=gen)
    weight = torch.randn(6, 5, k, k, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, generator=gen, requires_grad=True)
    # a batch with many shared cells (all spots) and a sparse one
    for rows in (torch.arange(len(lattice)), torch.randperm(len(lattice), generator=gen)[:40]):
        want = _plain_summary(gather_windows(feats, index[rows], w), weight, bias)
        got = lattice_conv_summary(feats, window_medians(feats, index[rows]), index[rows], weight, bias, window_size=w)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        upstream = [torch.randn(a.shape, dtype=torch.float64, generator=gen) for a in want]
        grads_want = torch.autograd.grad(
            sum((a * u).sum() for a, u in zip(want, upstream, strict=True)), (weight, bias)
        )
        grads_got = torch.autograd.grad(sum((a * u).sum() for a, u in zip(got, upstream, strict=True)), (weight, bias))
        for a, b in zip(grads_got, grads_want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-9)


def test_cells_are_shared_between_windows():
    """Full square lattice: a batch of all spots convolves each lattice cell once, not once per window."""
    rows, cols = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
    lattice = np.stack([rows.ravel(), cols.ravel()], axis=1)
    index = torch.from_numpy(window_index(lattice, np.zeros(len(lattice), np.int64), 7))
    keys = cell_keys(index[:, patch_positions(7, 3)])
    # patch top-left rows (and columns) -3..12 occur; the patches from -2 to 11 hold spots: 14 x 14 cells
    assert torch.unique(keys[keys >= 0]).numel() == 14 * 14
    assert keys.numel() == 144 * 25
    assert (keys < 0).any()


def test_keys_identify_cells():
    """Equal keys mean equal patches; an empty patch gets -1."""
    patches = torch.tensor([[-1, 4, 5, -1], [-1, 4, 5, -1], [4, 5, -1, -1], [-1, -1, -1, -1], [-1, -1, 4, 6]])
    keys = cell_keys(patches)
    assert keys.tolist() == [4 * 4 + 1, 4 * 4 + 1, 4 * 4 + 0, -1, 4 * 4 + 2]


def test_positions_tables():
    assert patch_positions(5, 3)[0].tolist() == [0, 1, 2, 5, 6, 7, 10, 11, 12]
    assert patch_positions(5, 3)[-1].tolist() == [12, 13, 14, 17, 18, 19, 22, 23, 24]
    # w = 7, k = 3: a 5 x 5 map pooled once over its top-left 3 x 3 corner
    assert pool_positions(5, 3).tolist() == [[0, 1, 2, 5, 6, 7, 10, 11, 12]]
    assert pool_positions(7, 3).shape == (4, 9)


def test_training_step_equals_plain_windows(small):
    """A whole training step (loss and every gradient) equals the one that convolves the filled windows."""
    import aestetik as ae
    from aestetik._model._train import build_module
    from aestetik._records import read_prepared

    ae.pp.prepare(small, morphology_key="X_morphology", n_clusters=3, clustering_method="kmeans")
    module = build_module(read_prepared(small, "aestetik"), STEP_PARAMS, (1.5, 1.5)).double()
    anchors = torch.randperm(small.n_obs, generator=torch.Generator().manual_seed(0))
    assert_step_equals_plain_windows(module, anchors)


@pytest.mark.parametrize("side", [5, 7])
def test_pool_extremes_reduce_equals_loop(side):
    """The GPU's gather-and-reduce pooling equals the CPU loop, ties included (first extreme kept)."""
    gen = torch.Generator().manual_seed(side)
    h = torch.randint(0, 4, (20, side * side, 6), generator=gen).double()  # many ties
    pool = pool_positions(side, 3)
    for a, b in zip(_pool_extremes_reduce(h, pool), _pool_extremes(h, pool), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

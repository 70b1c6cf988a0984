"""The CUDA paths against the CPU: skipped without a GPU (CI has none; run ``pytest -m gpu`` on one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _data import FAST_FIT
from _step import STEP_PARAMS, assert_step_equals_plain_windows
from sklearn.metrics import adjusted_rand_score

from aestetik._model._lattice_conv import _pool_extremes, _pool_extremes_reduce, lattice_conv_summary, pool_positions
from aestetik._model._windows import gather_windows, window_medians
from aestetik._space._grid import window_index

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _hex_index(w: int) -> torch.Tensor:
    rows, cols = np.meshgrid(np.arange(20), np.arange(30), indexing="ij")
    on = (rows + cols) % 2 == 0
    lattice = np.stack([rows[on], cols[on]], axis=1)
    lattice = lattice[np.random.default_rng(0).random(len(lattice)) > 0.2]
    return torch.from_numpy(window_index(lattice, np.zeros(len(lattice), np.int64), w))


def test_lattice_conv_cuda_equals_cpu():
    """Values and gradients of the lattice convolution on the GPU equal the CPU's (double precision)."""
    index = _hex_index(7)
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(index.shape[0], 5, dtype=torch.float64, generator=gen)
    weight = torch.randn(12, 5, 3, 3, dtype=torch.float64, generator=gen)
    bias = torch.randn(12, dtype=torch.float64, generator=gen)
    rows = torch.randperm(index.shape[0], generator=gen)[:150]
    out, grads = {}, {}
    for device in ("cpu", "cuda"):
        w, b = weight.to(device).requires_grad_(), bias.to(device).requires_grad_()
        f, i = feats.to(device), index[rows].to(device)
        got = lattice_conv_summary(f, window_medians(f, i), i, w, b, window_size=7)
        upstream = [torch.linspace(-1, 1, a.numel(), dtype=a.dtype, device=device).reshape(a.shape) for a in got]
        grads[device] = torch.autograd.grad(sum((a * u).sum() for a, u in zip(got, upstream, strict=True)), (w, b))
        out[device] = got
    for a, b in zip(out["cuda"], out["cpu"], strict=True):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=1e-10)
    for a, b in zip(grads["cuda"], grads["cpu"], strict=True):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-9, atol=1e-9)


def test_pool_extremes_cuda_ties():
    """On the GPU the pooled extremes and their positions equal the CPU loop's, ties included."""
    h = torch.randint(0, 4, (50, 25, 8), generator=torch.Generator().manual_seed(2)).double()
    pool = pool_positions(5, 3)
    for a, b in zip(_pool_extremes(h.cuda(), pool.cuda()), _pool_extremes(h, pool), strict=True):
        torch.testing.assert_close(a.cpu(), b, rtol=0, atol=0)
    torch.testing.assert_close(_pool_extremes_reduce(h, pool)[1], _pool_extremes(h, pool)[1], rtol=0, atol=0)


def test_windows_cuda_equal_cpu():
    """Gathered, median-filled windows are the same on the GPU."""
    index = _hex_index(7)
    feats = torch.rand(index.shape[0], 4, generator=torch.Generator().manual_seed(1))
    want = gather_windows(feats, index, 7)
    got = gather_windows(feats.cuda(), index.cuda(), 7)
    torch.testing.assert_close(got.cpu(), want)


def test_training_step_cuda_equals_plain_windows(small):
    """On the GPU a whole training step (loss and gradients) equals the one convolving the filled windows."""
    import aestetik as ae
    from aestetik._model._train import build_module
    from aestetik._records import read_prepared

    ae.pp.prepare(small, morphology_key="X_morphology", n_clusters=3, clustering_method="kmeans")
    module = build_module(read_prepared(small, "aestetik"), STEP_PARAMS, (1.5, 1.5)).double().to("cuda")
    module.on_fit_start()  # the samplers' pools to the GPU
    anchors = torch.randperm(small.n_obs, generator=torch.Generator().manual_seed(0)).cuda()
    assert assert_step_equals_plain_windows(module, anchors).device.type == "cuda"


def test_fit_on_gpu_and_embedding_matches_cpu(small):
    """``fit`` trains on the GPU; the GPU embedding of a model equals the CPU embedding of the same model."""
    import aestetik as ae

    ae.pp.prepare(small, morphology_key="X_morphology", n_clusters=3, clustering_method="kmeans")
    ae.tl.fit(small, accelerator="gpu", **{**FAST_FIT, "max_epochs": 30})
    fit = small.uns["aestetik"]["fit"]
    assert fit["params"]["device"] == "cuda"
    assert np.isfinite(fit["history"]["loss"]).all()
    assert fit["history"]["loss"][-5:].mean() < fit["history"]["loss"][:5].mean()
    ae.tl.cluster(small, n_clusters=3)
    truth = small.obs["ground_truth"].astype(str)
    assert adjusted_rand_score(truth, small.obs["aestetik"].astype(str)) > 0.5
    for accelerator in ("cpu", "gpu"):
        ae.tl.embed(small, n_mc_samples=0, accelerator=accelerator, key_added=f"det_{accelerator}")
    assert small.uns["det_gpu"]["embed"]["params"]["device"] == "cuda"
    np.testing.assert_allclose(small.obsm["X_det_gpu"], small.obsm["X_det_cpu"], atol=2e-4, rtol=1e-4)
    # the Monte-Carlo passes draw their masks on the GPU: a seed repeats, another seed differs
    ae.tl.embed(small, n_mc_samples=50, accelerator="gpu", key_added="mc_a")
    ae.tl.embed(small, n_mc_samples=50, accelerator="gpu", key_added="mc_b")
    ae.tl.embed(small, n_mc_samples=50, accelerator="gpu", random_state=1, key_added="mc_c")
    np.testing.assert_array_equal(small.obsm["X_mc_a"], small.obsm["X_mc_b"])
    assert not np.array_equal(small.obsm["X_mc_a"], small.obsm["X_mc_c"])

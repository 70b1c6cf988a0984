"""``tl.fit`` on several processes (Lightning DDP over gloo on CPU): sharded anchors, equal quality, one embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _data import FAST_FIT, make_small
from sklearn.metrics import adjusted_rand_score

import aestetik as ae
from aestetik._model._distributed import rank_seed
from aestetik._model._module import AnchorBatches


def test_anchor_batches_one_process_is_the_plain_split():
    batches = AnchorBatches(103, 10, seed=5)
    gen = torch.Generator().manual_seed(5)
    for _ in range(2):  # two epochs
        expected = torch.randperm(103, generator=gen).split(10)
        got = list(batches)
        assert len(got) == len(batches) == 11
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=0, atol=0)


@pytest.mark.parametrize(("n", "batch_size", "world"), [(103, 10, 2), (103, 10, 3), (7, 100, 2), (64, 8, 4)])
def test_anchor_batches_shards_cover_every_spot_once(n, batch_size, world):
    ranks = [AnchorBatches(n, batch_size, seed=1, rank=r, world_size=world) for r in range(world)]
    steps = -(-n // (batch_size * world))
    for _ in range(3):  # epochs: each a new permutation, identical on every rank
        shards = [list(b) for b in ranks]
        assert all(len(s) == len(b) == steps for s, b in zip(shards, ranks, strict=True))  # same steps: no DDP hang
        assert all(0 < len(batch) <= batch_size for s in shards for batch in s)
        every = torch.cat([torch.cat(s) for s in shards])
        np.testing.assert_array_equal(np.sort(every.numpy()), np.arange(n))  # disjoint, complete
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(
        torch.cat(
            [
                batch
                for s in zip(
                    *[AnchorBatches(n, batch_size, 1, rank=r, world_size=world) for r in range(world)], strict=True
                )
                for batch in s
            ]
        ).numpy(),
        order.numpy(),
    )  # rank r takes every world-th batch of one permutation


def test_rank_seeds_differ():
    seeds = {rank_seed(s, e, r) for s in (0, 1) for e in range(3) for r in range(4)}
    assert len(seeds) == 24
    assert all(0 <= s < 2**63 for s in seeds)


@pytest.fixture(scope="module")
def prepared():
    adata = make_small()
    ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=3, clustering_method="kmeans")
    return adata


def ari(adata) -> float:
    ae.tl.cluster(adata, n_clusters=3, show_progress_bar=False)
    return adjusted_rand_score(adata.obs["ground_truth"].astype(str), adata.obs["aestetik"].astype(str))


def test_ddp_spawn_two_processes_equal_quality(prepared, tmp_path, monkeypatch):
    """2 CPU processes over gloo from inside pytest: every rank half the anchors, embedding back in this process."""
    monkeypatch.chdir(tmp_path)
    fit = {**FAST_FIT, "max_epochs": 10, "accelerator": "cpu"}
    one, two = prepared.copy(), prepared.copy()
    ae.tl.fit(one, **fit)
    ae.tl.fit(two, **fit, strategy="ddp_spawn", devices=2)
    rec = two.uns["aestetik"]["fit"]
    p = rec["params"]
    assert (p["strategy"], p["world_size"], p["device"], p["resumed"]) == ("ddp_spawn", 2, "cpu", False)
    assert (one.uns["aestetik"]["fit"]["params"]["strategy"], one.uns["aestetik"]["fit"]["params"]["world_size"]) == (
        "auto",
        1,
    )
    emb = two.obsm["X_aestetik"]
    assert emb.shape == (two.n_obs, 4)
    assert emb.dtype == np.float32
    assert np.all(np.isfinite(emb))
    assert not np.array_equal(emb, one.obsm["X_aestetik"])  # other anchors per step, other partners
    hist = rec["history"]
    np.testing.assert_array_equal(hist["epoch"], np.arange(10))  # 320 spots, 160 per rank: one step per epoch
    assert np.all(np.isfinite(hist["loss"]))
    assert hist["loss"][-1] < hist["loss"][0]
    assert rec["seconds"]["embed"] > 0
    assert (
        rec["weights"]["encoder.conv.weight"].shape
        == one.uns["aestetik"]["fit"]["weights"]["encoder.conv.weight"].shape
    )
    a1, a2 = ari(one), ari(two)
    assert a1 > 0.7
    assert abs(a1 - a2) < 0.1  # two processes as good as one
    assert list(tmp_path.iterdir()) == []  # no files: the weights came back through Lightning's temp folder


def test_non_zero_rank_writes_nothing(prepared, monkeypatch):
    """Under a per-rank launch (SLURM, torchrun) only global rank 0 has the embedding; the other ranks write nothing."""
    import aestetik.tl._fit as fit_module

    adata = prepared.copy()
    monkeypatch.setattr(fit_module, "fit_prepared", lambda prepared, **kwargs: (None, None))
    ae.tl.fit(adata, **FAST_FIT)
    assert "X_aestetik" not in adata.obsm
    assert "fit" not in adata.uns["aestetik"]


def test_device_argument_checks(prepared):
    with pytest.raises(TypeError, match="strategy"):
        ae.tl.fit(prepared.copy(), **FAST_FIT, strategy=2)
    with pytest.raises(ValueError, match="checkpoint_every"):
        ae.tl.fit(prepared.copy(), **FAST_FIT, checkpoint_every=0)

from __future__ import annotations

import numpy as np
import pytest
from _data import FAST_FIT, make_small

import aestetik as ae
from aestetik._model import _memory
from aestetik._model._memory import estimate_fit_memory, n_partners_per_anchor

SIZES = {
    "n_channels": 30,
    "window_size": 7,
    "n_partners": 12,
    "n_ensemble": 3,
    "c_hid": 64,
    "latent_dim": 16,
    "kernel_size": 3,
    "cache_bytes": 1 << 30,
}


def test_estimate_is_linear_in_spots_for_a_fixed_batch():
    est = {n: estimate_fit_memory(n_obs=n, batch_size=8192, **SIZES) for n in (10**6, 2 * 10**6, 4 * 10**6)}
    # windows are not cached at this size: the data part grows exactly linearly, a step does not grow
    assert est[4 * 10**6].data - est[2 * 10**6].data == 2 * (est[2 * 10**6].data - est[10**6].data)
    assert est[10**6].step == est[4 * 10**6].step
    # per spot: features, index and two embeddings, 1.5 kB here; the whole run stays far below n x n
    assert est[10**6].data / 10**6 < 2000
    # partners from the batch: a step convolves at most batch_size spots, 10^6 spots fit in 4 GB
    within = estimate_fit_memory(n_obs=10**6, batch_size=8192, within_batch=True, **SIZES)
    assert within.step < est[10**6].step / 4
    assert within.total < 4 * 2**30
    # a step grows with the batch
    small = estimate_fit_memory(n_obs=10**6, batch_size=1024, **SIZES)
    assert small.step < est[10**6].step / 4


def test_partner_count():
    assert n_partners_per_anchor((7, 7), (3.0, 0.0), multi_triplet=True, n_repeats=1) == 12
    assert n_partners_per_anchor((7, 5), (1.5, 1.5), multi_triplet=True, n_repeats=2) == 2 * 2 * 6 + 2 * 2 * 4
    assert n_partners_per_anchor((7, 5), (1.5, 1.5), multi_triplet=False, n_repeats=1) == 4
    assert n_partners_per_anchor((1, 5), (1.5, 1.5), multi_triplet=True, n_repeats=1) == 8


@pytest.fixture
def prepared():
    adata = make_small()
    ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=3, clustering_method="kmeans")
    return adata


def test_fit_refuses_when_memory_is_short_and_writes_nothing(prepared, monkeypatch):
    before_obsm, before_uns = set(prepared.obsm), {k: set(v) for k, v in prepared.uns.items() if isinstance(v, dict)}
    monkeypatch.setattr(_memory, "available_memory", lambda device: 1 << 20)  # 1 MiB free
    with pytest.raises(MemoryError, match=r"batch_size|subsample") as info:
        ae.tl.fit(prepared, **FAST_FIT)
    assert "Nothing was written" in str(info.value)
    assert set(prepared.obsm) == before_obsm
    assert {k: set(v) for k, v in prepared.uns.items() if isinstance(v, dict)} == before_uns


def test_fit_follows_the_advised_batch_size(prepared, monkeypatch):
    n = prepared.n_obs
    full = estimate_fit_memory(
        n_obs=n,
        n_channels=10,
        window_size=7,
        batch_size=n,
        n_partners=n_partners_per_anchor((3, 3), (1.5, 1.5), multi_triplet=True, n_repeats=1),
        n_ensemble=3,
        c_hid=8,
        latent_dim=4,
        kernel_size=3,
        cache_bytes=1 << 30,
        n_mc_samples=FAST_FIT["n_mc_samples"],
    )
    assert full.step > 2 * full.embed  # the step decides here
    # free memory for about half the full batch
    available = int((full.data + max(full.embed, full.step / 2)) / _memory.USABLE_SHARE) + 1
    monkeypatch.setattr(_memory, "available_memory", lambda device: available)
    with pytest.raises(MemoryError, match=r"batch_size=(\d+)") as info:
        ae.tl.fit(prepared, **FAST_FIT)
    import re

    advised = int(re.search(r"batch_size=(\d+)", str(info.value)).group(1))
    assert 1 <= advised < n
    ae.tl.fit(prepared, batch_size=advised, **FAST_FIT)
    record = prepared.uns["aestetik"]["fit"]
    assert record["memory_estimate_bytes"] <= _memory.USABLE_SHARE * available
    assert np.isfinite(prepared.obsm["X_aestetik"]).all()
    # the check can be switched off
    ae.tl.fit(prepared, check_memory=False, **FAST_FIT)

"""``tl.fit(tol=...)``: training stops once the embedding has settled or the triplets are learned, without changing
what it trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _data import FAST_FIT, make_small

import aestetik as ae
from aestetik._model import _stopping, _train
from aestetik._model._stopping import CHECK_EVERY, embedding_drift

FIT = {**FAST_FIT, "accelerator": "cpu"}


@pytest.fixture(scope="module")
def prepared():
    adata = make_small()
    ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=3, clustering_method="kmeans")
    return adata


def test_drift_is_the_relative_change():
    rng = np.random.default_rng(0)
    previous = rng.normal(size=(50, 4))
    current = previous + rng.normal(scale=0.1, size=(50, 4)) + 3.0  # a shift counts as movement
    expected = np.sqrt(((current - previous) ** 2).sum()) / np.sqrt(((current - current.mean(0)) ** 2).sum())
    got = embedding_drift(torch.from_numpy(current).float(), torch.from_numpy(previous).float())
    assert got == pytest.approx(expected, rel=1e-5)
    same = torch.from_numpy(current)
    assert embedding_drift(same, same.clone()) == 0.0


def test_stopping_keeps_the_training_it_stopped(prepared, monkeypatch):
    """A fit stopped at the first comparison of embeddings equals a fit of that many epochs: the checks draw
    nothing (the triplet criterion is switched off here)."""
    monkeypatch.setattr(_stopping, "triplet_fraction", lambda epoch_mean, first_mean: None)
    stopped = prepared.copy()
    ae.tl.fit(stopped, **{**FIT, "max_epochs": 3 * CHECK_EVERY, "tol": 1e6})
    params = stopped.uns["aestetik"]["fit"]["params"]
    assert params["epochs_trained"] == 2 * CHECK_EVERY  # the first comparison is at the second check
    assert params["tol"] == 1e6
    assert stopped.uns["aestetik"]["fit"]["history"]["epoch"].max() == 2 * CHECK_EVERY - 1
    plain = prepared.copy()
    ae.tl.fit(plain, **{**FIT, "max_epochs": 2 * CHECK_EVERY, "tol": 0})
    assert plain.uns["aestetik"]["fit"]["params"]["epochs_trained"] == 2 * CHECK_EVERY
    np.testing.assert_array_equal(stopped.obsm["X_aestetik"], plain.obsm["X_aestetik"])


def test_drift_decides(prepared, monkeypatch):
    """Training goes on while the drift is at least ``tol`` and stops at the first check below it."""
    drifts = iter([0.5, 0.2, 0.01])
    monkeypatch.setattr(_stopping, "embedding_drift", lambda current, previous: next(drifts))
    monkeypatch.setattr(_stopping, "triplet_fraction", lambda epoch_mean, first_mean: None)
    adata = prepared.copy()
    ae.tl.fit(adata, **{**FIT, "max_epochs": 10 * CHECK_EVERY, "tol": 0.1})
    assert adata.uns["aestetik"]["fit"]["params"]["epochs_trained"] == 4 * CHECK_EVERY


def test_triplets_decide(prepared, monkeypatch):
    """With an embedding that never settles, training stops at the first check whose epoch brought the triplet
    terms under ``tol`` of the first epoch's, computed by hand from the loss history of a fit that trains on."""
    monkeypatch.setattr(_stopping, "embedding_drift", lambda current, previous: 1.0)
    plain = prepared.copy()
    ae.tl.fit(plain, **{**FIT, "max_epochs": 3 * CHECK_EVERY, "tol": 0})
    hist = plain.uns["aestetik"]["fit"]["history"]
    triplets = hist["triplet_transcriptomics"].astype(np.float64) + hist["triplet_morphology"]
    per_epoch = np.array([triplets[hist["epoch"] == e].mean() for e in range(3 * CHECK_EVERY)])
    fraction = per_epoch / per_epoch[0]
    first, second = fraction[CHECK_EVERY - 1], fraction[2 * CHECK_EVERY - 1]
    assert second < first  # the triplets are being learned
    tol = (first + second) / 2  # above the second check's fraction, below the first's
    logged = []
    monkeypatch.setattr(_train.logg, "info", lambda msg, *a, **k: logged.append(msg))
    stopped = prepared.copy()
    ae.tl.fit(stopped, **{**FIT, "max_epochs": 3 * CHECK_EVERY, "tol": float(tol)})
    assert stopped.uns["aestetik"]["fit"]["params"]["epochs_trained"] == 2 * CHECK_EVERY
    assert any(f"stopped after {2 * CHECK_EVERY} epochs: the triplet terms fell to {second:.1%}" in m for m in logged)
    short = prepared.copy()
    ae.tl.fit(short, **{**FIT, "max_epochs": 2 * CHECK_EVERY, "tol": 0})
    np.testing.assert_array_equal(stopped.obsm["X_aestetik"], short.obsm["X_aestetik"])


def test_triplet_fraction_without_triplets_is_none():
    assert _stopping.triplet_fraction(0.2, 0.5) == pytest.approx(0.4)
    assert _stopping.triplet_fraction(0.0, 0.0) is None  # nothing contrasted in the first epoch
    assert _stopping.triplet_fraction(0.1, None) is None


def test_tol_zero_trains_every_epoch(prepared, monkeypatch):
    monkeypatch.setattr(_stopping, "embedding_drift", lambda current, previous: 0.0)
    adata = prepared.copy()
    ae.tl.fit(adata, **{**FIT, "max_epochs": 2 * CHECK_EVERY + 1, "tol": 0})
    assert adata.uns["aestetik"]["fit"]["params"]["epochs_trained"] == 2 * CHECK_EVERY + 1


@pytest.mark.parametrize("triplets", [False, True])
def test_resumed_stopped_fit_trains_no_further(prepared, tmp_path, monkeypatch, triplets):
    """Stopped by the drift (at the second check) or by the triplets (at the first: any fraction is under 1e6)."""
    if not triplets:
        monkeypatch.setattr(_stopping, "triplet_fraction", lambda epoch_mean, first_mean: None)
    stop = (1 if triplets else 2) * CHECK_EVERY
    ckpt = tmp_path / "ckpt"
    first = prepared.copy()
    ae.tl.fit(first, **{**FIT, "max_epochs": 3 * CHECK_EVERY, "tol": 1e6}, checkpoint_path=ckpt)
    assert first.uns["aestetik"]["fit"]["params"]["epochs_trained"] == stop
    again = prepared.copy()
    ae.tl.fit(again, **{**FIT, "max_epochs": 3 * CHECK_EVERY, "tol": 1e6}, checkpoint_path=ckpt, resume=True)
    assert again.uns["aestetik"]["fit"]["params"]["resumed"]
    assert again.uns["aestetik"]["fit"]["params"]["epochs_trained"] == stop
    np.testing.assert_array_equal(again.obsm["X_aestetik"], first.obsm["X_aestetik"])


@pytest.mark.parametrize("tol", [-0.1, True, "0.05", float("nan")])
def test_bad_tol(prepared, tol):
    with pytest.raises(ValueError, match="`tol`"):
        ae.tl.fit(prepared.copy(), **{**FIT, "tol": tol})

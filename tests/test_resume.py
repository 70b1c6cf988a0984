"""Checkpoints and resumption of ``tl.fit``: a resumed fit equals an uninterrupted one bit for bit on CPU."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch
from _data import FAST_FIT, make_small

import aestetik as ae
from aestetik._model._module import AestetikModule

FIT = {**FAST_FIT, "batch_size": 100, "accelerator": "cpu"}  # 4 steps per epoch


@pytest.fixture(scope="module")
def prepared():
    adata = make_small()
    ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=3, clustering_method="kmeans")
    return adata


@pytest.fixture(scope="module")
def uninterrupted(prepared):
    adata = prepared.copy()
    ae.tl.fit(adata, **{**FIT, "max_epochs": 4})
    return adata


def assert_same_fit(a, b):
    np.testing.assert_array_equal(a.obsm["X_aestetik"], b.obsm["X_aestetik"])
    fa, fb = a.uns["aestetik"]["fit"], b.uns["aestetik"]["fit"]
    assert set(fa["weights"]) == set(fb["weights"])
    for name, w in fa["weights"].items():
        np.testing.assert_array_equal(w, fb["weights"][name], err_msg=name)
    for name, h in fa["history"].items():
        np.testing.assert_array_equal(h, fb["history"][name], err_msg=name)


def test_resumed_fit_equals_uninterrupted(prepared, uninterrupted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "ckpt"
    first = prepared.copy()
    ae.tl.fit(first, **{**FIT, "max_epochs": 2}, checkpoint_path=ckpt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert [p.name for p in ckpt.iterdir()] == ["last.ckpt"]
    state = torch.load(ckpt / "last.ckpt", weights_only=True)  # noqa: TID251 - Lightning's file loads safely: tensors, numbers, strings only
    assert state["epoch"] == 1
    resumed = prepared.copy()
    ae.tl.fit(resumed, **{**FIT, "max_epochs": 4}, checkpoint_path=ckpt, resume=True)
    assert resumed.uns["aestetik"]["fit"]["params"]["resumed"]
    assert not uninterrupted.uns["aestetik"]["fit"]["params"]["resumed"]
    np.testing.assert_array_equal(resumed.uns["aestetik"]["fit"]["history"]["epoch"], np.repeat(np.arange(4), 4))
    assert_same_fit(resumed, uninterrupted)


def test_interrupted_fit_resumes_from_last_full_epoch(prepared, uninterrupted, tmp_path, monkeypatch):
    """Ctrl+C in the third epoch: the checkpoint of epoch 2 is kept, the cut epoch is not saved."""
    ckpt = tmp_path / "ckpt"
    step = AestetikModule.training_step
    calls = {"n": 0}

    def interrupting(self, batch, batch_idx):
        calls["n"] += 1
        if calls["n"] == 10:  # the second step of the third epoch
            signal.raise_signal(signal.SIGINT)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(AestetikModule, "training_step", interrupting)
    adata = prepared.copy()
    with pytest.raises(KeyboardInterrupt, match="resume=True"):
        ae.tl.fit(adata, **{**FIT, "max_epochs": 4}, checkpoint_path=ckpt)
    assert "X_aestetik" not in adata.obsm
    assert torch.load(ckpt / "last.ckpt", weights_only=True)["epoch"] == 1  # noqa: TID251 - the checkpoint itself
    monkeypatch.setattr(AestetikModule, "training_step", step)
    ae.tl.fit(adata, **{**FIT, "max_epochs": 4}, checkpoint_path=ckpt, resume=True)
    assert_same_fit(adata, uninterrupted)


def test_resume_checks(prepared, tmp_path):
    adata = prepared.copy()
    with pytest.raises(ValueError, match="needs `checkpoint_path`"):
        ae.tl.fit(adata, **FIT, resume=True)
    ckpt = tmp_path / "ckpt"
    ae.tl.fit(adata, **FIT, resume=True, checkpoint_path=ckpt)  # nothing to resume from yet: starts afresh
    assert not adata.uns["aestetik"]["fit"]["params"]["resumed"]
    with pytest.raises(ValueError, match=r"checkpoint_path.*another fit.*lr"):
        ae.tl.fit(adata, **FIT, lr=0.01, resume=True, checkpoint_path=ckpt)

from __future__ import annotations

import functools

import anndata as ad
import numpy as np
import pytest
import torch
from _data import FAST_FIT, make_small

import aestetik as ae
from aestetik._model._io import load_weights, save_weights

PREPARE = {"n_clusters": 3, "clustering_method": "kmeans"}


@functools.cache
def _prepared_once(seed: int) -> ad.AnnData:
    adata = make_small(seed=seed)
    ae.pp.prepare(adata, morphology_key="X_morphology", **PREPARE)
    return adata


def _prepared(seed: int = 0) -> ad.AnnData:
    """A fresh copy of a small section, prepared with morphology (once per session)."""
    return _prepared_once(seed).copy()


@pytest.fixture(scope="module")
def fitted() -> ad.AnnData:
    adata = _prepared()
    ae.tl.fit(adata, random_state=2, **FAST_FIT)
    return adata


@pytest.fixture(scope="module")
def model_path(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    ae.tl.save_model(fitted, path)
    return path


def _snapshot(adata: ad.AnnData) -> dict:
    return {
        "obsm": {k: np.array(v, copy=True) for k, v in adata.obsm.items()},
        "obs": adata.obs.copy(),
        "uns": {k: sorted(v) if isinstance(v, dict) else v for k, v in adata.uns.items()},
        "weights": {
            k: np.array(v, copy=True)
            for k, v in adata.uns.get("aestetik", {}).get("fit", {}).get("weights", {}).items()
        },
    }


def _assert_unchanged(adata: ad.AnnData, before: dict) -> None:
    after = _snapshot(adata)
    assert sorted(after["obsm"]) == sorted(before["obsm"])
    for k, v in before["obsm"].items():
        np.testing.assert_array_equal(after["obsm"][k], v)
    assert after["obs"].equals(before["obs"])
    assert after["uns"] == before["uns"]
    assert sorted(after["weights"]) == sorted(before["weights"])
    for k, v in before["weights"].items():
        np.testing.assert_array_equal(after["weights"][k], v)


# --- embed ------------------------------------------------------------------------------------------


def test_embed_reproduces_fit_exactly(fitted):
    out = ae.tl.embed(fitted, n_mc_samples=FAST_FIT["n_mc_samples"], random_state=2, accelerator="cpu", copy=True)
    np.testing.assert_array_equal(out.obsm["X_aestetik"], fitted.obsm["X_aestetik"])
    rec = out.uns["aestetik"]["embed"]
    assert rec["params"]["n_mc_samples"] == FAST_FIT["n_mc_samples"]
    assert rec["params"]["random_state"] == 2
    assert rec["params"]["device"] == "cpu"
    assert set(out.uns["aestetik"]) == {"prepare", "fit", "embed"}
    assert "embed" not in fitted.uns["aestetik"]  # copy=True left the input alone


def test_embed_options(fitted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    adata = fitted.copy()
    assert ae.tl.embed(adata, n_mc_samples=20, random_state=2, key_added="mc20") is None
    emb = adata.obsm["X_mc20"]
    assert emb.dtype == np.float32
    assert emb.shape == fitted.obsm["X_aestetik"].shape
    assert not np.allclose(emb, fitted.obsm["X_aestetik"])  # more passes, another estimate
    np.testing.assert_array_equal(adata.obsm["X_aestetik"], fitted.obsm["X_aestetik"])  # source untouched
    assert adata.uns["mc20"]["embed"]["params"]["key"] == "aestetik"
    other_seed = ae.tl.embed(fitted, n_mc_samples=20, random_state=3, copy=True).obsm["X_aestetik"]
    assert not np.allclose(other_seed, emb)
    a = ae.tl.embed(fitted, n_mc_samples=0, copy=True).obsm["X_aestetik"]
    b = ae.tl.embed(fitted, n_mc_samples=0, random_state=9, copy=True).obsm["X_aestetik"]
    np.testing.assert_array_equal(a, b)  # no dropout: no randomness
    assert list(tmp_path.iterdir()) == []  # Lightning wrote nothing


def test_embed_keeps_the_global_rng(fitted):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ae.tl.embed(fitted, n_mc_samples=2, copy=True)
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


@pytest.mark.parametrize(
    ("setup", "kwargs", "error", "match"),
    [
        ("unfitted", {}, KeyError, r"aestetik\.tl\.fit"),
        ("fitted", {"n_mc_samples": -1}, ValueError, "n_mc_samples"),
        ("fitted", {"random_state": 1.5}, TypeError, "random_state"),
        ("fitted", {"key": "other"}, KeyError, "other"),
        ("reprepared", {}, ValueError, "takes 10 input channels.*has 6"),
    ],
)
def test_embed_rejections_leave_adata_unchanged(fitted, setup, kwargs, error, match):
    if setup == "unfitted":
        adata = _prepared()
    else:
        adata = fitted.copy()
        if setup == "reprepared":  # prepared again without morphology: the stored model no longer fits
            ae.pp.prepare(adata, morphology_key=None, **PREPARE)
    before = _snapshot(adata)
    with pytest.raises(error, match=match):
        ae.tl.embed(adata, **kwargs)
    _assert_unchanged(adata, before)


# --- save / load ------------------------------------------------------------------------------------


def test_save_load_round_trip(fitted, model_path):
    _, config = load_weights(model_path)  # weights_only read of a file written by save_model
    assert config["layout"]["n_transcriptomics"] == 6
    assert config["layout"]["n_morphology"] == 4
    assert config["layout"]["window_size"] == 7
    assert config["layout"]["channels"] == ["transcriptomics", "morphology"]

    adata = _prepared()  # the same data, prepared again, never fitted
    assert ae.tl.load_model(adata, model_path) is None
    rec, orig = adata.uns["aestetik"]["fit"], fitted.uns["aestetik"]["fit"]
    assert sorted(rec["weights"]) == sorted(orig["weights"])
    for k, v in orig["weights"].items():
        assert rec["weights"][k].dtype == v.dtype
        np.testing.assert_array_equal(rec["weights"][k], v)
    assert rec["params"] == orig["params"]
    assert (rec["transcriptomics_weight"], rec["morphology_weight"]) == (
        orig["transcriptomics_weight"],
        orig["morphology_weight"],
    )
    for k, v in orig["history"].items():
        np.testing.assert_array_equal(rec["history"][k], v)
    assert rec["loaded_from"] == str(model_path)
    assert "X_aestetik" not in adata.obsm  # loading does not embed

    ae.tl.embed(adata, n_mc_samples=FAST_FIT["n_mc_samples"], random_state=2)
    np.testing.assert_array_equal(adata.obsm["X_aestetik"], fitted.obsm["X_aestetik"])


def test_load_on_other_section_and_h5ad_round_trip(model_path, tmp_path):
    adata = _prepared(seed=1)
    ae.tl.load_model(adata, model_path, key="transfer")
    ae.tl.embed(adata, key="transfer", n_mc_samples=3)
    emb = adata.obsm["X_transfer"]
    assert emb.shape == (adata.n_obs, 4)
    assert np.all(np.isfinite(emb))

    path = tmp_path / "a.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    ae.tl.embed(back, key="transfer", n_mc_samples=3)
    np.testing.assert_array_equal(back.obsm["X_transfer"], emb)
    # a model read back from h5ad (numpy scalars and arrays in its params) saves and loads again
    again = tmp_path / "again.pt"
    ae.tl.save_model(back, again, key="transfer")
    other = _prepared(seed=1)
    ae.tl.load_model(other, again, key="transfer")
    ae.tl.embed(other, key="transfer", n_mc_samples=3)
    np.testing.assert_array_equal(other.obsm["X_transfer"], emb)


def test_load_replaces_a_stale_embedding(fitted, model_path):
    adata = fitted.copy()
    ae.tl.embed(adata, n_mc_samples=1)
    assert "embed" in adata.uns["aestetik"]
    out = ae.tl.load_model(adata, model_path, copy=True)
    assert "X_aestetik" not in out.obsm
    assert set(out.uns["aestetik"]) == {"prepare", "fit"}
    assert "X_aestetik" in adata.obsm  # copy=True left the input alone


def test_save_model_overwrites_and_writes_nothing_else(fitted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "m.pt"
    path.write_bytes(b"old")
    ae.tl.save_model(fitted, path)
    assert load_weights(path)[1]["kind"] == "aestetik-model-v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_save_model_rejections(fitted, tmp_path):
    with pytest.raises(KeyError, match=r"aestetik\.tl\.fit"):
        ae.tl.save_model(_prepared(), tmp_path / "m.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ae.tl.save_model(fitted, tmp_path / "missing" / "m.pt")
    with pytest.raises(IsADirectoryError):
        ae.tl.save_model(fitted, tmp_path)
    reprepared = fitted.copy()
    ae.pp.prepare(reprepared, morphology_key=None, **PREPARE)
    with pytest.raises(ValueError, match="prepared again"):
        ae.tl.save_model(reprepared, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def _foreign(path):
    torch.save({"weights": torch.zeros(3)}, path)


def _truncated(path, model_path):
    path.write_bytes(model_path.read_bytes()[:200])


def _bare_weights(path, fitted):
    save_weights(path, fitted.uns["aestetik"]["fit"]["weights"], {"window_size": 7})


def _inconsistent(path, model_path):
    weights, config = load_weights(model_path)
    weights.pop("encoder.bias")
    save_weights(path, weights, config)


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("missing", FileNotFoundError, "No weights file"),
        ("foreign", ValueError, "not an aestetik weights file"),
        ("truncated", ValueError, "truncated"),
        ("bare_weights", ValueError, "no model configuration"),
        ("inconsistent", ValueError, "do not match"),
        ("no_morphology", ValueError, r"morphology channels: model 4, adata 0"),
        ("window", ValueError, r"window size: model 7, adata 5"),
        ("unprepared", KeyError, r"aestetik\.pp\.prepare"),
    ],
)
def test_load_rejections_leave_adata_unchanged(fitted, model_path, tmp_path, case, error, match):
    path = tmp_path / "bad.pt"
    adata = fitted.copy()
    if case == "foreign":
        _foreign(path)
    elif case == "truncated":
        _truncated(path, model_path)
    elif case == "bare_weights":
        _bare_weights(path, fitted)
    elif case == "inconsistent":
        _inconsistent(path, model_path)
    elif case in ("no_morphology", "window", "unprepared"):
        path = model_path
        if case == "no_morphology":
            ae.pp.prepare(adata, morphology_key=None, **PREPARE)
        elif case == "window":
            ae.pp.prepare(adata, morphology_key="X_morphology", window_size=5, **PREPARE)
        else:
            del adata.uns["aestetik"]
    before = _snapshot(adata)
    with pytest.raises(error, match=match):
        ae.tl.load_model(adata, path)
    _assert_unchanged(adata, before)


def test_load_on_a_view_is_refused(fitted, model_path):
    with pytest.raises(ValueError, match="view"):
        ae.tl.load_model(fitted[:10], model_path)

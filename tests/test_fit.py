from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import torch
from _data import FAST_FIT, make_small

import aestetik as ae
from aestetik._model._checks import check_accelerator
from aestetik._model._train import restore_module
from aestetik._records import read_fitted, read_prepared


@pytest.fixture(scope="module")
def prepared():
    adata = make_small()
    ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=3, clustering_method="kmeans")
    return adata


def test_fit_writes_embedding_and_record(prepared, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    adata = prepared.copy()
    assert ae.tl.fit(adata, morphology_weight=1.0, **FAST_FIT) is None
    emb = adata.obsm["X_aestetik"]
    assert emb.dtype == np.float32
    assert emb.shape == (adata.n_obs, 4)
    assert np.all(np.isfinite(emb))
    assert emb.std(0).min() > 0
    rec = adata.uns["aestetik"]["fit"]
    assert "prepare" in adata.uns["aestetik"]  # other steps' records are kept
    p = rec["params"]
    assert p["morphology_weight"] == 1.0
    assert p["batch_size"] == adata.n_obs
    assert p["device"] == "cpu"
    assert rec["transcriptomics_weight"] == 2.0
    assert rec["morphology_weight"] == 1.0
    hist = rec["history"]
    assert set(hist) == {
        "epoch",
        "loss",
        "reconstruction_transcriptomics",
        "reconstruction_morphology",
        "triplet_transcriptomics",
        "triplet_morphology",
    }
    assert len(hist["loss"]) == 2  # one step per epoch: the whole section is one batch
    total = 2.0 * (hist["reconstruction_transcriptomics"] + hist["triplet_transcriptomics"]) + 1.0 * (
        hist["reconstruction_morphology"] + hist["triplet_morphology"]
    )
    np.testing.assert_allclose(hist["loss"], total, rtol=1e-5)
    assert "network.encoder.conv.weight" not in rec["weights"]
    assert p["n_ensemble"] == 9  # 320 spots: units that see 3,000 windows per epoch, at most 9
    assert rec["weights"]["encoder.conv.weight"].shape == (9 * 8, 10, 3, 3)
    assert list(tmp_path.iterdir()) == []  # no lightning_logs, no checkpoints


def test_default_ensemble_follows_the_spots():
    from aestetik._model._ensemble import default_ensemble

    for n in (1, 100, 282, 333, 334, 500, 600, 999, 1000, 1049, 3460, 10**6):
        need = -(-3000 // n)  # units that together see 3,000 windows per epoch
        odd = need if need % 2 else need + 1
        assert default_ensemble(n) == min(9, max(3, odd))
    assert default_ensemble(3460) == 3  # a Visium section keeps the published ensemble
    assert default_ensemble(346) == 9


def test_fit_n_ensemble_given_is_kept(prepared):
    adata = prepared.copy()
    ae.tl.fit(adata, n_ensemble=3, **FAST_FIT)
    assert adata.uns["aestetik"]["fit"]["params"]["n_ensemble"] == 3
    assert adata.uns["aestetik"]["fit"]["weights"]["encoder.conv.weight"].shape[0] == 3 * 8


def test_fit_batches_and_history(prepared):
    adata = prepared.copy()
    ae.tl.fit(adata, **{**FAST_FIT, "max_epochs": 3}, batch_size=100)
    hist = adata.uns["aestetik"]["fit"]["history"]
    steps = int(np.ceil(adata.n_obs / 100))
    assert len(hist["loss"]) == 3 * steps
    np.testing.assert_array_equal(hist["epoch"], np.repeat(np.arange(3), steps))


def test_fit_is_deterministic(prepared):
    a, b, c = prepared.copy(), prepared.copy(), prepared.copy()
    ae.tl.fit(a, random_state=3, **FAST_FIT)
    ae.tl.fit(b, random_state=3, **FAST_FIT)
    ae.tl.fit(c, random_state=4, **FAST_FIT)
    np.testing.assert_array_equal(a.obsm["X_aestetik"], b.obsm["X_aestetik"])
    assert not np.allclose(a.obsm["X_aestetik"], c.obsm["X_aestetik"])


def test_fit_copy(prepared):
    adata = prepared.copy()
    out = ae.tl.fit(adata, copy=True, **FAST_FIT)
    assert "X_aestetik" in out.obsm
    assert "X_aestetik" not in adata.obsm
    assert "fit" not in adata.uns["aestetik"]


def test_default_morphology_weight(prepared):
    adata = prepared.copy()
    ae.tl.fit(adata, **FAST_FIT)
    assert adata.uns["aestetik"]["fit"]["morphology_weight"] == 1.5
    rna = make_small(morphology=False)
    ae.pp.prepare(rna, n_clusters=3, clustering_method="kmeans")
    ae.tl.fit(rna, **FAST_FIT)
    rec = rna.uns["aestetik"]["fit"]
    assert (rec["transcriptomics_weight"], rec["morphology_weight"]) == (3.0, 0.0)
    assert np.all(rec["history"]["reconstruction_morphology"] == 0)
    with pytest.raises(ValueError, match="morphology_key"):
        ae.tl.fit(rna, morphology_weight=1.0, **FAST_FIT)


def test_collapsed_modality_gets_weight_zero(prepared):
    adata = prepared.copy()
    adata.obs["aestetik_morphology_cluster"] = "0"
    adata.uns["aestetik"]["prepare"]["n_clusters_morphology"] = 1
    ae.tl.fit(adata, morphology_weight=1.0, **FAST_FIT)
    rec = adata.uns["aestetik"]["fit"]
    assert rec["morphology_weight"] == 0.0
    assert rec["transcriptomics_weight"] == 2.0
    assert np.all(rec["history"]["triplet_morphology"] == 0)


def test_mc_embedding_against_plain_passes(prepared):
    """The batched Monte-Carlo embedding equals explicit masked passes over the section as one batch.

    As in the reference's inference (whole section in one batch, batch-norm in training mode), batch-norm
    normalises with the statistics over all spots; the embedding computes them in chunks.
    """
    import torch

    from aestetik._model._ensemble import ensemble_median

    adata = prepared.copy()
    ae.tl.fit(adata, **FAST_FIT)
    module = restore_module(read_fitted(adata, "aestetik"), read_prepared(adata, "aestetik"))
    enc = module.network.encoder
    n = adata.n_obs
    with torch.no_grad():
        enc.train()  # batch-norm over the whole section, as the reference
        feats = enc.features(module.windows(torch.arange(n)))
    per_chunk = enc.n_ensemble * 64 * enc.c_hid * enc.n_pooled  # one pass per draw: the same random stream
    assert n % 64 == 0
    got = module.embed(7, seed=11, chunk_spots=64, max_elements=per_chunk)  # statistics gathered in chunks
    gen = torch.Generator().manual_seed(11)
    acc = torch.zeros(n, enc.latent_dim)
    chunks = torch.arange(n).split(64)
    with torch.no_grad():
        for c in chunks:  # same random stream: chunk by chunk, one pass at a time
            for _ in range(7):
                keep = torch.rand((enc.n_ensemble, c.shape[0], enc.c_hid), generator=gen) >= enc.dropout
                acc[c] += ensemble_median(enc.head(feats[:, c], keep.float() / (1 - enc.dropout)))
    np.testing.assert_allclose(got, (acc / 7).numpy(), rtol=1e-4, atol=1e-5)
    # chunking over passes changes the random stream, not the estimate
    other = module.embed(7, seed=11)
    assert np.corrcoef(got.ravel(), other.ravel())[0, 1] > 0.9


def test_h5ad_round_trip_restores_model(prepared, tmp_path):
    adata = prepared.copy()
    ae.tl.fit(adata, **FAST_FIT)
    path = tmp_path / "a.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    rec, rec2 = adata.uns["aestetik"]["fit"], back.uns["aestetik"]["fit"]
    assert rec2["params"] == rec["params"]
    np.testing.assert_array_equal(rec2["history"]["loss"], rec["history"]["loss"])
    a = restore_module(read_fitted(adata, "aestetik"), read_prepared(adata, "aestetik")).embed(5, seed=0)
    b = restore_module(read_fitted(back, "aestetik"), read_prepared(back, "aestetik")).embed(5, seed=0)
    np.testing.assert_array_equal(a, b)


def test_fit_failure_writes_nothing(prepared, monkeypatch):
    from aestetik._model import _module as _training

    adata = prepared.copy()
    calls = {"n": 0}
    original = _training.AestetikModule.training_step

    def failing(self, batch, batch_idx):
        calls["n"] += 1
        if calls["n"] == 2:
            msg = "boom"
            raise RuntimeError(msg)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(_training.AestetikModule, "training_step", failing)
    with pytest.raises(RuntimeError, match="boom"):
        ae.tl.fit(adata, **FAST_FIT)
    assert "X_aestetik" not in adata.obsm
    assert "fit" not in adata.uns["aestetik"]


@pytest.mark.parametrize(
    ("edit", "kwargs", "error", "match"),
    [
        (lambda a: a.uns.pop("aestetik"), {}, KeyError, r"aestetik.pp.prepare"),
        (None, {"prepare_key": "other"}, KeyError, "other"),
        (None, {"morphology_weight": 4.0}, ValueError, "total_weight"),
        (None, {"dropout": 1.0}, ValueError, "dropout"),
        (None, {"max_epochs": 0}, ValueError, "max_epochs"),
        (None, {"n_mc_samples": -1}, ValueError, "n_mc_samples"),
        (
            lambda a: a.obsm.__setitem__("aestetik_grid", a.obsm["aestetik_grid"][::-1].copy()),
            {},
            ValueError,
            "no longer matches",
        ),
    ],
)
def test_fit_bad_input_leaves_adata_unchanged(prepared, edit, kwargs, error, match):
    adata = prepared.copy()
    if edit is not None:
        edit(adata)
    keys = (sorted(adata.obsm.keys()), sorted(adata.uns.keys()), list(adata.obs.columns))
    with pytest.raises(error, match=match):
        ae.tl.fit(adata, **{**FAST_FIT, **kwargs})
    assert keys == (sorted(adata.obsm.keys()), sorted(adata.uns.keys()), list(adata.obs.columns))
    assert "X_aestetik" not in adata.obsm


def _keys(adata):
    return sorted(adata.obsm.keys()), sorted(adata.uns.keys()), {k: sorted(v) for k, v in adata.uns.items()}


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_gpu_without_one_is_refused_before_anything(prepared, accelerator, tmp_path, monkeypatch):
    """fit, consensus, ablation and embed name the fix instead of Lightning's MisconfigurationException."""
    monkeypatch.chdir(tmp_path)
    adata = prepared.copy()
    ae.tl.fit(adata, **FAST_FIT)  # a model for embed
    before = _keys(adata)
    embedding = adata.obsm["X_aestetik"].copy()
    match = rf"accelerator='{accelerator}' was asked for but no CUDA GPU is available: pass accelerator='auto'"
    with pytest.raises(ValueError, match=match):
        ae.tl.fit(adata, **FAST_FIT, accelerator=accelerator, key_added="gpu")
    fit_kwargs = {"max_epochs": 2, "n_mc_samples": 5, "c_hid": 8, "latent_dim": 4, "accelerator": accelerator}
    with pytest.raises(ValueError, match=match):
        ae.tl.consensus(adata, n_seeds=2, n_clusters=3, fit_kwargs=fit_kwargs, key_added="gpu", show_progress_bar=False)
    with pytest.raises(ValueError, match=match):
        ae.tl.ablation(adata, n_clusters=3, fit_kwargs=fit_kwargs, key_added="gpu", show_progress_bar=False)
    with pytest.raises(ValueError, match=match):
        ae.tl.embed(adata, n_mc_samples=5, accelerator=accelerator, key_added="gpu")
    assert _keys(adata) == before
    np.testing.assert_array_equal(adata.obsm["X_aestetik"], embedding)
    assert list(tmp_path.iterdir()) == []


def test_more_gpus_than_there_are_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_accelerator("gpu", 1)
    check_accelerator("auto", [0])
    check_accelerator("cpu", 4)  # CPU processes, not GPUs
    with pytest.raises(ValueError, match=r"devices=2 asks for 2 GPUs but this machine has 1: pass devices=1"):
        check_accelerator("gpu", 2)
    with pytest.raises(ValueError, match=r"devices=\[0, 1\] names GPU 1 but this machine has GPUs 0 to 0"):
        check_accelerator("auto", [0, 1])


def test_fit_after_subsetting_is_refused(prepared):
    sub = prepared[:200].copy()
    with pytest.raises(ValueError, match="prepare"):
        ae.tl.fit(sub, **FAST_FIT)
    with pytest.raises(ValueError, match="view"):
        ae.tl.fit(prepared[:200], **FAST_FIT)


def test_fit_is_deterministic_across_processes(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import numpy as np
import aestetik as ae
from _data import FAST_FIT, make_small
adata = make_small()
ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=3, clustering_method="kmeans")
ae.tl.fit(adata, random_state=5, **FAST_FIT)
ae.tl.cluster(adata, n_clusters=3, method="kmeans")
np.save(sys.argv[1], adata.obsm["X_aestetik"])
np.save(sys.argv[2], adata.obs["aestetik"].astype(int).to_numpy())
"""
    outs = []
    for i in range(2):
        emb, lab = tmp_path / f"e{i}.npy", tmp_path / f"l{i}.npy"
        subprocess.run(
            [sys.executable, "-c", script, str(emb), str(lab)], check=True, cwd=tmp_path, capture_output=True
        )
        outs.append((np.load(emb), np.load(lab)))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_embedding_same_without_caches(prepared):
    """Kept convolution summaries give the same embedding as recomputing them per chunk."""
    adata = prepared.copy()
    ae.tl.fit(adata, **FAST_FIT)
    cached = restore_module(read_fitted(adata, "aestetik"), read_prepared(adata, "aestetik")).embed(
        5, seed=1, chunk_spots=100
    )
    module = restore_module(read_fitted(adata, "aestetik"), read_prepared(adata, "aestetik"))
    module.cache_bytes = 0
    recomputed = module.embed(5, seed=1, chunk_spots=100)
    np.testing.assert_allclose(cached, recomputed, rtol=1e-5, atol=1e-6)


def test_fit_progress_bar_and_log_name_epoch_throughput_device(prepared, capfd):
    import io
    import sys

    import scanpy as sc

    adata = prepared.copy()
    verbosity, log = sc.settings.verbosity, io.StringIO()
    sc.settings.verbosity, sc.settings.logfile = "info", log
    try:
        ae.tl.fit(adata, **{**FAST_FIT, "show_progress_bar": True}, accelerator="cpu")
    finally:
        sc.settings.verbosity, sc.settings.logfile = verbosity, sys.stderr
    captured = capfd.readouterr()
    bar = captured.out + captured.err
    assert "Epoch 2/2" in bar
    assert "spots/s=" in bar
    assert "on cpu, 1 process (SingleDeviceStrategy)" in log.getvalue()
    p = adata.uns["aestetik"]["fit"]["params"]
    assert (p["strategy"], p["world_size"], p["resumed"]) == ("auto", 1, False)

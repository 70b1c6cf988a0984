"""New sections with a trained model: projection with the training transforms, embedding, training domains."""

from __future__ import annotations

import functools

import anndata as ad
import numpy as np
import pytest
import torch
from _data import FAST_FIT
from test_sections import assert_same, snapshot

import aestetik as ae
from aestetik._image._patches import _reduce, apply_transform
from aestetik._model._io import load_weights

PREPARE = {"morphology_key": "X_morphology", "n_clusters": 4, "clustering_method": "kmeans"}


@functools.cache
def _trained() -> ad.AnnData:
    adata = ae.datasets.synthetic(n_spots=700, random_state=0)
    ae.pp.prepare(adata, **PREPARE)  # computes the transcriptomics PCA from the counts
    ae.tl.fit(adata, **FAST_FIT)
    ae.tl.cluster(adata, 4)
    return adata


@pytest.fixture
def trained() -> ad.AnnData:
    return _trained().copy()


def _new(**kwargs) -> ad.AnnData:
    return ae.datasets.synthetic(n_spots=500, random_state=7, **kwargs)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("transfer") / "model.pt"
    ae.tl.save_model(_trained(), path)
    return path


def test_projection_applies_the_training_transforms(trained):
    new = _new()
    ae.pp.prepare(new, reference=trained)
    tr = trained.uns["aestetik"]["prepare"]["transforms"]
    pca = tr["transcriptomics"]
    # by hand: normalise to 1e4 over the training genes, log1p, highly variable genes, centre, loadings
    x = new[:, pca["genes"]].X.astype(np.float64)
    x = np.log1p(x / x.sum(axis=1, keepdims=True) * 1e4)[:, pca["hvg"]]
    t = (x - pca["mean"]) @ pca["components"]
    np.testing.assert_allclose(new.obsm["X_pca"], t, rtol=1e-4, atol=1e-4)
    m = new.obsm["X_morphology"]  # a given representation: only the training min-max ranges apply
    lo, hi = tr["minmax_lo"].min(axis=0), tr["minmax_hi"].max(axis=0)
    np.testing.assert_allclose(new.obsm["aestetik_input"], (np.c_[t, m] - lo) / (hi - lo), rtol=1e-4, atol=1e-4)
    record = new.uns["aestetik"]["prepare"]
    assert not record["pseudo_labels"]
    assert record["n_clusters_transcriptomics"] == 0
    assert "aestetik_transcriptomics_cluster" not in new.obs
    # the training section projected onto itself gives back its own inputs
    again = trained.copy()
    ae.pp.prepare(again, reference=trained)
    np.testing.assert_allclose(again.obsm["aestetik_input"], trained.obsm["aestetik_input"], atol=1e-4)


def test_genes_in_another_order_and_a_few_missing(trained):
    new = _new()
    ae.pp.prepare(new, reference=trained)
    shuffled = new[:, np.random.default_rng(0).permutation(new.n_vars)].copy()
    ae.pp.prepare(shuffled, reference=trained)
    np.testing.assert_allclose(shuffled.obsm["aestetik_input"], new.obsm["aestetik_input"], rtol=1e-5, atol=1e-6)
    fewer = new[:, 3:].copy()  # 3 of 50 genes missing: filled with the training mean
    ae.pp.prepare(fewer, reference=trained)
    assert fewer.obsm["aestetik_input"].shape == new.obsm["aestetik_input"].shape


def test_embed_and_cluster_with_the_trained_domains(trained, model_path):
    new = _new()
    ae.pp.prepare(new, reference=trained)
    ae.tl.embed(new, model=trained, n_mc_samples=5)
    ae.tl.cluster(new, model=trained, refine=False)
    cluster = trained.uns["aestetik"]["cluster"]
    z = new.obsm["X_aestetik"]
    nearest = np.argmin(((z[:, None] - cluster["centres"][None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(new.obs["aestetik"].to_numpy(), cluster["centre_domains"][nearest])
    assert list(new.obs["aestetik"].cat.categories) == list(trained.obs["aestetik"].cat.categories)
    # the model file carries all of it, read with weights_only=True
    from_file = _new()
    ae.pp.prepare(from_file, reference=model_path)
    np.testing.assert_array_equal(from_file.obsm["aestetik_input"], new.obsm["aestetik_input"])
    ae.tl.embed(from_file, model=model_path, n_mc_samples=5)
    np.testing.assert_array_equal(from_file.obsm["X_aestetik"], z)
    ae.tl.cluster(from_file, model=model_path, refine=False)
    np.testing.assert_array_equal(from_file.obs["aestetik"], new.obs["aestetik"])
    ae.tl.cluster(from_file, model=model_path)  # refined on the new section's lattice
    assert from_file.uns["aestetik"]["cluster"]["params"]["model"].startswith("the model file")


def test_model_file_round_trip_carries_the_transforms(trained, model_path, tmp_path):
    payload = torch.load(model_path, weights_only=True)  # noqa: TID251 - what users do
    config = load_weights(model_path)[1]
    assert payload["config"]["kind"] == config["kind"]
    prep = trained.uns["aestetik"]["prepare"]
    stored = config["prepare"]
    assert stored["lattice_type"] == prep["lattice_type"]
    pca = stored["transforms"]["transcriptomics"]
    assert list(pca["genes"]) == list(prep["transforms"]["transcriptomics"]["genes"])
    np.testing.assert_array_equal(pca["components"].numpy(), prep["transforms"]["transcriptomics"]["components"])
    np.testing.assert_array_equal(stored["transforms"]["minmax_hi"].numpy(), prep["transforms"]["minmax_hi"])
    np.testing.assert_array_equal(config["domains"]["centres"].numpy(), trained.uns["aestetik"]["cluster"]["centres"])
    # and the records survive h5ad
    new = _new()
    ae.pp.prepare(new, reference=model_path)
    new.write_h5ad(tmp_path / "new.h5ad")
    trained.write_h5ad(tmp_path / "trained.h5ad")
    back = ad.read_h5ad(tmp_path / "trained.h5ad")
    again = _new()
    ae.pp.prepare(again, reference=back)
    np.testing.assert_array_equal(again.obsm["aestetik_input"], new.obsm["aestetik_input"])


def test_morphology_transform_reproduces_the_fitted_pca():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6)) @ rng.normal(size=(6, 6))
    x[:, 2] = 1.0  # constant: dropped
    computed = np.ones(80, dtype=bool)
    computed[:5] = False  # outside the image: the median
    embedding, _, transform = _reduce(x, computed, 3, 0)
    np.testing.assert_allclose(apply_transform(x, computed, transform), embedding, rtol=1e-5, atol=1e-5)


def _drop_genes(new):
    return new[:, 12:].copy()  # 12 of 50 genes (24%) missing


def _square(new):
    return _new(lattice="square")


@pytest.mark.parametrize(
    ("edit", "kwargs", "error", "match"),
    [
        (_drop_genes, {}, ValueError, r"`adata.var_names` lacks 12 of the 50 .* more than 10%"),
        (_square, {}, ValueError, r"lattice of this section is 'square' .* 'hex'"),
        (None, {"window_size": 5}, ValueError, r"`window_size=5` differs from the 7 .* pass `window_size=7`"),
    ],
)
def test_refusals_change_nothing(trained, edit, kwargs, error, match):
    new = _new()
    new = edit(new) if edit else new
    before = snapshot(new)
    with pytest.raises(error, match=match):
        ae.pp.prepare(new, reference=trained, **kwargs)
    assert_same(before, snapshot(new))


def test_embed_and_cluster_refusals_change_nothing(trained):
    new = _new()
    ae.pp.prepare(new, reference=trained)
    before = snapshot(new)
    with pytest.raises(ValueError, match="dimensions but the domain centres"):
        ae.tl.cluster(new, use_rep="X_pca", model=trained)
    untrained = _new()
    with pytest.raises(KeyError, match="Did not find the domain centres"):
        ae.tl.cluster(new, use_rep="X_pca", model=untrained)
    other = _new()
    ae.pp.prepare(other, morphology_key=None, n_clusters=4, clustering_method="kmeans")
    ae.tl.fit(other, **FAST_FIT)
    with pytest.raises(ValueError, match="morphology channels: model 0"):
        ae.tl.embed(new, model=other)
    assert_same(before, snapshot(new))


def test_embed_of_a_section_not_prepared_against_the_model_names_reference(trained, model_path):
    """``embed(new, model=...)`` before ``prepare(new, reference=...)``: the error names that call, not a plain prepare."""
    new = _new()
    before = snapshot(new)
    with pytest.raises(KeyError, match=r"aestetik\.pp\.prepare\(adata, reference=model, key_added='aestetik'\)"):
        ae.tl.embed(new, model=trained)
    with pytest.raises(KeyError, match="reference=") as info:
        ae.tl.embed(new, model=model_path)
    assert f"reference={str(model_path)!r}" in str(info.value)
    assert_same(before, snapshot(new))


def test_a_projected_section_is_not_trained_on(trained):
    """A section prepared with `reference=` has no pseudo-labels: fit, consensus and ablation say what to do."""
    new = _new()
    ae.pp.prepare(new, reference=trained)
    before = snapshot(new)
    with pytest.raises(ValueError, match=r"projected onto a trained model.*tl\.embed\(adata, model=\.\.\.\)"):
        ae.tl.fit(new, **FAST_FIT)
    with pytest.raises(ValueError, match="projected onto a trained model"):
        ae.tl.consensus(new, n_seeds=2, n_clusters=3, show_progress_bar=False)
    assert_same(before, snapshot(new))

from __future__ import annotations

import re

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from sklearn.metrics import adjusted_rand_score

import aestetik as ae


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def dlpfc_small() -> ad.AnnData:
    adata = ae.datasets.dlpfc_151676()
    return adata[adata.obs["array_row"] < 25].copy()


@pytest.fixture
def synthetic() -> ad.AnnData:
    return ae.datasets.synthetic(n_spots=400, random_state=0)


def _ari_in_title(ax: Axes) -> float:
    found = re.search(r"ARI = (-?\d\.\d{3})", ax.get_title())
    assert found is not None, ax.get_title()
    return float(found.group(1))


# --- spatial ----------------------------------------------------------------------------------------


def test_spatial_without_image(synthetic):
    axs = ae.pl.spatial(
        synthetic, color=["transcriptomics_group", "ground_truth", "gene_0"], ground_truth="ground_truth"
    )
    assert isinstance(axs, list)
    assert len(axs) == 3
    assert all(isinstance(ax, Axes) for ax in axs)
    expected = adjusted_rand_score(synthetic.obs["ground_truth"], synthetic.obs["transcriptomics_group"])
    assert _ari_in_title(axs[0]) == pytest.approx(expected, abs=5e-4)
    assert axs[0].get_title().startswith("transcriptomics_group")
    # No ARI for the ground truth itself nor for a gene.
    assert axs[1].get_title() == "ground_truth"
    assert axs[2].get_title() == "gene_0"
    # Image-like orientation: y grows downwards; no image drawn.
    bottom, top = axs[0].get_ylim()
    assert bottom > top
    assert not axs[0].images


def test_spatial_single_color_returns_axes(synthetic):
    ax = ae.pl.spatial(synthetic, color="morphology_group", title="morphology")
    assert isinstance(ax, Axes)
    assert ax.get_title() == "morphology"


def test_spatial_into_given_ax(synthetic):
    _, ax = plt.subplots()
    out = ae.pl.spatial(synthetic, color="ground_truth", ax=ax)
    assert out is ax


def test_spatial_ari_skips_missing_truth(synthetic):
    adata = synthetic.copy()
    truth = adata.obs["ground_truth"].astype(object).to_numpy()
    truth[:50] = np.nan
    truth[50:100] = "NA"
    adata.obs["truth"] = truth
    rng = np.random.default_rng(0)
    adata.obs["pred"] = adata.obs["ground_truth"].astype(str).to_numpy()
    adata.obs.loc[adata.obs_names[:150], "pred"] = rng.choice(["0", "1", "2", "3"], 150)
    adata.obs["pred"] = adata.obs["pred"].astype("category")
    ax = ae.pl.spatial(adata, color="pred", ground_truth="truth")
    known = np.arange(adata.n_obs) >= 100
    expected = adjusted_rand_score(adata.obs["ground_truth"][known], adata.obs["pred"][known])
    assert _ari_in_title(ax) == pytest.approx(expected, abs=5e-4)
    assert expected != pytest.approx(adjusted_rand_score(adata.obs["ground_truth"], adata.obs["pred"]), abs=1e-3)


def test_spatial_with_image(dlpfc_small):
    adata = dlpfc_small.copy()
    labels = adata.obs["ground_truth"].astype(str).to_numpy().copy()
    labels[labels == "Layer_2"] = "Layer_1"  # merge two layers
    adata.obs["merged"] = labels
    axs = ae.pl.spatial(adata, color=["merged", "ground_truth"], ground_truth="ground_truth")
    assert len(axs[0].images) == 1
    known = adata.obs["ground_truth"] != "NA"
    expected = adjusted_rand_score(adata.obs["ground_truth"][known], adata.obs["merged"][known])
    assert 0 < expected < 1
    assert _ari_in_title(axs[0]) == pytest.approx(expected, abs=5e-4)
    assert axs[1].get_title() == "ground_truth"


def test_spatial_image_keys(dlpfc_small):
    ax = ae.pl.spatial(dlpfc_small, color="ground_truth", library_id="151676", img_key="lowres")
    assert len(ax.images) == 1
    with pytest.raises(KeyError, match=r"'hires'.*found: 'lowres'"):
        ae.pl.spatial(dlpfc_small, color="ground_truth", img_key="hires")
    with pytest.raises(KeyError, match=r"'other'.*found: '151676'"):
        ae.pl.spatial(dlpfc_small, color="ground_truth", library_id="other")


def test_spatial_save(synthetic, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ae.pl.spatial(synthetic, color="ground_truth")
    assert list(tmp_path.iterdir()) == []
    path = tmp_path / "domains.png"
    ae.pl.spatial(synthetic, color=["ground_truth", "morphology_group"], save=path)
    assert list(tmp_path.iterdir()) == [path]
    assert path.stat().st_size > 0


def test_spatial_show(synthetic, monkeypatch):
    calls = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: calls.append(1))
    ae.pl.spatial(synthetic, color="ground_truth")
    assert calls == []
    ae.pl.spatial(synthetic, color="ground_truth", show=True)
    assert calls == [1]


def test_spatial_bad_keys(synthetic):
    with pytest.raises(KeyError, match=r"'domains'.*found.*'ground_truth'"):
        ae.pl.spatial(synthetic, color="domains")
    with pytest.raises(KeyError, match=r"Did not find 'truth' in `adata.obs`"):
        ae.pl.spatial(synthetic, color=["ground_truth", "truth"])
    with pytest.raises(KeyError, match=r"`adata.obs\['truth'\]`.*ground_truth"):
        ae.pl.spatial(synthetic, color="ground_truth", ground_truth="truth")
    with pytest.raises(ValueError, match="empty"):
        ae.pl.spatial(synthetic, color=[])
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="one panel"):
        ae.pl.spatial(synthetic, color=["ground_truth", "sample"], ax=ax)
    with pytest.raises(ValueError, match="title"):
        ae.pl.spatial(synthetic, color=["ground_truth", "sample"], title=["a"])
    no_coords = synthetic.copy()
    del no_coords.obsm["spatial"]
    with pytest.raises(KeyError, match="spatial"):
        ae.pl.spatial(no_coords, color="ground_truth")


# --- loss -------------------------------------------------------------------------------------------


def _with_history(morphology: bool) -> ad.AnnData:
    n_steps, steps_per_epoch = 40, 4
    steps = np.arange(n_steps)
    part = np.exp(-steps / 10)
    zero = np.zeros(n_steps)
    history = {
        "epoch": steps // steps_per_epoch,
        "loss": 4 * part + 0.1,
        "reconstruction_transcriptomics": part,
        "reconstruction_morphology": part if morphology else zero,
        "triplet_transcriptomics": 2 * part,
        "triplet_morphology": 0.5 * part if morphology else zero,
    }
    adata = ad.AnnData(np.zeros((5, 2), dtype=np.float32))
    adata.uns["aestetik"] = {"fit": {"history": history}}
    return adata


@pytest.mark.parametrize(("morphology", "n_lines"), [(True, 5), (False, 3)])
def test_loss_lines(morphology, n_lines):
    adata = _with_history(morphology)
    ax = ae.pl.loss(adata)
    assert isinstance(ax, Axes)
    lines = ax.get_lines()
    assert len(lines) == n_lines
    np.testing.assert_array_equal(lines[0].get_xdata(), np.arange(40))
    np.testing.assert_allclose(lines[0].get_ydata(), adata.uns["aestetik"]["fit"]["history"]["loss"])
    assert ("triplet (morphology)" in [line.get_label() for line in lines]) == morphology
    assert ax.get_yscale() == "linear"


def test_loss_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    adata = _with_history(morphology=True)
    adata.uns["run2"] = adata.uns.pop("aestetik")
    _, given = plt.subplots()
    ax = ae.pl.loss(adata, key="run2", logy=True, ax=given)
    assert ax is given
    assert ax.get_yscale() == "log"
    assert list(tmp_path.iterdir()) == []
    ae.pl.loss(adata, key="run2", save=tmp_path / "loss.pdf")
    assert (tmp_path / "loss.pdf").stat().st_size > 0


def test_loss_after_h5ad_round_trip(tmp_path):
    _with_history(morphology=False).write_h5ad(tmp_path / "fit.h5ad")
    ax = ae.pl.loss(ad.read_h5ad(tmp_path / "fit.h5ad"))
    assert len(ax.get_lines()) == 3


def test_loss_requires_fit():
    adata = ad.AnnData(np.zeros((5, 2), dtype=np.float32))
    with pytest.raises(KeyError, match=r"Run `aestetik.tl.fit\(adata\)` first"):
        ae.pl.loss(adata)
    adata.uns["aestetik"] = {"prepare": {}}
    with pytest.raises(KeyError, match=r"Run `aestetik.tl.fit\(adata\)` first"):
        ae.pl.loss(adata)
    with pytest.raises(KeyError, match="'other'"):
        ae.pl.loss(_with_history(morphology=True), key="other")


def test_loss_unequal_lengths():
    adata = _with_history(morphology=True)
    adata.uns["aestetik"]["fit"]["history"]["loss"] = np.ones(3)
    with pytest.raises(ValueError, match="differ in length"):
        ae.pl.loss(adata)

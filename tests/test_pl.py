from __future__ import annotations

import itertools
import re

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from sklearn.metrics import adjusted_rand_score

import aestetik as ae
from aestetik._domains._matching import contingency, match, match_labels
from aestetik.pl._colors import default_palette, spare_colors


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


# --- colours matched to the ground truth ----------------------------------------------------------


def _brute_force_best(table: np.ndarray) -> int:
    """Most spots any one-to-one matching of rows to columns covers, over every permutation."""
    n_rows, n_cols = table.shape
    best = 0
    if n_rows <= n_cols:
        for cols in itertools.permutations(range(n_cols), n_rows):
            best = max(best, int(table[np.arange(n_rows), list(cols)].sum()))
    else:
        for rows in itertools.permutations(range(n_rows), n_cols):
            best = max(best, int(table[list(rows), np.arange(n_cols)].sum()))
    return best


def test_match_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_rows, n_cols = rng.integers(1, 6, size=2)
        table = rng.integers(0, 6, size=(n_rows, n_cols)) * (rng.random((n_rows, n_cols)) < 0.6)
        mapping = match(table)
        assert mapping.shape == (n_rows,)
        matched = mapping >= 0
        assert len(set(mapping[matched])) == matched.sum()  # one-to-one
        assert np.all(table[np.flatnonzero(matched), mapping[matched]] > 0)  # never a partner without a shared spot
        assert int(table[np.flatnonzero(matched), mapping[matched]].sum()) == _brute_force_best(table)


def test_contingency_against_loop():
    rng = np.random.default_rng(1)
    labels, reference = rng.integers(-1, 4, 300), rng.integers(-1, 3, 300)
    expected = np.zeros((5, 4), dtype=np.int64)
    for label, ref in zip(labels, reference, strict=True):
        if label >= 0 and ref >= 0:
            expected[label, ref] += 1
    table = contingency(labels, reference, 5, 4)
    np.testing.assert_array_equal(table, expected)
    assert table.dtype == np.int64
    np.testing.assert_array_equal(match_labels(labels, reference, 5, 4), match(expected))
    with pytest.raises(ValueError, match="differ in length"):
        contingency(labels[:-1], reference, 5, 4)
    with pytest.raises(ValueError, match="below"):
        contingency(labels, reference, 3, 4)


def test_spare_colors_avoid_used():
    used = default_palette(7)
    spare = spare_colors(used, 5)
    assert len(set(spare)) == 5
    assert not set(spare) & {to_hex(c) for c in used}


_TRUTH_PALETTE = ["#ff0000", "#00ff00", "#0000ff", "#000000"]


def _legend(ax: Axes) -> dict[str, str]:
    """Legend text -> colour of its marker."""
    legend = ax.get_legend()
    return {
        text.get_text(): to_hex(handle.get_facecolor()[0])
        for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }


def _spot_colors(ax: Axes) -> np.ndarray:
    """Colour of every spot as drawn (the circles are the first collection, in the order of the spots)."""
    return np.array([to_hex(c) for c in ax.collections[0].get_facecolors()])


def _snapshot(adata: ad.AnnData) -> tuple[dict, dict]:
    return {k: list(v) if k.endswith("_colors") else v for k, v in adata.uns.items()}, dict(adata.obs.dtypes)


@pytest.fixture
def relabelled(synthetic) -> ad.AnnData:
    """Ground truth '0'..'3' with a stored palette; 'pred' renames its layers (0->'2', 1->'0', 2->'3', 3->'1'), with noise."""
    adata = synthetic.copy()
    adata.uns["ground_truth_colors"] = list(_TRUTH_PALETTE)
    rename = np.array(["2", "0", "3", "1"])
    pred = rename[adata.obs["ground_truth"].cat.codes.to_numpy()]
    rng = np.random.default_rng(0)
    noisy = rng.random(adata.n_obs) < 0.1
    pred[noisy] = rng.choice(rename, noisy.sum())
    adata.obs["pred"] = pd.Categorical(pred)
    return adata


def test_spatial_colors_match_ground_truth(relabelled):
    adata = relabelled
    before = _snapshot(adata)
    axs = ae.pl.spatial(adata, color=["pred", "ground_truth"], ground_truth="ground_truth")
    assert _snapshot(adata) == before
    assert adata.uns["ground_truth_colors"] == _TRUTH_PALETTE
    assert "pred_colors" not in adata.uns
    # the ground truth keeps its stored palette
    assert _legend(axs[1]) == dict(zip(["0", "1", "2", "3"], _TRUTH_PALETTE, strict=True))
    # each domain takes the colour of the layer it renames, and says so in the legend
    assert _legend(axs[0]) == {
        "0 (1)": _TRUTH_PALETTE[1],
        "1 (3)": _TRUTH_PALETTE[3],
        "2 (0)": _TRUTH_PALETTE[0],
        "3 (2)": _TRUTH_PALETTE[2],
    }
    # the spots themselves: same colour in both panels wherever prediction and truth agree
    pred_colors, truth_colors = _spot_colors(axs[0]), _spot_colors(axs[1])
    agree = adata.obs["pred"].to_numpy() == np.array(["2", "0", "3", "1"])[adata.obs["ground_truth"].cat.codes]
    assert 0.85 < agree.mean() < 1
    np.testing.assert_array_equal(pred_colors[agree], truth_colors[agree])
    assert np.all(pred_colors[~agree] != truth_colors[~agree])
    assert axs[0].get_title().splitlines()[1].startswith("ARI = ")


def test_spatial_match_colors_off_or_palette(relabelled):
    adata = relabelled
    axs = ae.pl.spatial(adata, color=["pred", "ground_truth"], ground_truth="ground_truth", match_colors=False)
    # scanpy's default: colours in the order of the categories, plain legend
    assert _legend(axs[0]) == dict(zip(["0", "1", "2", "3"], default_palette(4), strict=True))
    assert _legend(axs[1]) == dict(zip(["0", "1", "2", "3"], _TRUTH_PALETTE, strict=True))
    ax = ae.pl.spatial(adata, color="pred", ground_truth="ground_truth", palette=["#111111"] * 4)
    assert set(_legend(ax).values()) == {"#111111"}
    assert set(_legend(ax)) == {"0", "1", "2", "3"}
    assert "pred_colors" not in adata.uns


def test_spatial_more_domains_than_labels(synthetic):
    adata = synthetic.copy()  # no stored palette: the ground truth gets scanpy's default
    truth = adata.obs["ground_truth"].astype(str).to_numpy()
    # split layers '0' and '1' in two by their column: six domains for four layers
    half = adata.obs["array_col"].to_numpy() > np.median(adata.obs["array_col"])
    pred = np.array([f"d{t}{'b' if h and t in '01' else ''}" for t, h in zip(truth, half, strict=True)])
    adata.obs["pred"] = pred  # a string column: drawn as categories, left a string column
    axs = ae.pl.spatial(adata, color=["pred", "ground_truth"], ground_truth="ground_truth")
    assert adata.obs["pred"].dtype == object
    truth_colors = dict(zip(["0", "1", "2", "3"], default_palette(4), strict=True))
    assert _legend(axs[1]) == truth_colors
    legend = _legend(axs[0])
    matched = {text: color for text, color in legend.items() if "(" in text}
    extra = {text: color for text, color in legend.items() if "(" not in text}
    assert len(matched) == 4
    assert len(extra) == 2
    for text, color in matched.items():
        domain, label = text[:-1].split(" (")
        assert domain.rstrip("b") == f"d{label}"
        assert color == truth_colors[label]
    assert len(set(extra.values())) == 2
    assert not set(extra.values()) & set(truth_colors.values())


def test_spatial_fewer_domains_than_labels(relabelled):
    adata = relabelled
    truth = adata.obs["ground_truth"].astype(str).to_numpy()
    adata.obs["pred"] = pd.Categorical(np.where(np.isin(truth, ["0", "1"]), "top", "bottom"))
    adata.obs.loc[adata.obs_names[:20], "pred"] = np.nan
    # each domain matches the largest layer it covers (on the spots it labels)
    counts = pd.Series(truth[20:]).value_counts()
    top, bottom = counts[["0", "1"]].idxmax(), counts[["2", "3"]].idxmax()
    assert counts[["0", "1"]].nunique() == 2
    assert counts[["2", "3"]].nunique() == 2
    before = _snapshot(adata)
    ax = ae.pl.spatial(adata, color="pred", ground_truth="ground_truth")
    assert _snapshot(adata) == before
    assert _legend(ax) == {
        f"bottom ({bottom})": _TRUTH_PALETTE[int(bottom)],
        f"top ({top})": _TRUTH_PALETTE[int(top)],
        "NA": to_hex("lightgray"),  # scanpy's entry for spots without a domain
    }


def test_spatial_colors_with_image(dlpfc_small):
    adata = dlpfc_small.copy()
    labels = adata.obs["ground_truth"].astype(str).to_numpy().copy()
    labels[labels == "Layer_2"] = "Layer_1"  # merge two layers
    labels_3 = labels == "Layer_3"
    labels[labels_3 & (adata.obs["array_col"].to_numpy() > 60)] = "Layer_3b"  # split one
    adata.obs["merged"] = pd.Categorical(labels)
    before = _snapshot(adata)
    axs = ae.pl.spatial(adata, color=["merged", "ground_truth"], ground_truth="ground_truth")
    assert len(axs[0].images) == 1
    assert _snapshot(adata) == before
    assert not any(k.endswith("_colors") for k in adata.uns)
    truth = _legend(axs[1])
    categories = list(adata.obs["ground_truth"].cat.categories)
    assert list(truth) == categories
    assert list(truth.values()) == default_palette(len(categories))
    # Layer_1 keeps its colour (it covers more of the merged domain than Layer_2); the larger half of
    # Layer_3 takes Layer_3's colour, the smaller one shares no spot with a free label (Layer_2) and, like the
    # column's 'NA' (unlabelled spots take no part in the matching), gets a colour the ground truth does not use
    halves = pd.Series(labels[labels_3]).value_counts()
    larger, smaller = halves.idxmax(), halves.idxmin()
    assert halves[larger] > halves[smaller]
    legend = _legend(axs[0])
    assert set(legend) == {
        "Layer_1 (Layer_1)",
        f"{larger} (Layer_3)",
        smaller,
        "Layer_4 (Layer_4)",
        "Layer_5 (Layer_5)",
        "NA",
    }
    for label in ("Layer_1", "Layer_4", "Layer_5"):
        assert legend[f"{label} ({label})"] == truth[label]
    assert legend[f"{larger} (Layer_3)"] == truth["Layer_3"]
    extra = [legend[smaller], legend["NA"]]
    assert len(set(extra)) == 2
    assert not set(extra) & set(truth.values())


def test_spatial_restores_adata_on_error(relabelled, monkeypatch):
    adata = relabelled
    adata.obs["label"] = adata.obs["pred"].astype(str).astype(object)
    before = _snapshot(adata)

    def failing(data, **kwargs):
        data.uns["pred_colors"] = ["#000000"] * 4
        data.uns["ground_truth_colors"] = ["#ffffff"] * 4
        data.obs["label"] = data.obs["label"].astype("category")
        msg = "drawing failed"
        raise RuntimeError(msg)

    monkeypatch.setattr(sc.pl, "spatial", failing)
    with pytest.raises(RuntimeError, match="drawing failed"):
        ae.pl.spatial(adata, color=["pred", "label"], ground_truth="ground_truth")
    assert _snapshot(adata) == before
    assert adata.uns["ground_truth_colors"] == _TRUTH_PALETTE


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

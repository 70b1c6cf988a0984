from __future__ import annotations

import functools

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from _data import FAST_FIT, make_small
from matplotlib.axes import Axes
from sklearn.metrics import adjusted_rand_score

import aestetik as ae
from aestetik.tl import _ablation

SETTINGS = ["transcriptomics", "morphology", "both"]
FIT = {k: v for k, v in FAST_FIT.items() if k != "show_progress_bar"}
KW = {
    "n_clusters": 3,
    "fit_kwargs": FIT,
    "cluster_kwargs": {"method": "kmeans"},
    "show_progress_bar": False,
}
N_MISSING = 20


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@functools.cache
def _prepared_once(with_morphology: bool) -> ad.AnnData:
    adata = make_small()
    truth = adata.obs["ground_truth"].astype(object)
    truth.iloc[:N_MISSING:2] = np.nan
    truth.iloc[1:N_MISSING:2] = "NA"
    adata.obs["truth"] = truth.astype("category")
    morphology_key = "X_morphology" if with_morphology else None
    ae.pp.prepare(adata, morphology_key=morphology_key, n_clusters=3, clustering_method="kmeans")
    return adata


def _prepared(*, with_morphology: bool = True) -> ad.AnnData:
    """A fresh copy of the small section, prepared (once per session)."""
    return _prepared_once(with_morphology).copy()


@pytest.fixture(scope="module")
def ablated():
    """One ablation run; the input channels every fit saw are recorded on the side."""
    adata = _prepared()
    inputs = {}
    fit = _ablation.fit_prepared

    def spy(prepared, **kwargs):
        inputs[prepared.key] = np.array(prepared.features, copy=True)
        return fit(prepared, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_ablation, "fit_prepared", spy)
        out = ae.tl.ablation(adata, ground_truth_key="truth", copy=True, **KW)
    assert "aestetik_ablation" not in adata.uns  # copy=True
    return out, inputs


def _snapshot(adata: ad.AnnData) -> tuple:
    return (
        {k: np.array(v, copy=True) for k, v in adata.obsm.items()},
        adata.obs.copy(),
        {k: sorted(v) if isinstance(v, dict) else v for k, v in adata.uns.items()},
    )


def _assert_unchanged(adata: ad.AnnData, before: tuple) -> None:
    obsm, obs, uns = _snapshot(adata)
    assert sorted(obsm) == sorted(before[0])
    for k, v in before[0].items():
        np.testing.assert_array_equal(obsm[k], v)
    assert obs.equals(before[1])
    assert uns == before[2]


def test_ablation_writes_domains_and_report(ablated):
    adata, _ = ablated
    for s in SETTINGS:
        col = adata.obs[f"aestetik_ablation_{s}"]
        assert isinstance(col.dtype, pd.CategoricalDtype)
        assert col.notna().all()
    rep = adata.uns["aestetik_ablation"]
    assert list(rep["settings"]) == SETTINGS
    assert rep["params"]["n_clusters"] == 3
    assert rep["params"]["ground_truth_key"] == "truth"
    assert rep["params"]["fit_kwargs"] == FIT
    assert rep["params"]["cluster_kwargs"] == {"method": "kmeans"}
    assert rep["n_domains"] == {s: adata.obs[f"aestetik_ablation_{s}"].cat.categories.size for s in SETTINGS}
    assert rep["n_silhouette"] == adata.n_obs
    for s in SETTINGS:
        assert -1 <= rep["silhouette"][s] <= 1
    # "both" uses fit's default weights, a single modality the whole total weight
    assert rep["weights"]["both"] == {"transcriptomics": 1.5, "morphology": 1.5}
    assert rep["weights"]["transcriptomics"] == {"transcriptomics": 3.0, "morphology": 0.0}
    assert rep["weights"]["morphology"] == {"transcriptomics": 0.0, "morphology": 3.0}


def test_ari_against_truth_matches_sklearn(ablated):
    adata, _ = ablated
    rep = adata.uns["aestetik_ablation"]
    known = np.arange(adata.n_obs) >= N_MISSING  # NaN and 'NA' are left out
    assert rep["n_truth"] == known.sum()
    assert rep["n_truth_missing"] == N_MISSING
    truth = adata.obs["ground_truth"].to_numpy()[known]
    for s in SETTINGS:
        expected = adjusted_rand_score(truth, adata.obs[f"aestetik_ablation_{s}"].to_numpy()[known])
        assert rep["ari"][s] == pytest.approx(expected, abs=1e-12)
    assert rep["ari"]["both"] > 0.2  # tiny fit, but the bands are found


def test_pairwise_ari(ablated):
    adata, _ = ablated
    m = adata.uns["aestetik_ablation"]["pairwise_ari"]
    assert m.shape == (3, 3)
    np.testing.assert_allclose(m, m.T)
    np.testing.assert_allclose(np.diag(m), 1.0)
    labels = [adata.obs[f"aestetik_ablation_{s}"].to_numpy() for s in SETTINGS]
    assert m[0, 2] == pytest.approx(adjusted_rand_score(labels[0], labels[2]), abs=1e-12)


def test_settings_differ_in_input_channels(ablated):
    adata, inputs = ablated
    rep = adata.uns["aestetik_ablation"]
    assert rep["n_channels"] == {"transcriptomics": 6, "morphology": 4, "both": 10}
    assert rep["channels"]["transcriptomics"] == {"transcriptomics": 6, "morphology": 0}
    assert rep["channels"]["morphology"] == {"transcriptomics": 0, "morphology": 4}
    assert rep["channels"]["both"] == {"transcriptomics": 6, "morphology": 4}
    prepared = adata.obsm["aestetik_input"]
    assert sorted(inputs) == sorted(SETTINGS)
    np.testing.assert_array_equal(inputs["both"], prepared)
    np.testing.assert_allclose(inputs["transcriptomics"], prepared[:, :6], atol=1e-6)
    np.testing.assert_allclose(inputs["morphology"], prepared[:, 6:], atol=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 2.0])
def test_single_modality_settings_equal_prepare_of_that_modality(monkeypatch, smoothing):
    """Each single-modality setting is what `prepare` writes for that representation alone (same parameters,
    non-default pseudo-label smoothing included), and trains and clusters as that prepared data would."""
    adata = make_small()
    prep_kw = {"n_clusters": 3, "clustering_method": "bgm", "pseudo_label_smoothing": smoothing, "window_size": 5}
    ae.pp.prepare(adata, morphology_key="X_morphology", **prep_kw)
    seen = {}
    fit = _ablation.fit_prepared

    def spy(prepared, **kwargs):
        seen[prepared.key] = (
            np.array(prepared.features, copy=True),
            np.asarray(prepared.labels_transcriptomics).astype(str),
            np.array(prepared.grid, copy=True),
            dict(prepared.record),
        )
        return fit(prepared, **kwargs)

    monkeypatch.setattr(_ablation, "fit_prepared", spy)
    out = ae.tl.ablation(adata, copy=True, **KW)
    for setting, rep_key in (("transcriptomics", "X_pca"), ("morphology", "X_morphology")):
        alone = make_small()
        alone.obsm["X_pca"] = adata.obsm[rep_key]
        ae.pp.prepare(alone, morphology_key=None, **prep_kw)
        features, labels, grid, record = seen[setting]
        np.testing.assert_allclose(features, alone.obsm["aestetik_input"], atol=1e-6)
        np.testing.assert_array_equal(labels, alone.obs["aestetik_transcriptomics_cluster"].astype(str))
        np.testing.assert_array_equal(grid, alone.obsm["aestetik_grid"])
        expected = alone.uns["aestetik"]["prepare"]
        for k in ("n_transcriptomics", "n_morphology", "n_clusters_transcriptomics", "n_clusters_morphology"):
            assert record[k] == expected[k], k
        assert record["params"]["pseudo_label_smoothing"] == smoothing
        assert record["params"]["transcriptomics_key"] == rep_key
        # the setting's domains are those of the plain flow on that prepared data
        ae.tl.fit(alone, random_state=0, **FIT)
        ae.tl.cluster(alone, n_clusters=3, method="kmeans", random_state=0)
        assert list(out.obs[f"aestetik_ablation_{setting}"].astype(str)) == list(alone.obs["aestetik"].astype(str))


def test_ablation_after_h5ad_round_trip(tmp_path, monkeypatch):
    """Recorded prepare params come back as numpy types; a fit_kwargs morphology_weight applies to 'both' only."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    adata = _prepared()
    path = tmp_path / "a.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    kw = {**KW, "fit_kwargs": {**FIT, "morphology_weight": 1.0}}
    ae.tl.ablation(back, random_state=1, key_added="abl", **kw)
    rep = back.uns["abl"]
    assert "ari" not in rep  # no ground truth: silhouette only
    assert np.all(np.isfinite(list(rep["silhouette"].values())))
    assert rep["weights"]["both"] == {"transcriptomics": 2.0, "morphology": 1.0}
    assert rep["weights"]["morphology"] == {"transcriptomics": 0.0, "morphology": 3.0}
    back.write_h5ad(path)
    again = ad.read_h5ad(path)
    np.testing.assert_array_equal(again.uns["abl"]["pairwise_ari"], rep["pairwise_ari"])
    assert list(again.obs["abl_both"]) == list(back.obs["abl_both"])
    assert list(cwd.iterdir()) == []  # Lightning wrote no logs or checkpoints


def test_ablation_is_atomic(monkeypatch):
    adata = _prepared()
    before = _snapshot(adata)
    calls = {"n": 0}
    fit = _ablation.fit_prepared

    def failing(prepared, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            msg = "boom"
            raise RuntimeError(msg)
        return fit(prepared, **kwargs)

    monkeypatch.setattr(_ablation, "fit_prepared", failing)
    with pytest.raises(RuntimeError, match="boom"):
        ae.tl.ablation(adata, ground_truth_key="truth", **KW)
    assert calls["n"] == 2
    _assert_unchanged(adata, before)


@pytest.mark.parametrize(
    ("edit", "kwargs", "error", "match"),
    [
        ("no_morphology", {}, ValueError, r"morphology_key="),
        ("unprepared", {}, KeyError, r"aestetik\.pp\.prepare"),
        ("drop_morphology", {}, KeyError, r"X_morphology"),
        (None, {"ground_truth_key": "nope"}, KeyError, "nope"),
        (None, {"fit_kwargs": {"key_added": "x"}}, ValueError, "key_added"),
        (None, {"fit_kwargs": {"checkpoint_path": "ckpt"}}, ValueError, "same checkpoint"),
        (None, {"fit_kwargs": {"max_epoch": 2}}, TypeError, "max_epoch"),
        (None, {"fit_kwargs": {"morphology_weight": 5.0}}, ValueError, "morphology_weight"),
        (None, {"cluster_kwargs": {"use_rep": "X"}}, ValueError, "use_rep"),
        (None, {"n_clusters": 0.5}, ValueError, "resolution"),
        (None, {"n_clusters": 1}, ValueError, "n_clusters"),
    ],
)
def test_ablation_rejections_leave_adata_unchanged(monkeypatch, edit, kwargs, error, match):
    adata = _prepared(with_morphology=edit != "no_morphology")
    if edit == "unprepared":
        del adata.uns["aestetik"]
    elif edit == "drop_morphology":
        del adata.obsm["X_morphology"]
    before = _snapshot(adata)

    def no_fit(*args, **kwargs):
        msg = "validation must fail before any training"
        raise AssertionError(msg)

    monkeypatch.setattr(_ablation, "fit_prepared", no_fit)
    with pytest.raises(error, match=match):
        ae.tl.ablation(adata, **{**KW, **kwargs})
    _assert_unchanged(adata, before)


# --- plot -------------------------------------------------------------------------------------------


def test_plot_ablation(ablated, tmp_path):
    adata, _ = ablated
    rep = adata.uns["aestetik_ablation"]
    obs_before = adata.obs.copy()
    axs = ae.pl.ablation(adata, save=tmp_path / "ablation.png")
    assert len(axs) == 4
    assert all(isinstance(ax, Axes) for ax in axs)
    for ax, s in zip(axs[:3], SETTINGS, strict=True):
        assert ax.get_title() == f"{s}\nARI = {rep['ari'][s]:.3f}"
    heights = [p.get_height() for p in axs[3].patches]
    np.testing.assert_allclose(heights, [rep["ari"][s] for s in SETTINGS])
    assert "ARI" in axs[3].get_ylabel()
    assert (tmp_path / "ablation.png").stat().st_size > 0
    assert adata.obs.equals(obs_before)
    assert not any(k.startswith("aestetik_ablation_") and k.endswith("_colors") for k in adata.uns)


def test_plot_ablation_without_truth_shows_silhouette(ablated):
    adata = ablated[0].copy()
    rep = dict(adata.uns["aestetik_ablation"])
    del rep["ari"]
    adata.uns["aestetik_ablation"] = rep
    adata.obsm["coords"] = adata.obsm.pop("spatial")
    axs = ae.pl.ablation(adata, spatial_key="coords", palette=["red", "green", "blue", "black"])
    heights = [p.get_height() for p in axs[3].patches]
    np.testing.assert_allclose(heights, [rep["silhouette"][s] for s in SETTINGS], rtol=1e-6)
    assert axs[3].get_ylabel().startswith("silhouette")
    assert axs[0].get_title().startswith("transcriptomics\nsilhouette = ")


def test_aligned_colors_follow_overlap():
    from aestetik.pl._ablation import _aligned_palettes

    ref = pd.Categorical(["0", "0", "1", "1", "2", "2", "2"])
    other = pd.Categorical(["1", "1", "0", "0", "2", "2", "3"])
    obs = pd.DataFrame({"ref": ref, "other": other})
    pal = _aligned_palettes(obs, ["other", "ref"], "ref")
    assert pal["other"][1] == pal["ref"][0]
    assert pal["other"][0] == pal["ref"][1]
    assert pal["other"][2] == pal["ref"][2]
    assert pal["other"][3] not in pal["ref"]


def test_plot_ablation_needs_a_report(ablated):
    adata = ablated[0].copy()
    del adata.uns["aestetik_ablation"]
    with pytest.raises(KeyError, match=r"aestetik\.tl\.ablation"):
        ae.pl.ablation(adata)

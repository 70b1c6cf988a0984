from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _data import make_small

import aestetik as ae
from aestetik._space._grid import window_index


def _snapshot(adata):
    return (
        list(adata.obs.columns),
        sorted(adata.obsm.keys()),
        sorted(adata.uns.keys()),
        {k: np.asarray(v).copy() for k, v in adata.obsm.items()},
        adata.X.copy(),
    )


def _assert_unchanged(adata, snap):
    obs, obsm, uns, arrays, x = snap
    assert list(adata.obs.columns) == obs
    assert sorted(adata.obsm.keys()) == obsm
    assert sorted(adata.uns.keys()) == uns
    for k, v in arrays.items():
        np.testing.assert_array_equal(np.asarray(adata.obsm[k]), v)
    np.testing.assert_array_equal(adata.X, x)


def test_prepare_writes_keys(small):
    ae.pp.prepare(small, morphology_key="X_morphology", n_clusters=3, window_size=5)
    n = small.n_obs
    x = small.obsm["aestetik_input"]
    assert x.dtype == np.float32
    assert x.shape == (n, 6 + 4)
    np.testing.assert_allclose(x.min(0), 0, atol=1e-6)
    np.testing.assert_allclose(x.max(0), 1, atol=1e-6)
    lat = small.obsm["aestetik_lattice"]
    assert lat.dtype == np.int32
    np.testing.assert_array_equal(lat, small.obs[["array_row", "array_col"]].to_numpy())
    grid = small.obsm["aestetik_grid"]
    assert grid.dtype == np.int32
    assert grid.shape == (n, 25)
    np.testing.assert_array_equal(grid, window_index(lat, np.zeros(n, np.int32), 5))
    for col in ("aestetik_transcriptomics_cluster", "aestetik_morphology_cluster"):
        assert isinstance(small.obs[col].dtype, pd.CategoricalDtype)
        assert list(small.obs[col].cat.categories) == ["0", "1", "2"]
    rec = small.uns["aestetik"]["prepare"]
    assert rec["params"]["window_size"] == 5
    assert rec["params"]["morphology_key"] == "X_morphology"
    assert rec["params"]["aestetik_version"] == ae.__version__
    assert rec["n_transcriptomics"] == 6
    assert rec["n_morphology"] == 4
    assert rec["lattice_type"] == "hex"
    assert rec["n_clusters_transcriptomics"] == 3


def test_prepare_computes_pca_without_touching_x():
    adata = make_small(morphology=False)  # and no image: the default morphology_key='auto' finds nothing
    del adata.obsm["X_pca"]
    x = adata.X.copy()
    ae.pp.prepare(adata, n_clusters=3)
    np.testing.assert_array_equal(adata.X, x)
    assert adata.obsm["X_pca"].shape == (adata.n_obs, 15)
    assert adata.uns["aestetik"]["prepare"]["transcriptomics_pca_computed"]
    assert "aestetik_morphology_cluster" not in adata.obs
    assert adata.uns["aestetik"]["prepare"]["n_morphology"] == 0


def test_prepare_copy(small):
    snap = _snapshot(small)
    out = ae.pp.prepare(small, n_clusters=3, copy=True)
    _assert_unchanged(small, snap)
    assert "aestetik_grid" in out.obsm
    assert ae.pp.prepare(small, n_clusters=3) is None
    assert "aestetik_grid" in small.obsm


def test_prepare_several_samples():
    a, b = make_small(seed=1), make_small(seed=2)
    a.obs["sample"], b.obs["sample"] = "a", "b"
    import anndata as ad

    adata = ad.concat([a, b], index_unique="-")
    ae.pp.prepare(adata, n_clusters=3, batch_key="sample")
    grid = adata.obsm["aestetik_grid"]
    sample = adata.obs["sample"].to_numpy()
    present = grid >= 0
    assert np.all(sample[np.where(present, grid, 0)][present] == np.repeat(sample, present.sum(1)))
    with pytest.raises(ValueError, match="share a lattice position"):
        ae.pp.prepare(ad.concat([a, b], index_unique="-"), n_clusters=3)


@pytest.mark.parametrize(
    ("kwargs", "edit", "error", "match"),
    [
        ({"transcriptomics_key": "X_pca", "morphology_key": "X_missing"}, None, KeyError, "X_missing"),
        ({}, lambda a: a.obsm["X_pca"].__setitem__((0, 0), np.nan), ValueError, "NaN"),
        ({"n_clusters": 10_000}, None, ValueError, "larger than the number of spots"),
        ({"n_clusters": 1}, None, ValueError, "at least 2"),
        ({"window_size": 4}, None, ValueError, "odd"),
        ({"window_size": 1}, None, ValueError, "odd"),
        ({"clustering_method": "dbscan"}, None, ValueError, "dbscan"),
        ({"coords": ("row", "col")}, None, KeyError, "'row'"),
        ({}, lambda a: a.obs.__setitem__("array_row", 0), ValueError, "share a lattice position"),
        ({"n_clusters": 0.5}, None, ValueError, "resolution"),
        ({"n_jobs": 0}, None, ValueError, "n_jobs"),
        ({"n_jobs": 1.5}, None, ValueError, "n_jobs"),
        ({"mixture_components": 2}, None, ValueError, "between n_clusters"),
        ({"mixture_components": 10_000}, None, ValueError, "number of spots"),
        ({"mixture_components": 4, "clustering_method": "kmeans"}, None, ValueError, "mixture_components"),
        ({"mixture_components": 4.0}, None, ValueError, "mixture_components"),
        ({"mixture_starts": 0}, None, ValueError, "mixture_starts"),
        ({"mixture_fallback": "leiden"}, None, ValueError, "mixture_fallback"),
        (
            {"morphology_key": "X_morphology"},
            lambda a: a.obsm["X_morphology"].__setitem__(slice(None), 1.0),
            ValueError,
            "same for every spot",
        ),
    ],
)
def test_prepare_bad_input_leaves_adata_unchanged(kwargs, edit, error, match):
    adata = make_small()
    if edit is not None:
        edit(adata)
    snap = _snapshot(adata)
    with pytest.raises(error, match=match):
        ae.pp.prepare(adata, **{"n_clusters": 3, **kwargs})
    _assert_unchanged(adata, snap)


def test_prepare_rejects_view(small):
    view = small[:100]
    with pytest.raises(ValueError, match="view"):
        ae.pp.prepare(view, n_clusters=3)
    assert "aestetik" not in small.uns
    out = ae.pp.prepare(view, n_clusters=3, copy=True)
    assert out.n_obs == 100
    assert not out.is_view


def test_join_single_spots_matches_the_nearest_spot():
    from aestetik._domains._clustering import ClusterResult
    from aestetik._domains._pseudo_labels import join_single_spots

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    labels = np.arange(40) % 3 + 2  # clusters 2, 3, 4
    labels[7], labels[19] = 0, 5  # two clusters of one spot each, 1 empty
    res = ClusterResult(labels=labels, proba=None, resolution=None, n_clusters=6)
    out = join_single_spots(res, x)
    expected = labels.copy()
    for spot in (7, 19):  # plain reference: the nearest spot outside the single-spot clusters
        d = np.linalg.norm(x - x[spot], axis=1)
        d[[7, 19]] = np.inf
        expected[spot] = labels[np.argmin(d)]
    np.testing.assert_array_equal(out.labels, np.unique(expected, return_inverse=True)[1])
    assert out.n_clusters == 3
    assert join_single_spots(out, x) is out  # nothing to join
    alone = ClusterResult(labels=np.arange(5), proba=None, resolution=None, n_clusters=5)
    with pytest.raises(ValueError, match="Every pseudo-label of `X` is a single spot"):
        join_single_spots(alone, x[:5], name="`X`")


def test_prepare_joins_a_pseudo_label_cluster_of_one_spot(monkeypatch):
    from aestetik._domains import _pseudo_labels
    from aestetik._domains._clustering import ClusterResult

    adata = make_small()
    logged = []
    monkeypatch.setattr(_pseudo_labels.logg, "warning", lambda msg, *a, **k: logged.append(msg))

    def singleton(x, n_clusters, **kwargs):
        labels = np.zeros(x.shape[0], dtype=np.int64)
        labels[1:] = np.arange(x.shape[0] - 1) % 2 + 1
        labels[0] = 0  # cluster 0 holds one spot
        return ClusterResult(labels=labels, n_clusters=3, proba=None, resolution=None)

    monkeypatch.setattr(_pseudo_labels, "cluster_features", singleton)
    ae.pp.prepare(adata, n_clusters=3, morphology_key=None)
    labels = adata.obs["aestetik_transcriptomics_cluster"]
    assert labels.nunique() == 2
    assert labels.value_counts().min() > 1
    assert len(logged) == 1
    assert "1 cluster(s) of a single spot" in logged[0]


def test_prepare_mixture_components_and_starts(monkeypatch):
    from aestetik._domains import _mixture, _pseudo_labels

    calls = []
    real = _pseudo_labels.cluster_features

    def recorded(x, n_clusters, **kwargs):
        calls.append((n_clusters, kwargs["n_components"], kwargs["bgm_inits"]))
        return real(x, n_clusters, **kwargs)

    monkeypatch.setattr(_pseudo_labels, "cluster_features", recorded)
    adata = make_small()
    # the default: one component more than clusters, merged; 40 random starts and one from k-means
    ae.pp.prepare(adata, morphology_key=None, n_clusters=3)
    assert calls == [(3, 4, (("random", 40), ("kmeans", 1)))]
    params = adata.uns["aestetik"]["prepare"]["params"]
    assert (params["mixture_components"], params["mixture_starts"]) == (4, 40)
    calls.clear()
    # the published mixture: as many components as clusters, 10 random starts and one from k-means
    ae.pp.prepare(adata, morphology_key=None, n_clusters=3, mixture_components=3, mixture_starts=10)
    assert calls == [(3, 3, _mixture.BGM_INITS)]
    params = adata.uns["aestetik"]["prepare"]["params"]
    assert (params["mixture_components"], params["mixture_starts"]) == (3, 10)
    calls.clear()
    # both modalities: 4 components merged into 3 pseudo-labels, best of 21 starts
    ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=3, mixture_components=4, mixture_starts=20)
    inits = (("random", 20), ("kmeans", 1))
    assert calls == [(3, 4, inits)] * 2
    rec = adata.uns["aestetik"]["prepare"]
    assert (rec["params"]["mixture_components"], rec["params"]["mixture_starts"]) == (4, 20)
    assert rec["n_clusters_transcriptomics"] == 3
    assert list(adata.obs["aestetik_transcriptomics_cluster"].cat.categories) == ["0", "1", "2"]
    # the labels are those of the merged mixture on the smoothed PCs
    from aestetik._space._smoothing import gaussian_smooth, physical_positions

    positions = physical_positions(adata.obsm["aestetik_lattice"], "hex")
    sigma = adata.uns["aestetik"]["prepare"]["params"]["pseudo_label_smoothing"]  # the default for this section
    x = gaussian_smooth(adata.obsm["X_pca"].astype(np.float32), positions, np.zeros(adata.n_obs, np.int32), sigma=sigma)
    expected = real(x, 3, n_components=4, bgm_inits=inits)
    np.testing.assert_array_equal(adata.obs["aestetik_transcriptomics_cluster"].astype(int), expected.labels)
    # with the agreement of the mixture's two best starts recorded per modality
    agreement = rec["pseudo_label_agreement"]
    assert set(agreement) == {"transcriptomics", "morphology"}
    assert agreement["transcriptomics"] == pytest.approx(expected.agreement)
    calls.clear()
    ae.pp.prepare(adata, morphology_key=None, n_clusters=3, clustering_method="kmeans")
    assert calls[0][:2] == (3, None)
    assert adata.uns["aestetik"]["prepare"]["params"]["mixture_components"] == 0


def test_prepare_takes_kmeans_pseudo_labels_where_the_mixture_is_not_settled(monkeypatch):
    """Where the mixture's two best starts disagree (forced here: the threshold is above 1), the pseudo-labels are
    k-means' on the same averaged PCs, exactly those of ``clustering_method='kmeans'``, and the record says so;
    ``mixture_fallback=None`` keeps the mixture's and warns. Below the threshold nothing changes."""
    from aestetik._domains import _pseudo_labels

    logged = []
    monkeypatch.setattr(_pseudo_labels.logg, "warning", lambda msg, *a, **k: logged.append(msg))
    kw = {"morphology_key": None, "n_clusters": 3, "random_state": 1}
    mixture = make_small()
    ae.pp.prepare(mixture, **kw)  # settled (blobs): the mixture's, as without a fallback
    kept = make_small()
    ae.pp.prepare(kept, **kw, mixture_fallback=None)
    rec = mixture.uns["aestetik"]["prepare"]
    assert rec["pseudo_label_agreement"]["transcriptomics"] >= _pseudo_labels.UNSETTLED_AGREEMENT
    assert rec["pseudo_label_method"] == {"transcriptomics": "bgm"}
    assert rec["params"]["mixture_fallback"] == "kmeans"
    pd.testing.assert_series_equal(
        mixture.obs["aestetik_transcriptomics_cluster"], kept.obs["aestetik_transcriptomics_cluster"]
    )
    kmeans = make_small()
    ae.pp.prepare(kmeans, **{**kw, "clustering_method": "kmeans"})
    assert kmeans.uns["aestetik"]["prepare"]["pseudo_label_method"] == {"transcriptomics": "kmeans"}

    monkeypatch.setattr(_pseudo_labels, "UNSETTLED_AGREEMENT", 1.01)
    logged.clear()
    fallback = make_small()
    ae.pp.prepare(fallback, **kw)
    rec = fallback.uns["aestetik"]["prepare"]
    assert rec["pseudo_label_method"] == {"transcriptomics": "kmeans"}
    # the mixture's agreement is still recorded
    assert rec["pseudo_label_agreement"] == mixture.uns["aestetik"]["prepare"]["pseudo_label_agreement"]
    pd.testing.assert_series_equal(
        fallback.obs["aestetik_transcriptomics_cluster"], kmeans.obs["aestetik_transcriptomics_cluster"]
    )
    assert not any("not settled" in m for m in logged)
    published = make_small()
    ae.pp.prepare(published, **kw, mixture_fallback=None)
    assert published.uns["aestetik"]["prepare"]["pseudo_label_method"] == {"transcriptomics": "bgm"}
    assert published.uns["aestetik"]["prepare"]["params"]["mixture_fallback"] == ""
    pd.testing.assert_series_equal(
        published.obs["aestetik_transcriptomics_cluster"], mixture.obs["aestetik_transcriptomics_cluster"]
    )
    assert sum("not settled" in m for m in logged) == 1

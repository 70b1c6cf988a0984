from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

import aestetik as ae

LAYERS = ["Layer_1", "Layer_2", "Layer_3", "Layer_4", "Layer_5", "Layer_6", "WM"]


# --- DLPFC ------------------------------------------------------------------------------------------


def test_dlpfc_contents():
    adata = ae.datasets.dlpfc_151676()
    assert adata.shape == (3460, 7319)
    assert sparse.issparse(adata.X)
    assert adata.X.dtype == np.float32
    assert {"array_row", "array_col", "ground_truth"} <= set(adata.obs.columns)
    truth = adata.obs["ground_truth"]
    assert isinstance(truth.dtype, pd.CategoricalDtype)
    assert sorted(set(truth.cat.categories) - {"NA"}) == LAYERS
    assert list(adata.uns["layer_order"]) == LAYERS
    assert 0 < (truth == "NA").sum() < 100
    assert adata.obsm["spatial"].shape == (3460, 2)
    library = adata.uns["spatial"]["151676"]
    assert library["images"]["lowres"].shape[2] == 3
    assert {"tissue_lowres_scalef", "spot_diameter_fullres"} <= set(library["scalefactors"])
    # Visium lattice: column parity follows row parity.
    assert np.all(adata.obs["array_row"] % 2 == adata.obs["array_col"] % 2)


def test_her2st_contents():
    adata = ae.datasets.her2st_a1()
    assert adata.shape == (346, 15045)
    assert sparse.issparse(adata.X)
    assert np.all(adata.X.data == np.round(adata.X.data))  # raw counts
    assert "array_row" not in adata.obs  # the lattice comes from obsm['spatial'] (`coords=None`)
    regions = adata.obs["ground_truth"].astype(str).value_counts()
    assert set(regions.index) - {"NA"} == {
        "invasive cancer",
        "cancer in situ",
        "connective tissue",
        "adipose tissue",
        "immune infiltrate",
    }
    library = adata.uns["spatial"]["her2st_A1"]
    image, factors = library["images"]["hires"], library["scalefactors"]
    assert image.shape[2] == 3
    assert image.dtype == np.uint8
    pixels = factors["spot_diameter_fullres"] * factors["tissue_hires_scalef"]
    assert 25 < pixels < 40  # about 31 px per spot: enough for morphology_key='auto' to look at the image
    xy = adata.obsm["spatial"] * factors["tissue_hires_scalef"]
    assert (xy >= 0).all()
    assert (xy[:, 0] < image.shape[1]).all()
    assert (xy[:, 1] < image.shape[0]).all()


def test_dlpfc_fresh_object():
    a = ae.datasets.dlpfc_151676()
    a.obs["changed"] = 1
    a.uns["spatial"]["151676"]["images"]["lowres"][:] = 0
    b = ae.datasets.dlpfc_151676()
    assert a is not b
    assert "changed" not in b.obs.columns
    assert b.uns["spatial"]["151676"]["images"]["lowres"].max() > 0


# --- synthetic --------------------------------------------------------------------------------------


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / x.std(0)


def _window_mean(adata: ad.AnnData, features: np.ndarray, half: int = 3) -> np.ndarray:
    """Mean over the spots of the (2 half + 1)^2 lattice window, as AESTETIK's grid sees them."""
    lattice = adata.obs[["array_row", "array_col"]].to_numpy()
    neighbours = cKDTree(lattice).query_ball_point(lattice, r=half, p=np.inf)
    return np.stack([features[idx].mean(0) for idx in neighbours])


def _kmeans_ari(features: np.ndarray, truth: pd.Series, k: int) -> float:
    labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(features)
    return adjusted_rand_score(truth, labels)


def test_synthetic_contents():
    adata = ae.datasets.synthetic()
    assert abs(adata.n_obs - 2000) < 100
    assert adata.n_vars == 50
    assert isinstance(adata.X, np.ndarray)
    assert adata.X.dtype == np.float32
    assert adata.X.min() >= 0
    assert np.array_equal(np.round(adata.X), adata.X)
    assert adata.obsm["X_morphology"].shape == (adata.n_obs, 15)
    assert adata.obsm["X_morphology"].dtype == np.float32
    assert adata.obsm["spatial"].shape == (adata.n_obs, 2)
    for key in ("array_row", "array_col"):
        assert pd.api.types.is_integer_dtype(adata.obs[key])
    for key, categories in {
        "ground_truth": ["0", "1", "2", "3"],
        "transcriptomics_group": ["0", "1"],
        "morphology_group": ["0", "1"],
        "sample": ["sample_0"],
    }.items():
        assert isinstance(adata.obs[key].dtype, pd.CategoricalDtype)
        assert list(adata.obs[key].cat.categories) == categories
    domain = adata.obs["ground_truth"].astype(int)
    assert np.array_equal(adata.obs["transcriptomics_group"].astype(int), domain // 2)
    assert np.array_equal(adata.obs["morphology_group"].astype(int), domain % 2)
    assert not adata.obs_names.has_duplicates
    assert adata.uns["synthetic"]["noise"] == 0.4


def test_synthetic_hex_lattice():
    adata = ae.datasets.synthetic(n_spots=600)
    row, col = adata.obs["array_row"].to_numpy(), adata.obs["array_col"].to_numpy()
    assert np.all(row % 2 == col % 2)
    for r in np.unique(row):
        assert np.all(np.diff(np.sort(col[row == r])) == 2)
    # Every spot's nearest neighbours are one pitch away, six of them inside the tissue.
    xy = adata.obsm["spatial"]
    dist, _ = cKDTree(xy).query(xy, k=7)
    np.testing.assert_allclose(dist[:, 1], 100, rtol=1e-6)
    interior = (row > row.min()) & (row < row.max()) & (col > col.min() + 1) & (col < col.max() - 1)
    np.testing.assert_allclose(dist[interior, 1:], 100, rtol=1e-6)


def test_synthetic_square_lattice():
    adata = ae.datasets.synthetic(n_spots=400, lattice="square")
    assert adata.n_obs == 400
    row, col = adata.obs["array_row"].to_numpy(), adata.obs["array_col"].to_numpy()
    assert {(r, c) for r, c in zip(row, col, strict=True)} == {(r, c) for r in range(20) for c in range(20)}
    dist, _ = cKDTree(adata.obsm["spatial"]).query(adata.obsm["spatial"], k=2)
    np.testing.assert_allclose(dist[:, 1], 100)


def test_synthetic_holes():
    full = ae.datasets.synthetic(n_spots=1000)
    holed = ae.datasets.synthetic(n_spots=1000, holes=0.3)
    assert holed.n_obs == full.n_obs - round(0.3 * full.n_obs)
    positions = set(zip(full.obs["array_row"], full.obs["array_col"], strict=True))
    assert set(zip(holed.obs["array_row"], holed.obs["array_col"], strict=True)) < positions


@pytest.mark.parametrize("lattice", ["hex", "square"])
@pytest.mark.parametrize("n_domains", [4, 5, 7])
def test_synthetic_domains_contiguous_and_balanced(lattice, n_domains):
    for seed in range(3):
        adata = ae.datasets.synthetic(n_spots=1200, n_domains=n_domains, lattice=lattice, random_state=seed)
        domain = adata.obs["ground_truth"].cat.codes.to_numpy()
        assert np.bincount(domain, minlength=n_domains).min() > 0.5 * adata.n_obs / n_domains
        pairs = cKDTree(adata.obsm["spatial"]).query_pairs(101, output_type="ndarray")
        same = domain[pairs[:, 0]] == domain[pairs[:, 1]]
        graph = coo_matrix((np.ones(same.sum()), (pairs[same, 0], pairs[same, 1])), shape=(adata.n_obs,) * 2)
        n_components, _ = connected_components(graph, directed=False)
        assert n_components == n_domains


def test_synthetic_deterministic():
    a = ae.datasets.synthetic(n_spots=500, holes=0.1, random_state=3)
    b = ae.datasets.synthetic(n_spots=500, holes=0.1, random_state=3)
    c = ae.datasets.synthetic(n_spots=500, holes=0.1, random_state=4)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.obsm["X_morphology"], b.obsm["X_morphology"])
    np.testing.assert_array_equal(a.obsm["spatial"], b.obsm["spatial"])
    pd.testing.assert_frame_equal(a.obs, b.obs)
    assert not np.array_equal(a.X, c.X)
    assert not a.obs["ground_truth"].equals(c.obs["ground_truth"]) or a.n_obs != c.n_obs


@pytest.mark.parametrize("n_domains", [4, 5])
def test_synthetic_needs_both_modalities_and_neighbourhood(n_domains):
    adata = ae.datasets.synthetic(n_spots=2000, n_domains=n_domains, random_state=1)
    truth = adata.obs["ground_truth"]
    t = _zscore(np.log1p(adata.X))
    m = _zscore(adata.obsm["X_morphology"])
    both = np.hstack([t, m])
    t_window, m_window, both_window = (_window_mean(adata, x) for x in (t, m, both))
    # Within its groups a modality is blind: even with the neighbourhood it cannot split the domains.
    assert _kmeans_ari(t_window, truth, n_domains) < 0.7
    assert _kmeans_ari(m_window, truth, n_domains) < 0.7
    # ... but it does see its merged groups once the neighbourhood is averaged.
    assert _kmeans_ari(t_window, adata.obs["transcriptomics_group"], (n_domains + 1) // 2) > 0.8
    assert _kmeans_ari(m_window, adata.obs["morphology_group"], 2) > 0.8
    # Single spots are ambiguous even with both modalities; their neighbourhoods are not.
    assert _kmeans_ari(both, truth, n_domains) < 0.6
    assert _kmeans_ari(both_window, truth, n_domains) > 0.8


def test_synthetic_groups_share_distribution():
    adata = ae.datasets.synthetic(n_spots=3000, noise=0.2, random_state=2)
    t = np.log1p(adata.X)
    m = adata.obsm["X_morphology"]
    domain = adata.obs["ground_truth"].astype(int).to_numpy()
    mean_t = np.stack([t[domain == d].mean(0) for d in range(4)])
    mean_m = np.stack([m[domain == d].mean(0) for d in range(4)])

    def dist(means, a, b):
        return np.linalg.norm(means[a] - means[b])

    # transcriptomics: {0, 1} and {2, 3} alike; morphology: {0, 2} and {1, 3} alike.
    assert dist(mean_t, 0, 1) < 0.2 * dist(mean_t, 0, 2)
    assert dist(mean_t, 2, 3) < 0.2 * dist(mean_t, 1, 3)
    assert dist(mean_m, 0, 2) < 0.2 * dist(mean_m, 0, 1)
    assert dist(mean_m, 1, 3) < 0.2 * dist(mean_m, 2, 3)


def test_synthetic_samples():
    adata = ae.datasets.synthetic(n_spots=1500, n_samples=3, random_state=0)
    assert list(adata.obs["sample"].cat.categories) == ["sample_0", "sample_1", "sample_2"]
    sizes = adata.obs["sample"].value_counts()
    assert np.all(sizes == sizes.iloc[0])
    assert abs(adata.n_obs - 1500) < 100
    by_sample = {s: adata[adata.obs["sample"] == s] for s in adata.obs["sample"].cat.categories}
    ranges = {
        s: (a.obs["array_row"].min(), a.obs["array_row"].max(), a.obs["array_col"].max()) for s, a in by_sample.items()
    }
    assert len(set(ranges.values())) == 1
    # Same positions, different layouts.
    first, second = by_sample["sample_0"], by_sample["sample_1"]
    np.testing.assert_array_equal(first.obsm["spatial"], second.obsm["spatial"])
    assert adjusted_rand_score(first.obs["ground_truth"], second.obs["ground_truth"]) < 0.9


def test_synthetic_uns_round_trip(tmp_path):
    adata = ae.datasets.synthetic(n_spots=300, n_domains=5, lattice="square", holes=0.1, n_samples=2)
    expected = {
        "n_spots": 300,
        "n_domains": 5,
        "lattice": "square",
        "n_genes": 50,
        "n_morphology_features": 15,
        "noise": 0.4,
        "holes": 0.1,
        "n_samples": 2,
        "random_state": 0,
    }
    assert adata.uns["synthetic"] == expected
    assert list(adata.obs["transcriptomics_group"].cat.categories) == ["0", "1", "2"]
    adata.write_h5ad(tmp_path / "synthetic.h5ad")
    back = ad.read_h5ad(tmp_path / "synthetic.h5ad")
    assert {k: (v.item() if hasattr(v, "item") else v) for k, v in back.uns["synthetic"].items()} == expected
    np.testing.assert_array_equal(back.obsm["X_morphology"], adata.obsm["X_morphology"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_domains": 3}, ValueError, "n_domains"),
        ({"n_domains": 4.0}, TypeError, "n_domains"),
        ({"lattice": "triangle"}, ValueError, "lattice"),
        ({"holes": 1.0}, ValueError, "holes"),
        ({"holes": -0.1}, ValueError, "holes"),
        ({"noise": -1.0}, ValueError, "noise"),
        ({"noise": float("nan")}, ValueError, "noise"),
        ({"n_spots": 30}, ValueError, "n_spots"),
        ({"n_spots": True}, TypeError, "n_spots"),
        ({"n_samples": 0}, ValueError, "n_samples"),
        ({"n_spots": 100, "n_samples": 3}, ValueError, "per sample"),
        ({"n_genes": 0}, ValueError, "n_genes"),
        ({"n_morphology_features": 0}, ValueError, "n_morphology_features"),
        ({"random_state": -1}, ValueError, "random_state"),
    ],
)
def test_synthetic_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        ae.datasets.synthetic(**kwargs)

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import aestetik as ae
from aestetik._space._smoothing import HEX_ROW, gaussian_smooth, physical_positions
from aestetik.pp._prepare import DEFAULT_SMOOTHING


def _plain(x, positions, samples, sigma, truncate=3.0):
    """Dense reference: Gaussian weights to every spot of the same sample within the radius."""
    d = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    w = np.exp(-0.5 * (d / sigma) ** 2) * (d <= truncate * sigma) * (samples[:, None] == samples[None, :])
    return (w @ x) / w.sum(1, keepdims=True)


@pytest.mark.parametrize("sigma", [0.7, 1.5, 2.0])
def test_smoothing_equals_dense_reference(sigma):
    rng = np.random.default_rng(0)
    lattice = np.stack(np.meshgrid(np.arange(12), np.arange(0, 24, 2), indexing="ij"), -1).reshape(-1, 2)
    lattice[:, 1] += lattice[:, 0] % 2  # hexagonal: row + col even
    keep = rng.random(len(lattice)) > 0.2  # holes
    lattice = lattice[keep]
    samples = (np.arange(len(lattice)) % 3 == 0).astype(int)  # two interleaved samples: must not mix
    x = rng.normal(size=(len(lattice), 4)).astype(np.float32)
    pos = physical_positions(lattice, "hex")
    got = gaussian_smooth(x, pos, samples, sigma=sigma, chunk_size=7)  # several chunks
    np.testing.assert_allclose(got, _plain(x, pos, samples, sigma), rtol=1e-5, atol=1e-6)


def test_physical_positions_and_zero_sigma():
    lattice = np.array([[0, 0], [0, 2], [1, 1]])
    pos = physical_positions(lattice, "hex")
    # hexagonal neighbours are all one spot apart
    assert np.allclose(np.linalg.norm(pos[1] - pos[0]), 1.0)
    assert np.allclose(np.linalg.norm(pos[2] - pos[0]), 1.0)
    assert pos[2, 0] == pytest.approx(HEX_ROW)
    np.testing.assert_array_equal(physical_positions(lattice, "square"), lattice)
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(gaussian_smooth(x, pos, np.zeros(3), sigma=0), x)


def test_smoothed_pseudo_labels_recover_groups_the_spots_alone_miss():
    """On the synthetic section the mixture collapses on single spots; the neighbourhood average separates."""
    adata = ae.datasets.synthetic(n_spots=1500, n_domains=4, random_state=0)
    truth = adata.obs["transcriptomics_group"].to_numpy()
    aris = {}
    for sigma in (0.0, DEFAULT_SMOOTHING):
        out = ae.pp.prepare(adata, n_clusters=4, morphology_key=None, pseudo_label_smoothing=sigma, copy=True)
        labels = out.obs["aestetik_transcriptomics_cluster"].to_numpy()
        aris[sigma] = adjusted_rand_score(truth, labels)
        assert out.uns["aestetik"]["prepare"]["params"]["pseudo_label_smoothing"] == sigma
    assert aris[DEFAULT_SMOOTHING] > 0.5
    assert aris[DEFAULT_SMOOTHING] > aris[0.0] + 0.3


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "2", True])
def test_bad_smoothing_is_refused(small, bad):
    before = set(small.obsm)
    with pytest.raises(ValueError, match="pseudo_label_smoothing"):
        ae.pp.prepare(small, pseudo_label_smoothing=bad)
    assert set(small.obsm) == before


def _spatial_section(rng, n_genes=40):
    """A hexagonal section with holes, two interleaved samples and sparse non-negative expression."""
    from scipy import sparse

    lattice = np.stack(np.meshgrid(np.arange(20), np.arange(0, 40, 2), indexing="ij"), -1).reshape(-1, 2)
    lattice[:, 1] += lattice[:, 0] % 2
    lattice = lattice[rng.random(len(lattice)) > 0.2]
    samples = (np.arange(len(lattice)) % 4 == 0).astype(int)
    r, c = lattice[:, 0:1] / 3.0, lattice[:, 1:2] / 5.0
    patterns = np.hstack([8 * np.sin(r), 5 * np.cos(c), 3 * np.sin(r + c), 2 * np.cos(r - c)])  # distinct sizes
    x = patterns @ np.linalg.qr(rng.normal(size=(n_genes, 4)))[0].T + rng.normal(
        scale=0.3, size=(len(lattice), n_genes)
    )
    x = np.maximum(x, 0)  # non-negative and sparse, as expression
    return sparse.csr_matrix(x.astype(np.float32)), physical_positions(lattice, "hex"), samples


@pytest.mark.parametrize("sigma", [0.0, 1.0, 2.0])
def test_smoothed_principal_axes_equal_dense_svd(sigma):
    """The randomised SVD without W x formed equals the SVD of the dense smoothed, centred matrix."""
    from aestetik._space._smoothing import smoothed_principal_axes

    rng = np.random.default_rng(1)
    x, pos, samples = _spatial_section(rng)
    dense = x.toarray().astype(np.float64)
    s = dense if sigma == 0 else _plain(dense, pos, samples, sigma)
    _, values, vt = np.linalg.svd(s - s.mean(0), full_matrices=False)
    n_comps = 3
    got = smoothed_principal_axes(x, pos, samples, sigma=sigma, n_comps=n_comps, random_state=3, chunk_size=50)
    assert got.shape == (40, n_comps)
    want = vt[:n_comps].T
    want = want * np.sign(want[np.abs(want).argmax(0), np.arange(n_comps)])  # svd_flip: largest loading > 0
    assert np.all(values[: n_comps + 1][:-1] / values[1 : n_comps + 1] > 1.01)  # distinct axes to compare
    np.testing.assert_allclose(got, want, atol=1e-6)
    # dense input gives the same axes; the result does not depend on the chunking
    np.testing.assert_allclose(
        smoothed_principal_axes(dense, pos, samples, sigma=sigma, n_comps=n_comps, random_state=3), got, atol=1e-6
    )


def test_smoothed_principal_axes_without_kernel_cache(monkeypatch):
    """Above the cache limit the kernel is queried again in every pass: the same axes."""
    from aestetik._space import _smoothing

    rng = np.random.default_rng(2)
    x, pos, samples = _spatial_section(rng)
    cached = _smoothing.smoothed_principal_axes(x, pos, samples, sigma=1.0, n_comps=4)
    monkeypatch.setattr(_smoothing, "KERNEL_CACHE_MAX_SPOTS", 10)
    np.testing.assert_array_equal(_smoothing.smoothed_principal_axes(x, pos, samples, sigma=1.0, n_comps=4), cached)


def test_spatial_pca_follows_the_neighbourhoods_and_is_recorded():
    """prepare's spatial PCA: the spots projected on axes of the neighbourhood average; False gives scanpy's PCA."""
    import scanpy as sc

    adata = ae.datasets.synthetic(n_spots=1500, n_domains=4, noise=0.8, random_state=0)
    truth = adata.obs["transcriptomics_group"].to_numpy()
    spatial = ae.pp.prepare(adata, n_clusters=4, morphology_key=None, copy=True)
    plain = ae.pp.prepare(adata, n_clusters=4, morphology_key=None, spatial_pca=False, copy=True)
    params = spatial.uns["aestetik"]["prepare"]["params"]
    assert params["spatial_pca"] is True
    assert params["n_top_genes"] == 5000
    assert plain.uns["aestetik"]["prepare"]["params"]["spatial_pca"] is False
    # False is scanpy's PCA of the log-normalised counts (50 genes < n_top_genes: all of them)
    ref = adata.copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    sc.pp.pca(ref, n_comps=15, random_state=0)
    np.testing.assert_allclose(np.abs(plain.obsm["X_pca"]), np.abs(ref.obsm["X_pca"]), rtol=1e-4, atol=1e-4)
    # True: the recorded transform reproduces the stored PCs from the spots' own expression
    transform = spatial.uns["aestetik"]["prepare"]["transforms"]["transcriptomics"]
    x = np.log1p(_normalised(adata))[:, transform["hvg"]]
    np.testing.assert_allclose(
        (x - transform["mean"]) @ transform["components"], spatial.obsm["X_pca"], rtol=1e-4, atol=1e-3
    )
    # the leading axes separate the domains of the neighbourhoods better than the spots' own axes
    from sklearn.metrics import silhouette_score

    assert silhouette_score(spatial.obsm["X_pca"][:, :3], truth) > silhouette_score(plain.obsm["X_pca"][:, :3], truth)


def test_single_cells_take_the_neighbourhood_axes_among_their_own_pcs():
    """Cells: counts to their median depth, log1p, the cells' own PCs, then the axes of their neighbourhood average."""
    import anndata as ad

    from aestetik.pp._transcriptomics import CELL_PCS, transcriptomics_pca

    rng = np.random.default_rng(0)
    n, g, sigma = 400, 60, 2.0
    pos = rng.uniform(0, 20, size=(n, 2))
    samples = np.zeros(n, dtype=int)
    quadrant = (pos[:, 0] > 10).astype(int) + 2 * (pos[:, 1] > 10)  # four domains
    rates = rng.gamma(1.0, 1.0, size=(4, g)) * np.sqrt([1, 2, 4, 8])[:, None]
    counts = rng.poisson(rates[quadrant] * rng.uniform(1, 4, size=(n, 1))).astype(np.float64)
    counts[counts.sum(1) == 0, 0] = 1

    def pcs(cells: bool):
        data = ad.AnnData(counts.astype(np.float32))
        return transcriptomics_pca(
            data, n_comps=3, n_top_genes=5000, random_state=0, smoothing=(pos, samples, sigma), cells=cells
        )

    got, transform = pcs(cells=True)
    depth = np.median(counts.sum(1))
    assert transform["target_sum"] == pytest.approx(depth)
    # by hand: dense SVDs of the normalised cells, then of their neighbourhood average within their first 50 PCs
    x = np.log1p(counts / counts.sum(1, keepdims=True) * depth)
    centred = x - x.mean(0)
    own = centred @ np.linalg.svd(centred, full_matrices=False)[2][:CELL_PCS].T
    averaged = _plain(own, pos, samples, sigma)
    _, values, axes = np.linalg.svd(averaged - averaged.mean(0), full_matrices=False)
    assert np.all(values[:3] / values[1:4] > 1.01)  # distinct axes to compare
    np.testing.assert_allclose(np.abs(got), np.abs(own @ axes[:3].T), atol=1e-3)
    # the transform takes every cell's own expression to its values, as for new sections
    np.testing.assert_allclose((x - transform["mean"]) @ transform["components"], got, atol=1e-3)
    # without cells: counts to 10^4 and the axes among the genes themselves
    spots, spot_transform = pcs(cells=False)
    assert spot_transform["target_sum"] == 1e4
    assert not np.allclose(np.abs(spots), np.abs(got), atol=1e-2)


def test_single_cells_default_to_their_neighbourhood_axes():
    import scanpy as sc

    adata = ae.datasets.starmap_bz5()
    cells = ae.pp.prepare(adata, n_clusters=4, coords="cells", copy=True)
    record = cells.uns["aestetik"]["prepare"]
    assert record["params"]["spatial_pca"] is True
    depth = np.median(np.asarray(adata.X.sum(1)).ravel())
    assert record["transforms"]["transcriptomics"]["target_sum"] == pytest.approx(depth)
    truth = adata.obs["ground_truth"].astype(str).to_numpy()
    assert adjusted_rand_score(truth, cells.obs["aestetik_transcriptomics_cluster"]) > 0.8
    # the same cells projected with that model (its depth and composed loadings) get the same PCs and input
    again = ae.pp.prepare(adata, coords="cells", reference=cells, copy=True)
    np.testing.assert_allclose(again.obsm["X_pca"], cells.obsm["X_pca"], atol=1e-4)
    np.testing.assert_allclose(again.obsm["aestetik_input"], cells.obsm["aestetik_input"], atol=1e-4)
    # False: scanpy's PCA of the cells at their median depth
    plain = ae.pp.prepare(adata, n_clusters=4, coords="cells", spatial_pca=False, copy=True)
    assert plain.uns["aestetik"]["prepare"]["params"]["spatial_pca"] is False
    ref = adata.copy()
    sc.pp.normalize_total(ref)
    sc.pp.log1p(ref)
    sc.pp.pca(ref, n_comps=15, random_state=0)
    np.testing.assert_allclose(np.abs(plain.obsm["X_pca"]), np.abs(ref.obsm["X_pca"]), rtol=1e-3, atol=1e-3)


def _normalised(adata):
    x = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float64)
    return x / x.sum(1, keepdims=True) * 1e4


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"spatial_pca": "yes"}, "spatial_pca"), ({"n_top_genes": 0}, "n_top_genes")]
)
def test_bad_pca_options_are_refused(small, kwargs, match):
    before = set(small.obsm)
    with pytest.raises((TypeError, ValueError), match=match):
        ae.pp.prepare(small, **kwargs)
    assert set(small.obsm) == before

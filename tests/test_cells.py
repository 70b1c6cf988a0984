"""Single cells (``pp.prepare(coords='cells')``): every cell its own site, nearest free site; per-cell results."""

from __future__ import annotations

import numpy as np
import pytest
from _data import FAST_FIT, make_small

import aestetik as ae
from aestetik._space._cells import _MARGIN, assign_sites, cell_lattice, cell_spacing


def _reference_sites(pos: np.ndarray) -> np.ndarray:
    """Plain assignment: cells by distance to their own site's centre, each to the nearest free site (brute force)."""
    own = np.round(pos).astype(int)
    order = np.argsort(((pos - own) ** 2).sum(1), kind="stable")
    lo, hi = own.min(0) - _MARGIN, own.max(0) + _MARGIN
    rows, cols = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    sites = np.c_[rows.ravel(), cols.ravel()]  # row-major: ties go to the smaller row, then column
    free = np.ones(len(sites), bool)
    out = np.empty_like(own)
    for i in order:
        d = ((sites - pos[i]) ** 2).sum(1)
        d[~free] = np.inf
        j = int(np.argmin(d))
        free[j] = False
        out[i] = sites[j]
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("density", [0.5, 1.0, 3.0])
def test_assign_sites_matches_the_plain_reference(seed, density):
    rng = np.random.default_rng(seed)
    n = 150
    side = np.sqrt(n / density)
    pos = rng.uniform(0, side, size=(n, 2))
    pos[:10] = pos[10]  # cells at one position too
    sites = assign_sites(pos)
    np.testing.assert_array_equal(sites, _reference_sites(pos))
    assert len(np.unique(sites, axis=0)) == n  # every cell its own site
    np.testing.assert_array_equal(assign_sites(pos), sites)  # deterministic


def test_the_cell_nearest_a_site_keeps_it_the_other_takes_the_nearest_free_one():
    pos = np.array([[0.2, 0.1], [3.3, 5.6], [3.1, 5.9], [10.0, 2.0]])
    sites = assign_sites(pos)
    np.testing.assert_array_equal(sites[[0, 3]], [[0, 0], [10, 2]])  # alone: their own sites
    np.testing.assert_array_equal(sites[2], [3, 6])  # nearer the centre of site (3, 6) than cell 1: keeps it
    np.testing.assert_array_equal(sites[1], [3, 5])  # the nearest free site (0.45 away; (4, 6) is 0.65)


def test_spacing_is_two_sites_per_cell_in_any_unit():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, size=(4000, 2))  # density 0.4 cells per unit area
    spacing = cell_spacing(xy)
    assert spacing == pytest.approx(np.sqrt(0.5 / 0.4), rel=0.1)
    assert cell_spacing(xy * 7.0) == pytest.approx(7.0 * spacing)


def test_cell_lattice_per_sample():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, size=(600, 2))
    samples = np.repeat([0, 1], 300).astype(np.int32)
    cells = cell_lattice(xy, samples)
    assert cells.lattice.dtype == np.int32
    for s in (0, 1):
        lat = cells.lattice[samples == s]
        assert len(np.unique(lat, axis=0)) == 300
        assert lat.min() == 0
    # rows follow y, columns x, and a cell stays near its real position
    np.testing.assert_array_less(np.abs(cells.positions - (cells.lattice + np.round(cells.positions).min(0))), 4)
    assert cells.max_displacement.max() < 4


@pytest.fixture(scope="module")
def starmap():
    adata = ae.datasets.starmap_bz5()
    ae.pp.prepare(adata, coords="cells", morphology_key=None, n_clusters=4, window_size=5)
    return adata


def test_starmap_bundled():
    adata = ae.datasets.starmap_bz5()
    assert adata.shape == (1049, 166)
    assert sorted(adata.obs["ground_truth"].cat.categories) == ["L1", "L2", "L3", "L4"]
    assert adata.obs["cell_type"].nunique() == 15
    assert adata.obsm["spatial"].shape == (1049, 2)
    assert np.all(adata.X.data == np.round(adata.X.data))
    assert "spatial" not in adata.uns  # no image


def test_starmap_prepare_records_the_cell_grid(starmap):
    rec = starmap.uns["aestetik"]["prepare"]
    lattice = rec["lattice"]
    assert lattice["source"] == "cells"
    assert lattice["layout"] == "square" == rec["lattice_type"]
    assert lattice["cells_per_site"] == 0.5
    lat = starmap.obsm["aestetik_lattice"]
    assert len(np.unique(lat, axis=0)) == starmap.n_obs
    grid = starmap.obsm["aestetik_grid"]
    np.testing.assert_array_equal(grid[:, 12], np.arange(starmap.n_obs))
    assert 8 < (grid >= 0).sum(1).mean() < 17  # about half of the 25 sites of a 5 x 5 window hold a cell
    assert list(rec["params"]["coords"]) == []


def test_starmap_fit_and_cluster_per_cell_refined_on_real_positions(starmap, monkeypatch):
    import aestetik._domains._assign as assign

    seen = {}
    refine = assign.refine_labels

    def spy(labels, coords, **kwargs):
        seen["coords"] = np.asarray(coords).copy()
        return refine(labels, coords, **kwargs)

    monkeypatch.setattr(assign, "refine_labels", spy)
    adata = starmap.copy()
    ae.tl.fit(adata, **FAST_FIT)
    ae.tl.cluster(adata, n_clusters=4, show_progress_bar=False)
    assert adata.obsm["X_aestetik"].shape == (adata.n_obs, FAST_FIT["latent_dim"])
    assert adata.obs["aestetik"].nunique() == 4
    assert adata.uns["aestetik"]["cluster"]["params"]["coords_key"] == "spatial"
    np.testing.assert_array_equal(seen["coords"], adata.obsm["spatial"])


def test_cells_default_smoothing_averages_a_neighbourhood_of_cells():
    """`pseudo_label_smoothing=None` resolves to a share of a domain's width in grid sites for cells (about 3 on
    STARmap) and by the domains' size on a lattice; on STARmap the cells' default gives far better layer
    pseudo-labels than the spot default would."""
    from sklearn.metrics import adjusted_rand_score

    from aestetik._space._cells import cell_smoothing
    from aestetik._space._smoothing import domain_smoothing

    aris = {}
    for sigma in (None, 1.0):
        cells = ae.datasets.starmap_bz5()
        ae.pp.prepare(cells, coords="cells", morphology_key=None, n_clusters=4, pseudo_label_smoothing=sigma)
        recorded = cells.uns["aestetik"]["prepare"]["params"]["pseudo_label_smoothing"]
        assert recorded == (cell_smoothing(cells.n_obs, 4) if sigma is None else sigma)
        truth = cells.obs["ground_truth"].astype(str)
        aris[sigma] = adjusted_rand_score(truth, cells.obs["aestetik_transcriptomics_cluster"])
    assert cell_smoothing(cells.n_obs, 4) == pytest.approx(3.05, abs=0.01)
    assert aris[None] > 0.8
    assert aris[None] > aris[1.0] + 0.1
    spots = make_small()
    ae.pp.prepare(spots, morphology_key=None, n_clusters=3, clustering_method="kmeans")
    recorded = spots.uns["aestetik"]["prepare"]["params"]["pseudo_label_smoothing"]
    lattice = spots.uns["aestetik"]["prepare"]["lattice_type"]
    assert recorded == domain_smoothing(spots.n_obs, 3, lattice) < 1.0  # spots: by the domains' size, not in sites

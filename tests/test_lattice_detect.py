"""The lattice derived from positions (``pp.prepare(coords=None)``): hexagonal or square, any unit and rotation."""

from __future__ import annotations

import numpy as np
import pytest
from _data import make_small
from scipy.spatial import cKDTree

import aestetik as ae
from aestetik._space._detect import detect_lattice
from aestetik._space._grid import window_index
from aestetik._space._smoothing import physical_positions


def _points(kind, shape, *, angle=0.0, jitter=0.0, holes=0.0, scale=1.0, seed=0):
    """Positions of a lattice (unit spacing before ``scale``) and their physical positions before the transform."""
    rng = np.random.default_rng(seed)
    r, c = (a.ravel() for a in np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij"))
    phys = np.c_[c + 0.5 * (r % 2), r * np.sqrt(3) / 2] if kind == "hex" else np.c_[c, r].astype(float)
    phys = phys[rng.random(len(phys)) >= holes]
    xy = phys + rng.normal(0, jitter, phys.shape)
    t = np.radians(angle)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return scale * xy @ rot.T + [1234.5, -77.0], phys


def _edges(positions):
    """Neighbour pairs at one spacing: the lattice graph, which every lattice symmetry keeps."""
    return cKDTree(positions).query_pairs(1.01)


def _snapshot(adata):
    return sorted(adata.obsm), sorted(adata.uns), list(adata.obs.columns), adata.obsm["spatial"].copy()


def test_bundled_section_without_array_columns_gives_the_same_windows():
    adata = ae.datasets.dlpfc_151676()
    n = adata.n_obs
    zeros = np.zeros(n, np.int32)
    reference = adata.obs[["array_row", "array_col"]].to_numpy()
    found = detect_lattice(adata.obsm["spatial"], zeros)
    assert found.kind == "hex"
    assert found.concentration[0] > 0.99
    # up to a lattice symmetry (here a translation): the same spot at every window position
    np.testing.assert_array_equal(window_index(found.lattice, zeros, 7), window_index(reference, zeros, 7))
    np.testing.assert_array_equal(found.lattice - found.lattice.min(0), reference - reference.min(0))


def test_prepare_falls_back_to_the_positions_without_the_default_columns():
    adata = make_small()
    reference = adata.obs[["array_row", "array_col"]].to_numpy()
    del adata.obs["array_row"], adata.obs["array_col"]
    ae.pp.prepare(adata, n_clusters=3, window_size=5)
    rec = adata.uns["aestetik"]["prepare"]
    assert rec["lattice"]["source"] == "spatial"
    assert rec["lattice"]["layout"] == "hex" == rec["lattice_type"]
    assert list(rec["params"]["coords"]) == []
    zeros = np.zeros(adata.n_obs, np.int32)
    windows = window_index(reference, zeros, 5)
    np.testing.assert_array_equal(adata.obsm["aestetik_grid"], windows)
    # coords=None gives the same, and so does reading the columns
    out = ae.pp.prepare(adata, n_clusters=3, window_size=5, coords=None, copy=True)
    np.testing.assert_array_equal(out.obsm["aestetik_grid"], windows)
    np.testing.assert_allclose(rec["lattice"]["spacing"], [100.0], rtol=0.01)  # make_small: 50 x 87 px steps


@pytest.mark.parametrize("kind", ["hex", "square"])
@pytest.mark.parametrize(
    ("angle", "jitter", "holes", "scale"),
    [(0, 0, 0, 1.0), (17, 0.05, 0.3, 100.0), (45, 0.05, 0, 0.5), (-120, 0.02, 0.2, 8.0), (30, 0, 0.5, 55.0)],
)
def test_synthetic_lattices_are_recovered(kind, angle, jitter, holes, scale):
    """Rotation, jitter, missing spots, µm or pixel scale: the same lattice graph and the spacing in its unit."""
    xy, phys = _points(kind, (30, 41), angle=angle, jitter=jitter, holes=holes, scale=scale, seed=angle % 7)
    found = detect_lattice(xy, np.zeros(len(xy), np.int32))
    assert found.kind == kind
    np.testing.assert_allclose(found.spacing, [scale], rtol=0.01)
    assert _edges(physical_positions(found.lattice, found.kind)) == _edges(phys)
    assert found.lattice.dtype == np.int32
    assert found.lattice.min() == 0
    if kind == "hex":  # Visium's convention: one parity, horizontal neighbours 2 columns apart
        assert np.unique(found.lattice.sum(1) % 2).size == 1


def test_per_sample_lattices():
    a, _ = _points("square", (12, 15), scale=8.0, seed=1)
    b, _ = _points("square", (10, 9), angle=30, scale=8.0, seed=2)
    samples = np.r_[np.zeros(len(a)), np.ones(len(b))].astype(np.int32)
    found = detect_lattice(np.r_[a, b], samples)
    assert found.kind == "square"
    np.testing.assert_allclose(found.angle, [0, 30], atol=1e-6)
    np.testing.assert_array_equal(found.lattice[samples == 1].max(0), [9, 8])


@pytest.mark.parametrize(
    "xy",
    [
        np.random.default_rng(0).uniform(0, 1000, size=(500, 2)),  # irregular, like single cells
        _points("square", (25, 25), jitter=0.35)[0],  # a lattice no more: jitter of a third of a spacing
    ],
    ids=["random", "jitter"],
)
def test_points_off_a_lattice_are_refused_pointing_to_cells(xy):
    with pytest.raises(ValueError, match="coords='cells'"):
        detect_lattice(xy, np.zeros(len(xy), np.int32))


def test_prepare_refuses_irregular_positions_and_nan_leaving_adata_unchanged():
    adata = make_small()
    del adata.obs["array_row"], adata.obs["array_col"]
    adata.obsm["spatial"] = np.random.default_rng(0).uniform(0, 1000, size=(adata.n_obs, 2))
    snap = _snapshot(adata)
    with pytest.raises(ValueError, match=r"not on a lattice.*coords='cells'"):
        ae.pp.prepare(adata, n_clusters=3)
    assert _snapshot(adata)[:3] == snap[:3]
    for coords in (None, "cells"):
        bad = make_small()
        bad.obsm["spatial"][3, 1] = np.nan
        snap = _snapshot(bad)
        with pytest.raises(ValueError, match=r"`adata.obsm\['spatial'\]` has NaN"):
            ae.pp.prepare(bad, n_clusters=3, coords=coords)
        after = _snapshot(bad)
        assert after[:3] == snap[:3]
        np.testing.assert_array_equal(after[3], snap[3])


def test_prepare_coords_errors():
    adata = make_small()
    with pytest.raises(ValueError, match="`coords` must name two obs columns"):
        ae.pp.prepare(adata, n_clusters=3, coords="spots")
    del adata.obsm["spatial"]
    with pytest.raises(KeyError, match=r"`adata.obsm\['spatial'\]`.*spatial_key"):
        ae.pp.prepare(adata, n_clusters=3, coords=None)
    assert "aestetik" not in adata.uns


def test_lattice_record_survives_h5ad(tmp_path):
    import anndata as ad

    adata = make_small()
    ae.pp.prepare(adata, n_clusters=3, coords=None)
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad").uns["aestetik"]["prepare"]["lattice"]
    assert back["source"] == "spatial"
    assert back["layout"] == "hex"
    np.testing.assert_allclose(back["spacing"], adata.uns["aestetik"]["prepare"]["lattice"]["spacing"])

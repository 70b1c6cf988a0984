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

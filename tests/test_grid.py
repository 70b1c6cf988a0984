from __future__ import annotations

import numpy as np
import pytest
import torch
from _test_grid_ref import brute_index

from aestetik._model._windows import gather_windows
from aestetik._space._grid import window_index
from aestetik._space._lattice import assert_unique_positions, lattice_from_obs, lattice_type, sample_codes


def _lattice(kind: str, shape: tuple[int, int], holes: float, rng: np.random.Generator) -> np.ndarray:
    r, c = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    keep = (r + c) % 2 == 0 if kind == "hex" else np.ones_like(r, dtype=bool)
    keep &= rng.random(r.shape) >= holes
    return np.c_[r[keep], c[keep]].astype(np.int32) + rng.integers(0, 5, size=2)


@pytest.mark.parametrize("kind", ["hex", "square"])
@pytest.mark.parametrize("w", [3, 5, 7])
def test_window_index_matches_brute_force(kind, w):
    rng = np.random.default_rng(w)
    lat = _lattice(kind, (17, 23), holes=0.3, rng=rng)
    samples = np.zeros(len(lat), dtype=np.int32)
    idx = window_index(lat, samples, w)
    assert idx.dtype == np.int32
    assert idx.shape == (len(lat), w * w)
    np.testing.assert_array_equal(idx, brute_index(lat, samples, w))
    np.testing.assert_array_equal(idx[:, (w * w) // 2], np.arange(len(lat)))


def test_window_index_never_crosses_samples():
    rng = np.random.default_rng(1)
    a = _lattice("hex", (12, 14), 0.2, rng)
    b = _lattice("hex", (12, 14), 0.2, rng)
    lat = np.concatenate([a, b])
    samples = np.r_[np.zeros(len(a)), np.ones(len(b))].astype(np.int32)
    perm = rng.permutation(len(lat))
    lat, samples = lat[perm], samples[perm]
    idx = window_index(lat, samples, 7)
    np.testing.assert_array_equal(idx, brute_index(lat, samples, 7))
    present = idx >= 0
    owner = np.where(present, samples[np.clip(idx, 0, None)], -1)
    assert np.all((owner == samples[:, None]) | ~present)


def test_window_index_rejects_pixel_coordinates():
    lat = np.array([[0, 0], [100_000, 100_000]], dtype=np.int32)
    with pytest.raises(ValueError, match="lattice"):
        window_index(lat, np.zeros(2, np.int32), 7)


def _brute_windows(features: np.ndarray, idx: np.ndarray, w: int) -> np.ndarray:
    out = np.empty((idx.shape[0], features.shape[1], w, w), dtype=np.float64)
    for i, row in enumerate(idx):
        grid = np.full((w * w, features.shape[1]), np.nan)
        grid[row >= 0] = features[row[row >= 0]]
        med = np.nanmedian(grid, axis=0)
        grid = np.where(np.isnan(grid), med, grid)
        out[i] = grid.T.reshape(-1, w, w)
    return out


@pytest.mark.parametrize("kind", ["hex", "square"])
def test_median_fill_matches_nanmedian(kind):
    rng = np.random.default_rng(3)
    lat = _lattice(kind, (15, 15), 0.35, rng)
    idx = window_index(lat, np.zeros(len(lat), np.int32), 7)
    feats = rng.random((len(lat), 4)).astype(np.float32)
    got = gather_windows(torch.from_numpy(feats), torch.from_numpy(idx), 7).numpy()
    np.testing.assert_allclose(got, _brute_windows(feats, idx, 7), rtol=1e-6, atol=1e-7)
    # even number of present values: numpy averages the two middle values
    counts = (idx >= 0).sum(1)
    assert (counts % 2 == 0).any()


def test_median_fill_keeps_present_values_and_layout():
    feats = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    idx = torch.tensor([[-1, 0, -1, 1, 2, -1, -1, -1, -1]])
    out = gather_windows(feats, idx, 3)
    assert out.shape == (1, 2, 3, 3)
    # row-major over (row offset, col offset): position (0, 1) holds spot 0, (1, 0) spot 1, centre spot 2
    assert out[0, 0, 0, 1] == 0
    assert out[0, 0, 1, 0] == 2
    assert out[0, 0, 1, 1] == 4
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([2.0, 3.0]))  # median of {0, 2, 4} and {1, 3, 5}


def test_lattice_validation():
    import pandas as pd

    obs = pd.DataFrame({"r": [0, 1, 2], "c": [0, 1, 2]})
    np.testing.assert_array_equal(lattice_from_obs(obs, ("r", "c")), [[0, 0], [1, 1], [2, 2]])
    with pytest.raises(KeyError, match="'row'"):
        lattice_from_obs(obs, ("row", "c"))
    off = pd.DataFrame({"r": [*range(10), 10.5], "c": range(11)})  # 10.5 is off the lattice
    with pytest.raises(ValueError, match="non-integer"):
        lattice_from_obs(off, ("r", "c"))
    with pytest.raises(ValueError, match="negative"):
        lattice_from_obs(obs.assign(r=[-1, 1, 2]), ("r", "c"))
    with pytest.raises(ValueError, match="integers"):
        lattice_from_obs(obs.assign(r=["a", "b", "c"]), ("r", "c"))
    lat = np.array([[0, 0], [0, 0], [1, 1]])
    codes, names = sample_codes(pd.DataFrame({"s": ["a", "b", "a"]}), "s")
    assert_unique_positions(lat, codes, names, ("r", "c"))  # same position, different samples: fine
    with pytest.raises(ValueError, match="share a lattice position"):
        assert_unique_positions(lat, np.zeros(3, int), ["0"], ("r", "c"))
    assert lattice_type(np.array([[0, 0], [0, 2], [1, 1]]), np.zeros(3, int)) == "hex"
    assert lattice_type(np.array([[0, 0], [0, 1]]), np.zeros(2, int)) == "square"


def test_coordinates_are_snapped_to_the_lattice_when_regular():
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(6), 5)
    cols = np.tile(np.arange(5), 6)
    want = np.c_[rows, cols]
    # bins every 50 units starting at 100 (Stereo-seq-like): divided by the common step
    obs = pd.DataFrame({"r": 100 + 50 * rows, "c": 100 + 50 * cols})
    np.testing.assert_array_equal(lattice_from_obs(obs, ("r", "c")) - [2, 2], want)
    # pixel-like floats on a 137.5-unit grid with a little jitter: snapped to consecutive indices
    obs = pd.DataFrame(
        {"r": 20.0 + 137.5 * rows + rng.normal(0, 5, 30), "c": 7.0 + 137.5 * cols + rng.normal(0, 5, 30)}
    )
    np.testing.assert_array_equal(lattice_from_obs(obs, ("r", "c")), want)
    # off-lattice values cannot be snapped: the error says so
    obs = pd.DataFrame({"r": rng.random(30) * 1000, "c": cols.astype(float)})
    with pytest.raises(ValueError, match="not on a regular lattice"):
        lattice_from_obs(obs, ("r", "c"))

"""Property-based checks of the window index: random lattices with holes, windows and several samples."""

from __future__ import annotations

import numpy as np
from _test_grid_ref import brute_index
from hypothesis import given, settings
from hypothesis import strategies as st

from aestetik._space._grid import window_index
from aestetik._space._lattice import lattice_type


@st.composite
def lattices(draw):
    n_samples = draw(st.integers(1, 3))
    hexagonal = draw(st.booleans())
    rows, cols, samples = [], [], []
    for s in range(n_samples):
        h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        keep = ((r + c) % 2 == 0) if hexagonal else np.ones_like(r, dtype=bool)
        holes = draw(st.lists(st.booleans(), min_size=r.size, max_size=r.size))
        keep &= ~np.array(holes).reshape(r.shape)
        off = draw(st.tuples(st.integers(0, 3), st.integers(0, 3)))
        rows.append(r[keep] + off[0])
        cols.append(c[keep] + off[1])
        samples.append(np.full(int(keep.sum()), s))
    lat = np.c_[np.concatenate(rows), np.concatenate(cols)].astype(np.int32)
    samples = np.concatenate(samples).astype(np.int32)
    perm = np.random.default_rng(draw(st.integers(0, 1000))).permutation(len(lat))
    return lat[perm], samples[perm], hexagonal


@settings(max_examples=60, deadline=None)
@given(lattices(), st.sampled_from([3, 5, 7, 9]))
def test_window_index_property(data, w):
    lat, samples, hexagonal = data
    if len(lat) == 0:
        assert window_index(lat, samples, w).shape == (0, w * w)
        return
    idx = window_index(lat, samples, w)
    np.testing.assert_array_equal(idx, brute_index(lat, samples, w))
    present = idx >= 0
    assert np.all(
        samples[np.where(present, idx, 0)][present] == np.repeat(samples, present.sum(1))
    )  # never crosses samples
    np.testing.assert_array_equal(idx[:, (w * w) // 2], np.arange(len(lat)))
    if hexagonal:
        assert lattice_type(lat, samples) == "hex"

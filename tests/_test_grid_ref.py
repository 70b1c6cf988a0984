"""Brute-force window index: the plain reference the numba kernel is checked against."""

from __future__ import annotations

import numpy as np


def brute_index(lattice: np.ndarray, samples: np.ndarray, w: int) -> np.ndarray:
    where = {(int(s), int(r), int(c)): i for i, (s, (r, c)) in enumerate(zip(samples, lattice, strict=True))}
    h = w // 2
    out = np.full((len(lattice), w * w), -1, dtype=np.int64)
    for i, (s, (r, c)) in enumerate(zip(samples, lattice, strict=True)):
        for a in range(w):
            for b in range(w):
                out[i, a * w + b] = where.get((int(s), int(r) + a - h, int(c) + b - h), -1)
    return out

"""Small hand-made inputs shared by the tests."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd


def make_small(n_rows: int = 16, n_cols: int = 40, *, seed: int = 0, morphology: bool = True) -> ad.AnnData:
    """A small hexagonal section with three vertical bands seen by two noisy modalities."""
    rng = np.random.default_rng(seed)
    r, c = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    keep = (r + c) % 2 == 0
    r, c = r[keep], c[keep]
    domain = np.minimum(c * 3 // n_cols, 2)
    n = r.size
    t = rng.normal(size=(n, 6)) + 2.0 * np.eye(3, 6)[domain]
    obs = pd.DataFrame(
        {"array_row": r, "array_col": c, "ground_truth": pd.Categorical(domain.astype(str))},
        index=[f"spot{i}" for i in range(n)],
    )
    adata = ad.AnnData(X=rng.poisson(2.0, size=(n, 20)).astype(np.float32), obs=obs)
    adata.obsm["X_pca"] = t.astype(np.float32)
    if morphology:
        adata.obsm["X_morphology"] = (rng.normal(size=(n, 4)) + 2.0 * np.eye(3, 4)[domain]).astype(np.float32)
    adata.obsm["spatial"] = np.c_[c * 50.0, r * 87.0]
    return adata


FAST_FIT = {"max_epochs": 2, "n_mc_samples": 5, "c_hid": 8, "latent_dim": 4, "show_progress_bar": False}

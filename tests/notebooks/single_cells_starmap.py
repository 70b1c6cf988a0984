"""Quick parameters and checks of notebooks/single_cells_starmap.ipynb (see tests/test_notebooks.py)."""

# the parameters of a quick run: the code paths of the full run with a fraction of its training
from __future__ import annotations

QUICK = {"max_epochs": 2, "n_mc_samples": 5}

# figures the committed notebook must show
MIN_FIGURES = 2

# checks appended to the executed notebook: what every section must have written
CHECKS = """
import numpy as np
rec = adata.uns["aestetik"]["prepare"]["lattice"]
assert rec["source"] == "cells" and rec["layout"] == "square"
assert len(np.unique(adata.obsm["aestetik_lattice"], axis=0)) == adata.n_obs
assert adata.obsm["X_aestetik"].shape == (adata.n_obs, 16)
assert adata.obs["aestetik"].nunique() == 4
assert adata.uns["aestetik"]["cluster"]["params"]["coords_key"] == "spatial"
assert -1 <= ari <= 1
"""

"""Quick parameters and checks of notebooks/bins_without_array_columns.ipynb (see tests/test_notebooks.py)."""

# the parameters of a quick run: the code paths of the full run with a fraction of its training
from __future__ import annotations

QUICK = {"max_epochs": 2, "n_mc_samples": 5}

# figures the committed notebook must show
MIN_FIGURES = 2

# checks appended to the executed notebook: what every section must have written
CHECKS = """
import numpy as np
assert same_positions and same_windows
assert adata.uns["aestetik"]["prepare"]["lattice"]["layout"] == "hex"
rec = bins.uns["aestetik"]["prepare"]["lattice"]
assert rec["source"] == "spatial" and rec["layout"] == "square"
np.testing.assert_allclose(rec["spacing"], [16.0], rtol=1e-6)
np.testing.assert_allclose(rec["angle"], [10.0], atol=1e-6)
assert bins.obs["aestetik"].nunique() == 4
"""

"""Quick parameters and checks of notebooks/many_sections.ipynb (see tests/test_notebooks.py)."""

# the parameters of a quick run: the code paths of the full run with a fraction of its training
from __future__ import annotations

QUICK = {"n_spots": 400, "max_epochs": 2, "n_mc_samples": 5}

# figures the committed notebook must show
MIN_FIGURES = 2

# checks appended to the executed notebook: what every section must have written
CHECKS = """
import numpy as np
assert train.uns["aestetik"]["prepare"]["params"]["batch_key"] == "sample"
assert train.uns["aestetik"]["prepare"]["transforms"]["minmax_lo"].shape[0] == 2
assert set(scores) == {"sample_0", "sample_1", "both"}
assert new.uns["aestetik"]["prepare"]["pseudo_labels"] == False
assert new.uns["aestetik"]["prepare"]["params"]["reference"].startswith("the model file")
assert new.obsm["X_aestetik"].shape == (new.n_obs, 16)
assert list(new.obs["aestetik"].cat.categories) == list(train.obs["aestetik"].cat.categories)
assert not path.exists()
"""

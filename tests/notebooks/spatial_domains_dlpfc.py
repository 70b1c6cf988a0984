"""Quick parameters and checks of notebooks/spatial_domains_dlpfc.ipynb (see tests/test_notebooks.py)."""

# the parameters of a quick run: the code paths of the full run with a fraction of its training
from __future__ import annotations

QUICK = {"max_epochs": 2, "n_mc_samples": 5, "n_seeds": 2}

# figures the committed notebook must show
MIN_FIGURES = 5

# checks appended to the executed notebook: what every section must have written
CHECKS = """
import numpy as np
assert adata.obsm["X_aestetik"].shape == (adata.n_obs, 16)
assert adata.obs["aestetik"].nunique() >= 2
assert adata.uns["aestetik"]["fit"]["params"]["max_epochs"] == max_epochs
assert "X_umap" in adata.obsm and "rank_genes_groups" in logged.uns
report = adata.uns["aestetik_ablation"]
assert list(report["settings"]) == ["transcriptomics", "morphology", "both"]
assert all(-1 <= report["ari"][s] <= 1 for s in report["settings"])
info = adata.uns["aestetik_consensus"]["consensus"]
assert np.asarray(info["ari"]).shape == (n_seeds, n_seeds)
confidence = adata.obs["aestetik_consensus_confidence"].to_numpy()
assert confidence.min() >= 1 / n_seeds and confidence.max() == 1
assert 5 <= adata.obs["aestetik_auto"].nunique() <= 9
assert "stability" in adata.uns["aestetik_auto"]["cluster"]
"""

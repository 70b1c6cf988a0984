"""Quick parameters and checks of notebooks/tumour_regions_her2st.ipynb (see tests/test_notebooks.py)."""

# the parameters of a quick run: the code paths of the full run with a fraction of its training
from __future__ import annotations

QUICK = {"max_epochs": 2, "n_mc_samples": 5}

# figures the committed notebook must show
MIN_FIGURES = 3

# checks appended to the executed notebook: what every section must have written
CHECKS = """
rec = adata.uns["aestetik"]["prepare"]
assert rec["lattice"]["source"] == "spatial"
assert set(rec["morphology_coherence"]) == {"transcriptomics", "morphology"}
assert adata.obs["aestetik"].nunique() == 5
assert adata.uns["morphology"]["n_features"] == 26
assert both.uns["aestetik"]["prepare"]["n_morphology"] > 0
assert set(both.uns["aestetik_ablation"]["ari"]) == {"transcriptomics", "morphology", "both"}
assert -1 <= ari <= 1
"""

"""The benchmark sections, how a user passes each data type to ``ae.pp.prepare``, and the result-file writer.

The sections are the ``.h5ad`` files in ``../shared/data/`` next to the repository (``--data-dir`` or the
environment variable ``AESTETIK_DATA`` point elsewhere). Each holds the manual domains in
``obs["ground_truth"]``; spots labelled ``NA`` are left out of every ARI (they are still clustered).

This module imports neither aestetik nor torch, so that a separate environment (BANKSY's) can use it.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

VISIUM = "Visium (DLPFC)"
LEGACY_ST = "legacy ST with H&E"
CELLS = "single cells"
GROUPS = (VISIUM, LEGACY_ST, CELLS)


@dataclass(frozen=True)
class Section:
    """One benchmark section: its file, platform group, number of labelled domains and ``prepare`` switch."""

    name: str
    file: str
    group: str
    n_domains: int
    prepare: dict = field(default_factory=dict)  # the documented switch for this data type
    note: str = ""
    image: bool = False  # an H&E image that `morphology_key="auto"` uses (spots at least 10 px wide)

    @property
    def cells(self) -> bool:
        return self.prepare.get("coords") == "cells"

    @property
    def switch(self) -> str:
        """The switch as a user types it (``"default"`` for Visium)."""
        return ", ".join(f"{k}={v!r}" for k, v in self.prepare.items()) or "default (array_row, array_col)"


SECTIONS = {
    s.name: s
    for s in (
        Section("dlpfc_151676", "dlpfc_151676.h5ad", VISIUM, 7, {}, "bundled, normalised, 3,460 spots"),
        Section("dlpfc_151676_counts", "dlpfc_151676_counts.h5ad", VISIUM, 7, {}, "raw counts, 5,000 genes"),
        Section("dlpfc_151674_counts", "dlpfc_151674_counts.h5ad", VISIUM, 7, {}, "raw counts, 5,000 genes"),
        Section(
            "her2st_a1", "her2st_a1.h5ad", LEGACY_ST, 5, {"coords": None}, "HER2+ breast tumour, 346 spots", image=True
        ),
        Section(
            "mob_rep12", "mob_rep12.h5ad", LEGACY_ST, 5, {"coords": None}, "mouse olfactory bulb, 282 spots", image=True
        ),
        Section("starmap_bz5", "starmap_bz5.h5ad", CELLS, 4, {"coords": "cells"}, "STARmap mPFC, 1,049 cells"),
        Section(
            "osmfish_sscortex",
            "osmfish_sscortex.h5ad",
            CELLS,
            11,
            {"coords": "cells"},
            "osmFISH, 4,839 cells, 33 genes",
        ),
        Section(
            "merfish_hypothalamus_-0.04",
            "merfish_hypothalamus_-0.04_pcs.h5ad",
            CELLS,
            8,
            {"coords": "cells", "transcriptomics_key": "X_pca"},
            "MERFISH, 5,488 cells, X holds 154 PCs",
        ),
        Section(
            "merfish_hypothalamus_-0.09",
            "merfish_hypothalamus_-0.09_pcs.h5ad",
            CELLS,
            8,
            {"coords": "cells", "transcriptomics_key": "X_pca"},
            "MERFISH, 5,557 cells, X holds 154 PCs",
        ),
    )
}
#: left out of ``peers.py``'s default run unless ``--sections`` names them
SLOW = ("merfish_hypothalamus_-0.04", "merfish_hypothalamus_-0.09")


def data_dir(argument: str | Path | None = None) -> Path:
    """``--data-dir``, else ``$AESTETIK_DATA``, else ``../shared/data`` next to the repository."""
    return Path(argument or os.environ.get("AESTETIK_DATA") or DEFAULT_DATA)


def known(truth) -> np.ndarray:
    """Mask of the spots with a manual label (``NA`` and missing values are left out of every ARI)."""
    t = np.asarray(truth).astype(str)
    return ~np.isin(t, ["NA", "nan", "None", ""])


def ari(truth, labels) -> float:
    """Adjusted Rand index against ``truth`` over the labelled spots."""
    from sklearn.metrics import adjusted_rand_score

    mask = known(truth)
    t, lab = np.asarray(truth).astype(str), np.asarray(labels).astype(str)
    return float(adjusted_rand_score(t[mask], lab[mask]))


def limit_threads(n: int = 1) -> None:
    """One BLAS/OpenMP (and numba, torch when loaded) thread per run, so that timings are comparable."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    try:
        import numba

        numba.set_num_threads(n)
    except ImportError:  # pragma: no cover - BANKSY's environment
        pass
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - BANKSY's environment
        pass


def machine(threads: int = 1) -> str:
    """The machine in words, for the result files."""
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores), {threads} thread(s) per run"


def spread(values) -> str:
    """``mean (min-max)`` of the values over seeds."""
    v = np.asarray(values, dtype=float)
    if v.size == 1:
        return f"{v[0]:.3f} (1 run)"
    return f"{v.mean():.3f} ({v.min():.3f}-{v.max():.3f})"


def write_results(name: str, table: str, payload: dict, directory: Path = RESULTS) -> None:
    """Print the markdown ``table`` and write ``<directory>/<name>.md`` and the ``.json`` behind it."""
    print(table, flush=True)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.md").write_text(table + "\n")
    (directory / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")


def read_section(section: Section, data: Path):
    """The section's AnnData, read from ``data``."""
    import anndata as ad

    return ad.read_h5ad(data / section.file)


def kmeans(x, k: int, seed: int) -> np.ndarray:
    """k-means with 10 starts (scikit-learn)."""
    from sklearn.cluster import KMeans

    return KMeans(k, n_init=10, random_state=seed).fit_predict(x)


def banksy_lambda(section: Section) -> float:
    """BANKSY's mixing weight: 0.2 for spots, 0.8 for cells (its recommendations for domains)."""
    return 0.8 if section.cells else 0.2


def banksy_pcs(adata, section: Section, seed: int) -> np.ndarray:
    """In BANKSY's environment: 20 PCs of the BANKSY matrix (15 neighbours, m = 1) of log1p-normalised expression.

    MERFISH's ``X`` holds PCs, used as they are. Needs ``pybanksy`` (never a dependency of the package).
    """
    import contextlib
    import io
    import warnings

    import scanpy as sc
    from banksy.embed_banksy import generate_banksy_matrix
    from banksy.initialize_banksy import initialize_banksy
    from sklearn.decomposition import PCA

    a = adata.copy()
    if not section.prepare.get("transcriptomics_key"):
        sc.pp.normalize_total(a, target_sum=1e4)
        sc.pp.log1p(a)
    a.X = np.asarray(a.X.todense()) if hasattr(a.X, "todense") else np.asarray(a.X)
    a.obs["x"], a.obs["y"] = a.obsm["spatial"][:, 0], a.obsm["spatial"][:, 1]
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bd = initialize_banksy(
            a, ("x", "y", "spatial"), num_neighbours=15, max_m=1, plt_edge_hist=False, plt_nbr_weights=False,
            plt_agf_angles=False, plt_theta=False,
        )  # fmt: skip
        _, matrix = generate_banksy_matrix(a, bd, [banksy_lambda(section)], 1, verbose=False)
    x = np.asarray(matrix.X.todense()) if hasattr(matrix.X, "todense") else np.asarray(matrix.X)
    return PCA(n_components=20, random_state=seed).fit_transform(x)


def leiden_k(adata, k: int, seed: int) -> np.ndarray:
    """Leiden labels with exactly ``k`` clusters (bisection on the resolution), or the closest found."""
    import scanpy as sc

    lo, hi, best = 0.01, 3.0, None
    for _ in range(30):
        res = (lo + hi) / 2
        sc.tl.leiden(adata, resolution=res, random_state=seed, flavor="igraph", n_iterations=2)
        n = adata.obs["leiden"].nunique()
        if best is None or abs(n - k) < abs(best[0] - k):
            best = (n, adata.obs["leiden"].to_numpy().copy())
        if n == k:
            break
        lo, hi = (res, hi) if n < k else (lo, res)
    return best[1]

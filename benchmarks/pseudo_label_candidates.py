"""Transcriptomics representations for the pseudo-labels, on raw-count sections (issue 19).

The final domains follow the transcriptomics pseudo-labels closely (``results/defaults_candidates.jsonl``: on the DLPFC
sections the ARI of the pseudo-labels and of the domains differ by 0.007 in the median run, by 0.04 at most), and ``prepare`` alone takes seconds, so
representations are compared here by the ARI of the pseudo-labels ``ae.pp.prepare`` clusters from them (the
package's smoothing and mixture, ``morphology_key=None``, the prepare seed varied); the best go on to whole runs
in ``defaults_candidates.py``. Each representation is computed on a copy of the raw counts (the bundled
normalised section: of its normalised values, without the flavours that need counts). Runs are appended to
``results/pseudo_label_candidates.jsonl`` (a rerun skips those there). Prints and writes
``results/pseudo_label_candidates.{md,json}``::

    python benchmarks/pseudo_label_candidates.py --seeds 0 1 2 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from _former import former_mixture
from _results import read_runs, run_logged, write_results

HERE = Path(__file__).resolve().parent
SECTIONS = {
    "151676 counts": "dlpfc_151676_counts.h5ad",
    "151674 counts": "dlpfc_151674_counts.h5ad",
    "151676 normalised": "dlpfc_151676.h5ad",
}
#: name: (HVG flavour, number of HVGs or None for all genes, scale genes, number of PCs)
REPRESENTATIONS = {
    "package (seurat HVGs on log, 3000, 15 PCs)": ("seurat", 3000, False, 15),
    "seurat_v3 HVGs on counts, 3000, 15 PCs": ("seurat_v3", 3000, False, 15),
    "seurat_v3, 2000": ("seurat_v3", 2000, False, 15),
    "seurat_v3, 1000": ("seurat_v3", 1000, False, 15),
    "seurat_v3, 3000, 30 PCs": ("seurat_v3", 3000, False, 30),
    "seurat_v3, 3000, scaled": ("seurat_v3", 3000, True, 15),
    "cell_ranger HVGs, 3000": ("cell_ranger", 3000, False, 15),
    "all 5000 genes": (None, None, False, 15),
    "seurat HVGs on log, 1000": ("seurat", 1000, False, 15),
    "seurat HVGs on log, 5000": ("seurat", 5000, False, 15),
    "package, 20 PCs": ("seurat", 3000, False, 20),
    "package, 30 PCs": ("seurat", 3000, False, 30),
    "package, 50 PCs": ("seurat", 3000, False, 50),
}
#: name: prepare's own PCA options (``prepare`` computes the representation, ``spatial_pca`` on the lattice)
PREPARE_REPRESENTATIONS = {
    "spatial PCA (neighbourhood axes), 5000 HVGs, 15 PCs": {"spatial_pca": True, "n_top_genes": 5000},
    "spatial PCA (neighbourhood axes), 3000 HVGs, 15 PCs": {"spatial_pca": True, "n_top_genes": 3000},
}
#: what needs raw counts (not run on the normalised section)
COUNTS_ONLY = ("seurat_v3",)


def representation(adata, name: str, seed: int):
    """The (n, PCs) representation ``name`` of the raw counts in ``adata.X``."""
    import numpy as np
    import scanpy as sc

    flavor, n_top, scale, n_comps = REPRESENTATIONS[name]
    tmp = adata.copy()
    if flavor == "seurat_v3":
        sc.pp.highly_variable_genes(tmp, flavor="seurat_v3", n_top_genes=n_top)
    x = tmp.X.data if hasattr(tmp.X, "data") else np.asarray(tmp.X)
    if np.all(x == np.round(x)):  # raw counts; the normalised section is used as it is, as prepare does
        sc.pp.normalize_total(tmp, target_sum=1e4)
    sc.pp.log1p(tmp)
    if flavor in ("seurat", "cell_ranger"):
        sc.pp.highly_variable_genes(tmp, flavor=flavor, n_top_genes=n_top)
    if flavor is not None:
        tmp = tmp[:, np.asarray(tmp.var["highly_variable"])].copy()
    if scale:
        sc.pp.scale(tmp, max_value=10)
    sc.pp.pca(tmp, n_comps=n_comps, random_state=seed)
    return tmp.obsm["X_pca"]


def worker(section: str, name: str, seed: int, data: Path) -> dict:
    import anndata as ad
    import scanpy as sc
    from threadpoolctl import threadpool_limits

    import aestetik as ae
    from aestetik._domains._scores import ari_known
    from aestetik._keys import Key

    sc.settings.n_jobs = 1
    with threadpool_limits(1):
        adata = ad.read_h5ad(data / SECTIONS[section])
        if name in PREPARE_REPRESENTATIONS:
            kw = {"transcriptomics_key": "X_candidate", **PREPARE_REPRESENTATIONS[name]}
        else:
            adata.obsm["X_candidate"] = representation(adata, name, seed)
            kw = {"transcriptomics_key": "X_candidate"}
        ae.pp.prepare(adata, morphology_key=None, n_clusters=7, random_state=seed, **{**former_mixture(7), **kw})
        labels = adata.obs[Key.transcriptomics_cluster("aestetik")].to_numpy()
    return {
        "section": section,
        "representation": name,
        "seed": seed,
        "ari": ari_known(adata.obs["ground_truth"], labels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--representations", nargs="+", default=None, help="names to run (default: all)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--worker", nargs=3, metavar=("SECTION", "REPRESENTATION", "SEED"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], int(args.worker[2]), args.data)))
        return
    import numpy as np

    log = HERE / "results" / "pseudo_label_candidates.jsonl"
    done = read_runs(log)
    have = {(r["section"], r["representation"], r["seed"]) for r in done}
    names = [*REPRESENTATIONS, *PREPARE_REPRESENTATIONS]
    tasks = [
        (s, r, seed)
        for r in (args.representations or names)
        for s in SECTIONS
        for seed in args.seeds
        if (s, r, seed) not in have
        and not (r in REPRESENTATIONS and REPRESENTATIONS[r][0] in COUNTS_ONLY and "counts" not in s)
    ]

    runs = done + run_logged(__file__, tasks, args.data, log, args.jobs)
    lines = [
        "| representation | " + " | ".join(SECTIONS) + " | mean (of those run) |",
        "|" + "---|" * (len(SECTIONS) + 2),
    ]
    for name in names:
        cells, means = [], []
        for s in SECTIONS:
            v = [r["ari"] for r in runs if r["representation"] == name and r["section"] == s]
            if v:
                means.append(float(np.mean(v)))
            cells.append(f"{np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f}, n={len(v)})" if v else "-")
        if means:
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean(means):.3f} |")
    device = f"CPU ({platform.machine()}, {os.cpu_count()} cores), 1 thread per run"
    text = (
        "ARI of the transcriptomics pseudo-labels of `ae.pp.prepare` (7 clusters, package smoothing and mixture, "
        f"no morphology) from each representation of the raw counts; mean (min-max) over the prepare seeds run (n; seeds 0, 1, 2, ... in order); "
        f"{device}.\n\n" + "\n".join(lines)
    )
    write_results(HERE / "results", "pseudo_label_candidates", text, {"device": device, "runs": runs})


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()

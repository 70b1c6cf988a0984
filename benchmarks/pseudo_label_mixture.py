"""The mixture behind the pseudo-labels: merged components and more starts, on the DLPFC sections (issue 19).

``ae.pp.prepare`` clusters the neighbourhood-averaged transcriptomics PCs (the package defaults: spatial PCA of
5,000 HVGs, sigma 1 spot) with a tied Bayesian Gaussian mixture. This script keeps that representation and varies
the mixture: as many components as clusters or more, merged into the clusters by
``aestetik._domains._mixture.merge_components`` (closest means under the shared covariance), and the best of the
published 11 starts (10 random, one from k-means) or of 41 (40 random). The domains follow the pseudo-labels, so
each option is scored by the ARI of the transcriptomics pseudo-labels (7 clusters, ``morphology_key=None``), over
prepare seeds (the seed also draws the PCA's random directions and the mixture's starts). All options of one
section and seed share one ``prepare`` in one worker process. Runs are appended to
``results/pseudo_label_mixture.jsonl`` (a rerun skips those there). Prints and writes
``results/pseudo_label_mixture.{md,json}``::

    python benchmarks/pseudo_label_mixture.py --seeds 0 1 2 3 4 5 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from _results import read_runs, run_logged, spread_table, write_results

HERE = Path(__file__).resolve().parent
SECTIONS = {
    "151676 counts": "dlpfc_151676_counts.h5ad",
    "151674 counts": "dlpfc_151674_counts.h5ad",
    "151676 normalised": "dlpfc_151676.h5ad",
}
N_CLUSTERS = 7
#: name: (mixture components, random starts; one k-means start is always added)
OPTIONS = {
    "7 components, 11 starts (published)": (7, 10),
    "8 merged into 7, 11 starts": (8, 10),
    "7 components, 41 starts": (7, 40),
    "8 merged into 7, 41 starts": (8, 40),
    "9 merged into 7, 11 starts": (9, 10),
}


def worker(section: str, seed: int, data: Path) -> dict:
    import anndata as ad
    import scanpy as sc
    from threadpoolctl import threadpool_limits

    import aestetik as ae
    import aestetik._domains._pseudo_labels as step1
    from aestetik._domains._clustering import cluster_features
    from aestetik._domains._scores import ari_known

    sc.settings.n_jobs = 1
    adata = ad.read_h5ad(data / SECTIONS[section])
    aris: dict[str, float] = {}

    def every_option(x, n_clusters, **kwargs):
        results = {}
        for name, (components, starts) in OPTIONS.items():
            options = {**kwargs, "n_components": components, "bgm_inits": (("random", starts), ("kmeans", 1))}
            results[name] = cluster_features(x, n_clusters, **options)
            aris[name] = ari_known(adata.obs["ground_truth"], results[name].labels)
        return results[next(iter(OPTIONS))]

    step1.cluster_features = every_option
    with threadpool_limits(1):
        ae.pp.prepare(adata, morphology_key=None, n_clusters=N_CLUSTERS, random_state=seed)
    return {"section": section, "option": "all", "seed": seed, "ari": aris}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--worker", nargs=3, metavar=("SECTION", "OPTION", "SEED"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[2]), args.data)))
        return
    log = HERE / "results" / "pseudo_label_mixture.jsonl"
    done = [r for r in read_runs(log) if r["seed"] in args.seeds]
    have = {(r["section"], r["seed"]) for r in done}
    tasks = [(s, "all", seed) for s in SECTIONS for seed in args.seeds if (s, seed) not in have]
    runs = done + run_logged(__file__, tasks, args.data, log, args.jobs)
    rows = {name: [[r["ari"][name] for r in runs if r["section"] == s] for s in SECTIONS] for name in OPTIONS}
    device = f"CPU ({platform.machine()}, {os.cpu_count()} cores), 1 thread per run"
    text = (
        "ARI of the transcriptomics pseudo-labels of `ae.pp.prepare` (7 clusters, no morphology, the package's "
        "representation) by the mixture that makes them; mean (min-max) over prepare seeds "
        f"{sorted({r['seed'] for r in runs})}; {device}.\n\n" + spread_table("mixture", list(SECTIONS), rows)
    )
    write_results(HERE / "results", "pseudo_label_mixture", text, {"device": device, "runs": runs})


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()

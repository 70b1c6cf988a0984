"""ARI of the default flow on DLPFC 151676, against the published pseudo-labels and a scanpy baseline.

Every configuration starts from the bundled section and runs ``ae.pp.prepare`` / ``ae.tl.fit`` /
``ae.tl.cluster`` with package defaults except for what the configuration names, for several training
seeds, each in its own process (1 thread unless ``--threads``). Prints and writes
``results/dlpfc_defaults.{json,md}``::

    python benchmarks/dlpfc_defaults.py --seeds 0 1 2 3 4 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _former import FORMER_CLUSTER, former_mixture  # the domains and pseudo-label mixture its runs used
from _results import run_worker, thread_env, write_results
from defaults_candidates import FORMER_PCA  # the transcriptomics PCA before issue 19's spatial PCA

HERE = Path(__file__).resolve().parent

CONFIGS = {
    # name: (prepare kwargs, description)
    "published pseudo-labels, RNA only": (
        {"morphology_key": None, "pseudo_label_smoothing": 0.0},
        "pseudo-labels clustered on single spots (the published method), no morphology",
    ),
    "default with unit-variance PCA, RNA only": (
        {"morphology_key": None, "transcriptomics_key": "X_pca_scaled"},
        "package defaults without morphology, on the PCA of genes scaled to unit variance (before 0.5)",
    ),
    "default, RNA only": ({"morphology_key": None}, "package defaults without morphology"),
    "former PCA, RNA only": (
        {"morphology_key": None, **FORMER_PCA},
        "as 'default, RNA only' with the transcriptomics PCA before issue 19's spatial PCA (spot axes, 3000 HVGs)",
    ),
    "lowres morphology": (
        {"morphology_key": "X_morphology"},
        "as 'default, RNA only' plus morphology from the lowres H&E (aestetik.pp.morphology first), weight 1.5",
    ),
    # the configurations below ran with the former PCA (3000 HVGs, spot axes), which they pin
    # "default" and the configurations with morphology: the defaults before issue 19, when `morphology_key='auto'`
    # computed morphology from the lowres image; it now leaves it out (4.3 px per spot), so it is computed first
    "default": (
        {"morphology_key": "X_morphology", **FORMER_PCA},
        "morphology from the H&E image (lowres), weight 1.5: the defaults before issue 19",
    ),
    "morphology weight 1": (
        {"morphology_key": "X_morphology", **FORMER_PCA},
        "as 'default' with fit(morphology_weight=1.0)",
    ),
    "8 pseudo-label clusters, RNA only": (
        {"morphology_key": None, "n_clusters": 8, **FORMER_PCA},
        "package defaults without morphology, pseudo-labels with one cluster more than the 7 domains",
    ),
    "8 pseudo-label clusters": (
        {"n_clusters": 8, "morphology_key": "X_morphology", **FORMER_PCA},
        "package defaults (image morphology), pseudo-labels with one cluster more than the 7 domains",
    ),
}
#: fit() options of a configuration (beyond the seed and the shared options)
FIT_KWARGS = {"morphology weight 1": {"morphology_weight": 1.0}}


def scaled_pca(adata, seed: int = 0):
    """The transcriptomics PCA with unit-variance genes (log1p, 3000 HVGs, scale, 15 PCs) in X_pca_scaled."""
    import scanpy as sc

    tmp = adata.copy()
    sc.pp.log1p(tmp)
    sc.pp.highly_variable_genes(tmp, flavor="seurat", n_top_genes=3000)
    tmp = tmp[:, tmp.var["highly_variable"].to_numpy()].copy()
    sc.pp.scale(tmp, max_value=10)
    sc.pp.pca(tmp, n_comps=15, random_state=seed)
    adata.obsm["X_pca_scaled"] = tmp.obsm["X_pca"]


def worker(config: str, seed: int, threads: int, epochs: int | None, mc: int | None) -> dict:
    import torch

    torch.set_num_threads(threads)
    from sklearn.metrics import adjusted_rand_score
    from threadpoolctl import threadpool_limits

    import aestetik as ae

    fit_kwargs = {"random_state": seed, "show_progress_bar": False, "accelerator": "cpu", **FIT_KWARGS.get(config, {})}
    if epochs is not None:
        fit_kwargs["max_epochs"] = epochs
    if mc is not None:
        fit_kwargs["n_mc_samples"] = mc
    adata = ae.datasets.dlpfc_151676()
    seconds = {}
    with threadpool_limits(threads):
        if CONFIGS[config][0].get("transcriptomics_key") == "X_pca_scaled":
            scaled_pca(adata)
        if CONFIGS[config][0].get("morphology_key") == "X_morphology":
            ae.pp.morphology(adata)
        t = time.perf_counter()
        kw = {"n_clusters": 7, **CONFIGS[config][0]}
        ae.pp.prepare(adata, **kw, **former_mixture(kw["n_clusters"]))
        seconds["prepare"] = time.perf_counter() - t
        t = time.perf_counter()
        ae.tl.fit(adata, **fit_kwargs)
        seconds["fit"] = time.perf_counter() - t
        t = time.perf_counter()
        ae.tl.cluster(adata, n_clusters=7, **FORMER_CLUSTER)
        seconds["cluster"] = time.perf_counter() - t
        ae.tl.cluster(adata, n_clusters=7, method="bgm", key_added="aestetik_bgm")  # the published domain method
    truth = adata.obs["ground_truth"].astype(str).to_numpy()
    known = truth != "NA"

    def ari(key: str) -> float:
        return float(adjusted_rand_score(truth[known], adata.obs[key].astype(str).to_numpy()[known]))

    return {
        "config": config,
        "seed": seed,
        "ari": ari("aestetik"),
        "ari_bgm_domains": ari("aestetik_bgm"),
        "ari_transcriptomics_pseudo_labels": ari("aestetik_transcriptomics_cluster"),
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "labels": adata.obs["aestetik"].astype(str).tolist(),
    }


def scanpy_baseline(seed: int) -> float:
    """scanpy PCA + Leiden (resolution searched for 7 clusters) on the same section."""
    import numpy as np
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score

    import aestetik as ae

    adata = ae.datasets.dlpfc_151676()
    scaled_pca(adata, seed)
    sc.pp.neighbors(adata, use_rep="X_pca_scaled", random_state=seed)
    labels = None
    for res in np.arange(0.1, 2.0, 0.02):
        sc.tl.leiden(adata, resolution=res, random_state=seed, flavor="igraph", n_iterations=2)
        if adata.obs["leiden"].nunique() >= 7:
            labels = adata.obs["leiden"].astype(str).to_numpy()
            break
    truth = adata.obs["ground_truth"].astype(str).to_numpy()
    known = truth != "NA"
    return float(adjusted_rand_score(truth[known], labels[known]))


def _ms(values: list[float]) -> str:
    import numpy as np

    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (each in its own process)")
    p.add_argument("--epochs", type=int, default=None, help="default: fit's (100)")
    p.add_argument("--mc-passes", type=int, default=None, help="default: fit's (1000)")
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument(
        "--merge", action="store_true", help="keep the other configurations' records (and baseline) from --results"
    )
    p.add_argument("--worker", nargs=2, metavar=("CONFIG", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        record = worker(args.worker[0], int(args.worker[1]), args.threads, args.epochs, args.mc_passes)
        print(json.dumps(record))
        return 0

    env = thread_env(args.threads)

    def run(config: str, seed: int) -> dict:
        cmd = [sys.executable, __file__, "--worker", config, str(seed), "--threads", str(args.threads)]
        if args.epochs is not None:
            cmd += ["--epochs", str(args.epochs)]
        if args.mc_passes is not None:
            cmd += ["--mc-passes", str(args.mc_passes)]
        record = run_worker(cmd, env)
        print(f"{config} seed {seed}: ARI {record['ari']:.3f}", flush=True)
        return record

    with ThreadPoolExecutor(args.jobs) as pool:
        records = list(pool.map(lambda cs: run(*cs), [(c, s) for c in args.configs for s in args.seeds]))
    previous = args.results / "dlpfc_defaults.json"
    if args.merge and previous.exists():
        old = json.loads(previous.read_text())
        kept = [r for r in old["records"] if r["config"] not in args.configs]
        records = kept + records
        args.configs = [c for c in CONFIGS if any(r["config"] == c for r in records)]
        baseline = old["scanpy_leiden"]
    else:
        baseline = [scanpy_baseline(s) for s in args.seeds]

    device = f"CPU ({platform.machine()}, {os.cpu_count()} cores), {args.threads} thread(s) per run, {args.jobs} run(s) at a time"
    lines = [
        f"DLPFC 151676, 7 layers, NA spots excluded; {device}; seeds {args.seeds}",
        "",
        "| configuration | ARI mean ± sd | min | max | max - min | domains with bgm | pseudo-labels ARI | fit s (mean) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for config in args.configs:
        rs = [r for r in records if r["config"] == config]
        aris = [r["ari"] for r in rs]
        lines.append(
            f"| {config} | {_ms(aris)} | {min(aris):.3f} | {max(aris):.3f} | {max(aris) - min(aris):.3f} "
            f"| {_ms([r['ari_bgm_domains'] for r in rs])} "
            f"| {_ms([r['ari_transcriptomics_pseudo_labels'] for r in rs])} "
            f"| {sum(r['seconds']['fit'] for r in rs) / len(rs):.0f} |"
        )
    lines.append(
        f"| scanpy PCA + Leiden (7 clusters) | {_ms(baseline)} | {min(baseline):.3f} | {max(baseline):.3f} "
        f"| {max(baseline) - min(baseline):.3f} | - | - | - |"
    )
    slim = [{k: v for k, v in r.items() if k != "labels"} for r in records]
    payload = {"device": device, "records": slim, "scanpy_leiden": baseline}
    write_results(args.results, "dlpfc_defaults", "\n".join(lines), payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``ae.tl.consensus`` on DLPFC 151676: ARI of the consensus domains, of each seed, and agreement between seeds.

For each configuration (package defaults without and with the bundled H&E image), runs ``ae.pp.prepare`` and
``ae.tl.consensus(adata, n_seeds=5, n_clusters=7)`` in its own process (1 thread unless ``--threads``), and
prints and writes ``results/dlpfc_consensus.{json,md}``::

    python benchmarks/dlpfc_consensus.py --jobs 2    # ~12 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _former import FORMER_CLUSTER, former_mixture
from _results import run_worker, thread_env, write_results

HERE = Path(__file__).resolve().parent
#: "default": the defaults before issue 19 (morphology from the lowres image, computed first; `morphology_key='auto'`
#: now leaves that image out, so "default, RNA only" is what the defaults do on it now)
CONFIGS = {"default, RNA only": {"morphology_key": None}, "default": {"morphology_key": "X_morphology"}}


def worker(config: str, n_seeds: int, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from sklearn.metrics import adjusted_rand_score
    from threadpoolctl import threadpool_limits

    import aestetik as ae

    adata = ae.datasets.dlpfc_151676()
    with threadpool_limits(threads):
        if CONFIGS[config].get("morphology_key") == "X_morphology":
            ae.pp.morphology(adata)
        ae.pp.prepare(adata, n_clusters=7, **CONFIGS[config], **former_mixture(7))
        t = time.perf_counter()
        ae.tl.consensus(adata, n_seeds=n_seeds, n_clusters=7, show_progress_bar=False, **FORMER_CLUSTER)
        seconds = time.perf_counter() - t
    truth = adata.obs["ground_truth"].astype(str).to_numpy()
    known = truth != "NA"
    seeds = np.asarray(adata.obsm["aestetik_seed_labels"])
    per_seed = [float(adjusted_rand_score(truth[known], seeds[known, i])) for i in range(seeds.shape[1])]
    info = adata.uns["aestetik"]["consensus"]
    return {
        "config": config,
        "n_seeds": n_seeds,
        "ari_consensus": float(adjusted_rand_score(truth[known], adata.obs["aestetik"].astype(str).to_numpy()[known])),
        "ari_per_seed": per_seed,
        "pairwise_ari_mean": float(info["mean_ari"]),
        "pairwise_ari_min": float(info["min_ari"]),
        "mean_confidence": float(info["mean_confidence"]),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--n-seeds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="configurations at a time (each in its own process)")
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--worker", metavar="CONFIG", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.n_seeds, args.threads)))
        return 0
    env = thread_env(args.threads)

    def run(config: str) -> dict:
        cmd = [sys.executable, __file__, "--worker", config, "--n-seeds", str(args.n_seeds)]
        cmd += ["--threads", str(args.threads)]
        return run_worker(cmd, env)

    with ThreadPoolExecutor(args.jobs) as pool:
        records = list(pool.map(run, args.configs))
    device = (
        f"CPU ({platform.machine()}, {os.cpu_count()} cores), {args.threads} thread(s) per run, {args.jobs} at a time"
    )
    lines = [
        f"DLPFC 151676, 7 layers, NA spots excluded, ae.tl.consensus with {args.n_seeds} seeds; {device}",
        "",
        "| configuration | consensus ARI | per-seed ARI (min - max) | max - min | pairwise ARI between seeds (mean, min) "
        "| mean confidence | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        lo, hi = min(r["ari_per_seed"]), max(r["ari_per_seed"])
        lines.append(
            f"| {r['config']} | {r['ari_consensus']:.3f} | {lo:.3f} - {hi:.3f} | {hi - lo:.3f} "
            f"| {r['pairwise_ari_mean']:.3f}, {r['pairwise_ari_min']:.3f} | {r['mean_confidence']:.3f} "
            f"| {r['seconds']:.0f} |"
        )
    write_results(args.results, "dlpfc_consensus", "\n".join(lines), {"device": device, "records": records})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

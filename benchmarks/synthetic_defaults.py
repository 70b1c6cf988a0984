"""ARI of the default flow on the synthetic sections, against the published pseudo-labels and domains.

``ae.datasets.synthetic`` (each modality alone sees only merged pairs of the 4 domains; the domains need
both) for several sections and two settings (hexagonal lattice, noise 0.4; square lattice, noise 0.8),
each run in its own process with 1 thread. Every configuration runs ``ae.pp.prepare`` / ``ae.tl.fit`` /
``ae.tl.cluster`` with package defaults except what it names. Prints and writes
``results/synthetic_defaults.{json,md}``::

    python benchmarks/synthetic_defaults.py --sections 0 1 2 --jobs 2
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

SETTINGS = {
    "hex, noise 0.4": {"lattice": "hex", "noise": 0.4},
    "square, noise 0.8": {"lattice": "square", "noise": 0.8},
}
CONFIGS = {
    # name: (prepare kwargs, cluster kwargs)
    "published (single-spot pseudo-labels, bgm domains)": ({"pseudo_label_smoothing": 0.0}, {"method": "bgm"}),
    "smoothing sigma 2, bgm domains": ({"pseudo_label_smoothing": 2.0}, {"method": "bgm"}),
    "smoothing sigma 2": ({"pseudo_label_smoothing": 2.0}, {}),
    "default (sigma 1, k-means domains)": ({}, {}),
    "default with morphology weight 1": ({}, {}),
    "5 pseudo-label clusters": ({"n_clusters": 5}, {}),
    "6 pseudo-label clusters": ({"n_clusters": 6}, {}),
}
#: fit() options of a configuration
FIT_KWARGS = {"default with morphology weight 1": {"morphology_weight": 1.0}}


def worker(setting: str, config: str, section: int, n_spots: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from sklearn.metrics import adjusted_rand_score
    from threadpoolctl import threadpool_limits

    import aestetik as ae

    prepare_kw, cluster_kw = CONFIGS[config]
    with threadpool_limits(1):
        adata = ae.datasets.synthetic(n_spots=n_spots, n_domains=4, random_state=section, **SETTINGS[setting])
        t = time.perf_counter()
        kw = {"morphology_key": "X_morphology", "n_clusters": 4, **prepare_kw}
        ae.pp.prepare(adata, **kw, **former_mixture(kw["n_clusters"]))
        ae.tl.fit(adata, show_progress_bar=False, accelerator="cpu", **FIT_KWARGS.get(config, {}))
        ae.tl.cluster(adata, n_clusters=4, **{**FORMER_CLUSTER, **cluster_kw})
        seconds = time.perf_counter() - t
    obs = adata.obs
    return {
        "setting": setting,
        "config": config,
        "section": section,
        "ari": float(adjusted_rand_score(obs["ground_truth"], obs["aestetik"])),
        "ari_transcriptomics_pseudo_labels": float(
            adjusted_rand_score(obs["transcriptomics_group"], obs["aestetik_transcriptomics_cluster"])
        ),
        "ari_morphology_pseudo_labels": float(
            adjusted_rand_score(obs["morphology_group"], obs["aestetik_morphology_cluster"])
        ),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-spots", type=int, default=2000)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (each in its own process)")
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--worker", nargs=3, metavar=("SETTING", "CONFIG", "SECTION"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], int(args.worker[2]), args.n_spots)))
        return 0

    env = thread_env(1)

    def run(setting: str, config: str, section: int) -> dict:
        cmd = [sys.executable, __file__, "--worker", setting, config, str(section), "--n-spots", str(args.n_spots)]
        record = run_worker(cmd, env)
        print(f"{setting} | {config} | section {section}: ARI {record['ari']:.3f}", flush=True)
        return record

    jobs = [(st, c, s) for st in SETTINGS for c in args.configs for s in args.sections]
    with ThreadPoolExecutor(args.jobs) as pool:
        records = list(pool.map(lambda job: run(*job), jobs))

    import numpy as np

    device = f"CPU ({platform.machine()}, {os.cpu_count()} cores), 1 thread per run, {args.jobs} run(s) at a time"
    lines = [
        f"Synthetic sections ({args.n_spots} spots, 4 domains, sections {args.sections}); {device}",
        "",
        "| setting | configuration | ARI mean | min | max | pseudo-labels ARI (transcriptomics / morphology) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for setting in SETTINGS:
        for config in args.configs:
            rs = [r for r in records if r["setting"] == setting and r["config"] == config]
            a = [r["ari"] for r in rs]
            pt = np.mean([r["ari_transcriptomics_pseudo_labels"] for r in rs])
            pm = np.mean([r["ari_morphology_pseudo_labels"] for r in rs])
            lines.append(
                f"| {setting} | {config} | {np.mean(a):.3f} | {min(a):.3f} | {max(a):.3f} | {pt:.3f} / {pm:.3f} |"
            )
    write_results(args.results, "synthetic_defaults", "\n".join(lines), {"device": device, "records": records})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Wall seconds of ``pp.prepare`` and ``tl.cluster(method='bgm')`` on the bundled DLPFC section for several ``n_jobs``.

The mixture's 11 starts (per modality in ``prepare``, per fit in ``cluster``) are most of both steps; ``n_jobs``
runs them in worker processes. Each ``n_jobs`` runs in its own process (BLAS and OpenMP limited to one thread per
process): ``prepare`` ``--repeats`` times in a row, so the first run includes starting the workers and the later
ones reuse them, as a second call in a notebook would; then a short ``tl.fit`` (``--epochs``, untimed) and
``tl.cluster(n_clusters=7, method='bgm')`` ``--repeats`` times; with ``--auto`` also once
``tl.cluster(n_clusters=range(5, 10), method='bgm')`` (25 mixture fits choose the number of domains). The
pseudo-labels and domains of every run must equal those of the first ``n_jobs``. Prints and writes
``results/prepare_jobs.{json,md}``::

    python benchmarks/prepare_jobs.py --jobs 1 2 --repeats 2 --auto
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from _former import former_mixture
from _results import run_worker, thread_env, write_results

HERE = Path(__file__).resolve().parent


def worker(n_jobs: int, repeats: int, *, morphology: bool, epochs: int, auto: bool) -> dict:
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    import aestetik as ae

    torch.set_num_threads(1)
    prepare_s, cluster_s, auto_s = [], [], None
    for _ in range(repeats):
        adata = ae.datasets.dlpfc_151676()
        with threadpool_limits(1):
            t = time.perf_counter()
            if morphology:  # timed with prepare, as 'auto' computed it before it left out the lowres image
                ae.pp.morphology(adata)
            morphology_key = "X_morphology" if morphology else None
            ae.pp.prepare(adata, n_clusters=7, morphology_key=morphology_key, n_jobs=n_jobs, **former_mixture(7))
            prepare_s.append(time.perf_counter() - t)
    cols = [c for c in adata.obs if c.startswith("aestetik_") and c.endswith("_cluster")]
    labels = {c: np.asarray(adata.obs[c]).astype(str).tolist() for c in cols}
    with threadpool_limits(1):
        ae.tl.fit(adata, max_epochs=epochs, n_mc_samples=50, accelerator="cpu", show_progress_bar=False)
        for _ in range(repeats):
            t = time.perf_counter()
            ae.tl.cluster(adata, 7, method="bgm", n_jobs=n_jobs)
            cluster_s.append(time.perf_counter() - t)
        labels["domains"] = np.asarray(adata.obs["aestetik"]).astype(str).tolist()
        if auto:
            t = time.perf_counter()
            ae.tl.cluster(adata, range(5, 10), method="bgm", n_jobs=n_jobs, show_progress_bar=False, key_added="auto")
            auto_s = time.perf_counter() - t
            labels["auto"] = np.asarray(adata.obs["auto"]).astype(str).tolist()
    return {
        "n_jobs": n_jobs,
        "morphology": morphology,
        "seconds": prepare_s,
        "cluster_seconds": cluster_s,
        "auto_seconds": auto_s,
        "labels": labels,
    }


def _first_later(seconds: list[float]) -> tuple[str, str]:
    later = seconds[1:]
    return f"{seconds[0]:.1f}", f"{sum(later) / len(later):.1f}" if later else "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--epochs", type=int, default=20, help="epochs of the (untimed) fit whose embedding is clustered")
    p.add_argument("--auto", action="store_true", help="also time choosing the number of domains among 5..9")
    p.add_argument("--no-morphology", action="store_true", help="prepare without the image morphology")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    morphology = not args.no_morphology
    if args.worker is not None:
        record = worker(args.worker, args.repeats, morphology=morphology, epochs=args.epochs, auto=args.auto)
        print(json.dumps(record))
        return 0

    records = []
    for n_jobs in args.jobs:
        cmd = [sys.executable, __file__, "--worker", str(n_jobs), "--repeats", str(args.repeats)]
        cmd += ["--epochs", str(args.epochs)] + (["--auto"] if args.auto else [])
        cmd += ["--no-morphology"] if not morphology else []
        records.append(run_worker(cmd, thread_env(1)))
        r = records[-1]
        print(f"n_jobs={n_jobs}: prepare {r['seconds']}, cluster {r['cluster_seconds']} s", file=sys.stderr)
    base = records[0]["labels"]
    rows = [
        "| n_jobs | first prepare s | later prepare s (mean) | first cluster(bgm) s | later cluster(bgm) s (mean) "
        "| choose among 5-9 (bgm) s | labels equal to the first row's |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in records:
        auto = f"{r['auto_seconds']:.1f}" if r["auto_seconds"] is not None else "-"
        cells = [*_first_later(r["seconds"]), *_first_later(r["cluster_seconds"]), auto]
        rows.append(f"| {r['n_jobs']} | {' | '.join(cells)} | {r['labels'] == base} |")
    device = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    header = (
        f"DLPFC 151676, prepare ({'with' if morphology else 'without'} image morphology), then cluster an embedding "
        f"of {args.epochs} epochs; {device}\n\n"
    )
    payload = {
        "device": device,
        "epochs": args.epochs,
        "records": [{k: v for k, v in r.items() if k != "labels"} for r in records],
    }
    payload["labels_equal"] = [r["labels"] == base for r in records]
    write_results(args.out_dir, "prepare_jobs", header + "\n".join(rows), payload)
    return 0 if all(payload["labels_equal"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())

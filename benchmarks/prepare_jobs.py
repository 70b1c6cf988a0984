"""Wall seconds of ``ae.pp.prepare`` on the bundled DLPFC section for several ``n_jobs``, with equal pseudo-labels.

The mixture's 11 starts per modality (``clustering_method='bgm'``) are most of ``prepare``; ``n_jobs`` runs them
in worker processes. Each ``n_jobs`` runs in its own process (BLAS and OpenMP limited to one thread per
process), ``--repeats`` times in a row, so the first run includes starting the workers (each imports the
package) and the later ones reuse them, as a second ``prepare`` in a notebook would. The pseudo-labels of every
run must equal those of ``n_jobs=1``. Prints and writes ``results/prepare_jobs.{json,md}``::

    python benchmarks/prepare_jobs.py --jobs 1 2 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from _results import run_worker, thread_env, write_results

HERE = Path(__file__).resolve().parent


def worker(n_jobs: int, repeats: int, *, morphology: bool) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_limits

    import aestetik as ae

    runs, labels = [], None
    for _ in range(repeats):
        adata = ae.datasets.dlpfc_151676()
        with threadpool_limits(1):
            t = time.perf_counter()
            ae.pp.prepare(adata, n_clusters=7, morphology_key="auto" if morphology else None, n_jobs=n_jobs)
            runs.append(time.perf_counter() - t)
        cols = [c for c in adata.obs if c.startswith("aestetik_") and c.endswith("_cluster")]
        labels = {c: np.asarray(adata.obs[c]).astype(str).tolist() for c in cols}
    return {"n_jobs": n_jobs, "morphology": morphology, "seconds": runs, "labels": labels}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-morphology", action="store_true", help="prepare without the image morphology")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    morphology = not args.no_morphology
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.repeats, morphology=morphology)))
        return 0

    records = []
    for n_jobs in args.jobs:
        cmd = [sys.executable, __file__, "--worker", str(n_jobs), "--repeats", str(args.repeats)]
        cmd += ["--no-morphology"] if not morphology else []
        records.append(run_worker(cmd, thread_env(1)))
        print(f"n_jobs={n_jobs}: {', '.join(f'{s:.1f}' for s in records[-1]['seconds'])} s", file=sys.stderr)
    base = records[0]["labels"]
    rows = [
        "| n_jobs | first prepare s | later prepare s (mean) | pseudo-labels equal to the first row's |",
        "| ---: | ---: | ---: | --- |",
    ]
    for r in records:
        later = r["seconds"][1:]
        mean_later = f"{sum(later) / len(later):.1f}" if later else "-"
        rows.append(f"| {r['n_jobs']} | {r['seconds'][0]:.1f} | {mean_later} | {r['labels'] == base} |")
    device = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    header = f"DLPFC 151676, prepare ({'with' if morphology else 'without'} image morphology); {device}\n\n"
    payload = {"device": device, "records": [{k: v for k, v in r.items() if k != "labels"} for r in records]}
    payload["labels_equal"] = [r["labels"] == base for r in records]
    write_results(args.out_dir, "prepare_jobs", header + "\n".join(rows), payload)
    return 0 if all(payload["labels_equal"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())

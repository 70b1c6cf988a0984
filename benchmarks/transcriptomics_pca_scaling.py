"""Seconds and peak memory of prepare's transcriptomics PCA: the spots' own axes against the neighbourhoods' axes.

``pp.prepare`` computes the transcriptomics PCs when they are absent; on a lattice their axes are now those of the
neighbourhood-averaged expression (``spatial_pca``, docs/method.md difference 15), found by a randomised SVD that
applies the sparse smoothing to blocks of 35 columns instead of forming the dense average. This times that step
alone (``aestetik.pp._transcriptomics.transcriptomics_pca``: normalise, log1p, 5,000 HVGs, 15 PCs) on sparse
Visium-HD-like counts: N spots on a square lattice, ``--genes`` genes, about ``--per-spot`` detected genes per spot
(Poisson counts), one process per run (its own peak RSS), one thread. Prints and writes
``results/transcriptomics_pca_scaling.{md,json}``::

    python benchmarks/transcriptomics_pca_scaling.py --sizes 10000 100000 300000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

from _results import run_worker, thread_env, write_results

HERE = Path(__file__).resolve().parent


def worker(n: int, genes: int, per_spot: int, *, spatial: bool) -> dict:
    import numpy as np
    from anndata import AnnData
    from scipy import sparse

    from aestetik._space._smoothing import physical_positions
    from aestetik.pp._transcriptomics import transcriptomics_pca

    rng = np.random.default_rng(0)
    side = int(np.ceil(np.sqrt(n)))
    lattice = np.stack(np.divmod(np.arange(n), side), axis=1)
    # per spot, per_spot genes drawn with gene-specific popularity; a smooth spatial trend on the first 200 genes
    popularity = rng.pareto(1.0, genes) + 1
    cols = rng.choice(genes, size=(n, per_spot), p=popularity / popularity.sum())
    trend = 1 + np.sin(lattice[:, 0] / 20.0)[:, None] * (cols < 200)
    values = rng.poisson(2.0 * trend).astype(np.float32) + 1
    x = sparse.csr_matrix((values.ravel(), cols.ravel(), np.arange(0, n * per_spot + 1, per_spot)), shape=(n, genes))
    x.sum_duplicates()
    adata = AnnData(X=x)
    positions = physical_positions(lattice, "square")
    smoothing = (positions, np.zeros(n, dtype=np.int64), 1.0) if spatial else None
    t0 = time.perf_counter()
    pcs, _ = transcriptomics_pca(adata, n_comps=15, n_top_genes=5000, random_state=0, smoothing=smoothing)
    seconds = time.perf_counter() - t0
    return {
        "n_spots": n,
        "genes": genes,
        "nnz_per_spot": round(x.nnz / n, 1),
        "spatial_pca": spatial,
        "seconds": seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "shape": list(pcs.shape),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    parser.add_argument("--genes", type=int, default=18_000)
    parser.add_argument("--per-spot", type=int, default=200)
    parser.add_argument("--worker", nargs=2, metavar=("N", "SPATIAL"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), args.genes, args.per_spot, spatial=args.worker[1] == "1")))
        return
    runs = []
    for n in args.sizes:
        for spatial in (False, True):
            cmd = [sys.executable, __file__, "--worker", str(n), str(int(spatial))]
            cmd += ["--genes", str(args.genes), "--per-spot", str(args.per_spot)]
            runs.append(run_worker(cmd, thread_env(1)))
            print(runs[-1], flush=True)
    lines = [
        "| spots | genes | detected per spot | spots' axes: s | GB | neighbourhoods' axes: s | GB |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in args.sizes:
        plain, spatial = (next(r for r in runs if r["n_spots"] == n and r["spatial_pca"] is s) for s in (False, True))
        lines.append(
            f"| {n:,} | {plain['genes']:,} | {plain['nnz_per_spot']:.0f} | {plain['seconds']:.1f} | "
            f"{plain['peak_rss_gb']:.2f} | {spatial['seconds']:.1f} | {spatial['peak_rss_gb']:.2f} |"
        )
    device = f"CPU ({platform.machine()}, {os.cpu_count()} cores), 1 thread per run"
    text = (
        "prepare's transcriptomics PCA (5,000 HVGs, 15 PCs) on sparse synthetic counts, seconds and peak RSS of "
        f"the process; {device}.\n\n" + "\n".join(lines)
    )
    write_results(HERE / "results", "transcriptomics_pca_scaling", text, {"device": device, "runs": runs})


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()

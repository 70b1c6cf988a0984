"""How long does the domain cut (``ae.tl.cluster``) take from 10^4 to 10^6 spots, per clustering method?

The graph methods partition the neighbour graph of at most 50,000 random spots (``spectral``, the default: 10,000)
and label the others by their 15 nearest partitioned spots, so their time stops growing with the graph. This
script times ``ae.tl.cluster(adata, n_clusters=7, method=M, refine=False)`` on synthetic embeddings in
``obsm["X_aestetik"]`` (16 dimensions, 7 overlapping Gaussian groups, as a trained embedding) and scores the labels
against the groups (ARI). One warm-up call per method first (numba and pynndescent compile their kernels)::

    python benchmarks/clustering_scaling.py                       # 10^4, 10^5, 10^6 spots; about 10 min on 2 cores
    python benchmarks/clustering_scaling.py --quick               # 10^4 spots, written to a temporary folder

Writes ``results/clustering_scaling.{md,json}``.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from pathlib import Path

import numpy as np
from _sections import RESULTS, machine, write_results

METHODS = ("spectral", "leiden", "louvain", "kmeans", "bgm")


def embedding(n: int, seed: int = 0):
    """``n`` points in 16 dimensions from 7 overlapping Gaussian groups, as an AnnData, and the group of each."""
    import anndata as ad
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=n, centers=7, n_features=16, cluster_std=2.0, random_state=seed)
    return ad.AnnData(obsm={"X_aestetik": x.astype(np.float32)}), y


def timed(adata, method: str) -> tuple[float, np.ndarray]:
    import aestetik as ae

    start = time.perf_counter()
    ae.tl.cluster(adata, n_clusters=7, method=method, refine=False, random_state=0, show_progress_bar=False)
    return time.perf_counter() - start, adata.obs["aestetik"].to_numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spots", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--methods", nargs="+", default=list(METHODS[:4]), choices=METHODS)
    p.add_argument("--threads", type=int, default=2, help="BLAS / numba threads")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    from _sections import limit_threads
    from sklearn.metrics import adjusted_rand_score

    limit_threads(a.threads)
    spots = [10_000] if a.quick else a.spots
    out = Path(tempfile.mkdtemp(prefix="clustering_")) if a.quick else RESULTS
    for method in a.methods:
        timed(embedding(2_000)[0], method)  # warm-up
    runs = []
    for n in spots:
        adata, truth = embedding(n)
        for method in a.methods:
            seconds, labels = timed(adata, method)
            runs.append({"n_spots": n, "method": method, "seconds": seconds, "ari": adjusted_rand_score(truth, labels)})
            print(f"{n:>9,} {method:9s} {seconds:7.1f} s  ARI {runs[-1]['ari']:.3f}", flush=True)
    lines = [
        f"`ae.tl.cluster(adata, 7, method=M, refine=False)` on 16-dimensional embeddings of 7 groups; "
        f"{machine(a.threads)}, {datetime.date.today()}. Seconds (ARI against the groups).",
        "",
        "| spots | " + " | ".join(a.methods) + " |",
        "|---:|" + "---|" * len(a.methods),
    ]
    for n in spots:
        cells = [next(f"{r['seconds']:.1f} ({r['ari']:.3f})" for r in runs if r["n_spots"] == n and r["method"] == m)
                 for m in a.methods]  # fmt: skip
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    payload = {"question": __doc__.splitlines()[0], "machine": machine(a.threads), "runs": runs}
    write_results("clustering_scaling", "\n".join(lines), payload, out)


if __name__ == "__main__":
    main()

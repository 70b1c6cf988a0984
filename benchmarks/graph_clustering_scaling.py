"""Seconds of ``leiden``/``louvain``/``spectral`` clustering against the number of spots, subsampled or not.

Since the graph methods partition the neighbour graph of at most ``MAX_FIT_SPOTS`` random spots (50,000;
``spectral``: 10,000) and label the others by their 15 nearest partitioned spots, their time stops growing with
the graph; this script times :func:`aestetik._domains._clustering.cluster_features` on synthetic embeddings (16
dimensions, 7 Gaussian groups, as a trained embedding) for each number of spots: the default, the graph of every
spot (``max_fit_spots=n``; only up to ``--max-full``) and k-means (100 initialisations, fitted on at most 100,000). It
also reports the ARI of the labels against the groups and between the default and the full graph. The first
call of each process also compiles pynndescent's kernels, so one warm-up call runs first. Prints and writes
``results/graph_clustering_scaling.{md,json}`` (``graph_clustering_scaling_spectral`` for ``--method spectral``)::

    python benchmarks/graph_clustering_scaling.py --spots 10000 100000 1000000 --max-full 100000
    python benchmarks/graph_clustering_scaling.py --method spectral --spots 10000 100000 1000000 --max-full 20000
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from _results import write_results

HERE = Path(__file__).resolve().parent


def embedding(n: int, seed: int = 0):
    """``n`` points in 16 dimensions from 7 overlapping Gaussian groups, and the group of each."""
    import numpy as np
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=n, centers=7, n_features=16, cluster_std=2.0, random_state=seed)
    return x.astype(np.float32), y


def timed(x, method: str, **kwargs):
    from aestetik._domains._clustering import cluster_features

    start = time.perf_counter()
    result = cluster_features(x, 7, method=method, random_state=0, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spots", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--max-full", type=int, default=100_000, help="largest n clustered with the full graph")
    parser.add_argument("--method", default="louvain", choices=["louvain", "leiden", "spectral"])
    args = parser.parse_args()
    from sklearn.metrics import adjusted_rand_score

    timed(embedding(10_000)[0], args.method)  # warm-up: pynndescent's numba kernels
    rows, records = [], []
    for n in args.spots:
        x, truth = embedding(n)
        seconds, default = timed(x, args.method)
        record = {"n_spots": n, "seconds": seconds, "ari": adjusted_rand_score(truth, default.labels)}
        if n <= args.max_full:
            record["seconds_full_graph"], full = timed(x, args.method, max_fit_spots=n)
            record["ari_full_graph"] = adjusted_rand_score(truth, full.labels)
            record["ari_default_vs_full"] = adjusted_rand_score(default.labels, full.labels)
        record["seconds_kmeans"], km = timed(x, "kmeans")
        record["ari_kmeans"] = adjusted_rand_score(truth, km.labels)
        records.append(record)
        full_cells = (
            f"{record['seconds_full_graph']:.1f} | {record['ari_full_graph']:.3f} | {record['ari_default_vs_full']:.3f}"
            if "seconds_full_graph" in record
            else "- | - | -"
        )
        rows.append(
            f"| {n:,} | {seconds:.1f} | {record['ari']:.3f} | {full_cells} | {record['seconds_kmeans']:.1f} | "
            f"{record['ari_kmeans']:.3f} |"
        )
        print(rows[-1], flush=True)
    device = f"CPU ({platform.machine()}, {os.cpu_count()} cores), threads as the libraries choose"
    text = (
        f"`cluster_features(x, 7, method={args.method!r})` on 16-dimensional embeddings of 7 groups; {device}.\n\n"
        f"| spots | {args.method} s | ARI | full graph s | ARI | ARI default vs full | k-means s | ARI |\n"
        "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
    name = "graph_clustering_scaling" + ("_spectral" if args.method == "spectral" else "")
    write_results(HERE / "results", name, text, {"device": device, "runs": records})


if __name__ == "__main__":
    main()

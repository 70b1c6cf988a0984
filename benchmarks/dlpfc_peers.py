"""Peers on the DLPFC sections of ``defaults_candidates.py``: BANKSY, SpaGCN and scanpy Leiden, 7 domains, 3 seeds.

The same functions as ``starmap.py`` with the settings for spots: BANKSY with lambda 0.2 (its authors' choice
for Visium-scale spots), 15 neighbours, m = 1, 20 PCs, on log1p-normalised counts, clustered by k-means and by
Leiden (resolution searched to 7 clusters); SpaGCN without histology (``l`` for p = 0.5, k-means start, its
hexagonal refinement); scanpy PCA + Leiden (resolution searched to 7 clusters). Every method sees every spot; the
ARI leaves out the spots labelled NA, as for ours. Prints and writes ``results/dlpfc_peers.{json,md}``::

    pip install pybanksy SpaGCN --no-deps --target /tmp/bench_site     # their other dependencies are ours
    PYTHONPATH=/tmp/bench_site python benchmarks/dlpfc_peers.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import anndata as ad
import numpy as np
import torch
from _results import write_results
from starmap import run_banksy, run_leiden, run_spagcn

from aestetik._domains._scores import ari_known

HERE = Path(__file__).resolve().parent
SECTIONS = {
    "151676 counts": "dlpfc_151676_counts.h5ad",
    "151674 counts": "dlpfc_151674_counts.h5ad",
    "151676 normalised": "dlpfc_151676.h5ad",
}


def _score(truth, labels) -> float:
    return ari_known(truth, np.asarray(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = []
    for section, file in SECTIONS.items():
        adata = ad.read_h5ad(args.data / file)
        for seed in args.seeds:
            found = run_banksy(adata, seed, lam=0.2, n_domains=7, score=_score)
            found["SpaGCN"] = run_spagcn(adata, seed, n_domains=7, score=_score)
            found["scanpy PCA + Leiden"] = run_leiden(adata, seed, n_domains=7, score=_score)
            for method, (ari, seconds) in found.items():
                runs.append({"section": section, "method": method, "seed": seed, "ari": ari, "seconds": seconds})
                print(f"{section:>18} | {method:<32} | seed {seed} | ARI {ari:.3f} | {seconds:.0f} s", flush=True)
    methods = list(dict.fromkeys(r["method"] for r in runs))
    lines = ["| method | " + " | ".join(SECTIONS) + " |", "|" + "---|" * (len(SECTIONS) + 1)]
    for m in methods:
        cells = []
        for s in SECTIONS:
            v = [r["ari"] for r in runs if r["method"] == m and r["section"] == s]
            cells.append(f"{np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    device = f"CPU ({platform.machine()}, {os.cpu_count()} cores), {args.threads} thread(s)"
    text = f"Peers on the DLPFC sections, 7 domains, NA left out, seeds {args.seeds}; {device}.\n\n" + "\n".join(lines)
    write_results(HERE / "results", "dlpfc_peers", text, {"device": device, "sections": list(SECTIONS), "runs": runs})


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()

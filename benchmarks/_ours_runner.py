"""Run our implementation once on a prepared input and write a JSON record (own process: peak RSS)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--input", type=Path, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--mc-passes", type=int, default=1000)
    p.add_argument("--morphology-weight", type=float, default=0.0)
    p.add_argument("--transcriptomics-key", default="X_pca")
    p.add_argument("--morphology-key", default="X_morph_dummy")
    p.add_argument("--no-refine", action="store_true")
    p.add_argument("--n-clusters", type=int, default=7)
    p.add_argument(
        "--pseudo-label-smoothing", type=float, default=0.0, help="0: pseudo-labels as the reference (identical input)"
    )
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import anndata as ad
    import numpy as np
    from sklearn.metrics import adjusted_rand_score
    from threadpoolctl import threadpool_limits

    import aestetik as ae

    adata = ad.read_h5ad(args.input)
    seconds: dict[str, float] = {}
    t_start = time.perf_counter()
    with threadpool_limits(args.threads):
        t = time.perf_counter()
        ae.pp.prepare(
            adata,
            transcriptomics_key=args.transcriptomics_key,
            morphology_key=args.morphology_key or None,
            n_clusters=args.n_clusters,
            clustering_method="bgm",
            window_size=7,
            pseudo_label_smoothing=args.pseudo_label_smoothing,
            random_state=0,  # the reference clusters with random_state=0 whatever its seed
            mixture_components=args.n_clusters,  # the published mixture, as the reference
            mixture_starts=10,
        )
        seconds["prepare"] = time.perf_counter() - t
        t = time.perf_counter()
        ae.tl.fit(
            adata,
            morphology_weight=args.morphology_weight,
            max_epochs=args.epochs,
            n_mc_samples=args.mc_passes,
            random_state=args.seed,
            accelerator="cpu",
            show_progress_bar=False,
        )
        seconds["fit"] = time.perf_counter() - t
        seconds["train"] = float(adata.uns["aestetik"]["fit"]["seconds"]["train"])
        seconds["embed"] = float(adata.uns["aestetik"]["fit"]["seconds"]["embed"])
        t = time.perf_counter()
        ae.tl.cluster(
            adata, n_clusters=args.n_clusters, method="bgm", refine=not args.no_refine, n_neighbors=10, random_state=0
        )
        seconds["cluster"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t_start
    truth = adata.obs["ground_truth"].astype(str).to_numpy()
    known = ~np.isin(truth, ["NA", "nan"])
    record = {
        "implementation": "aestetik (this repository)",
        "version": ae.__version__,
        "seed": args.seed,
        "threads": args.threads,
        "params": {
            "max_epochs": args.epochs,
            "num_repeats_predict": args.mc_passes,
            "morphology_weight": args.morphology_weight,
            "pseudo_label_smoothing": args.pseudo_label_smoothing,
        },
        "ari": float(adjusted_rand_score(truth[known], adata.obs["aestetik"].astype(str).to_numpy()[known])),
        "ari_transcriptomics_pseudo_labels": float(
            adjusted_rand_score(
                truth[known], adata.obs["aestetik_transcriptomics_cluster"].astype(str).to_numpy()[known]
            )
        ),
        "seconds": seconds,
        "cpu_seconds": {"total": float(sum(os.times()[:2]))},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "labels": adata.obs["aestetik"].astype(str).tolist(),
    }
    args.output.write_text(json.dumps(record))


if __name__ == "__main__":
    main()

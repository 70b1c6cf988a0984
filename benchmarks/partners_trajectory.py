"""Domains along a training run on a large synthetic section: where they are lost, and why.

Trains with a plain loop over :class:`aestetik._model._module.AestetikModule` (the module ``fit`` trains, without
Lightning) and, at the chosen steps, embeds all spots deterministically (``n_mc_samples=0``) and clusters the
embedding with k-means into ``n_domains`` and into ``2 * n_domains`` and ``3 * n_domains`` clusters. The last two
are scored both directly and after mapping every cluster to its majority true domain: if that stays high while
``n_domains``-means drops, the embedding still separates the domains and only the ``n_domains``-means partition
has moved to other splits. It also tabulates the ``n_domains``-means clusters against the pseudo-label pairs
(transcriptomics/morphology) and the pseudo-labels against the true domains.

    python benchmarks/partners_trajectory.py --n-spots 1000000 --partners batch --steps 244,305

On 2 CPU cores 10^6 spots take about 3.3 s per step and 3.5 min per evaluation.
"""

from __future__ import annotations

import argparse
import inspect
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _former import former_mixture
from _results import write_results


def md_table(frame: pd.DataFrame, *, index: bool = True) -> str:
    """``frame`` as a markdown table (without the optional ``tabulate`` dependency of ``DataFrame.to_markdown``)."""
    if index:
        frame = frame.reset_index()
    header = [str(c) for c in frame.columns]
    rows = [[str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def majority_mapped(labels: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Every cluster renamed to the true domain most of its spots belong to."""
    table = pd.crosstab(labels, truth)
    return table.idxmax(axis=1).loc[labels].to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-spots", type=int, default=1_000_000)
    parser.add_argument("--n-domains", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--partners", choices=["all", "batch"], default="batch")
    parser.add_argument("--steps", default="244,305", help="comma-separated steps after which to evaluate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    import torch
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from threadpoolctl import threadpool_limits

    import aestetik as ae
    from aestetik._model._module import AnchorBatches
    from aestetik._model._train import DEFAULT_MORPHOLOGY_WEIGHT, build_module
    from aestetik._model._weights import calibrate_weights
    from aestetik._records import read_prepared

    torch.set_num_threads(1)
    steps = sorted({int(s) for s in args.steps.split(",")})
    k = args.n_domains
    records, tables = [], {}
    with threadpool_limits(1):
        adata = ae.datasets.synthetic(n_spots=args.n_spots, n_domains=k, random_state=args.seed)
        ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=k, random_state=args.seed, **former_mixture(k))
        truth = adata.obs["ground_truth"].astype(str).to_numpy()
        t_labels = adata.obs["aestetik_transcriptomics_cluster"].astype(str).to_numpy()
        m_labels = adata.obs["aestetik_morphology_cluster"].astype(str).to_numpy()
        for name, lab in (("transcriptomics", t_labels), ("morphology", m_labels)):
            tables[f"pseudo-labels ({name}) vs true domains"] = pd.crosstab(
                lab, truth, rownames=["pseudo-label"], colnames=["domain"]
            )
        prep = adata.uns["aestetik"]["prepare"]
        # fit's own defaults (network, loss, optimiser), not a copy of them
        defaults = {name: p.default for name, p in inspect.signature(ae.tl.fit).parameters.items()}
        weights = calibrate_weights(
            DEFAULT_MORPHOLOGY_WEIGHT,
            defaults["total_weight"],
            n_transcriptomics_clusters=int(prep["n_clusters_transcriptomics"]),
            n_morphology_clusters=int(prep["n_clusters_morphology"]),
        )
        params = {**defaults, "partners": args.partners}
        torch.manual_seed(args.seed)
        module = build_module(read_prepared(adata, "aestetik"), params, weights)
        module.on_fit_start()
        optimizer = module.configure_optimizers()
        batches, it = AnchorBatches(adata.n_obs, args.batch_size, args.seed), iter(())
        rng = np.random.default_rng(args.seed)
        fit_rows = rng.choice(adata.n_obs, min(100_000, adata.n_obs), replace=False)
        train_seconds, start = 0.0, time.perf_counter()
        for step in range(1, steps[-1] + 1):
            try:
                anchors = next(it)
            except StopIteration:
                it = iter(batches)
                anchors = next(it)
            module.network.train()
            optimizer.zero_grad(set_to_none=True)
            out = module.step_loss(anchors.long())
            out.loss.backward()
            optimizer.step()
            if step not in steps:
                continue
            train_seconds += time.perf_counter() - start
            z = module.embed(0, seed=args.seed)
            record = {"step": step, "epoch": round(step * args.batch_size / adata.n_obs, 2)}
            record["loss"] = round(float(out.loss.detach()), 4)
            record.update({k_: round(float(v.detach()), 4) for k_, v in out.parts().items()})
            for n_clusters in (k, 2 * k, 3 * k):
                km = KMeans(n_clusters, n_init=10, random_state=args.seed).fit(z[fit_rows])
                lab = km.predict(z)
                record[f"ARI {n_clusters}-means"] = round(adjusted_rand_score(truth, lab), 3)
                if n_clusters > k:
                    mapped = majority_mapped(lab, truth)
                    record[f"ARI {n_clusters}-means, majority-mapped"] = round(adjusted_rand_score(truth, mapped), 3)
                else:
                    pairs = np.char.add(np.char.add(t_labels, "/"), m_labels)
                    tables[f"step {step}: {k}-means clusters vs pseudo-label pairs (t/m)"] = pd.crosstab(
                        pairs, lab, rownames=["t/m"], colnames=["cluster"]
                    )
            records.append(record)
            print(record, flush=True)
            start = time.perf_counter()

    frame = pd.DataFrame(records)
    lines = [
        f"# Domains along training: {adata.n_obs} synthetic spots, partners={args.partners!r}, batch {args.batch_size}",
        "",
        f"{platform.processor() or platform.machine()}, one thread, {train_seconds:.0f} s of training steps.",
        "",
        md_table(frame, index=False),
    ]
    for title, table in tables.items():
        lines += ["", f"## {title}", "", md_table(table)]
    payload = {
        "args": {k_: str(v) for k_, v in vars(args).items()},
        "records": records,
        "tables": {t: tab.to_dict() for t, tab in tables.items()},
    }
    name = f"partners_trajectory_{args.partners}_{adata.n_obs}"
    write_results(args.out_dir, name, "\n".join(lines), payload)


if __name__ == "__main__":
    main()

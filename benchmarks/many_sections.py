"""Several sections and new sections on DLPFC 151676 + 151674 (raw counts, the genes both sections share).

(a) Each section alone against one joint run (``pp.prepare(batch_key=...)``): ARI per section and on the two
together with one label set. (b) A model trained on 151676, applied to 151674 (``pp.prepare(reference=...)``,
``tl.embed(model=...)``, ``tl.cluster(model=...)``), against the model trained on 151674 itself (the 'alone'
run of (a)). Package defaults (100 epochs, 1000 passes, k-means into 7; no morphology from the lowres image), one
thread per run, runs in parallel worker processes. Reads ``../shared/data`` beside the repository (or ``--data``); writes
``results/many_sections.{md,json}``.

    python benchmarks/many_sections.py --seeds 0 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _former import FORMER_CLUSTER, former_mixture
from _results import run_worker, thread_env, write_results

SECTIONS = ("151676", "151674")
HERE = Path(__file__).resolve().parent


def load(data: Path):
    """The two counts sections subset to their shared genes (in 151676's order), and how many genes that is."""
    import anndata as ad

    sections = {s: ad.read_h5ad(data / f"dlpfc_{s}_counts.h5ad") for s in SECTIONS}
    common = [g for g in sections[SECTIONS[0]].var_names if g in set(sections[SECTIONS[1]].var_names)]
    return {s: a[:, common].copy() for s, a in sections.items()}, len(common)


def worker(kind: str, seed: int, data: Path, epochs: int | None) -> dict:
    import tempfile

    import numpy as np
    import scanpy as sc
    import torch

    import aestetik as ae
    from aestetik._domains._scores import ari_known

    torch.set_num_threads(1)
    sc.settings.n_jobs = 1
    sections, n_common = load(data)
    fit_kw = {"max_epochs": epochs} if epochs else {}
    out: dict = {"kind": kind, "seed": seed, "n_common_genes": n_common}

    def ari(adata, key, mask=None):
        obs = adata.obs if mask is None else adata.obs[mask]
        return ari_known(obs["ground_truth"], obs[key].to_numpy())

    def train(adata, **prepare_kw):
        t0 = time.perf_counter()
        ae.pp.prepare(adata, random_state=seed, **prepare_kw, **former_mixture(prepare_kw.get("n_clusters", 7)))
        ae.tl.fit(adata, random_state=seed, show_progress_bar=False, **fit_kw)
        ae.tl.cluster(adata, 7, random_state=seed, **FORMER_CLUSTER)
        return time.perf_counter() - t0

    if kind in SECTIONS:  # alone, and for 151676 the transfer onto 151674
        adata = sections[kind]
        out["seconds"] = train(adata)
        out["ari"] = {kind: ari(adata, "aestetik")}
        out["ari_pseudo_labels"] = {kind: ari(adata, "aestetik_transcriptomics_cluster")}
        if kind == SECTIONS[0]:
            new = sections[SECTIONS[1]]
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as d:
                path = Path(d) / "model.pt"
                ae.tl.save_model(adata, path)
                ae.pp.prepare(new, reference=path)
                ae.tl.embed(new, model=path)
                ae.tl.cluster(new, model=path)
            out["transfer_seconds"] = time.perf_counter() - t0
            out["transfer_ari"] = {SECTIONS[1]: ari(new, "aestetik")}
    else:  # joint
        import anndata as ad

        joint = ad.concat(
            [sections[s] for s in SECTIONS],
            join="inner",
            label="library_id",
            keys=list(SECTIONS),
            uns_merge="unique",
            index_unique="-",
        )
        out["seconds"] = train(joint, batch_key="library_id")
        out["ari"] = {s: ari(joint, "aestetik", (joint.obs["library_id"] == s).to_numpy()) for s in SECTIONS}
        out["ari"]["both"] = ari(joint, "aestetik")
        out["ari_pseudo_labels"] = {
            s: ari(joint, "aestetik_transcriptomics_cluster", (joint.obs["library_id"] == s).to_numpy())
            for s in SECTIONS
        }
        # the libraries morphology was computed for (none when their images are too coarse, the default on lowres)
        out["morphology_libraries"] = sorted(joint.uns.get("morphology", {}).get("libraries", []))
        # why a joint run moves one section up and another down: the shared label set against clustering
        # each section's part of the joint embedding alone, and how section-specific the joint pseudo-labels are
        per_section = {}
        for s in SECTIONS:
            part = joint[(joint.obs["library_id"] == s).to_numpy()].copy()
            ae.tl.cluster(part, 7, random_state=seed, key_added="alone", **FORMER_CLUSTER)
            per_section[s] = ari(part, "alone")
        out["ari_joint_embedding_clustered_per_section"] = per_section
        section = joint.obs["library_id"].astype(str).to_numpy()
        labels = joint.obs["aestetik_transcriptomics_cluster"].astype(int).to_numpy()
        share = [float(np.mean(section[labels == c] == SECTIONS[0])) for c in np.unique(labels)]
        out["pseudo_label_share_of_151676"] = share
        out["share_of_151676"] = float(np.mean(section == SECTIONS[0]))
        # domains of each section in the joint run: how the same domain spreads over the sections
        out["domain_fractions"] = {
            s: np.bincount(joint.obs["aestetik"][joint.obs["library_id"] == s].astype(int), minlength=7).tolist()
            for s in SECTIONS
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None, help="shorter training (default: the package's 100)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "SEED"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.data, args.epochs)))
        return

    tasks = [(kind, seed) for seed in args.seeds for kind in ("joint", *SECTIONS)]

    def one(task):
        cmd = [sys.executable, __file__, "--worker", task[0], str(task[1]), "--data", str(args.data)]
        if args.epochs:
            cmd += ["--epochs", str(args.epochs)]
        return run_worker(cmd, thread_env(1))

    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(one, tasks))
    rows = []
    for seed in args.seeds:
        by = {r["kind"]: r for r in runs if r["seed"] == seed}
        alone = {s: by[s]["ari"][s] for s in SECTIONS}
        joint = by["joint"]["ari"]
        rows.append(
            {
                "seed": seed,
                **{f"alone_{s}": alone[s] for s in SECTIONS},
                **{f"joint_{s}": joint[s] for s in SECTIONS},
                "joint_both": joint["both"],
                "transfer_151676_to_151674": by[SECTIONS[0]]["transfer_ari"][SECTIONS[1]],
                **{f"pseudo_alone_{s}": by[s]["ari_pseudo_labels"][s] for s in SECTIONS},
                **{f"pseudo_joint_{s}": by["joint"]["ari_pseudo_labels"][s] for s in SECTIONS},
            }
        )
    cols = list(rows[0])
    table = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    table += "\n".join(
        "| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |" for r in rows
    )
    n_common = runs[0]["n_common_genes"]
    table = (
        f"DLPFC 151676 + 151674, raw counts, the {n_common} genes both share; package defaults"
        f"{'' if not args.epochs else f' but {args.epochs} epochs'}; ARI on labelled spots (NA left out).\n\n" + table
    )
    write_results(HERE / "results", "many_sections", table, {"rows": rows, "runs": runs, "epochs": args.epochs or 100})


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()

"""Candidate defaults measured on sections nobody tuned on (issue 19): the DLPFC counts sections and the synthetic ones.

Every candidate runs ``ae.pp.prepare`` / ``ae.tl.fit`` / ``ae.tl.cluster`` with package defaults except what it
names, on every section, for several seeds (the seed goes to ``prepare``, ``fit`` and ``cluster``), each run in its
own worker process with one thread. Sections:

- ``151676 counts`` and ``151674 counts``: 10x Visium DLPFC with raw integer counts of 5,000 genes each and their
  lowres H&E (``../shared/data``, or ``--data``); 7 domains, NA spots left out of the ARI.
- ``151676 normalised``: the bundled form of 151676 (library-size-normalised counts of 7,319 genes).
- ``synthetic hex`` and ``synthetic square``: ``ae.datasets.synthetic`` (2,000 spots, 4 domains; hexagonal lattice
  with noise 0.4, square lattice with noise 0.8), whose morphology features ``obsm['X_morphology']`` ``prepare``
  uses by default; the seed also picks the simulated section.

A candidate is adopted only when it raises the mean over these sections and lowers none by more than 0.01. Runs are
appended to ``results/defaults_candidates.jsonl`` as they finish (a rerun skips those already there, so the script
can be stopped and resumed); the table goes to ``results/defaults_candidates.{md,json}``::

    python benchmarks/defaults_candidates.py --seeds 0 1 2 --jobs 2
    python benchmarks/defaults_candidates.py --configs default "refresh 1" --sections "151674 counts"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _former import former_mixture
from _results import append_run, read_runs, run_worker, thread_env, write_results

HERE = Path(__file__).resolve().parent
SECTIONS = {
    "151676 counts": {"file": "dlpfc_151676_counts.h5ad", "n_domains": 7},
    "151674 counts": {"file": "dlpfc_151674_counts.h5ad", "n_domains": 7},
    "151676 normalised": {"file": "dlpfc_151676.h5ad", "n_domains": 7},
    "synthetic hex": {"synthetic": {"lattice": "hex", "noise": 0.4}, "n_domains": 4},
    "synthetic square": {"synthetic": {"lattice": "square", "noise": 0.8}, "n_domains": 4},
}
CONFIGS = {
    "default": "package defaults (morphology from the lowres H&E on DLPFC, the simulated features on synthetic)",
    "RNA only": "morphology_key=None: transcriptomics and neighbourhood only",
    "seurat_v3 HVGs": "the 3,000 highly variable genes chosen on raw counts (seurat_v3), then normalise + log1p + PCA",
    "30 PCs": "n_comps=30 transcriptomics PCs instead of 15",
    "K+1 pseudo-labels": "pseudo-labels with one cluster more than the domains",
    "RNA only, 30 PCs": "morphology_key=None and n_comps=30",
    "RNA only, seurat_v3 HVGs": "morphology_key=None and the seurat_v3 HVGs on counts",
    "RNA only, K+1 pseudo-labels": "morphology_key=None and pseudo-labels with one cluster more than the domains",
    "RNA only, 5000 HVGs": "morphology_key=None and the package's transcriptomics PCA of 5,000 HVGs instead of 3,000",
    "refresh 1": "train, cluster the embedding into the domains, retrain with those as the pseudo-labels of both modalities",
    "Louvain domains": "domains by Louvain on the embedding's neighbour graph (resolution searched for the number "
    "of domains) instead of k-means; morphology_key='auto' (no lowres image on DLPFC)",
    "spatial PCA, 5000 HVGs": "the transcriptomics PCs of prepare take their axes from the neighbourhood-averaged "
    "expression of 5,000 HVGs (prepare(spatial_pca=None, n_top_genes=5000): the package defaults now)",
    "spatial PCA, Louvain domains": "the spatial PCA defaults with domains by Louvain (tl.cluster(method='louvain'))",
    "spatial PCA, Leiden domains": "the spatial PCA defaults with domains by Leiden (tl.cluster(method='leiden'), "
    "the reference's graph clustering; resolution searched for the number of domains)",
    "spatial PCA, merged mixture (K+1 components, 41 starts)": "the current defaults with a pseudo-label mixture of "
    "one component more than the domains, the two most overlapping components (closest means under the shared "
    "covariance) merged, best of 41 starts instead of 11 (prepare(mixture_components=K+1, mixture_starts=40))",
    "merged mixture, spectral domains": "the merged pseudo-label mixture above with domains by spectral clustering "
    "(tl.cluster(method='spectral')): the package defaults since 2026-12-04",
}

#: The transcriptomics PCA of the defaults before "spatial PCA, 5000 HVGs" was adopted; every config but that one
#: runs with it, so that its stored runs stay reproducible.
FORMER_PCA = {"spatial_pca": False, "n_top_genes": 3000}


#: The method of ``tl.cluster`` per config (k-means, the former default, for the others, so that their stored runs
#: stay reproducible).
CLUSTER_METHOD = {
    "merged mixture, spectral domains": "spectral",
    "Louvain domains": "louvain",
    "spatial PCA, Louvain domains": "louvain",
    "spatial PCA, Leiden domains": "leiden",
}


def load(section: str, seed: int, data: Path):
    """The section's AnnData (a fresh copy) and its number of domains."""
    import anndata as ad

    import aestetik as ae

    spec = SECTIONS[section]
    if "file" in spec:
        adata = ad.read_h5ad(data / spec["file"])
    else:
        adata = ae.datasets.synthetic(n_spots=2000, n_domains=4, random_state=seed, **spec["synthetic"])
    return adata, spec["n_domains"]


def seurat_v3_pca(adata, n_comps: int, seed: int) -> None:
    """``obsm['X_pca_v3']``: PCA of log-normalised expression of the 3,000 seurat_v3 HVGs chosen on the counts."""
    import numpy as np
    import scanpy as sc

    tmp = adata.copy()
    sc.pp.highly_variable_genes(tmp, flavor="seurat_v3", n_top_genes=min(3000, tmp.n_vars))
    sc.pp.normalize_total(tmp, target_sum=1e4)
    sc.pp.log1p(tmp)
    tmp = tmp[:, np.asarray(tmp.var["highly_variable"])].copy()
    sc.pp.pca(tmp, n_comps=min(n_comps, tmp.n_vars - 1), random_state=seed)
    adata.obsm["X_pca_v3"] = tmp.obsm["X_pca"]


def worker(section: str, config: str, seed: int, data: Path) -> dict:
    import numpy as np
    import scanpy as sc
    import torch
    from threadpoolctl import threadpool_limits

    import aestetik as ae
    from aestetik._domains._scores import ari_known
    from aestetik._keys import Key

    torch.set_num_threads(1)
    sc.settings.n_jobs = 1
    with threadpool_limits(1):
        adata, k = load(section, seed, data)
        synthetic = "synthetic" in SECTIONS[section]
        prepare_kw: dict = {"n_clusters": k, "random_state": seed}
        if not config.startswith(("spatial PCA", "merged mixture")):
            prepare_kw.update(FORMER_PCA)
        if synthetic:
            prepare_kw["morphology_key"] = "X_morphology"
        if config == "RNA only":
            prepare_kw["morphology_key"] = None
        elif config == "30 PCs":
            prepare_kw["n_comps"] = 30
        elif config == "RNA only, 30 PCs":
            prepare_kw["morphology_key"], prepare_kw["n_comps"] = None, 30
        elif config == "K+1 pseudo-labels":
            prepare_kw["n_clusters"] = k + 1
        elif config == "RNA only, K+1 pseudo-labels":
            prepare_kw["morphology_key"], prepare_kw["n_clusters"] = None, k + 1
        elif config in ("spatial PCA, merged mixture (K+1 components, 41 starts)", "merged mixture, spectral domains"):
            prepare_kw["mixture_components"], prepare_kw["mixture_starts"] = k + 1, 40
        elif config == "RNA only, 5000 HVGs":
            from aestetik.pp._transcriptomics import transcriptomics_pca

            adata.obsm["X_pca_5000"] = transcriptomics_pca(adata, n_comps=15, n_top_genes=5000, random_state=seed)[0]
            prepare_kw["transcriptomics_key"], prepare_kw["morphology_key"] = "X_pca_5000", None
        elif config == "RNA only, seurat_v3 HVGs":
            seurat_v3_pca(adata, 15, seed)
            prepare_kw["transcriptomics_key"], prepare_kw["morphology_key"] = "X_pca_v3", None
        elif config == "seurat_v3 HVGs":
            seurat_v3_pca(adata, 15, seed)
            prepare_kw["transcriptomics_key"] = "X_pca_v3"
        if "mixture_components" not in prepare_kw:  # the mixture of the defaults before 2026-12-04
            prepare_kw.update(former_mixture(prepare_kw["n_clusters"]))
        fit_kw = {"random_state": seed, "show_progress_bar": False, "accelerator": "cpu"}
        t0 = time.perf_counter()
        ae.pp.prepare(adata, **prepare_kw)
        out: dict = {"section": section, "config": config, "seed": seed}
        out["ari_pseudo_labels"] = ari_known(
            adata.obs["ground_truth"], adata.obs[Key.transcriptomics_cluster("aestetik")].to_numpy()
        )
        ae.tl.fit(adata, **fit_kw)
        ae.tl.cluster(adata, n_clusters=k, random_state=seed, method=CLUSTER_METHOD.get(config, "kmeans"))
        if config.startswith("refresh"):
            rounds = int(config.split()[1])
            out["ari_rounds"] = [ari_known(adata.obs["ground_truth"], adata.obs["aestetik"].to_numpy())]
            for _ in range(rounds):
                labels = adata.obs["aestetik"].astype(int).to_numpy()
                record = adata.uns["aestetik"]["prepare"]
                names = [Key.transcriptomics_cluster("aestetik")]
                if int(record["n_morphology"]):
                    names.append(Key.morphology_cluster("aestetik"))
                for name in names:
                    adata.obs[name] = adata.obs["aestetik"].astype(str).astype("category")
                n = len(np.unique(labels))
                record["n_clusters_transcriptomics"] = n
                if int(record["n_morphology"]):
                    record["n_clusters_morphology"] = n
                ae.tl.fit(adata, **fit_kw)
                ae.tl.cluster(adata, n_clusters=k, random_state=seed, method=CLUSTER_METHOD.get(config, "kmeans"))
                out["ari_rounds"].append(ari_known(adata.obs["ground_truth"], adata.obs["aestetik"].to_numpy()))
        out["seconds"] = time.perf_counter() - t0
        out["ari"] = ari_known(adata.obs["ground_truth"], adata.obs["aestetik"].to_numpy())
        out["morphology"] = bool(int(adata.uns["aestetik"]["prepare"]["n_morphology"]))
    return out


#: The defaults over time, as measured runs. After the lowres image was left out: on the DLPFC sections, whose only
#: image is the lowres one (4.3 px per spot), ``morphology_key='auto'`` trains without morphology, i.e. the "RNA
#: only" runs; the synthetic sections keep their stored features, i.e. the "default" runs (mean 0.652). Then the
#: spatial PCA of 5,000 genes became the default ("spatial PCA, 5000 HVGs", k-means domains: the former defaults
#: here), then spectral domains (measured on the same embeddings by ``domain_methods.py``, not a config here), then
#: the merged pseudo-label mixture with spectral domains (the current defaults).
FORMER = {"spatial PCA, 5000 HVGs": tuple(SECTIONS)}
FORMER_NAME = "former defaults (spatial PCA, 5000 HVGs, k-means domains)"
ADOPTED = {"merged mixture, spectral domains": tuple(SECTIONS)}
ADOPTED_NAME = "current defaults (merged mixture, spectral domains)"


def adopted_runs(runs: list[dict]) -> list[dict]:
    """The runs of :data:`FORMER` and :data:`ADOPTED`, relabelled :data:`FORMER_NAME` and :data:`ADOPTED_NAME`."""
    return [
        {**r, "config": name}
        for name, composite in ((FORMER_NAME, FORMER), (ADOPTED_NAME, ADOPTED))
        for r in runs
        if r["section"] in composite.get(r["config"], ())
    ]


def table(runs: list[dict], sections: list[str], configs: list[str]) -> str:
    """Markdown: mean (min-max) ARI per section and candidate, the mean over sections and the change against the
    former defaults (:data:`FORMER_NAME`) and against the current ones (:data:`ADOPTED_NAME`)."""
    import numpy as np

    def cell(config, section):
        values = [r["ari"] for r in runs if r["config"] == config and r["section"] == section]
        return (float(np.mean(values)), min(values), max(values), len(values)) if values else None

    bases = [{s: cell(name, s) for s in sections} for name in (FORMER_NAME, ADOPTED_NAME)]
    head = (
        "| candidate | "
        + " | ".join(sections)
        + " | mean | change against the former defaults (worst section) | change against the current defaults (worst section) |"
    )
    lines = [head, "|" + "---|" * (len(sections) + 4)]
    for config in configs:
        cells = [cell(config, s) for s in sections]
        row = [config]
        for c in cells:
            row.append("-" if c is None else f"{c[0]:.3f} ({c[1]:.3f}-{c[2]:.3f}, n={c[3]})")
        if all(c is not None for c in cells):
            row.append(f"{float(np.mean([c[0] for c in cells])):.3f}")
            for base in bases:
                if all(b is not None for b in base.values()):
                    deltas = [c[0] - base[s][0] for c, s in zip(cells, sections, strict=True)]
                    row.append(f"{np.mean(deltas):+.3f} ({min(deltas):+.3f})")
                else:
                    row.append("-")
        else:
            row += ["-", "-", "-"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--worker", nargs=3, metavar=("SECTION", "CONFIG", "SEED"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], int(args.worker[2]), args.data)))
        return
    log = HERE / "results" / "defaults_candidates.jsonl"
    done = read_runs(log)
    have = {(r["section"], r["config"], r["seed"]) for r in done}
    # the slow DLPFC runs first, so the two workers stay busy to the end
    tasks = [
        (s, c, seed)
        for s in sorted(args.sections, key=lambda s: "synthetic" in s)
        for c in args.configs
        for seed in args.seeds
        if (s, c, seed) not in have
    ]

    def one(task):
        cmd = [sys.executable, __file__, "--worker", *task[:2], str(task[2]), "--data", str(args.data)]
        try:
            run = run_worker(cmd, thread_env(1))
        except subprocess.CalledProcessError as e:  # report and go on with the other runs
            print(f"FAILED {task}: {(e.stderr or '').strip().splitlines()[-1:]}", flush=True)
            return None
        append_run(log, run)
        print(
            f"{run['section']:>16} | {run['config']:<18} | seed {run['seed']} | ARI {run['ari']:.3f} | {run['seconds']:.0f} s",
            flush=True,
        )
        return run

    with ThreadPoolExecutor(args.jobs) as pool:
        done += [r for r in pool.map(one, tasks) if r is not None]
    sections = [s for s in SECTIONS if any(r["section"] == s for r in done)]
    configs = [c for c in CONFIGS if any(r["config"] == c for r in done)] + [FORMER_NAME, ADOPTED_NAME]
    done = done + adopted_runs(done)
    device = f"CPU ({platform.machine()}, {os.cpu_count()} cores), 1 thread per run, {args.jobs} run(s) at a time"
    text = (
        "Candidate defaults (issue 19): ARI mean (min-max over seeds) per section; DLPFC NA spots left out; "
        f"{device}.\n\n"
        + table(done, sections, configs)
        + "\n\n"
        + "\n".join(f"- **{c}**: {CONFIGS[c]}" for c in configs if c in CONFIGS)
        + f'\n- **{FORMER_NAME}**: the package defaults of 2026-12-03: the "spatial PCA, 5000 HVGs" runs'
        f'\n- **{ADOPTED_NAME}**: the package defaults now: the "merged mixture, spectral domains" runs'
        "\n\nEvery config but those named '... domains' cuts the domains by k-means, and every config but those "
        "with a merged mixture uses the published pseudo-label mixture (``_former.py``)."
    )
    payload = {
        "device": device,
        "sections": sections,
        "configs": {c: CONFIGS.get(c, "the package defaults of that time") for c in configs},
        "runs": [r for r in done if r["config"] not in (FORMER_NAME, ADOPTED_NAME)],
        "adopted": {"name": ADOPTED_NAME, "runs": {c: list(s) for c, s in ADOPTED.items()}},
    }
    write_results(HERE / "results", "defaults_candidates", text, payload)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()

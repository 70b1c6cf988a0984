"""How close do the package defaults come to the manual domains, beside simple baselines and BANKSY?

For every section of ``_sections.py`` and every seed, ours runs the package defaults with the documented switch of
its data type::

    ae.pp.prepare(adata, n_clusters=K, <switch>, random_state=seed)
    ae.tl.fit(adata, random_state=seed)
    ae.tl.cluster(adata, n_clusters=K, random_state=seed)

(on the sections with an H&E image also with ``morphology_key=None``, to show what the image adds or costs),
beside two baselines on the same transcriptomics PCs as ``prepare`` computes them (log1p unless logged, per-spot
normalisation of counts, up to 5,000 highly variable genes, 15 PCs; on MERFISH the first 15 of the stored PCs):
**PCA + k-means**, and **neighbour-averaged PCA + k-means** (each spot's PCs averaged with those of its 6 nearest
spatial neighbours, squidpy's ``spatial_neighbors``, then k-means). With ``--banksy-python`` also BANKSY
(``pybanksy`` in its own environment, never a dependency; lambda 0.2 for spots, 0.8 for cells; 15 neighbours,
m = 1, 20 PCs of the BANKSY matrix of log1p-normalised expression) cut by k-means, a Gaussian mixture and Leiden
(resolution searched to K). ARI against ``obs["ground_truth"]`` without the spots labelled NA; seconds per run
from the data to the labels, one thread, after an untimed warm-up run (numba compiles its kernels once per
process). Each finished run is written at once, so a stopped run resumes
(``--fresh`` starts over)::

    python benchmarks/accuracy.py                                  # every section, 3 seeds
    python benchmarks/accuracy.py --sections her2st_a1 mob_rep12   # some of them
    python3.11 -m venv /tmp/banksy && /tmp/banksy/bin/pip install pybanksy
    python benchmarks/accuracy.py --banksy-python /tmp/banksy/bin/python
    python benchmarks/accuracy.py --quick                          # smoke run: one seed, 5 epochs, results in /tmp

Writes ``results/accuracy.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _sections import (
    GROUPS,
    RESULTS,
    SECTIONS,
    ari,
    banksy_lambda,
    banksy_pcs,
    data_dir,
    kmeans,
    leiden_k,
    limit_threads,
    machine,
    read_section,
    spread,
    write_results,
)

OURS = "AESTETIK (defaults)"
OURS_RNA = "AESTETIK, morphology_key=None"  # the sections with an H&E image: what the image adds or costs
PCA_KMEANS = "PCA + k-means"
NBR_KMEANS = "neighbour-averaged PCA + k-means"
BANKSY = ("BANKSY, k-means", "BANKSY, mixture", "BANKSY, Leiden")
NOT_RUN = "not run"


def _pcs(adata, section, seed: int) -> np.ndarray:
    """The transcriptomics PCs as ``prepare`` computes them from ``X`` (or the stored ones, first 15)."""
    import scanpy as sc
    from scipy import sparse

    key = section.prepare.get("transcriptomics_key")
    if key:
        return np.asarray(adata.obsm[key])[:, :15]
    a = sc.AnnData(X=adata.X.copy().astype(np.float32))
    values = a.X.data if sparse.issparse(a.X) else a.X
    if np.all(values == np.round(values)):  # as prepare: spots to 10^4 counts, cells to their median depth
        sc.pp.normalize_total(a, target_sum=None if section.prepare.get("coords") == "cells" else 1e4)
    sc.pp.log1p(a)
    if a.n_vars > 5000:
        sc.pp.highly_variable_genes(a, flavor="seurat", n_top_genes=5000, subset=True)
    sc.pp.pca(a, n_comps=min(15, a.n_vars - 1), random_state=seed)
    return a.obsm["X_pca"]


def run_baselines(adata, section, seed: int) -> dict[str, tuple[float, float]]:
    import squidpy as sq
    from scipy import sparse

    truth, k = adata.obs["ground_truth"], section.n_domains
    t0 = time.perf_counter()
    pcs = _pcs(adata, section, seed)
    t_pcs = time.perf_counter() - t0
    t = time.perf_counter()
    found = {PCA_KMEANS: (ari(truth, kmeans(pcs, k, seed)), t_pcs + time.perf_counter() - t)}
    t = time.perf_counter()
    import anndata as ad

    g = ad.AnnData(obs=adata.obs[[]], obsm={"spatial": np.asarray(adata.obsm["spatial"], dtype=float)})
    sq.gr.spatial_neighbors(g, coord_type="generic", n_neighs=6, spatial_key="spatial")
    adj = g.obsp["spatial_connectivities"]
    adj = (adj > 0).astype(np.float64) + sparse.identity(adj.shape[0], format="csr")
    averaged = sparse.diags(1.0 / np.asarray(adj.sum(axis=1)).ravel()) @ adj @ pcs
    found[NBR_KMEANS] = (ari(truth, kmeans(averaged, k, seed)), t_pcs + time.perf_counter() - t)
    return found


def run_ours(adata, section, seed: int, epochs: int | None, **prepare) -> tuple[float, float, dict]:
    import aestetik as ae

    a = adata.copy()
    k = section.n_domains
    t0 = time.perf_counter()
    ae.pp.prepare(a, n_clusters=k, random_state=seed, **section.prepare, **prepare)
    t1 = time.perf_counter()
    ae.tl.fit(a, random_state=seed, show_progress_bar=False, **({"max_epochs": epochs} if epochs else {}))
    t2 = time.perf_counter()
    ae.tl.cluster(a, n_clusters=k, random_state=seed, show_progress_bar=False)
    t3 = time.perf_counter()
    stages = {"prepare": t1 - t0, "fit": t2 - t1, "cluster": t3 - t2}
    morphology = a.uns["aestetik"]["prepare"].get("params", {}).get("morphology_key")
    return ari(a.obs["ground_truth"], a.obs["aestetik"]), t3 - t0, {"stages": stages, "morphology": str(morphology)}


def warm_up() -> None:
    """One small untimed run first, so that no timed run pays for compiling the numba kernels."""
    import aestetik as ae

    a = ae.datasets.synthetic(n_spots=500, n_domains=4, random_state=0)
    ae.pp.prepare(a, n_clusters=4)
    ae.tl.fit(a, max_epochs=1, n_mc_samples=10, show_progress_bar=False)
    ae.tl.cluster(a, n_clusters=4, show_progress_bar=False)


def banksy_worker(section_name: str, seed: int, data: Path) -> None:
    """Runs in BANKSY's environment: prints one JSON line ``{method: [ari, seconds]}``."""
    import scanpy as sc
    from sklearn.mixture import GaussianMixture

    limit_threads(1)
    section = SECTIONS[section_name]
    adata, k = read_section(section, data), section.n_domains
    lam = banksy_lambda(section)
    t0 = time.perf_counter()
    pcs = banksy_pcs(adata, section, seed)
    t_embed = time.perf_counter() - t0
    found = {}
    t = time.perf_counter()
    found[BANKSY[0]] = [ari(adata.obs["ground_truth"], kmeans(pcs, k, seed)), t_embed + time.perf_counter() - t]
    t = time.perf_counter()
    gm = GaussianMixture(k, n_init=3, random_state=seed).fit(pcs)
    found[BANKSY[1]] = [ari(adata.obs["ground_truth"], gm.predict(pcs)), t_embed + time.perf_counter() - t]
    t = time.perf_counter()
    g = sc.AnnData(X=np.zeros((len(pcs), 1), np.float32), obsm={"X_pca": pcs})
    sc.pp.neighbors(g, use_rep="X_pca", n_neighbors=50, random_state=seed)
    found[BANKSY[2]] = [ari(adata.obs["ground_truth"], leiden_k(g, k, seed)), t_embed + time.perf_counter() - t]
    print(json.dumps({"lambda": lam, "found": found}))


def run_banksy(python: str, section, seed: int, data: Path) -> dict[str, tuple[float, float]]:
    cmd = [python, __file__, "--banksy-worker", section.name, str(seed), "--data-dir", str(data)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return {m: tuple(v) for m, v in json.loads(out.strip().splitlines()[-1])["found"].items()}


def tables(payload: dict) -> str:
    runs = payload["runs"]
    lines = [
        f"ARI against the manual domains (NA left out), mean (min-max) over seeds {payload['seeds']}, and seconds "
        f"per run from the data to the labels; {payload['machine']}; aestetik {payload['aestetik']}.",
    ]
    for group in GROUPS:
        names = [n for n in payload["sections"] if SECTIONS[n].group == group]
        if not names:
            continue
        methods = [m for m in payload["methods"] if any(x["section"] in names and x["method"] == m for x in runs)]
        lines += ["", f"**{group}**", "", "| section | K | switch | " + " | ".join(methods) + " |"]
        lines.append("|---|---|---|" + "---|" * len(methods))
        means = {m: [] for m in methods}
        for n in names:
            s = SECTIONS[n]
            cells = []
            for m in methods:
                r = [x for x in runs if x["section"] == n and x["method"] == m]
                if not r:
                    cells.append(NOT_RUN)
                    continue
                means[m].append(np.mean([x["ari"] for x in r]))
                cells.append(f"{spread([x['ari'] for x in r])}, {np.mean([x['seconds'] for x in r]):.0f} s")
            lines.append(f"| {n} | {s.n_domains} | `{s.switch}` | " + " | ".join(cells) + " |")
        if len(names) > 1:
            cells = [f"{np.mean(v):.3f} (n={len(v)})" if v else NOT_RUN for v in means.values()]
            lines.append("| mean over the sections run | | | " + " | ".join(cells) + " |")
    missing = list(payload["sections_not_run"])
    if missing:
        lines += ["", "Not run here: " + ", ".join(missing) + " (`--sections NAME`)."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data-dir", default=None, help="default: $AESTETIK_DATA, else ../shared/data")
    p.add_argument("--banksy-python", default=None, help="a python with pybanksy (its own environment)")
    p.add_argument("--quick", action="store_true", help="smoke run: one seed, 5 epochs, written to a temporary folder")
    p.add_argument("--out", type=Path, default=None, help="folder of the result files (default results/)")
    p.add_argument("--fresh", action="store_true", help="forget the runs already in the result file")
    p.add_argument("--banksy-worker", nargs=2, metavar=("SECTION", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    data = data_dir(args.data_dir)
    if args.banksy_worker:
        banksy_worker(args.banksy_worker[0], int(args.banksy_worker[1]), data)
        return
    import aestetik as ae

    limit_threads(1)
    seeds, epochs = ([args.seeds[0]], 5) if args.quick else (args.seeds, None)
    out = args.out or (Path(tempfile.mkdtemp(prefix="accuracy_")) if args.quick else RESULTS)
    methods = [OURS, OURS_RNA, PCA_KMEANS, NBR_KMEANS] + (list(BANKSY) if args.banksy_python else [])
    old = out / "accuracy.json"
    stored = {} if args.fresh or not old.exists() else json.loads(old.read_text())
    runs = stored.get("runs", [])
    methods += [m for m in dict.fromkeys(r["method"] for r in runs) if m not in methods]
    done = {(r["section"], r["method"], r["seed"]) for r in runs}
    sections = list(dict.fromkeys([*args.sections, *(r["section"] for r in runs)]))
    payload = {
        "question": "ARI of the package defaults against the manual domains, beside baselines",
        "commands": [*stored.get("commands", []), "python benchmarks/accuracy.py " + " ".join(sys.argv[1:])],
        "machine": machine(1),
        "aestetik": ae.__version__,
        "seeds": seeds,
        "epochs": epochs or "default",
        "methods": methods,
        "sections": [n for n in SECTIONS if n in sections],
        "sections_not_run": [n for n in SECTIONS if n not in sections],
        "runs": runs,
    }

    def add(section, method: str, seed: int, value: float, seconds: float, **info) -> None:
        runs.append({"section": section.name, "method": method, "seed": seed, "ari": value, "seconds": seconds, **info})
        print(f"{section.name:28s} {method:34s} seed {seed}: ARI {value:.3f} ({seconds:.1f} s)", flush=True)
        (out / "accuracy.json").parent.mkdir(parents=True, exist_ok=True)
        (out / "accuracy.json").write_text(json.dumps(payload, indent=1) + "\n")

    warm_up()
    for name in args.sections:
        section = SECTIONS[name]
        adata = read_section(section, data)
        assert adata.obs["ground_truth"].astype(str).replace("NA", np.nan).dropna().nunique() == section.n_domains
        for seed in seeds:
            if (name, OURS, seed) not in done:
                value, seconds, info = run_ours(adata, section, seed, epochs)
                add(section, OURS, seed, value, seconds, **info)
            if section.image and (name, OURS_RNA, seed) not in done:
                value, seconds, info = run_ours(adata, section, seed, epochs, morphology_key=None)
                add(section, OURS_RNA, seed, value, seconds, **info)
            if (name, PCA_KMEANS, seed) not in done or (name, NBR_KMEANS, seed) not in done:
                for method, (value, seconds) in run_baselines(adata, section, seed).items():
                    if (name, method, seed) not in done:
                        add(section, method, seed, value, seconds)
            if args.banksy_python and any((name, m, seed) not in done for m in BANKSY):
                for method, (value, seconds) in run_banksy(args.banksy_python, section, seed, data).items():
                    add(section, method, seed, value, seconds, lam=0.8 if section.cells else 0.2)
    write_results("accuracy", tables(payload), payload, out)


if __name__ == "__main__":
    main()

"""How the domains are cut from one trained embedding (issue 19): k-means, the graph methods and others.

For each section and seed, the default flow is trained once (``ae.pp.prepare`` / ``ae.tl.fit`` with the package
defaults of its stored runs, i.e. the published pseudo-label mixture (``_former.py``), the seed going to both, as
in ``defaults_candidates.py``), and the same embedding ``obsm['X_aestetik']`` is cut into the domains by each
method, each followed by the package's spatial refinement (10 confident neighbours on the lattice):

- ``kmeans`` (the former default), ``leiden``, ``louvain``, ``bgm``, ``spectral`` (the default):
  ``ae.tl.cluster(method=...)``;
- ``kmeans, no refinement``: ``ae.tl.cluster(refine=False)``;
- ``ward``, ``GMM full``, ``GMM tied``, ``k-means on unit-length rows``: scikit-learn on the embedding (not package
  options), then the same refinement.

Also recorded per run: the within-domain sum of squares of the manual labels divided by that of the k-means
domains (before refinement, labelled spots), i.e. whether k-means' own objective prefers another partition than
the truth (above 1), and what ``ae.tl.cluster(n_clusters='auto')`` chooses with k-means and with spectral
clustering. Sections are those of ``defaults_candidates.py``. Runs are appended to
``results/domain_methods.jsonl`` (resumable); the table goes to ``results/domain_methods.{md,json}``.
``--cache DIR`` keeps each trained AnnData there (and reuses it), so the methods can be rerun without training::

    python benchmarks/domain_methods.py --jobs 2
    python benchmarks/domain_methods.py --sections "synthetic square" --seeds 3 4 5 --cache /tmp/domain_methods
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from _former import former_mixture
from _results import read_runs, run_logged, write_results
from defaults_candidates import SECTIONS, load

HERE = Path(__file__).resolve().parent
PACKAGE_METHODS = ("kmeans", "kmeans, no refinement", "leiden", "louvain", "bgm", "spectral")
OTHER_METHODS = ("ward", "GMM full", "GMM tied", "k-means on unit-length rows")
METHODS = [*PACKAGE_METHODS, *OTHER_METHODS]
#: Methods whose ``n_clusters='auto'`` choice is recorded.
AUTO_METHODS = ("kmeans", "spectral")


def _auto_field(name: str, method: str) -> str:
    """Key of an ``n_clusters='auto'`` record: ``name`` for k-means (the runs before spectral), else ``name method``."""
    return name if method == "kmeans" else f"{name} {method}"


def other_labels(name: str, x, k: int, seed: int):
    """Labels of ``x`` into ``k`` groups by one of :data:`OTHER_METHODS` (scikit-learn)."""
    import numpy as np
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.mixture import GaussianMixture

    from aestetik._domains._clustering import cluster_features

    if name == "ward":
        return AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x)
    if name.startswith("GMM"):
        cov = name.split()[1]
        return GaussianMixture(k, covariance_type=cov, n_init=5, random_state=seed).fit_predict(x)
    if name == "k-means on unit-length rows":
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        return cluster_features(unit, k, method="kmeans", random_state=seed).labels  # the package's k-means
    raise ValueError(name)


def within_ss(x, labels) -> float:
    """Sum over groups of the squared distances of ``x`` to its group's mean."""
    import numpy as np

    return float(sum(((x[labels == g] - x[labels == g].mean(axis=0)) ** 2).sum() for g in np.unique(labels)))


def trained(section: str, seed: int, data: Path, cache: Path | None):
    """The section after ``prepare`` and ``fit`` with the defaults of its runs (from ``cache`` when it is there)."""
    import anndata as ad

    import aestetik as ae

    path = cache / f"{section.replace(' ', '_')}_{seed}.h5ad" if cache else None
    if path is not None and path.exists():
        return ad.read_h5ad(path)
    adata, k = load(section, seed, data)
    kw = {"n_clusters": k, "random_state": seed, **former_mixture(k)}  # the training defaults of its runs
    if "synthetic" in SECTIONS[section]:
        kw["morphology_key"] = "X_morphology"
    ae.pp.prepare(adata, **kw)
    ae.tl.fit(adata, random_state=seed, show_progress_bar=False, accelerator="cpu")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        adata.write_h5ad(path)
    return adata


def worker(section: str, seed: int, data: Path, cache: Path | None) -> dict:
    import numpy as np
    import scanpy as sc
    import torch
    from threadpoolctl import threadpool_limits

    import aestetik as ae
    from aestetik._domains._assign import REFINE_CONFIDENCE
    from aestetik._domains._clustering import cluster_features
    from aestetik._domains._refine import refine_labels
    from aestetik._domains._scores import ari_known, known_labels
    from aestetik._records import refinement_coordinates

    torch.set_num_threads(1)
    sc.settings.n_jobs = 1
    out: dict = {"section": section, "seed": seed, "ari": {}, "seconds": {}}
    with threadpool_limits(1):
        adata = trained(section, seed, data, cache)
        k = SECTIONS[section]["n_domains"]
        truth = adata.obs["ground_truth"]
        for name in PACKAGE_METHODS:
            method = name.split(",")[0]
            t = time.perf_counter()
            res = ae.tl.cluster(
                adata, n_clusters=k, method=method, random_state=seed, refine="refinement" not in name, copy=True
            )
            out["seconds"][name] = time.perf_counter() - t
            out["ari"][name] = ari_known(truth, res.obs["aestetik"].to_numpy())
        x = np.asarray(adata.obsm["X_aestetik"], dtype=np.float64)
        coords = refinement_coordinates(adata, prepare_key="aestetik", spatial_key="spatial")[1]
        for name in OTHER_METHODS:
            t = time.perf_counter()
            labels = np.asarray(other_labels(name, x, k, seed))
            labels = refine_labels(labels, coords, confidence=None, threshold=REFINE_CONFIDENCE, n_neighbors=10)
            out["seconds"][name] = time.perf_counter() - t
            out["ari"][name] = ari_known(truth, labels)
        for method in AUTO_METHODS:
            t = time.perf_counter()
            auto = ae.tl.cluster(
                adata, n_clusters="auto", method=method, random_state=seed, copy=True, show_progress_bar=False
            )
            out[_auto_field("auto_n_clusters", method)] = int(auto.uns["aestetik"]["cluster"]["stability"]["chosen"])
            out[_auto_field("auto_ari", method)] = ari_known(truth, auto.obs["aestetik"].to_numpy())
            out["seconds"][f"{method}, auto"] = time.perf_counter() - t
        known = known_labels(truth)
        km = cluster_features(x[known], k, method="kmeans", random_state=seed).labels
        out["truth_over_kmeans_ss"] = within_ss(x[known], truth.to_numpy()[known]) / within_ss(x[known], km)
    return out


def table(runs: list[dict], sections: list[str]) -> str:
    """Markdown: mean (min-max) ARI per method and section, the mean and the change against k-means."""
    import numpy as np

    def cell(method, section):
        values = [r["ari"][method] for r in runs if r["section"] == section]
        return (float(np.mean(values)), min(values), max(values), len(values)) if values else None

    def seconds(method):
        values = [r["seconds"][method] for r in runs if "synthetic" not in r["section"]]
        return f"{np.mean(values):.1f}" if values else "-"

    base = {s: cell("kmeans", s) for s in sections}
    lines = [
        "| domains by | " + " | ".join(sections) + " | mean | change against k-means (worst section) | seconds, "
        "DLPFC (mean) |",
        "|" + "---|" * (len(sections) + 4),
    ]
    for method in METHODS:
        cells = [cell(method, s) for s in sections]
        row = [method] + [f"{c[0]:.3f} ({c[1]:.3f}-{c[2]:.3f}, n={c[3]})" for c in cells]
        deltas = [c[0] - base[s][0] for c, s in zip(cells, sections, strict=True)]
        row += [
            f"{np.mean([c[0] for c in cells]):.3f}",
            f"{np.mean(deltas):+.3f} ({min(deltas):+.3f})",
            seconds(method),
        ]
        lines.append("| " + " | ".join(row) + " |")
    ratios = []
    for s in sections:
        values = [r["truth_over_kmeans_ss"] for r in runs if r["section"] == s]
        ratios.append(f"{np.mean(values):.2f} ({min(values):.2f}-{max(values):.2f})")
    lines.append("| within-domain sum of squares, manual labels / k-means | " + " | ".join(ratios) + " | | | |")
    for method in AUTO_METHODS:
        autos = []
        for s in sections:
            ks = [str(r[_auto_field("auto_n_clusters", method)]) for r in runs if r["section"] == s]
            aris = [r[_auto_field("auto_ari", method)] for r in runs if r["section"] == s]
            autos.append(f"K = {', '.join(ks)}: ARI {np.mean(aris):.3f} ({min(aris):.3f}-{max(aris):.3f})")
        lines.append(
            f"| {method}, `n_clusters='auto'` (K chosen per seed) | "
            + " | ".join(autos)
            + f" | | | {seconds(method + ', auto')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--worker", nargs=3, metavar=("SECTION", "UNUSED", "SEED"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[2]), args.data, args.cache)))
        return
    log = HERE / "results" / "domain_methods.jsonl"
    done = read_runs(log)
    have = {(r["section"], r["seed"]) for r in done}
    tasks = [
        (s, "-", seed)
        for s in sorted(args.sections, key=lambda s: "synthetic" in s)
        for seed in args.seeds
        if (s, seed) not in have
    ]
    extra = () if args.cache is None else ("--cache", str(args.cache))
    done += run_logged(__file__, tasks, args.data, log, args.jobs, extra) if tasks else []
    sections = [s for s in SECTIONS if any(r["section"] == s for r in done)]
    device = f"CPU ({platform.machine()}, {os.cpu_count()} cores), 1 thread per run, {args.jobs} run(s) at a time"
    text = (
        "Domains cut from the same trained embedding (package defaults, the seed to prepare, fit and the clustering), "
        f"each method followed by the spatial refinement; ARI mean (min-max over seeds), DLPFC NA spots left out; "
        f"{device}.\n\n" + table(done, sections)
    )
    write_results(HERE / "results", "domain_methods", text, {"device": device, "python": sys.version, "runs": done})


if __name__ == "__main__":
    main()

"""How do published peers do on the same sections: SpaGCN and scanpy's PCA + Leiden?

Every method sees every spot and is scored like ours in ``accuracy.py`` (ARI against ``obs["ground_truth"]``, NA
left out; seconds per run, one thread). SpaGCN (Hu et al. 2021) without histology: 50 PCs (fewer when there are
fewer genes), ``l`` for p = 0.5, k-means start with K clusters, 200 epochs, then its refinement (hexagonal
neighbours on Visium, square elsewhere). scanpy: log1p-normalised expression, 20 PCs, 15 neighbours, Leiden with
the resolution searched to K clusters. On MERFISH, whose ``X`` holds PCs, both use ``X`` as it is. BANKSY is in
``accuracy.py --banksy-python``.

SpaGCN is not a dependency: install it apart, without its dependencies (ours cover them)::

    pip install --no-deps --target /tmp/peers_site SpaGCN
    PYTHONPATH=/tmp/peers_site python benchmarks/peers.py                # every section but MERFISH, 3 seeds
    PYTHONPATH=/tmp/peers_site python benchmarks/peers.py --quick        # one section, one seed, /tmp

Writes ``results/peers.{md,json}``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _sections import (
    GROUPS,
    RESULTS,
    SECTIONS,
    SLOW,
    VISIUM,
    ari,
    data_dir,
    leiden_k,
    limit_threads,
    machine,
    spread,
    write_results,
)

SPAGCN, LEIDEN = "SpaGCN (no histology, refined)", "scanpy PCA + Leiden"


def _expression(adata, section):
    import scanpy as sc

    a = adata.copy()
    if not section.prepare.get("transcriptomics_key"):
        sc.pp.normalize_total(a, target_sum=1e4)
        sc.pp.log1p(a)
    a.X = np.asarray(a.X.todense()) if hasattr(a.X, "todense") else np.asarray(a.X)
    return a


def run_leiden(adata, section, seed: int) -> tuple[float, float]:
    import scanpy as sc

    t0 = time.perf_counter()
    a = _expression(adata, section)
    sc.pp.pca(a, n_comps=min(20, a.n_vars - 1), random_state=seed)
    sc.pp.neighbors(a, n_neighbors=15, random_state=seed)
    labels = leiden_k(a, section.n_domains, seed)
    return ari(adata.obs["ground_truth"], labels), time.perf_counter() - t0


def run_spagcn(adata, section, seed: int) -> tuple[float, float]:
    import SpaGCN as spg
    import torch

    t0 = time.perf_counter()
    a = _expression(adata, section)
    x, y = a.obsm["spatial"][:, 0].tolist(), a.obsm["spatial"][:, 1].tolist()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adj = spg.calculate_adj_matrix(x=x, y=y, histology=False)
        clf = spg.SpaGCN()
        clf.set_l(spg.search_l(0.5, adj, start=0.01, end=1000, tol=0.01, max_run=100))
        random.seed(seed)
        torch.manual_seed(seed)
        np.random.seed(seed)  # noqa: NPY002 - SpaGCN draws from the global generator
        clf.train(
            a, adj, num_pcs=min(50, a.n_vars - 1), init_spa=True, init="kmeans", n_clusters=section.n_domains,
            tol=5e-3, lr=0.05, max_epochs=200,
        )  # fmt: skip
        pred, _ = clf.predict()
        shape = "hexagon" if section.group == VISIUM else "square"
        refined = spg.refine(sample_id=a.obs.index.tolist(), pred=pred.tolist(), dis=adj, shape=shape)
    return ari(adata.obs["ground_truth"], refined), time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", default=[n for n in SECTIONS if n not in SLOW], choices=list(SECTIONS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    import anndata as ad
    import scanpy as sc

    limit_threads(1)
    sc.settings.verbosity = 0
    sections, seeds = (["starmap_bz5"], [0]) if a.quick else (a.sections, a.seeds)
    out = Path(tempfile.mkdtemp(prefix="peers_")) if a.quick else RESULTS
    try:
        import SpaGCN  # noqa: F401

        methods = {SPAGCN: run_spagcn, LEIDEN: run_leiden}
    except ImportError:
        print("SpaGCN not found (see the docstring): scanpy only", file=sys.stderr)
        methods = {LEIDEN: run_leiden}
    runs = []
    for name in sections:
        section = SECTIONS[name]
        adata = ad.read_h5ad(data_dir(a.data_dir) / section.file)
        for seed in seeds:
            for method, run in methods.items():
                value, seconds = run(adata, section, seed)
                runs.append({"section": name, "method": method, "seed": seed, "ari": value, "seconds": seconds})
                print(f"{name:28s} {method:32s} seed {seed}: ARI {value:.3f} ({seconds:.1f} s)", flush=True)
    lines = [f"ARI (NA left out), mean (min-max) over seeds {seeds}, seconds per run; {machine(1)}.", ""]
    lines += ["| group | section | K | " + " | ".join(methods) + " |", "|---|---|---|" + "---|" * len(methods)]
    for name in sorted(sections, key=lambda n: GROUPS.index(SECTIONS[n].group)):
        cells = []
        for m in methods:
            r = [x for x in runs if x["section"] == name and x["method"] == m]
            cells.append(f"{spread([x['ari'] for x in r])}, {np.mean([x['seconds'] for x in r]):.0f} s")
        lines.append(f"| {SECTIONS[name].group} | {name} | {SECTIONS[name].n_domains} | " + " | ".join(cells) + " |")
    payload = {"question": __doc__.splitlines()[0], "machine": machine(1), "seeds": seeds, "runs": runs}
    write_results("peers", "\n".join(lines), payload, out)


if __name__ == "__main__":
    main()

"""Bit-identity check for refactors: run the default flow (and the loops over it) and save every output.

Run once on the code before a change and once after, then compare:

    python benchmarks/identity_check.py --out before.npz            # on the old checkout
    python benchmarks/identity_check.py --out after.npz --compare before.npz

One thread (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``) so that floating-point reductions run in the
same order. The DLPFC part trains with the package defaults (seed 0: 100 epochs, 1000 Monte-Carlo passes;
about 1-3 minutes on one core); ``--quick`` shortens it to 5 epochs and 20 passes. A synthetic section then
runs ``tl.consensus`` (2 seeds), ``tl.ablation``, ``tl.cluster`` (bgm, leiden, louvain, a range of K) and
``save_model``/``load_model``/``embed`` with few epochs. Prints a table: every array, and whether it is
bit-identical; exits 1 when any differs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def run(*, quick: bool) -> dict:
    import numpy as np
    import scanpy as sc
    import torch

    import aestetik as ae

    torch.set_num_threads(1)
    sc.settings.n_jobs = 1
    out: dict = {}

    def labels(adata, key):
        return adata.obs[key].astype(str).to_numpy().astype("U")

    # --- DLPFC default flow
    t0 = time.perf_counter()
    adata = ae.datasets.dlpfc_151676()
    # the lowres morphology explicitly: what `prepare`'s 'auto' computed before it left out images of spots under
    # 10 px (issue 19), so that the check still covers the image path and compares with runs from before
    ae.pp.morphology(adata)
    ae.pp.prepare(adata, morphology_key="X_morphology")
    fit_kw = {"max_epochs": 5, "n_mc_samples": 20} if quick else {}
    ae.tl.fit(adata, show_progress_bar=False, **fit_kw)
    ae.tl.cluster(adata, n_clusters=7)
    for key in ("aestetik_input", "aestetik_grid", "aestetik_lattice", "X_morphology", "X_pca", "X_aestetik"):
        out[f"dlpfc/{key}"] = np.asarray(adata.obsm[key])
    for key in ("aestetik_transcriptomics_cluster", "aestetik_morphology_cluster", "aestetik"):
        out[f"dlpfc/{key}"] = labels(adata, key)
    out["dlpfc/loss"] = np.asarray(adata.uns["aestetik"]["fit"]["history"]["loss"])
    print(f"DLPFC default flow: {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    # --- synthetic: consensus, ablation, bgm clustering, model file round trip
    s = ae.datasets.synthetic(n_spots=600, random_state=3)
    ae.pp.prepare(s, morphology_key="X_morphology", n_clusters=4)
    short = {"max_epochs": 3, "n_mc_samples": 10}
    ae.tl.consensus(s, n_seeds=2, n_clusters=4, fit_kwargs=short, show_progress_bar=False, key_added="cons")
    out["synthetic/consensus"] = labels(s, "cons")
    out["synthetic/consensus_confidence"] = s.obs["cons_confidence"].to_numpy()
    out["synthetic/consensus_seed_labels"] = np.asarray(s.obsm["cons_seed_labels"])
    out["synthetic/consensus_embedding"] = np.asarray(s.obsm["X_cons"])
    ae.tl.ablation(s, n_clusters=4, ground_truth_key="ground_truth", fit_kwargs=short, show_progress_bar=False)
    for setting in ("transcriptomics", "morphology", "both"):
        out[f"synthetic/ablation_{setting}"] = labels(s, f"aestetik_ablation_{setting}")
    out["synthetic/ablation_pairwise_ari"] = np.asarray(s.uns["aestetik_ablation"]["pairwise_ari"])
    ae.tl.fit(s, show_progress_bar=False, **short)
    ae.tl.cluster(s, n_clusters=4, method="bgm", key_added="bgm")
    out["synthetic/bgm"] = labels(s, "bgm")
    out["synthetic/bgm_proba"] = s.obs["bgm_proba"].to_numpy()
    ae.tl.cluster(s, n_clusters=range(3, 6), key_added="auto", show_progress_bar=False)
    out["synthetic/auto"] = labels(s, "auto")
    for method in ("leiden", "louvain"):
        ae.tl.cluster(s, n_clusters=4, method=method, key_added=method)
        out[f"synthetic/{method}"] = labels(s, method)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        ae.tl.save_model(s, path)
        t = ae.datasets.synthetic(n_spots=600, random_state=3)
        ae.pp.prepare(t, morphology_key="X_morphology", n_clusters=4)
        ae.tl.load_model(t, path)
        ae.tl.embed(t, n_mc_samples=10)
    out["synthetic/fit_embedding"] = np.asarray(s.obsm["X_aestetik"])
    out["synthetic/loaded_embedding"] = np.asarray(t.obsm["X_aestetik"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--compare", type=Path, default=None, help="npz of an earlier run to compare with")
    parser.add_argument("--quick", action="store_true", help="5 epochs and 20 passes on DLPFC")
    args = parser.parse_args()

    import numpy as np

    import aestetik

    print(f"aestetik from {aestetik.__file__}", file=sys.stderr)
    out = run(quick=args.quick)
    np.savez_compressed(args.out, **out)
    if args.compare is None:
        return 0
    before = np.load(args.compare)
    rows, same = [], True
    for name in sorted(set(before.files) | set(out)):
        if name not in before.files or name not in out:
            rows.append((name, "-", "missing on one side"))
            same = False
            continue
        a, b = before[name], out[name]
        equal = a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
        same &= equal
        diff = "" if equal or a.shape != b.shape or a.dtype.kind in "US" else f"max |diff| {np.abs(a - b).max():.3g}"
        rows.append((name, f"{a.dtype}{list(a.shape)}", "bit-identical" if equal else f"DIFFERS {diff}"))
    width = max(len(r[0]) for r in rows)
    print(f"| {'array':<{width}} | dtype[shape] | result |")
    print(f"| {'-' * width} | --- | --- |")
    for r in rows:
        print(f"| {r[0]:<{width}} | {r[1]} | {r[2]} |")
    print("all bit-identical" if same else "NOT identical")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

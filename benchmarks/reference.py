"""How much faster and lighter than the reference ``aestetik==0.3.1`` is ours, on identical inputs and parameters?

Both implementations get the same input file and the published parameters (window 7, 100 epochs, 1000 Monte-Carlo
passes, mixture pseudo-labels and domains, refinement with 10 neighbours; ours with the published single-spot
mixture: ``pseudo_label_smoothing=0``, ``mixture_components=K``, ``mixture_starts=10``, ``clustering_method="bgm"``,
``mixture_fallback=None``, and every epoch: ``tol=0``), each run in its own process with one thread: ARI (NA left
out), seconds per stage, process CPU seconds and peak memory (max RSS).

* ``--case dlpfc``: DLPFC 151676, RNA only: 15 PCs (log1p, 3,000 seurat genes, scaled to max 10), the same matrix
  as dummy morphology channels with morphology weight 0, 7 domains.
* ``--case synthetic``: ``ae.datasets.synthetic(n_spots=N, n_domains=4, random_state=0)``, its 15 PCs (3,000 genes)
  and its morphology, morphology weight 1.5; use few ``--epochs`` / ``--mc-passes`` (a timing benchmark).

The reference is installed apart and runs with ``PYTHONPATH=DIR`` (this script then imports the reference only)::

    pip install --no-deps --target /tmp/ref_site aestetik==0.3.1
    python benchmarks/reference.py --case dlpfc --seeds 0 --ref-site /tmp/ref_site      # about 50 min + 2 min
    python benchmarks/reference.py --case synthetic --sizes 10000 --epochs 2 --mc-passes 100 --ref-site /tmp/ref_site
    python benchmarks/reference.py --case dlpfc --seeds 0 1 2 --ours-only                   # ours only, 2 min a seed

Runs are merged into ``results/reference.{md,json}`` (a new run replaces the stored one of the same case, size,
implementation, seed, epochs and passes).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _sections import RESULTS, data_dir, machine, write_results

REFERENCE_VERSION = "0.3.1"
REPO = Path(__file__).resolve().parents[1]
PUBLISHED = {
    "window_size": 7, "kernel_size": 3, "latent_dim": 16, "c_hid": 64, "p": 0.3, "lr": 1e-3, "n_ensemble": 3,
    "total_weight": 3.0, "clustering_method": "bgm", "refine_cluster": True, "n_neighbors": 10,
}  # fmt: skip
STAGES = ("prepare", "train", "embed", "cluster")


# ----------------------------------------------------------------------------------------------- inputs


def build_input(case: str, n_spots: int, data: Path, path: Path) -> int:
    """Write the input both implementations read (obs lattice and labels, obsm X_pca and the morphology)."""
    import anndata as ad
    import scanpy as sc

    if case == "dlpfc":
        adata, k_morph = ad.read_h5ad(data / "dlpfc_151676.h5ad"), None
    else:
        import aestetik as ae

        adata, k_morph = ae.datasets.synthetic(n_spots=n_spots, n_domains=4, random_state=0), "X_morphology"
    x = adata.copy()
    if case == "synthetic":
        sc.pp.normalize_total(x, target_sum=1e4)
    sc.pp.log1p(x)
    sc.pp.highly_variable_genes(x, flavor="seurat", n_top_genes=3000, subset=True)
    if case == "dlpfc":
        sc.pp.scale(x, max_value=10)
    sc.pp.pca(x, n_comps=15, random_state=0)
    slim = ad.AnnData(obs=adata.obs[["array_row", "array_col", "ground_truth"]].copy())
    slim.obs["ground_truth"] = slim.obs["ground_truth"].astype(str)
    slim.obsm["spatial"] = adata.obsm["spatial"]
    slim.obsm["X_pca"] = x.obsm["X_pca"]
    slim.obsm["X_morph"] = adata.obsm[k_morph].astype("float32") if k_morph else x.obsm["X_pca"].copy()
    path.parent.mkdir(parents=True, exist_ok=True)
    slim.write_h5ad(path)
    return slim.n_obs


def _ari(truth, labels) -> float:
    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    t = np.asarray(truth).astype(str)
    keep = ~np.isin(t, ["NA", "nan", ""])
    return float(adjusted_rand_score(t[keep], np.asarray(labels).astype(str)[keep]))


def _record(seconds: dict, ari: float) -> dict:
    t = os.times()
    return {
        "ari": ari,
        "seconds": seconds,
        "cpu_seconds": t.user + t.system,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ----------------------------------------------------------------------------------------------- workers


def worker_ours(a: argparse.Namespace) -> dict:
    """Ours through the public API with the reference's parameters."""
    import anndata as ad
    import torch
    from threadpoolctl import threadpool_limits

    import aestetik as ae

    torch.set_num_threads(1)
    adata = ad.read_h5ad(a.input)
    seconds = {}
    t0 = time.perf_counter()
    with threadpool_limits(1):
        t = time.perf_counter()
        ae.pp.prepare(
            adata, transcriptomics_key="X_pca", morphology_key="X_morph", n_clusters=a.k, clustering_method="bgm",
            window_size=7, pseudo_label_smoothing=0.0, mixture_components=a.k, mixture_starts=10,
            mixture_fallback=None, random_state=0,
        )  # fmt: skip
        seconds["prepare"] = time.perf_counter() - t
        ae.tl.fit(
            adata, morphology_weight=a.morphology_weight, max_epochs=a.epochs, n_mc_samples=a.mc_passes, tol=0,
            random_state=a.seed, accelerator="cpu", show_progress_bar=False,
        )  # fmt: skip
        seconds["train"] = float(adata.uns["aestetik"]["fit"]["seconds"]["train"])
        seconds["embed"] = float(adata.uns["aestetik"]["fit"]["seconds"]["embed"])
        t = time.perf_counter()
        ae.tl.cluster(adata, n_clusters=a.k, method="bgm", n_neighbors=10, random_state=0, show_progress_bar=False)
        seconds["cluster"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    return {"version": ae.__version__, **_record(seconds, _ari(adata.obs["ground_truth"], adata.obs["aestetik"]))}


def worker_reference(a: argparse.Namespace) -> dict:
    """The reference, imported from ``PYTHONPATH`` and fitted as its README says; its calls timed by wrappers."""
    import anndata as ad
    import numpy as np
    import torch

    torch.set_num_threads(1)
    aestetik = importlib.import_module("aestetik")
    where = Path(aestetik.__file__).resolve()
    if REPO in where.parents or getattr(aestetik, "__version__", None) != REFERENCE_VERSION:
        msg = f"`import aestetik` gave {where}, not the reference {REFERENCE_VERSION}: pass --ref-site"
        raise RuntimeError(msg)
    spent: dict[str, float] = {}
    stack: list[str] = []

    def wrap(key, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            stack.append(key)
            path, t = "/".join(stack), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[path] = spent.get(path, 0.0) + time.perf_counter() - t
                stack.pop()

        return timed

    import lightning.pytorch as lp

    data_module = importlib.import_module("aestetik.data_modules.data_module")
    estimator = importlib.import_module("aestetik.AESTETIK").AESTETIK
    data_module.prepare_input_for_model = wrap("prepare", data_module.prepare_input_for_model)
    lp.Trainer.fit = wrap("fit", lp.Trainer.fit)
    estimator._compute_latent_space = wrap("embed", estimator._compute_latent_space)
    estimator._cluster_embedding = wrap("cluster", estimator._cluster_embedding)

    source = ad.read_h5ad(a.input)
    adata = ad.AnnData(obs=source.obs[["array_row", "array_col", "ground_truth"]].copy())
    adata.obs["x_array"], adata.obs["y_array"] = adata.obs["array_row"].to_numpy(), adata.obs["array_col"].to_numpy()
    adata.obsm["X_pca_transcriptomics"] = np.asarray(source.obsm["X_pca"])  # the keys its dataloader hard-codes
    adata.obsm["X_pca_morphology"] = np.asarray(source.obsm["X_morph"])
    model = aestetik.AESTETIK(
        **PUBLISHED, morphology_weight=a.morphology_weight, n_cluster=a.k, max_epochs=a.epochs,
        num_repeats_predict=a.mc_passes, n_jobs=1, num_workers=0, random_state=a.seed,
    )  # fmt: skip
    work, cwd = Path(tempfile.mkdtemp(prefix="aestetik_ref_")), Path.cwd()
    os.chdir(work)  # its Lightning trainer writes lightning_logs/ into the working directory
    try:
        t0 = time.perf_counter()
        model.fit(adata)
        total = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)
    seconds = {
        "prepare": spent.get("fit/prepare", 0.0),
        "train": spent.get("fit", 0.0) - spent.get("fit/prepare", 0.0),
        "embed": spent.get("embed", 0.0),  # includes the setup its Trainer.predict re-runs
        "embed_setup": spent.get("embed/prepare", 0.0),
        "cluster": spent.get("cluster", 0.0),
        "total": total,
    }
    return {"version": aestetik.__version__, **_record(seconds, _ari(adata.obs["ground_truth"], model.labels_))}


# ----------------------------------------------------------------------------------------------- table


def _key(r: dict) -> tuple:
    return (r["case"], r["n_spots"], r["implementation"], r["seed"], r["epochs"], r["mc_passes"])


def table(runs: list[dict]) -> str:
    lines = [
        "Ours and the reference `aestetik==0.3.1` on identical inputs and parameters, one thread per run; ARI with NA "
        "left out, wall seconds per stage (mean over seeds), process CPU seconds, peak RSS.",
        "",
        "| input | epochs, MC passes | implementation | seeds | ARI | prepare s | train s | embed s | cluster s "
        "| total s | CPU s | peak RSS MB | measured on |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["case"], r["n_spots"], r["epochs"], r["mc_passes"], r["implementation"]), []).append(r)
    for (case, n, epochs, passes, impl), rs in sorted(groups.items(), key=lambda kv: kv[0]):

        def m(f, rs=rs):
            return statistics.mean(f(r) for r in rs)

        aris = [r["ari"] for r in rs]
        ari = f"{aris[0]:.3f}" if len(aris) == 1 else f"{statistics.mean(aris):.3f} ({min(aris):.3f}-{max(aris):.3f})"
        stages = " | ".join(f"{m(lambda r, s=s: r['seconds'][s]):.1f}" for s in STAGES)
        lines.append(
            f"| {case} {n:,} spots | {epochs}, {passes} | {impl} | {len(rs)} | {ari} | {stages} "
            f"| {m(lambda r: r['seconds']['total']):.0f} | {m(lambda r: r['cpu_seconds']):.0f} "
            f"| {m(lambda r: r['peak_rss_mb']):.0f} | {rs[0]['measured']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=["dlpfc", "synthetic"], default="dlpfc")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000], help="synthetic spots")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=None, help="default 100 (dlpfc) or 2 (synthetic)")
    p.add_argument("--mc-passes", type=int, default=None, help="default 1000 (dlpfc) or 100 (synthetic)")
    p.add_argument("--ref-site", type=Path, default=Path("/tmp/ref_site"), help="folder holding aestetik 0.3.1")
    p.add_argument("--ours-only", action="store_true", help="run ours only (keep the stored reference runs)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, 10 passes, written to a temporary folder")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "aestetik_reference")
    p.add_argument("--worker", choices=["ours", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, help=argparse.SUPPRESS)
    p.add_argument("--morphology-weight", type=float, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps((worker_ours if a.worker == "ours" else worker_reference)(a)))
        return
    dlpfc = a.case == "dlpfc"
    epochs = 1 if a.quick else a.epochs or (100 if dlpfc else 2)
    passes = 10 if a.quick else a.mc_passes or (1000 if dlpfc else 100)
    out = Path(tempfile.mkdtemp(prefix="reference_")) if a.quick else RESULTS
    stored = json.loads((out / "reference.json").read_text())["runs"] if (out / "reference.json").exists() else []
    k, weight = (7, 0.0) if dlpfc else (4, 1.5)
    today = f"{machine(1)}, {datetime.date.today()}"
    for n in [3460] if dlpfc else a.sizes:
        path = a.scratch / f"{a.case}_{n}.h5ad"
        n_obs = build_input(a.case, n, data_dir(a.data_dir), path)
        for seed in a.seeds:
            for impl in ["ours"] if a.ours_only else ["ours", "reference"]:
                cmd = [sys.executable, __file__, "--worker", impl, "--input", str(path), "--seed", str(seed)]
                cmd += ["--k", str(k), "--morphology-weight", str(weight)]
                cmd += ["--epochs", str(epochs), "--mc-passes", str(passes)]
                env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
                env.pop("PYTHONPATH", None)
                if impl == "reference":
                    env["PYTHONPATH"] = str(a.ref_site.resolve())
                print(f"=== {impl}, {a.case} {n_obs} spots, seed {seed}", flush=True)
                res = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
                run = {"case": a.case, "n_spots": n_obs, "implementation": impl, "seed": seed, "epochs": epochs}
                run.update(mc_passes=passes, measured=today, **json.loads(res.strip().splitlines()[-1]))
                stored = [r for r in stored if _key(r) != _key(run)] + [run]
    write_results("reference", table(stored), {"question": __doc__.splitlines()[0], "runs": stored}, out)


if __name__ == "__main__":
    main()

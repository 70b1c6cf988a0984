"""Faithfulness baseline: the published reference ``aestetik==0.3.1`` on DLPFC section 151676.

Step 1 builds the input that both implementations get (RNA only):

* ``X`` of the bundled section is library-size normalised (not raw counts), so:
  ``sc.pp.log1p`` -> ``sc.pp.highly_variable_genes(flavor="seurat", n_top_genes=3000)`` -> subset to
  the HVGs -> ``sc.pp.scale(max_value=10)`` -> ``sc.pp.pca(n_comps=15, random_state=0)``, giving
  ``obsm["X_pca"]`` (15 dims);
* the morphology input is a copy of the same matrix, ``obsm["X_morph_dummy"]``, used with
  ``morphology_weight=0`` (the reference still feeds those channels to the network);
* saved without ``X`` as ``<out-dir>/dlpfc_input.h5ad`` (obs ``array_row``, ``array_col``,
  ``ground_truth``; obsm ``spatial``, ``X_pca``, ``X_morph_dummy``).

Step 2 runs ``_reference_runner.py`` once per seed, sequentially, each in its own process with
``PYTHONPATH=<ref-site>`` (the reference is never importable from our environment by default),
``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = ``--threads`` and the working directory set to a scratch
folder (the reference's Lightning Trainer writes ``lightning_logs/`` into the CWD). Each run writes
``<out-dir>/ref_seed{S}.json`` (+ ``ref_seed{S}_embedding.npy``); a table is printed at the end.

Published defaults: window 7, kernel 3, latent 16, c_hid 64, p 0.3, lr 1e-3, 100 epochs, ensemble 3,
1000 MC passes, total weight 3, morphology weight 0, bgm with 7 clusters, refinement with 10
neighbours. ``--epochs`` / ``--mc-passes`` override them for smoke tests only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
RUNNER = HERE / "_reference_runner.py"
DATA_CANDIDATES = (
    Path("/work/shared/data/dlpfc_151676.h5ad"),
    REPO_ROOT / "src" / "aestetik" / "datasets" / "_data" / "dlpfc_151676.h5ad",
)
TRANSCRIPTOMICS_KEY = "X_pca"
MORPHOLOGY_KEY = "X_morph_dummy"
N_TOP_GENES = 3000
N_COMPS = 15
PUBLISHED_DEFAULTS = {
    "window_size": 7,
    "kernel_size": 3,
    "latent_dim": 16,
    "c_hid": 64,
    "p": 0.3,
    "lr": 1e-3,
    "max_epochs": 100,
    "n_ensemble": 3,
    "num_repeats_predict": 1000,
    "total_weight": 3.0,
    "morphology_weight": 0.0,
    "clustering_method": "bgm",
    "n_cluster": 7,
    "n_neighbors": 10,
}


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="DLPFC .h5ad (default: shared copy, else the package copy)")
    p.add_argument("--out-dir", type=Path, default=Path("/work/bench_scratch"))
    p.add_argument("--input", type=Path, default=None, help="prepared input path (default: <out-dir>/dlpfc_input.h5ad)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None, help="override max_epochs (smoke tests only)")
    p.add_argument("--mc-passes", type=int, default=None, help="override num_repeats_predict (smoke tests only)")
    p.add_argument("--no-refine", action="store_true", help="disable the spatial refinement")
    p.add_argument("--ref-site", type=Path, default=Path("/work/ref_site"), help="folder holding aestetik 0.3.1")
    p.add_argument("--python", default=sys.executable, help="interpreter for the reference runs")
    p.add_argument("--reuse-input", action="store_true", help="do not rebuild the input if it exists")
    return p.parse_args(argv)


def _data_path(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    for cand in DATA_CANDIDATES:
        if cand.exists():
            return cand
    msg = f"DLPFC section not found in {[str(c) for c in DATA_CANDIDATES]}; pass --data."
    raise FileNotFoundError(msg)


def build_input(data: Path, out: Path) -> None:
    """Write the RNA-only input shared by the reference and our implementation."""
    import anndata as ad
    import scanpy as sc

    adata = ad.read_h5ad(data)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, flavor="seurat", n_top_genes=N_TOP_GENES)
    adata = adata[:, adata.var["highly_variable"]].copy()
    sc.pp.scale(adata, max_value=10)
    sc.pp.pca(adata, n_comps=N_COMPS, random_state=0)

    slim = ad.AnnData(obs=adata.obs[["array_row", "array_col", "ground_truth"]].copy())
    slim.obsm["spatial"] = adata.obsm["spatial"].copy()
    slim.obsm[TRANSCRIPTOMICS_KEY] = adata.obsm["X_pca"].copy()
    slim.obsm[MORPHOLOGY_KEY] = adata.obsm["X_pca"].copy()
    slim.uns["benchmark_input"] = {
        "source": str(data),
        "steps": "log1p; hvg seurat 3000; subset; scale max_value=10; pca 15 random_state=0",
        "transcriptomics_key": TRANSCRIPTOMICS_KEY,
        "morphology_key": MORPHOLOGY_KEY,
        "morphology_is_copy_of_transcriptomics": True,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    slim.write_h5ad(out)
    print(f"input: {slim.n_obs} spots, obsm {TRANSCRIPTOMICS_KEY} {slim.obsm[TRANSCRIPTOMICS_KEY].shape} -> {out}")


def run_reference(args: argparse.Namespace, input_path: Path, seed: int) -> Path:
    params = dict(PUBLISHED_DEFAULTS)
    if args.epochs is not None:
        params["max_epochs"] = args.epochs
    if args.mc_passes is not None:
        params["num_repeats_predict"] = args.mc_passes
    out_json = args.out_dir / f"ref_seed{seed}.json"
    cmd = [
        args.python,
        str(RUNNER),
        "--input",
        str(input_path),
        "--seed",
        str(seed),
        "--output",
        str(out_json),
        "--embedding-output",
        str(args.out_dir / f"ref_seed{seed}_embedding.npy"),
        "--transcriptomics-key",
        TRANSCRIPTOMICS_KEY,
        "--morphology-key",
        MORPHOLOGY_KEY,
        "--threads",
        str(args.threads),
        "--scratch",
        str(args.out_dir / "_work"),
        "--no-refine" if args.no_refine else "--refine",
    ]
    for name, value in params.items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYTHONPATH=str(args.ref_site.resolve()),
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        OPENBLAS_NUM_THREADS=str(args.threads),
        NUMBA_NUM_THREADS=str(args.threads),
    )
    (args.out_dir / "_work").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cwd_", dir=args.out_dir / "_work") as cwd:
        print(f"\n=== reference seed {seed}: {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, env=env, cwd=cwd, check=True)
    return out_json


def _mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "-"
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"


def print_table(paths: list[Path]) -> None:
    rows = [json.loads(p.read_text()) for p in paths]
    print("\nreference aestetik==0.3.1, DLPFC 151676 (RNA only, morphology_weight=0)")
    header = (
        f"{'seed':>4} {'ARI':>7} {'total s':>8} {'prep s':>7} {'train s':>8} {'embed s':>8} "
        f"{'(MC) s':>7} {'clust s':>8} {'cpu s':>7} {'RSS MB':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        s = r["seconds"]
        print(
            f"{r['seed']:>4} {r['ari']:7.4f} {s['total']:8.1f} {s['prepare']:7.1f} {s['train']:8.1f} "
            f"{s['embed']:8.1f} {s['embed_mc_dropout']:7.1f} {s['cluster']:8.1f} {r['cpu_seconds']['total']:7.1f} "
            f"{r['peak_rss_mb']:7.0f}"
        )
    print(f"ARI mean +- sd: {_mean_sd([r['ari'] for r in rows])}")
    print("wall seconds; '(MC)' = embed minus the datamodule setup that Trainer.predict re-runs; cpu s = process CPU")
    if rows:
        p = rows[0]["params"]
        print(
            f"epochs {p['max_epochs']}, MC passes {p['num_repeats_predict']}, threads {rows[0]['threads']}, "
            f"pseudo-label (bgm on X_pca) ARI {rows[0]['ari_transcriptomics_pseudo_labels']:.4f}"
        )


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    args.out_dir = args.out_dir.resolve()
    if REPO_ROOT in args.out_dir.parents or args.out_dir == REPO_ROOT:
        msg = f"--out-dir {args.out_dir} is inside the repository; use a scratch folder outside it."
        raise ValueError(msg)
    input_path = (args.input or args.out_dir / "dlpfc_input.h5ad").resolve()
    if not (args.reuse_input and input_path.exists()):
        build_input(_data_path(args.data), input_path)
    outputs = [run_reference(args, input_path, seed) for seed in args.seeds]
    print_table(outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

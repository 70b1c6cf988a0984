"""Run the published reference ``aestetik==0.3.1`` on one prepared input, in its own process.

This script never imports our package. The reference is installed apart
(``pip install --no-deps --target /work/ref_site aestetik==0.3.1``) and must be found first on
``sys.path``: run it with ``PYTHONPATH=/work/ref_site`` (or pass ``--ref-site``). It refuses to run
when ``import aestetik`` resolves to anything that is not version 0.3.1 outside this repository.

What it does, without changing the reference's logic:

* builds a minimal AnnData with ``obs["x_array"] = obs["array_row"]``, ``obs["y_array"] =
  obs["array_col"]`` (the lattice coordinates the reference reads) and the two input matrices under
  the reference's default keys ``X_pca_transcriptomics`` / ``X_pca_morphology`` (its dataloader
  hard-codes the obs columns derived from those names, so other keys crash);
* fits ``aestetik.AESTETIK(..., random_state=seed)`` and reads ``.embedding_`` / ``.labels_``;
* times the calls the reference makes by wrapping them with pass-through timers (the pseudo-label
  clustering and grid building inside ``prepare_input_for_model``, ``Trainer.fit``, the Monte-Carlo
  dropout embedding ``_compute_latent_space`` and the final ``_cluster_embedding``), keyed by nesting
  path: ``Trainer.predict`` re-runs the datamodule's ``setup``, so the reference recomputes the
  pseudo-labels and the grid inside ``_compute_latent_space``; that share is reported apart
  (``embed_redundant_setup``) from the Monte-Carlo passes (``embed_mc_dropout``);
* changes the working directory to a fresh scratch folder first, because the reference's Lightning
  ``Trainer`` writes ``lightning_logs/`` (and a checkpoint) into the current directory; the files it
  wrote are listed in the JSON and the folder is removed unless ``--keep-workdir``;
* computes the ARI against ``obs["ground_truth"]`` over spots whose ground truth is not NA.

Optional imports: ``import aestetik`` (0.3.1) needs torch, lightning, scikit-learn, scanpy, scipy,
joblib and tqdm only; pyvips, plotnine and squidpy are imported lazily or only by the plotting module
that ``aestetik/__init__`` does not load. Should a module-level import of one of the optional
packages in ``_STUBBABLE`` fail anyway, an empty stub module is put on ``sys.path`` in this process
only, and its name is recorded under ``stubbed_modules`` in the JSON.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import types
from importlib.metadata import version as _version
from pathlib import Path
from typing import Any

REFERENCE_VERSION = "0.3.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
# Optional packages that only the reference's plotting / image helpers use.
_STUBBABLE = ("pyvips", "plotnine", "squidpy", "torchvision")
# Reference defaults for used_obsm_transcriptomics / used_obsm_morphology (hard-coded in its dataloader).
_REF_T_KEY = "X_pca_transcriptomics"
_REF_M_KEY = "X_pca_morphology"
_NA_STRINGS = {"", "na", "nan", "none"}
_VERSIONED = ("torch", "lightning", "scikit-learn", "numpy", "scipy", "pandas", "anndata", "scanpy")


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, type=Path, help="prepared .h5ad (obsm features, obs array_row/array_col)")
    p.add_argument("--seed", required=True, type=int, help="random_state passed to the reference")
    p.add_argument("--output", required=True, type=Path, help="JSON result path")
    p.add_argument("--embedding-output", type=Path, default=None, help="optional .npy path for embedding_")
    p.add_argument("--transcriptomics-key", default="X_pca", help="input obsm key, fed as X_pca_transcriptomics")
    p.add_argument("--morphology-key", default="X_morph_dummy", help="input obsm key, fed as X_pca_morphology")
    p.add_argument("--morphology-weight", type=float, default=0.0)
    p.add_argument("--total-weight", type=float, default=3.0)
    p.add_argument("--window-size", type=int, default=7)
    p.add_argument("--kernel-size", type=int, default=3)
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--c-hid", type=int, default=64)
    p.add_argument("--p", type=float, default=0.3, help="dropout probability")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-epochs", type=int, default=100)
    p.add_argument("--n-ensemble", type=int, default=3)
    p.add_argument("--num-repeats-predict", type=int, default=1000, help="Monte-Carlo dropout passes")
    p.add_argument("--n-cluster", type=int, default=7)
    p.add_argument("--clustering-method", default="bgm", choices=["bgm", "kmeans", "leiden", "louvain"])
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--n-neighbors", type=int, default=10)
    p.add_argument("--ground-truth-key", default="ground_truth")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--ref-site", type=Path, default=None, help="prepend this folder to sys.path")
    p.add_argument("--scratch", type=Path, default=None, help="parent folder for the temporary working directory")
    p.add_argument("--keep-workdir", action="store_true")
    return p.parse_args(argv)


def _stub_dir_for(missing: list[str]) -> Path:
    stub_root = Path(tempfile.mkdtemp(prefix="aestetik_ref_stubs_"))
    for name in missing:
        (stub_root / f"{name}.py").write_text(f'"""Empty stand-in for the optional {name}; see _reference_runner."""\n')
    return stub_root


def _import_reference(ref_site: Path | None) -> tuple[types.ModuleType, list[str]]:
    if ref_site is not None:
        sys.path.insert(0, str(ref_site.resolve()))
    stubbed: list[str] = []
    while True:
        try:
            aestetik = importlib.import_module("aestetik")
            break
        except ModuleNotFoundError as err:
            name = (err.name or "").split(".")[0]
            if name not in _STUBBABLE or name in stubbed:
                raise
            stubbed.append(name)
            for mod in [m for m in sys.modules if m == "aestetik" or m.startswith("aestetik.")]:
                del sys.modules[mod]
            sys.path.append(str(_stub_dir_for([name])))
    where = Path(aestetik.__file__).resolve()
    if REPO_ROOT in where.parents or getattr(aestetik, "__version__", None) != REFERENCE_VERSION:
        msg = (
            f"`import aestetik` resolved to {where} (version {getattr(aestetik, '__version__', '?')}), "
            f"not the reference {REFERENCE_VERSION}. Install it apart with "
            f"`pip install --no-deps --target /work/ref_site aestetik=={REFERENCE_VERSION}` "
            "and run this script with PYTHONPATH=/work/ref_site."
        )
        raise RuntimeError(msg)
    return aestetik, stubbed


class _Spans:
    """Pass-through timers keyed by the nesting path of the wrapped calls, e.g. ``embed/prepare/grid``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[str] = []

    def wrap(self, key: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._stack.append(key)
            path = "/".join(self._stack)
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[path] = self.seconds.get(path, 0.0) + time.perf_counter() - t0
                self.cpu_seconds[path] = self.cpu_seconds.get(path, 0.0) + time.process_time() - c0
                self.calls[path] = self.calls.get(path, 0) + 1
                self._stack.pop()

        return wrapper

    def get(self, path: str, *, cpu: bool = False) -> float:
        return (self.cpu_seconds if cpu else self.seconds).get(path, 0.0)


def _install_timers(spans: _Spans) -> None:
    """Wrap the reference's internal calls with pass-through timers (behaviour unchanged)."""
    import lightning.pytorch as lp

    data_module = importlib.import_module("aestetik.data_modules.data_module")
    utils_data = importlib.import_module("aestetik.utils.utils_data")
    estimator = importlib.import_module("aestetik.AESTETIK").AESTETIK

    # Looked up as module globals at call time, so replacing the module attribute is enough.
    data_module.prepare_input_for_model = spans.wrap("prepare", data_module.prepare_input_for_model)
    utils_data.clustering = spans.wrap("pseudo_labels", utils_data.clustering)
    utils_data.build_grid = spans.wrap("grid", utils_data.build_grid)
    lp.Trainer.fit = spans.wrap("trainer_fit", lp.Trainer.fit)
    estimator._compute_latent_space = spans.wrap("embed", estimator._compute_latent_space)
    estimator._cluster_embedding = spans.wrap("cluster", estimator._cluster_embedding)


def _ari(truth: Any, labels: Any) -> tuple[float, int]:
    import numpy as np
    import pandas as pd
    from sklearn.metrics import adjusted_rand_score

    truth = pd.Series(truth, dtype=object)
    keep = ~(truth.isna() | truth.astype(str).str.strip().str.lower().isin(_NA_STRINGS))
    keep = keep.to_numpy()
    return float(adjusted_rand_score(truth[keep].astype(str), np.asarray(labels)[keep])), int(keep.sum())


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    input_path = args.input.resolve()
    output_path = args.output.resolve()
    emb_path = args.embedding_output.resolve() if args.embedding_output else None

    import torch

    torch.set_num_threads(args.threads)

    import anndata as ad
    import numpy as np

    aestetik, stubbed = _import_reference(args.ref_site)
    spans = _Spans()
    _install_timers(spans)

    source = ad.read_h5ad(input_path)
    # The reference must be fed under its default obsm keys: its CustomDataset reads the hard-coded
    # obs columns "X_pca_transcriptomics_cluster" / "X_pca_morphology_cluster", and it overwrites
    # obsm[used_obsm_combined] (default "X_pca") with the concatenation before building the grid.
    # A minimal AnnData holding only those keys avoids both traps.
    adata = ad.AnnData(obs=source.obs[["array_row", "array_col", args.ground_truth_key]].copy())
    adata.obs["x_array"] = adata.obs["array_row"].to_numpy()
    adata.obs["y_array"] = adata.obs["array_col"].to_numpy()
    adata.obsm[_REF_T_KEY] = np.asarray(source.obsm[args.transcriptomics_key])
    adata.obsm[_REF_M_KEY] = np.asarray(source.obsm[args.morphology_key])
    del source

    params = {
        "morphology_weight": args.morphology_weight,
        "n_cluster": args.n_cluster,
        "total_weight": args.total_weight,
        "window_size": args.window_size,
        "kernel_size": args.kernel_size,
        "latent_dim": args.latent_dim,
        "c_hid": args.c_hid,
        "lr": args.lr,
        "p": args.p,
        "max_epochs": args.max_epochs,
        "clustering_method": args.clustering_method,
        "n_ensemble": args.n_ensemble,
        "refine_cluster": args.refine,
        "n_neighbors": args.n_neighbors,
        "n_jobs": 1,
        "num_workers": 0,
        "num_repeats_predict": args.num_repeats_predict,
    }
    model = aestetik.AESTETIK(**params, random_state=args.seed)
    params["input_transcriptomics_key"] = args.transcriptomics_key
    params["input_morphology_key"] = args.morphology_key

    scratch_parent = args.scratch.resolve() if args.scratch else None
    if scratch_parent is not None:
        scratch_parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="aestetik_ref_", dir=scratch_parent))
    cwd = Path.cwd()
    os.chdir(workdir)  # Lightning writes lightning_logs/ + a checkpoint into the CWD.
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(adata)
        total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
        written = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*") if p.is_file())
    finally:
        os.chdir(cwd)
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    labels = np.asarray(model.labels_).astype(str)
    ari, n_scored = _ari(adata.obs[args.ground_truth_key], labels)
    ari_pseudo, _ = _ari(adata.obs[args.ground_truth_key], np.asarray(model.transcriptomics_cluster_).astype(str))
    embedding = np.asarray(model.embedding_, dtype=np.float32)
    if emb_path is not None:
        emb_path.parent.mkdir(parents=True, exist_ok=True)
        np.save(emb_path, embedding)

    fit_prep = "trainer_fit/prepare"
    # Trainer.predict re-runs the datamodule's setup (the fit datamodule stays attached to the
    # trainer), so the reference recomputes pseudo-labels and grid inside _compute_latent_space.
    predict_prep = "embed/prepare"

    def breakdown(total_: float, *, cpu: bool) -> dict[str, float]:
        get = functools.partial(spans.get, cpu=cpu)
        return {
            "total": total_,
            "prepare": get(fit_prep),
            "pseudo_labels": get(f"{fit_prep}/pseudo_labels"),
            "grid": get(f"{fit_prep}/grid"),
            # Trainer.fit includes the datamodule setup (= prepare); the difference is the training loop.
            "train": get("trainer_fit") - get(fit_prep),
            "embed": get("embed"),
            "embed_mc_dropout": get("embed") - get(predict_prep),
            "embed_redundant_setup": get(predict_prep),
            "cluster": get("cluster"),
        }

    seconds = breakdown(total, cpu=False)
    result = {
        "implementation": "reference",
        "reference_version": aestetik.__version__,
        "reference_path": str(Path(aestetik.__file__).resolve().parent),
        "seed": args.seed,
        "input": str(input_path),
        "n_obs": int(adata.n_obs),
        "n_scored": n_scored,
        "params": params,
        "ari": ari,
        "ari_transcriptomics_pseudo_labels": ari_pseudo,
        "seconds": seconds,
        # process CPU time (user + system, all threads): less sensitive than wall time to other load.
        "cpu_seconds": breakdown(total_cpu, cpu=True),
        "peak_rss_mb": peak_rss_mb,
        "timer_spans": {
            k: {"seconds": v, "cpu_seconds": spans.cpu_seconds[k], "calls": spans.calls[k]}
            for k, v in spans.seconds.items()
        },
        "threads": args.threads,
        "transcriptomics_weight_used": model.transcriptomics_weight_,
        "morphology_weight_used": model.morphology_weight_,
        "num_input_channels": int(model.num_input_channels_),
        "losses": [float(x) for x in model.losses_],
        "n_clusters_found": len(set(labels.tolist())),
        "files_written_by_reference": written,
        "stubbed_modules": stubbed,
        "embedding_path": str(emb_path) if emb_path else None,
        "versions": {"python": platform.python_version(), **{d: _version(d) for d in _VERSIONED}},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "device": "cpu"},
        "labels": labels.tolist(),
    }
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(result, indent=1))

    print(f"\nreference {result['reference_version']} seed {args.seed}")
    print(
        f"{'ARI':>8} {'total s':>9} {'prep s':>8} {'train s':>8} {'embed s':>8} {'(MC) s':>8} {'clust s':>8} {'RSS MB':>8}"
    )
    print(
        f"{ari:8.4f} {seconds['total']:9.1f} {seconds['prepare']:8.1f} {seconds['train']:8.1f} "
        f"{seconds['embed']:8.1f} {seconds['embed_mc_dropout']:8.1f} {seconds['cluster']:8.1f} {peak_rss_mb:8.0f}"
    )
    print(f"wrote {output_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

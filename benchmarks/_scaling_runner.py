"""One synthetic-scaling run (own process, so ru_maxrss is this run's peak): synthetic -> prepare -> fit -> cluster.

Started by ``synthetic_scaling.py``; writes a JSON record to ``--output`` after every stage (``status``
``"running"`` with the ``stage`` under way), so a run killed by a timeout or the out-of-memory killer
still leaves the stages it finished. Exit status 0 when done, 3 when out of memory (or refused by ``fit``'s
memory check), 4 on another error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def cpu_model() -> str:
    """The CPU model from ``/proc/cpuinfo`` (else ``platform``) and the number of logical cores."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.processor() or platform.machine()}, {os.cpu_count()} logical cores"


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text


def _write(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n-spots", type=int, required=True)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--mc-passes", type=int, default=1000)
    p.add_argument("--accelerator", default="auto", choices=["cpu", "gpu", "auto"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--morphology-features", type=int, default=15)
    p.add_argument("--partners", choices=["all", "batch"], default=None, help="fit(partners=...); default: fit's")
    p.add_argument("--no-check-memory", action="store_true", help="fit(check_memory=False)")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import numpy as np
    from sklearn.metrics import adjusted_rand_score
    from threadpoolctl import threadpool_limits

    import aestetik as ae

    record: dict = {
        "n_spots_requested": args.n_spots,
        "status": "running",
        "stage": None,
        "threads": args.threads,
        "accelerator": args.accelerator,
        "params": {
            "n_domains": 4,
            "n_morphology_features": args.morphology_features,
            "random_state": 0,
            "max_epochs": args.epochs,
            "n_mc_samples": args.mc_passes,
        },
        "versions": {
            "aestetik": ae.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "cpu": cpu_model(),
        "seconds": {},
        "cpu_seconds": {},
        "peak_rss_mb_after": {},
    }
    cuda = torch.cuda.is_available() and args.accelerator in ("gpu", "auto")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        record["device_total_mb"] = torch.cuda.get_device_properties(0).total_memory / 2**20

    def stage(name: str, fn):
        record["stage"] = name
        _write(args.output, record)
        t, c = time.perf_counter(), _cpu_seconds()
        out = fn()
        record["seconds"][name] = time.perf_counter() - t
        record["cpu_seconds"][name] = _cpu_seconds() - c
        record["peak_rss_mb_after"][name] = _peak_rss_mb()
        if cuda and torch.cuda.is_initialized():
            record.setdefault("peak_device_mb_after", {})[name] = torch.cuda.max_memory_allocated() / 2**20
        return out

    try:
        with threadpool_limits(args.threads):
            adata = stage(
                "synthetic",
                lambda: ae.datasets.synthetic(
                    n_spots=args.n_spots, n_domains=4, n_morphology_features=args.morphology_features, random_state=0
                ),
            )
            record["n_obs"] = int(adata.n_obs)
            stage("prepare", lambda: ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=4))
            prep = adata.uns["aestetik"]["prepare"]
            record["prepare"] = {
                k: int(prep[k])
                for k in ("n_transcriptomics", "n_morphology", "n_clusters_transcriptomics", "n_clusters_morphology")
            }
            record["prepare"]["window_size"] = int(prep["params"]["window_size"])
            record["prepare"]["lattice_type"] = str(prep["lattice_type"])
            # the device fit will pick (overwritten below by the one it reports), so a failed fit still names it
            record["device"] = (
                f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
                if cuda
                else f"CPU ({record['cpu']}), {args.threads} thread(s)"
            )
            extra = {} if args.partners is None else {"partners": args.partners}
            if args.no_check_memory:
                extra["check_memory"] = False
            stage(
                "fit",
                lambda: ae.tl.fit(
                    adata,
                    max_epochs=args.epochs,
                    n_mc_samples=args.mc_passes,
                    accelerator=args.accelerator,
                    devices=1,  # never a multi-GPU (DDP) launch from this process
                    show_progress_bar=False,
                    **extra,
                ),
            )
            fit = adata.uns["aestetik"]["fit"]
            record["seconds"]["train"] = float(fit["seconds"]["train"])
            record["seconds"]["embed"] = float(fit["seconds"]["embed"])
            record["fit"] = {
                "params": {k: v for k, v in fit["params"].items() if isinstance(v, int | float | str | bool)},
                "transcriptomics_weight": float(fit["transcriptomics_weight"]),
                "morphology_weight": float(fit["morphology_weight"]),
                "steps": len(fit["history"]["loss"]),
                "final_loss": float(fit["history"]["loss"][-1]) if len(fit["history"]["loss"]) else None,
            }
            if "memory_estimate_bytes" in fit:
                record["fit"]["memory_estimate_mb"] = int(fit["memory_estimate_bytes"]) / 2**20
            device_type = fit["params"]["device"]
            record["device_type"] = device_type
            if device_type == "cuda":
                record["device"] = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
                record["peak_device_mb"] = torch.cuda.max_memory_allocated() / 2**20
                record["peak_device_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
            else:
                record["device"] = f"CPU ({record['cpu']}), {args.threads} thread(s)"
            stage("cluster", lambda: ae.tl.cluster(adata, n_clusters=4, show_progress_bar=False))
        truth = adata.obs["ground_truth"].astype(str).to_numpy()
        record["ari"] = float(adjusted_rand_score(truth, adata.obs["aestetik"].astype(str).to_numpy()))
        for modality in ("transcriptomics", "morphology"):
            labels = adata.obs[f"aestetik_{modality}_cluster"].astype(str).to_numpy()
            record[f"ari_{modality}_pseudo_labels"] = float(adjusted_rand_score(truth, labels))
        record["status"] = "ok"
        record["stage"] = None
        rc = 0
    except Exception as exc:  # noqa: BLE001 - recorded for the table, the parent goes on with the next size
        refused = isinstance(exc, MemoryError) and "check_memory=False" in str(exc)
        record["status"] = "refused (memory check)" if refused else "oom" if _is_oom(exc) else "error"
        record["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        record["traceback"] = traceback.format_exc()[-4000:]
        rc = 4 if record["status"] == "error" else 3
        print(record["traceback"], file=sys.stderr)
    if cuda and torch.cuda.is_initialized():
        record["peak_device_mb"] = torch.cuda.max_memory_allocated() / 2**20
        record["peak_device_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    record["peak_rss_mb"] = _peak_rss_mb()
    _write(args.output, record)
    return rc


if __name__ == "__main__":
    sys.exit(main())

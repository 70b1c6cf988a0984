"""How do time and peak memory of each stage grow with the number of spots, on CPU and on one GPU?

For each N in ``--sizes`` one process (so that its peak RSS is the run's own) runs, with the package defaults::

    adata = ae.datasets.synthetic(n_spots=N, n_domains=4, random_state=0)
    ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=4)
    ae.tl.fit(adata, max_epochs=EPOCHS, n_mc_samples=PASSES, accelerator=ACCELERATOR)
    ae.tl.cluster(adata, n_clusters=4)

and records seconds per stage (``train`` and ``embed`` from ``uns["aestetik"]["fit"]["seconds"]``), peak host
memory (max RSS), peak GPU memory (``torch.cuda.max_memory_allocated``) and the ARI against the 4 domains. A run
that passes ``--timeout`` or runs out of memory is recorded as such and the next size runs::

    python benchmarks/scaling.py --quick                                    # 10^3 and 10^4 spots, 1 epoch
    python benchmarks/scaling.py --sizes 1000 10000 100000 1000000 --epochs 1 --mc-passes 100   # CPU
    python benchmarks/scaling.py --accelerator gpu --sizes 1000000          # 10^6 spots x 100 epochs on one GPU
    python benchmarks/scaling.py --accelerator gpu --sizes 1000000 --epochs 2 --precision high --batch-size 65536

``--partners``, ``--batch-size`` (``ae.tl.fit``'s) and ``--precision`` (``torch.set_float32_matmul_precision``;
``high`` lets float32 products use TF32 tensor cores) change the configuration; on a GPU the train seconds include
the CUDA start-up of the fresh process.

Writes ``results/scaling_cpu.{md,json}`` or ``results/scaling_gpu.{md,json}`` (rewritten after every size).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _sections import RESULTS, write_results

STAGES = ("synthetic", "prepare", "train", "embed", "cluster")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return f"{platform.machine()}, {os.cpu_count()} cores"


def worker(a: argparse.Namespace) -> None:
    """One size in this process; the record is rewritten to ``a.output`` after every stage."""
    import torch
    from threadpoolctl import threadpool_limits

    import aestetik as ae

    torch.set_num_threads(a.threads)
    if a.precision:
        torch.set_float32_matmul_precision(a.precision)
    cuda = a.accelerator == "gpu" and torch.cuda.is_available()
    rec: dict = {"n_spots_requested": a.n_spots, "status": "running", "seconds": {}, "peak_rss_mb": None}
    rec.update(config=config(a), epochs=a.epochs, mc_passes=a.mc_passes)
    extra = {k: v for k, v in (("partners", a.partners), ("batch_size", a.batch_size)) if v}
    rec["device"] = torch.cuda.get_device_name() if cuda else f"CPU ({cpu_model()}), {a.threads} thread(s)"

    def save() -> None:
        rec["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if cuda:
            rec["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        a.output.write_text(json.dumps(rec))

    def stage(name, fn):
        rec["stage"] = name
        save()
        t = time.perf_counter()
        out = fn()
        rec["seconds"][name] = time.perf_counter() - t
        return out

    with threadpool_limits(a.threads):
        adata = stage("synthetic", lambda: ae.datasets.synthetic(n_spots=a.n_spots, n_domains=4, random_state=0))
        rec["n_obs"] = adata.n_obs
        stage("prepare", lambda: ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=4))
        stage(
            "fit",
            lambda: ae.tl.fit(
                adata, max_epochs=a.epochs, n_mc_samples=a.mc_passes, accelerator=a.accelerator, devices=1,
                show_progress_bar=False, **extra,
            ),
        )  # fmt: skip
        fit = adata.uns["aestetik"]["fit"]
        rec["seconds"]["train"] = float(fit["seconds"]["train"])
        rec["seconds"]["embed"] = float(fit["seconds"]["embed"])
        stage("cluster", lambda: ae.tl.cluster(adata, n_clusters=4, show_progress_bar=False))
    from sklearn.metrics import adjusted_rand_score

    rec["ari"] = float(adjusted_rand_score(adata.obs["ground_truth"].astype(str), adata.obs["aestetik"].astype(str)))
    rec["status"], rec["stage"] = "ok", None
    save()


def config(a: argparse.Namespace) -> str:
    """The configuration in words (``defaults`` when nothing is changed)."""
    parts = [f"partners={a.partners!r}" if a.partners else "", f"batch_size={a.batch_size}" if a.batch_size else ""]
    parts.append(f"precision {a.precision}" if a.precision else "")
    return ", ".join(x for x in parts if x) or "defaults"


def table(payload: dict) -> str:
    lines = [
        f"Synthetic sections (4 domains, random_state 0), package defaults unless the configuration says; "
        f"{payload['device']}; aestetik {payload['aestetik']}, {payload['date']}.",
        "",
        "| spots | configuration | epochs | MC passes | status | prepare s | train s | train s/epoch | embed s "
        "| cluster s | total s (w/o synthetic) | peak RSS MB | peak GPU MB | ARI |",
        "| ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    if payload.get("note"):
        lines[1:1] = ["", payload["note"] + "."]
    for r in payload["runs"]:
        s = r["seconds"]

        def f(key, fmt=".1f", s=s):
            return format(s[key], fmt) if key in s else "-"

        fit = s["fit"] if "fit" in s else s.get("train", 0.0) + s.get("embed", 0.0)  # fit: with its start-up
        total = s.get("prepare", 0.0) + fit + s.get("cluster", 0.0)
        epoch = f"{s['train'] / r['epochs']:.2f}" if "train" in s else "-"
        gpu = f"{r['peak_gpu_mb']:.0f}" if r.get("peak_gpu_mb") else "-"
        ari = f"{r['ari']:.3f}" if "ari" in r else "-"
        rss = f"{r['peak_rss_mb'] or 0:.0f}" if r["status"] == "ok" else f">= {r['peak_rss_mb'] or 0:.0f}"
        lines.append(
            f"| {r.get('n_obs', r['n_spots_requested']):,} | {r['config']} | {r['epochs']} | {r['mc_passes']} "
            f"| {r['status']} | {f('prepare')} | {f('train')} | {epoch} "
            f"| {f('embed')} | {f('cluster')} | {total:.1f} | {rss} | {gpu} | {ari} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--mc-passes", type=int, default=1000)
    p.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch / BLAS threads of each run")
    p.add_argument("--partners", choices=["all", "batch"], default=None, help="fit(partners=...); default: fit's")
    p.add_argument("--batch-size", type=int, default=None, help="fit(batch_size=...); default: fit's")
    p.add_argument("--precision", choices=["highest", "high", "medium"], default=None, help="float32 matmul")
    p.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per size")
    p.add_argument("--quick", action="store_true", help="smoke run: 10^3 and 10^4 spots, 1 epoch, 20 passes, /tmp")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n-spots", type=int, help=argparse.SUPPRESS)
    p.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a)
        return
    if a.quick:
        a.sizes, a.epochs, a.mc_passes = [1_000, 10_000], 1, 20
    import torch

    import aestetik as ae

    device = torch.cuda.get_device_name() if a.accelerator == "gpu" else f"CPU ({cpu_model()}), {a.threads} thread(s)"
    out = Path(tempfile.mkdtemp(prefix="scaling_")) if a.quick else RESULTS
    payload = {
        "question": __doc__.splitlines()[0],
        "command": "python benchmarks/scaling.py " + " ".join(sys.argv[1:]),
        "device": device,
        "aestetik": ae.__version__,
        "date": str(datetime.date.today()),
        "runs": [],
    }
    env = {**os.environ, **dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"), str(a.threads))}
    for n in a.sizes:
        record = Path(tempfile.mkdtemp()) / "record.json"
        cmd = [sys.executable, __file__, "--worker", "--n-spots", str(n), "--output", str(record)]
        cmd += ["--epochs", str(a.epochs), "--mc-passes", str(a.mc_passes), "--accelerator", a.accelerator]
        cmd += ["--threads", str(a.threads)]
        cmd += [x for k, v in vars(a).items() if k in ("partners", "batch_size", "precision") and v
                for x in (f"--{k.replace('_', '-')}", str(v))]  # fmt: skip
        print(f"=== {n:,} spots", flush=True)
        try:
            done = subprocess.run(cmd, env=env, timeout=a.timeout, capture_output=True, text=True)
            status = None if done.returncode == 0 else ("oom" if done.returncode in (-9, 137) else "error")
            if status == "error":
                print(done.stderr[-3000:], file=sys.stderr)
        except subprocess.TimeoutExpired:
            status = f"timeout after {a.timeout:.0f} s"
        run = json.loads(record.read_text()) if record.exists() else {"n_spots_requested": n, "seconds": {}}
        run.setdefault("config", config(a))
        run.update(epochs=a.epochs, mc_passes=a.mc_passes)
        if status:
            run["status"] = f"{status} in {run.get('stage')}"
        payload["runs"].append(run)
        write_results(f"scaling_{a.accelerator}", table(payload), payload, out)


if __name__ == "__main__":
    main()

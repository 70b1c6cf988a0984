"""Training and embedding on one GPU: one synthetic section, several ``fit`` configurations, one table.

The section (``ae.datasets.synthetic(n_spots=N, n_domains=4)``) is built and prepared once; then, after a
one-epoch warm-up fit (CUDA context, cuBLAS handles, kernel caches), each configuration
``PARTNERS:PRECISION[:BATCH_SIZE[:DEVICES]]`` (``fit(partners=..., batch_size=...)`` and
``torch.set_float32_matmul_precision(...)``; ``high`` lets float32 matrix products use TF32 tensor cores;
``DEVICES`` > 1 trains with ``fit(strategy="ddp_spawn", devices=DEVICES)``, ``BATCH_SIZE`` anchors per process)
trains ``--epochs`` epochs, embeds with ``--mc-passes`` Monte-Carlo passes and clusters. A DDP row also gives
its speed-up per epoch over the row on one device with the same batch per process, else with the same global
batch, when there is one.
With ``--full-epochs`` the fastest configuration is run once more for that many epochs when its measured
seconds per epoch say it ends within ``--budget`` seconds of the script's start. ``--profile-steps`` adds a
``torch.profiler`` table of that many plain training steps (no Lightning) of the first configuration.
Prints a markdown table and writes ``<out-dir>/gpu_training.{json,md}`` (and ``gpu_profile.txt``).

    python benchmarks/gpu_training.py                                  # 10^6 spots, defaults below
    python benchmarks/gpu_training.py --n-spots 100000 --epochs 3 --configs batch:high all:high
    python benchmarks/gpu_training.py --configs batch:high:65536 batch:high:65536:2   # DDP speed-up on 2 GPUs
    python benchmarks/gpu_training.py --n-spots 10000000 --epochs 2 --mc-passes 100 --configs batch:high:65536
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-spots", type=int, default=1_000_000)
    p.add_argument("--epochs", type=int, default=5, help="epochs of each configuration")
    p.add_argument("--mc-passes", type=int, default=1000)
    p.add_argument(
        "--configs",
        nargs="+",
        default=["batch:high", "all:high", "batch:high:65536"],
        help="PARTNERS:PRECISION[:BATCH_SIZE[:DEVICES]] each (batch size: fit's default when left out; "
        "DEVICES > 1: DDP, strategy='ddp_spawn')",
    )
    p.add_argument("--all-epochs", type=int, default=None, help="epochs of partners=all configurations")
    p.add_argument("--full-epochs", type=int, default=0, help="then run the fastest configuration this long")
    p.add_argument("--budget", type=float, default=0.0, help="seconds from the start the full run must end in")
    p.add_argument("--profile-steps", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    p.add_argument("--accelerator", choices=["gpu", "cpu"], default="gpu", help="cpu: a quick check of this script")
    return p.parse_args(argv)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _save(args: argparse.Namespace, result: dict) -> str:
    rows = [
        "| configuration | epochs | train s | train s/epoch | train s at 100 epochs | embed s | MC passes "
        "| cluster s | peak GPU MB | ARI | DDP speed-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    single = {}
    for r in result["runs"]:
        if "error" not in r and r.get("devices", 1) == 1:
            single.setdefault(r["config"], r["train_s"] / r["epochs"])
    for r in result["runs"]:
        if "error" in r:
            rows.append(f"| {r['config']} | {r['epochs']} | error: {r['error'][:120]} | | | | | | | | |")
            continue
        per = r["train_s"] / r["epochs"]
        speedup = ""
        if r.get("devices", 1) > 1 and len(r["config"].split(":")) == 4:
            partners, precision, batch, devices = r["config"].split(":")
            for size, what in ((int(batch), "batch per process"), (int(batch) * int(devices), "global batch")):
                base = single.get(f"{partners}:{precision}:{size}")
                if base and not speedup:
                    speedup = f"{base / per:.2f}x on {devices} (same {what})"
        rows.append(
            f"| {r['config']} | {r['epochs']} | {r['train_s']:.1f} | {per:.3f} | {100 * per:.0f}"
            f"{'' if r['epochs'] == 100 else '*'} | {r['embed_s']:.1f} | {r['mc_passes']} | {r['cluster_s']:.1f} "
            f"| {r['peak_gpu_mb']:.0f} | {r['ari']:.3f} | {speedup} |"
        )
    head = (
        f"{result['n_obs']:,} synthetic spots (4 domains, random_state 0) on {result['device']}; "
        f"synthetic {result['seconds']['synthetic']:.1f} s, prepare {result['seconds']['prepare']:.1f} s "
        f"(host CPU: {result['host_cpu']}); aestetik {result['versions']['aestetik']}, torch "
        f"{result['versions']['torch']}; {result['started']}"
    )
    notes = [
        "",
        "Configuration: `fit(partners=...)` : `torch.set_float32_matmul_precision(...)` (`high`: TF32 tensor "
        "cores) [: `fit(batch_size=...)`, else 8192 [: devices, DDP with `strategy='ddp_spawn'`, batch per process]]. "
        "Train seconds include Lightning's start-up (for DDP: starting the processes); a one-epoch warm-up fit ran "
        "first. Peak GPU MB: of this process (NaN for DDP, whose training runs in spawned processes).",
        "\\* train s/epoch x 100, not measured at 100 epochs.",
    ]
    md = "\n".join([head, "", *rows, *notes]) + "\n"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "gpu_training.md").write_text(md)
    (args.out_dir / "gpu_training.json").write_text(json.dumps(result, indent=1))
    return md


def _profile(adata, partners: str, steps: int, out: Path) -> dict:
    """Plain training steps (forward, backward, Adam) under ``torch.profiler``: wall and GPU time per step."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from aestetik._model._train import build_module
    from aestetik._records import read_prepared

    fit = adata.uns["aestetik"]["fit"]  # the warm-up fit's parameters (network, loss, batch size)
    params = {**fit["params"], "partners": partners}
    weights = (float(fit["transcriptomics_weight"]), float(fit["morphology_weight"]))
    module = build_module(read_prepared(adata, "aestetik"), params, weights).cuda()
    module.on_fit_start()
    opt = module.configure_optimizers()
    order = torch.randperm(adata.n_obs, device="cuda").split(int(params["batch_size"]))

    def step(anchors):
        opt.zero_grad(set_to_none=True)
        module.step_loss(anchors).loss.backward()
        opt.step()

    for anchors in order[:3]:
        step(anchors)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for anchors in order[3 : 3 + steps]:
        step(anchors)
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t) / steps
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for anchors in order[3 : 3 + steps]:
            step(anchors)
        torch.cuda.synchronize()
    events = prof.key_averages()
    # kernels only (the operator rows repeat their kernels' time), as the table's "Self CUDA time total"
    gpu_us = (
        sum(
            e.self_device_time_total
            for e in events
            if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)
        )
        / steps
    )
    launches = sum(e.count for e in events if e.key.startswith("cudaLaunchKernel")) / steps
    out.write_text(
        f"{steps} steps, partners={partners}: {wall * 1e3:.2f} ms wall per step (unprofiled), "
        f"{gpu_us / 1e3:.2f} ms GPU kernel time per step, {launches:.0f} kernel launches per step\n\n"
        + events.table(sort_by="self_device_time_total", row_limit=40)
        + "\n\n"
        + events.table(sort_by="self_cpu_time_total", row_limit=25)
    )
    return {"partners": partners, "wall_ms_per_step": wall * 1e3, "gpu_ms_per_step": gpu_us / 1e3, "launches": launches}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    t_start = time.perf_counter()
    import numpy as np
    import torch
    from sklearn.metrics import adjusted_rand_score

    import aestetik as ae

    sys.path.insert(0, str(HERE))
    from _scaling_runner import cpu_model

    cuda = args.accelerator == "gpu"
    if cuda and not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU (--accelerator cpu checks the script)", file=sys.stderr)
        return 2
    result: dict = {
        "benchmark": "gpu_training",
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})" if cuda else "CPU",
        "host_cpu": cpu_model(),
        "versions": {
            "aestetik": ae.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "params": vars(args) | {"out_dir": str(args.out_dir)},
        "seconds": {},
        "runs": [],
    }
    t = time.perf_counter()
    adata = ae.datasets.synthetic(n_spots=args.n_spots, n_domains=4, random_state=0)
    result["seconds"]["synthetic"] = time.perf_counter() - t
    result["n_obs"] = int(adata.n_obs)
    t = time.perf_counter()
    ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=4)
    result["seconds"]["prepare"] = time.perf_counter() - t
    truth = adata.obs["ground_truth"].astype(str).to_numpy()
    print(f"{adata.n_obs:,} spots: synthetic {result['seconds']['synthetic']:.1f} s, prepare "
          f"{result['seconds']['prepare']:.1f} s", flush=True)  # fmt: skip

    def run(config: str, epochs: int) -> dict:
        partners, precision, *rest = config.split(":")
        devices = int(rest[1]) if len(rest) > 1 else 1
        record = {"config": config, "epochs": epochs, "mc_passes": args.mc_passes, "devices": devices}
        extra = {"batch_size": int(rest[0])} if rest else {}
        if devices > 1:
            extra |= {"strategy": "ddp_spawn"}
        torch.set_float32_matmul_precision(precision)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            ae.tl.fit(
                adata,
                max_epochs=epochs,
                n_mc_samples=args.mc_passes,
                partners=partners,
                accelerator=args.accelerator,
                devices=devices,
                show_progress_bar=False,
                **extra,
            )
            fit = adata.uns["aestetik"]["fit"]
            record["train_s"] = float(fit["seconds"]["train"])
            record["embed_s"] = float(fit["seconds"]["embed"])
            own = cuda and devices == 1
            record["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20 if own else float("nan")
            record["steps"] = len(fit["history"]["loss"])
            record["final_loss"] = float(fit["history"]["loss"][-1])
            t = time.perf_counter()
            ae.tl.cluster(adata, n_clusters=4, show_progress_bar=False)
            record["cluster_s"] = time.perf_counter() - t
            record["ari"] = float(adjusted_rand_score(truth, adata.obs["aestetik"].astype(str).to_numpy()))
            record["domains_found"] = int(adata.obs["aestetik"].nunique())
        except Exception as exc:  # noqa: BLE001 - recorded in the table; the next configuration runs
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(record), flush=True)
        return record

    if cuda and any(len(c.split(":")) > 3 and int(c.split(":")[3]) > torch.cuda.device_count() for c in args.configs):
        print(f"only {torch.cuda.device_count()} GPU(s): a DDP configuration asks for more", file=sys.stderr)
        return 2
    warm = run(args.configs[0], 1)
    result["warmup"] = warm
    if args.profile_steps and cuda:
        partners, precision = args.configs[0].split(":")[:2]
        torch.set_float32_matmul_precision(precision)
        result["profile"] = _profile(adata, partners, args.profile_steps, args.out_dir / "gpu_profile.txt")
        print(json.dumps(result["profile"]), flush=True)
    for config in args.configs:
        all_partners = config.startswith("all:") and args.all_epochs is not None
        result["runs"].append(run(config, args.all_epochs if all_partners else args.epochs))
        _save(args, result)
    done = [r for r in result["runs"] if "error" not in r]
    if args.full_epochs and done:
        best = min(done, key=lambda r: r["train_s"] / r["epochs"])
        need = best["train_s"] / best["epochs"] * args.full_epochs + best["embed_s"] + best["cluster_s"]
        left = args.budget - (time.perf_counter() - t_start)
        if not args.budget or need < left:
            result["runs"].append(run(best["config"], args.full_epochs))
        else:
            result["full_run_skipped"] = f"{best['config']}: needs about {need:.0f} s, {left:.0f} s left"
    torch.set_float32_matmul_precision("highest")
    print(_save(args, result))
    return 0 if all("error" not in r for r in result["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())

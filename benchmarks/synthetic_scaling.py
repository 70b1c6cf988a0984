"""AESTETIK at scale on synthetic sections: seconds per stage, peak memory, training FLOP/s and ARI.

For each N in ``--sizes`` one process (``_scaling_runner.py``, so the peak RSS is that run's own) runs
``ae.datasets.synthetic(n_spots=N, n_domains=4, n_morphology_features=F, random_state=0)`` (timed apart as
``synthetic``), ``ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=4)``, ``ae.tl.fit`` (``train``
and ``embed`` from ``adata.uns["aestetik"]["fit"]["seconds"]``) and ``ae.tl.cluster(adata, n_clusters=4)``, then
scores the domains against ``obs["ground_truth"]`` (ARI). A run that passes ``--timeout`` or runs out of memory is
recorded as such, with the stages it finished, and the next size runs. Prints a markdown table and writes
``<out-dir>/synthetic_scaling.{json,md}`` (rewritten after every run).

    python benchmarks/synthetic_scaling.py --accelerator gpu                     # 10^4, 10^5, 10^6 spots
    python benchmarks/synthetic_scaling.py --accelerator cpu --threads 16 --epochs 2 --mc-passes 100
    python benchmarks/synthetic_scaling.py --sizes 2000 10000 --epochs 2 --mc-passes 20 --out-dir /tmp/scal
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _scaling_runner import cpu_model  # noqa: E402

STAGES = ("synthetic", "prepare", "train", "embed", "cluster")
REFERENCE_EPOCHS = 100


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="spots per section")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--mc-passes", type=int, default=1000, help="Monte-Carlo dropout passes of the embedding")
    p.add_argument("--accelerator", default="auto", choices=["cpu", "gpu", "auto"])
    p.add_argument("--threads", type=int, default=1, help="torch / BLAS / numba threads of each run")
    p.add_argument("--morphology-features", type=int, default=15, help="n_morphology_features of the synthetic data")
    p.add_argument("--partners", choices=["all", "batch"], default=None, help="fit(partners=...); default: fit's")
    p.add_argument("--no-check-memory", action="store_true", help="fit(check_memory=False): try even when over")
    p.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per run (all stages); 0: none")
    p.add_argument("--out-dir", type=Path, default=HERE / "results", help="where synthetic_scaling.{json,md} go")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------- FLOP model


def _conv_shapes(window_size: int, kernel_size: int) -> tuple[int, int, int]:
    """Effective kernel, convolution output side and pooled side (as ``aestetik._model._network``)."""
    k = kernel_size if kernel_size < window_size else max(1, window_size - 1)
    conv_out = window_size - k + 1
    return k, conv_out, math.floor((conv_out - k) / 3 + 1)


def expected_distinct(n: int, anchors: int, occurrences: int) -> float:
    """Expected number of distinct spots among ``anchors`` distinct anchors and ``occurrences - anchors`` partners.

    Partners are drawn with replacement, each uniformly from one pseudo-label cluster; with clusters of similar
    size the union is close to ``occurrences - anchors`` uniform draws over all ``n`` spots. Never more than
    ``min(n, occurrences)``, and close to it when ``occurrences << n`` or ``occurrences >> n``.
    """
    if anchors >= n:
        return float(n)
    return anchors + (n - anchors) * (1.0 - (1.0 - 1.0 / n) ** (occurrences - anchors))


def training_flops(
    n: int,
    *,
    epochs: int,
    batch_size: int,
    n_channels: int,
    partners_per_anchor: int,
    window_size: int = 7,
    kernel_size: int = 3,
    c_hid: int = 64,
    latent_dim: int = 16,
    n_ensemble: int = 3,
    within_batch: bool = False,
    cells_per_spot: float = 2.0,
) -> dict[str, float]:
    """Dominant floating-point operations of ``ae.tl.fit``'s training loop (a multiply-add counts 2).

    Per step with ``b`` anchors (every spot is an anchor once per epoch, in ``ceil(n / batch_size)`` steps) there
    are ``O = b * (1 + partners_per_anchor)`` occurrences (anchors, then per modality of non-zero weight
    ``K - 1`` positives and ``K - 1`` negatives per anchor, ``K`` its pseudo-label clusters) of
    ``U = expected_distinct(n, b, O)`` distinct spots (at most ``min(n, O)``; ``U = b`` when the partners are
    drawn among the anchors, ``within_batch``, i.e. ``fit(partners="batch")``). With ``C`` channels, window ``w``,
    kernel ``k``, ``E`` ensemble members, ``H = c_hid``, ``L = latent_dim``, ``P`` pooled positions and
    ``c = w - k + 1``, see ``src/aestetik/_training.py`` (``AestetikModule.step_loss``) and
    ``src/aestetik/_model/_network.py``:

    * ``conv``: the encoder convolution, forward and weight gradient (the windows need no input gradient), once
      per distinct lattice cell of the step's windows (``src/aestetik/_lattice_conv.py``): a cell is an output
      position of ``c**2`` windows, so of the ``cells_per_spot * n`` cells (2 on a hexagonal lattice, whose
      windows are half empty, 1 on a square one) ``V = cells_per_spot * n * (1 - (1 - U / n) ** c**2)``
      (at most ``U * c**2``) are convolved: ``2 * 2 * V * (E * H) * (C * k * k)``, plus the empty-position
      term ``2 * 2 * U * (E * H) * k * k * (C + c**2)``. (Per window, as the reference computes it, the
      convolution would take ``2 * 2 * U * (E * H) * (C * k * k) * c**2``.)
    * ``encoder_linear``: the per-occurrence head ``(E, O, H * P) @ (E, H * P, L)``, forward, input and weight
      gradients: ``3 * 2 * E * O * H * P * L``;
    * ``decoder_linear``: ``(b, L) @ (E, L, H * P)`` for the anchors, 3 passes: ``3 * 2 * E * b * L * H * P``;
    * ``decoder_output``: with ``P = 1`` (``w`` 5 or 7, ``k`` 3) the transposed convolution is the matmul
      ``(E, b, H) @ (E, H, C * w * w)``: ``3 * 2 * E * b * H * C * w * w``; otherwise the grouped transposed
      convolution of the ``c x c`` map: ``3 * 2 * b * E * H * C * k * k * c**2``.

    Batch-norm, ReLU, pooling, medians, dropout masks, the loss and the optimiser are element-wise or per
    parameter and left out. Returns the four parts and ``total`` over all ``epochs``.
    """
    k, conv_out, pooled = _conv_shapes(window_size, kernel_size)
    e, h, lat, c, w = n_ensemble, c_hid, latent_dim, n_channels, window_size
    p = pooled * pooled
    steps = math.ceil(n / batch_size)
    parts = dict.fromkeys(("conv", "encoder_linear", "decoder_linear", "decoder_output"), 0.0)
    for i in range(steps):
        b = min(batch_size, n - i * batch_size)
        occ = b * (1 + partners_per_anchor)
        u = float(b) if within_batch else expected_distinct(n, b, occ)
        cells = min(u * conv_out**2, cells_per_spot * n * (1.0 - (1.0 - u / n) ** (conv_out**2)))
        parts["conv"] += 2 * 2 * cells * (e * h) * (c * k * k) + 2 * 2 * u * (e * h) * k * k * (c + conv_out**2)
        parts["encoder_linear"] += 3 * 2 * e * occ * h * p * lat
        parts["decoder_linear"] += 3 * 2 * e * b * lat * h * p
        if pooled == 1:
            parts["decoder_output"] += 3 * 2 * e * b * h * c * w * w
        else:
            parts["decoder_output"] += 3 * 2 * b * e * h * c * k * k * conv_out**2
    parts = {name: v * epochs for name, v in parts.items()}
    parts["total"] = sum(parts.values())
    return parts


def _flops_of(record: dict) -> dict[str, float] | None:
    """``training_flops`` for a finished run, from the shapes and weights it recorded."""
    if "fit" not in record or "prepare" not in record:
        return None
    fp, prep = record["fit"]["params"], record["prepare"]
    partners = 0
    for modality in ("transcriptomics", "morphology"):
        if record["fit"][f"{modality}_weight"] > 0 and fp["triplet_alpha"]:
            k = prep[f"n_clusters_{modality}"]
            per = (k - 1) * fp["n_repeats"] if fp["multi_triplet"] else fp["n_repeats"]
            partners += 2 * per
    return training_flops(
        record["n_obs"],
        epochs=fp["max_epochs"],
        batch_size=fp["batch_size"],
        n_channels=prep["n_transcriptomics"] + prep["n_morphology"],
        partners_per_anchor=partners,
        window_size=prep["window_size"],
        kernel_size=fp["kernel_size"],
        c_hid=fp["c_hid"],
        latent_dim=fp["latent_dim"],
        n_ensemble=fp["n_ensemble"],
        within_batch=fp.get("partners", "all") == "batch",
        cells_per_spot=1.0 if prep.get("lattice_type") == "square" else 2.0,
    )


# --------------------------------------------------------------------------------------------- runs


def run_one(args: argparse.Namespace, n: int, scratch: Path) -> dict:
    out = scratch / f"n{n}.json"
    cmd = [sys.executable, str(HERE / "_scaling_runner.py"), "--n-spots", str(n), "--output", str(out)]
    cmd += ["--epochs", str(args.epochs), "--mc-passes", str(args.mc_passes), "--accelerator", args.accelerator]
    cmd += ["--threads", str(args.threads), "--morphology-features", str(args.morphology_features)]
    cmd += ["--partners", args.partners] if args.partners else []
    cmd += ["--no-check-memory"] if args.no_check_memory else []
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
    env["NUMBA_NUM_THREADS"] = str(min(args.threads, os.cpu_count() or 1))
    env.pop("PYTHONPATH", None)  # never pick up the reference implementation
    print(f"=== {n:,} spots", flush=True)
    t = time.perf_counter()
    # own session: on timeout the whole process group of this run is killed, nothing else
    proc = subprocess.Popen(cmd, env=env, cwd=scratch, start_new_session=True)
    timed_out = False
    try:
        rc = proc.wait(timeout=args.timeout or None)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait()
    wall = time.perf_counter() - t
    record = json.loads(out.read_text()) if out.exists() else {"n_spots_requested": n, "seconds": {}}
    record["wall_seconds"] = wall
    record["returncode"] = rc
    if timed_out:
        record["status"] = "timeout"
        record["error"] = f"killed after --timeout {args.timeout:g} s"
    elif record.get("status") in (None, "running"):
        # died without writing its record: SIGKILL is what the kernel's out-of-memory killer sends
        record["status"] = "killed" if rc in (-signal.SIGKILL, 128 + signal.SIGKILL) else "crashed"
        record["error"] = f"exit status {rc}" + (" (SIGKILL, most likely out of memory)" if rc == -9 else "")
    flops = _flops_of(record)
    if flops is not None and record["seconds"].get("train"):
        record["train_flops"] = flops
        record["train_flop_per_s"] = flops["total"] / record["seconds"]["train"]
    return record


# --------------------------------------------------------------------------------------------- output


def _f(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _peak_rss(record: dict) -> str:
    """The run's peak RSS; for a run killed mid-way, ``>= `` the peak after its last finished stage."""
    if record.get("peak_rss_mb") is not None:
        return f"{record['peak_rss_mb']:.0f}"
    after = record.get("peak_rss_mb_after") or {}
    return f">= {max(after.values()):.0f}" if after else "-"


def table(runs: list[dict], epochs: int, mc_passes: int) -> str:
    extrapolated = epochs != REFERENCE_EPOCHS
    at_100 = f"train s at {REFERENCE_EPOCHS} epochs" + (f" (extrapolated from {epochs})" if extrapolated else "")
    lines = [
        f"| spots | status | synthetic s | prepare s | train s | train s/epoch | {at_100} | embed s | cluster s "
        "| total s (w/o synthetic) | peak RSS MB | peak GPU MB | fit estimate MB | train GFLOP/s | ARI |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        s = r.get("seconds", {})
        status = r.get("status", "?")
        if status != "ok" and r.get("stage"):
            status += f" in {r['stage']}"
        train = s.get("train")
        per_epoch = train / epochs if train is not None else None
        done = [s[k] for k in ("prepare", "train", "embed", "cluster") if k in s]
        total = sum(done) if len(done) == 4 else None
        flops = r.get("train_flop_per_s")
        lines.append(
            f"| {r.get('n_obs', r['n_spots_requested']):,} | {status} | {_f(s.get('synthetic'), '.1f')} "
            f"| {_f(s.get('prepare'), '.1f')} | {_f(train, '.1f')} | {_f(per_epoch, '.2f')} "
            f"| {_f(None if per_epoch is None else per_epoch * REFERENCE_EPOCHS, '.0f')}{'*' if extrapolated and train else ''} "
            f"| {_f(s.get('embed'), '.1f')} | {_f(s.get('cluster'), '.1f')} | {_f(total, '.1f')} "
            f"| {_peak_rss(r)} | {_f(r.get('peak_device_mb'), '.0f')} "
            f"| {_f(r.get('fit', {}).get('memory_estimate_mb'), '.0f')} "
            f"| {_f(None if flops is None else flops / 1e9, '.1f')} | {_f(r.get('ari'), '.3f')} |"
        )
    notes = [
        "",
        f"Training {epochs} epoch(s), embedding with {mc_passes} Monte-Carlo dropout passes. Peak RSS is the "
        "run's own process (ru_maxrss, synthetic data included); peak GPU MB is `torch.cuda.max_memory_allocated`; "
        "fit estimate MB is `ae.tl.fit`'s own estimate of its peak on the training device.",
        "Train GFLOP/s: dominant FLOPs of training (`training_flops` in `benchmarks/synthetic_scaling.py`) over "
        "measured train seconds.",
    ]
    if extrapolated:
        notes.append(
            f"\\* extrapolated: train s / {epochs} x {REFERENCE_EPOCHS}, not measured (one-time costs such as "
            "the window cache and the Lightning start-up are scaled too, so it slightly overstates)."
        )
    failed = [r for r in runs if r.get("status") != "ok" and r.get("error")]
    notes += [f"{r.get('n_obs', r['n_spots_requested']):,} spots: {r['error'].splitlines()[0][:300]}" for r in failed]
    return "\n".join(lines + notes)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def summary(args: argparse.Namespace, runs: list[dict], started: str) -> dict:
    devices = sorted({r["device"] for r in runs if r.get("device")})
    versions = next((r["versions"] for r in runs if r.get("versions")), None) or {
        "aestetik": _version("aestetik"),
        "torch": _version("torch"),
    }
    return {
        "benchmark": "synthetic_scaling",
        "started": started,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": "; ".join(devices) if devices else f"accelerator={args.accelerator} (no run reached training)",
        "host_cpu": cpu_model(),
        "threads": args.threads,
        "versions": versions,
        "params": {
            "sizes": args.sizes,
            "epochs": args.epochs,
            "mc_passes": args.mc_passes,
            "accelerator": args.accelerator,
            "morphology_features": args.morphology_features,
            "partners": args.partners or "fit's default",
            "check_memory": not args.no_check_memory,
            "timeout_s": args.timeout,
            "n_domains": 4,
            "random_state": 0,
        },
        "runs": runs,
    }


def write(args: argparse.Namespace, result: dict) -> str:
    v = result["versions"]
    header = (
        f"Synthetic sections (`ae.datasets.synthetic`, 4 domains, {args.morphology_features} morphology features, "
        f"random_state 0); device: {result['device']}; host CPU: {result['host_cpu']}; {args.threads} thread(s) "
        f"per run; aestetik {v.get('aestetik')}, torch {v.get('torch')}; {result['started']}"
    )
    md = f"{header}\n\n{table(result['runs'], args.epochs, args.mc_passes)}\n"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "synthetic_scaling.md").write_text(md)
    (args.out_dir / "synthetic_scaling.json").write_text(json.dumps(result, indent=1))
    return md


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    args.out_dir = args.out_dir.resolve()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="aestetik_scaling_") as tmp:
        for n in args.sizes:
            record = run_one(args, n, Path(tmp))
            runs.append(record)
            md = write(args, summary(args, runs, started))
            s = record.get("seconds", {})
            done = ", ".join(f"{k} {s[k]:.1f} s" for k in STAGES if k in s)
            print(f"=== {n:,} spots: {record['status']} ({done}; ARI {_f(record.get('ari'), '.3f')})", flush=True)
    print(md)
    return 0 if all(r.get("status") == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

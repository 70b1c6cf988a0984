"""Ours vs the reference ``aestetik==0.3.1`` on DLPFC 151676 with identical inputs and parameters.

Both get the input built by ``dlpfc_reference.build_input`` (15 PCs of the section, RNA only, morphology
weight 0, the same matrix as dummy morphology channels), the published defaults (window 7, 100 epochs,
1000 MC passes, bgm with 7 domains, refinement with 10 neighbours) and the same seeds, each run in its own
process with the same number of threads. Prints a markdown table and writes
``benchmarks/results/dlpfc_vs_reference.{json,md}``.

    python benchmarks/dlpfc_vs_reference.py --seeds 0 1 2 --run-reference   # everything (~2.5 h on 2 cores)
    python benchmarks/dlpfc_vs_reference.py --seeds 0 1 2                    # reuse ref_seed*.json in --out-dir
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dlpfc_reference as ref  # noqa: E402


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", type=Path, default=Path("/tmp/aestetik_bench"), help="scratch folder outside the repo")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--mc-passes", type=int, default=None)
    p.add_argument("--run-reference", action="store_true", help="also run the reference (else reuse its JSON files)")
    p.add_argument("--reuse-ours", action="store_true", help="reuse ours_seed*.json in --out-dir instead of rerunning")
    p.add_argument("--ref-site", type=Path, default=Path("/work/ref_site"))
    p.add_argument("--results", type=Path, default=HERE / "results")
    return p.parse_args(argv)


def run_ours(args: argparse.Namespace, input_path: Path, seed: int) -> Path:
    out = args.out_dir / f"ours_seed{seed}.json"
    cmd = [sys.executable, str(HERE / "_ours_runner.py"), "--input", str(input_path), "--seed", str(seed)]
    cmd += ["--output", str(out), "--threads", str(args.threads)]
    if args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    if args.mc_passes is not None:
        cmd += ["--mc-passes", str(args.mc_passes)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    env.pop("PYTHONPATH", None)
    print(f"=== ours seed {seed}", flush=True)
    subprocess.run(cmd, env=env, cwd=args.out_dir, check=True)
    return out


def _ms(values: list[float], fmt: str = ".3f") -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{statistics.mean(values):{fmt}} ± {statistics.stdev(values):{fmt}}"


def _cell(record: dict | None, fmt: str, get) -> str:
    return format(get(record), fmt) if record else "-"


def table(ours: list[dict], refs: list[dict]) -> str:
    by_seed = {r["seed"]: r for r in refs}
    lines = [
        "| seed | ARI ours | ARI reference | ours wall s | reference wall s | ours CPU s | reference CPU s "
        "| speed-up (CPU s) | ours peak RSS MB | reference peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for o in ours:
        r = by_seed.get(o["seed"])
        speed = f"{r['cpu_seconds']['total'] / o['cpu_seconds']['total']:.1f}x" if r else "-"
        lines.append(
            f"| {o['seed']} | {o['ari']:.3f} | {_cell(r, '.3f', lambda x: x['ari'])} | {o['seconds']['total']:.0f} | "
            f"{_cell(r, '.0f', lambda x: x['seconds']['total'])} | {o['cpu_seconds']['total']:.0f} | "
            f"{_cell(r, '.0f', lambda x: x['cpu_seconds']['total'])} | {speed} | {o['peak_rss_mb']:.0f} | "
            f"{_cell(r, '.0f', lambda x: x['peak_rss_mb'])} |"
        )
    lines.append(
        f"| mean ± sd | {_ms([o['ari'] for o in ours])} | {_ms([r['ari'] for r in refs])} | "
        f"{_ms([o['seconds']['total'] for o in ours], '.0f')} | {_ms([r['seconds']['total'] for r in refs], '.0f')} | "
        f"{_ms([o['cpu_seconds']['total'] for o in ours], '.0f')} | {_ms([r['cpu_seconds']['total'] for r in refs], '.0f')} "
        "| | | |"
    )
    lines += ["", "| stage (mean wall s) | ours | reference |", "| --- | --- | --- |"]
    for stage in ("prepare", "train", "embed", "cluster"):
        o = statistics.mean(x["seconds"][stage] for x in ours)
        r = f"{statistics.mean(x['seconds'][stage] for x in refs):.1f}" if refs else "-"
        lines.append(f"| {stage} | {o:.1f} | {r} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    args.out_dir = args.out_dir.resolve()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    input_path = args.out_dir / "dlpfc_input.h5ad"
    if not input_path.exists():
        ref.build_input(ref._data_path(None), input_path)
    if args.run_reference:
        ref_args = argparse.Namespace(
            epochs=args.epochs,
            mc_passes=args.mc_passes,
            out_dir=args.out_dir,
            python=sys.executable,
            threads=args.threads,
            no_refine=False,
            ref_site=args.ref_site,
        )
        for seed in args.seeds:
            ref.run_reference(ref_args, input_path, seed)
    ours = []
    for s in args.seeds:
        path = args.out_dir / f"ours_seed{s}.json"
        if not (args.reuse_ours and path.exists()):
            path = run_ours(args, input_path, s)
        ours.append(json.loads(path.read_text()))
    refs = [json.loads(p.read_text()) for s in args.seeds if (p := args.out_dir / f"ref_seed{s}.json").exists()]
    md = table(ours, refs)
    device = (
        f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), {args.threads} thread(s) per run"
    )
    header = f"DLPFC 151676, RNA only (morphology weight 0), identical inputs and parameters; {device}"
    print(header)
    print(md)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "dlpfc_vs_reference.md").write_text(f"{header}\n\n{md}\n")
    strip = [{k: v for k, v in r.items() if k != "labels"} for r in ours + refs]
    (args.results / "dlpfc_vs_reference.json").write_text(json.dumps({"device": device, "runs": strip}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ours vs the reference ``aestetik==0.3.1`` on synthetic sections of 10^4 spots and more, identical inputs.

For every size, ``ae.datasets.synthetic(n_spots=N, n_domains=4, random_state=0)`` is generated once; its
transcriptomics PCs (as ``pp.prepare`` computes them) and its ``obsm['X_morphology']`` are saved as the
input of both implementations, which then run, each in its own process with one thread, with the same
parameters: 4 pseudo-label clusters per modality (``bgm``), morphology weight 1.5, ``--epochs`` epochs and
``--mc-passes`` Monte-Carlo passes, ``bgm`` domains with refinement. Ours clusters single spots
(``pseudo_label_smoothing=0``), as the reference does. Per stage seconds, peak memory (max RSS of each
process) and ARI against the 4 domains; the speed-up is per stage and in CPU-seconds. With few epochs
and passes the table gives seconds per epoch and per 100 passes, and their 100-epoch / 1000-pass
extrapolation (the reference's embedding also re-runs its pseudo-labels and grid: "embed setup", counted once).
Reference runs that pass ``--timeout`` are recorded as such. Writes
``results/synthetic_vs_reference.{json,md}``::

    pip install --no-deps --target /work/ref_site aestetik==0.3.1
    python benchmarks/synthetic_vs_reference.py --sizes 10000 --epochs 2 --mc-passes 100 --ref-site /work/ref_site
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from _results import thread_env, write_results

HERE = Path(__file__).resolve().parent
MORPHOLOGY_WEIGHT = 1.5
N_DOMAINS = 4


def build_input(n_spots: int, path: Path) -> int:
    """Write the synthetic section's inputs (no ``X``); returns its number of spots."""
    import anndata as ad

    import aestetik as ae
    from aestetik.pp._transcriptomics import transcriptomics_pca

    adata = ae.datasets.synthetic(n_spots=n_spots, n_domains=N_DOMAINS, random_state=0)
    pcs, _ = transcriptomics_pca(adata, n_comps=15, n_top_genes=3000, random_state=0)
    light = ad.AnnData(obs=adata.obs[["array_row", "array_col", "ground_truth"]].copy())
    light.obs["ground_truth"] = light.obs["ground_truth"].astype(str)
    light.obsm["X_pca"] = pcs
    light.obsm["X_morphology"] = adata.obsm["X_morphology"].astype("float32")
    light.obsm["spatial"] = adata.obsm["spatial"]
    light.write_h5ad(path)
    return light.n_obs


def run(cmd: list[str], env: dict[str, str], timeout: float | None, out: Path) -> dict:
    """Run a runner; its JSON record, or a record of the timeout / failure."""
    try:
        subprocess.run(cmd, env=env, check=True, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {timeout:.0f} s"}
    except subprocess.CalledProcessError as err:
        return {"status": "failed", "stderr": err.stderr[-2000:]}
    record = json.loads(out.read_text())
    record["status"] = "ok"
    return record


def common(input_path: Path, out: Path) -> list[str]:
    return ["--input", str(input_path), "--seed", "0", "--output", str(out), "--threads", "1"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--mc-passes", type=int, default=100)
    p.add_argument("--ref-site", type=Path, default=Path("/work/ref_site"))
    p.add_argument("--timeout", type=float, default=None, help="seconds per reference run")
    p.add_argument("--scratch", type=Path, default=Path("/tmp/aestetik_syn_vs_ref"), help="outside the repository")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    args.scratch.mkdir(parents=True, exist_ok=True)
    env = thread_env(1)
    env.pop("PYTHONPATH", None)
    rows, payload = [], {"epochs": args.epochs, "mc_passes": args.mc_passes, "runs": []}
    for n in args.sizes:
        input_path = args.scratch / f"synthetic_{n}.h5ad"
        n_obs = build_input(n, input_path)
        ours_out, ref_out = args.scratch / f"ours_{n}.json", args.scratch / f"ref_{n}.json"
        ours_cmd = [sys.executable, str(HERE / "_ours_runner.py"), *common(input_path, ours_out)]
        ours_cmd += ["--epochs", str(args.epochs), "--mc-passes", str(args.mc_passes)]
        ours_cmd += ["--morphology-weight", str(MORPHOLOGY_WEIGHT), "--morphology-key", "X_morphology"]
        ours_cmd += ["--n-clusters", str(N_DOMAINS)]
        print(f"=== ours, {n_obs} spots", file=sys.stderr, flush=True)
        ours = run(ours_cmd, env, None, ours_out)
        ref_cmd = [sys.executable, str(HERE / "_reference_runner.py"), *common(input_path, ref_out)]
        ref_cmd += ["--max-epochs", str(args.epochs), "--num-repeats-predict", str(args.mc_passes)]
        ref_cmd += ["--morphology-weight", str(MORPHOLOGY_WEIGHT), "--morphology-key", "X_morphology"]
        ref_cmd += ["--n-cluster", str(N_DOMAINS), "--ref-site", str(args.ref_site)]
        ref_cmd += ["--scratch", str(args.scratch / "_work")]
        print(f"=== reference, {n_obs} spots", file=sys.stderr, flush=True)
        ref = run(ref_cmd, {**env, "PYTHONPATH": str(args.ref_site)}, args.timeout, ref_out)
        for name, rec in (("ours", ours), ("reference", ref)):
            rec.pop("labels", None)
            payload["runs"].append({"n_spots": n_obs, "implementation": name, "record": rec})
        rows.append((n_obs, ours, ref))

    def rates(rec: dict) -> dict[str, float]:
        """Seconds per stage, per epoch, per 100 passes and the 100-epoch / 1000-pass extrapolation."""
        sec = rec["seconds"]
        passes = sec.get("embed_mc_dropout", sec["embed"])  # the reference's embed also re-runs its setup
        fixed = sec.get("embed_redundant_setup", 0.0)
        out = {"prepare": sec["prepare"], "epoch": sec["train"] / args.epochs, "cluster": sec["cluster"]}
        out["passes"] = passes / args.mc_passes * 100
        out["fixed"] = fixed
        out["full"] = out["prepare"] + 100 * out["epoch"] + 10 * out["passes"] + fixed + out["cluster"]
        return out

    lines = [
        "| spots | implementation | prepare s | train s / epoch | embed s / 100 passes | embed setup s | cluster s "
        "| CPU s (this run) | peak RSS MB | ARI | s at 100 epochs, 1000 passes (extrapolated) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n_obs, ours, ref in rows:
        for name, rec in (("ours", ours), ("reference", ref)):
            if rec.get("status") != "ok":
                lines.append(f"| {n_obs:,} | {name} | {rec.get('status')} | | | | | | | | |")
                continue
            r = rates(rec)
            rec["rates"] = r
            lines.append(
                f"| {n_obs:,} | {name} | {r['prepare']:.1f} | {r['epoch']:.2f} | {r['passes']:.2f} | {r['fixed']:.1f} "
                f"| {r['cluster']:.1f} | {rec['cpu_seconds']['total']:.0f} | {rec['peak_rss_mb']:.0f} | {rec['ari']:.3f} "
                f"| {r['full']:.0f} |"
            )
        if ours.get("status") == ref.get("status") == "ok":
            o, r = ours["rates"], ref["rates"]
            lines.append(
                f"| {n_obs:,} | speed-up | {r['prepare'] / o['prepare']:.1f}x | {r['epoch'] / o['epoch']:.1f}x "
                f"| {r['passes'] / o['passes']:.1f}x | | | | | | {r['full'] / o['full']:.1f}x |"
            )
    device = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), 1 thread per run"
    payload["device"] = device
    header = (
        f"Synthetic sections ({N_DOMAINS} domains), identical inputs and parameters, morphology weight "
        f"{MORPHOLOGY_WEIGHT}, {args.epochs} epochs, {args.mc_passes} Monte-Carlo passes; {device}\n\n"
    )
    write_results(args.out_dir, "synthetic_vs_reference", header + "\n".join(lines), payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How long does a user wait, end to end on this machine, for ours and for BANKSY, and how much memory does it take?

Every pipeline runs as a whole Python process of its own, one after the other in one run, with the threads the
machine gives (no limit: a user's laptop), from the imports and reading the ``.h5ad`` to the domain labels:

* **ours**: ``import aestetik``, read, ``ae.pp.prepare(adata, n_clusters=K, <switch>, random_state=seed)``,
  ``ae.tl.fit(adata, random_state=seed)``, ``ae.tl.cluster(adata, n_clusters=K, random_state=seed)``;
* **ours, all epochs**: the same with the published training, ``tl.fit(tol=0, n_mc_samples=1000)`` (all 100 epochs,
  1000 Monte-Carlo passes; the defaults before the training stopped when the embedding had settled);
* **BANKSY, k-means** (its fastest) and **BANKSY, Leiden** with ``--banksy-python`` (``pybanksy`` in its own
  environment): read, normalise and log1p, the BANKSY matrix (lambda 0.2 for spots, 0.8 for cells, 15 neighbours,
  m = 1), 20 PCs, then k-means (10 starts) or Leiden (50 neighbours, resolution searched to K), as in
  ``accuracy.py``.

Seconds are the wall time of the process, from its start to its exit (imports included); memory is its peak
resident set (``os.wait4``); ARI against ``obs["ground_truth"]`` without the spots labelled NA. The sections are
those of ``_sections.py`` with at most 10^4 spots. The reference ``aestetik==0.3.1`` takes about 50 minutes a
DLPFC run (``reference.py``): its stored run is shown under the table::

    python benchmarks/speed.py --banksy-python /tmp/banksy/bin/python   # every section, seed 0
    python benchmarks/speed.py --sections osmfish_sscortex --seeds 0 1 2
    python benchmarks/speed.py --quick                                  # smoke run: 2 epochs, results in /tmp

Writes ``results/speed.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _sections import RESULTS, SECTIONS, ari, banksy_pcs, data_dir, kmeans, leiden_k, read_section, write_results

MAX_SPOTS = 10_000
OURS = "AESTETIK (defaults)"
PIPELINES = {
    "ours": OURS,
    "ours-all-epochs": "AESTETIK, tol=0, n_mc_samples=1000",
    "banksy-kmeans": "BANKSY, k-means",
    "banksy-leiden": "BANKSY, Leiden",
}
#: ``tl.fit`` arguments of each of our pipelines
OURS_FIT = {"ours": {}, "ours-all-epochs": {"tol": 0, "n_mc_samples": 1000}}


def worker(pipeline: str, section_name: str, seed: int, data: Path, epochs: int | None) -> None:
    """One pipeline on one section in this process; prints one JSON line with the ARI."""
    section = SECTIONS[section_name]
    k = section.n_domains
    if pipeline in OURS_FIT:
        import aestetik as ae

        adata = read_section(section, data)
        ae.pp.prepare(adata, n_clusters=k, random_state=seed, **section.prepare)
        fit = {**OURS_FIT[pipeline], **({"max_epochs": epochs, "n_mc_samples": 10} if epochs else {})}
        ae.tl.fit(adata, random_state=seed, show_progress_bar=False, **fit)
        ae.tl.cluster(adata, n_clusters=k, random_state=seed)
        labels = adata.obs["aestetik"]
    else:
        adata = read_section(section, data)
        pcs = banksy_pcs(adata, section, seed)
        if pipeline == "banksy-kmeans":
            labels = kmeans(pcs, k, seed)
        else:
            import scanpy as sc

            g = sc.AnnData(X=np.zeros((len(pcs), 1), np.float32), obsm={"X_pca": pcs})
            sc.pp.neighbors(g, use_rep="X_pca", n_neighbors=50, random_state=seed)
            labels = leiden_k(g, k, seed)
    print(json.dumps({"ari": ari(adata.obs["ground_truth"], labels)}))


def run(python: str, pipeline: str, section, seed: int, data: Path, epochs: int | None) -> dict:
    """The pipeline as a fresh process: wall seconds, peak resident memory (MB) and the ARI it printed."""
    cmd = [python, __file__, "--worker", pipeline, section.name, str(seed), "--data-dir", str(data)]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            msg = f"{' '.join(cmd)} exited with {proc.returncode}"
            raise RuntimeError(msg)
        out.seek(0)
        printed = json.loads(out.read().strip().splitlines()[-1])
    peak = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20
    return {"seconds": seconds, "peak_mb": peak, "ari": printed["ari"]}


def tables(payload: dict) -> str:
    lines = [
        f"{payload['machine']}; seeds {payload['seeds']}; epochs: {payload['epochs']}. Whole processes, one after",
        "the other: wall seconds (imports included), peak resident memory, ARI. Mean over seeds.",
        "",
        "| section (spots) | " + " | ".join(PIPELINES[p] for p in payload["pipelines"]) + " |",
        "|---|" + "---|" * len(payload["pipelines"]),
    ]
    for name in payload["sections"]:
        cells = []
        for p in payload["pipelines"]:
            rows = [r for r in payload["runs"] if r["section"] == name and r["pipeline"] == p]
            if not rows:
                cells.append("not run")
                continue
            mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("seconds", "peak_mb", "ari")}
            cells.append(f"{mean['seconds']:.1f} s, {mean['peak_mb'] / 1024:.2f} GB, ARI {mean['ari']:.3f}")
        lines.append(f"| `{name}` ({payload['n_obs'][name]:,}) | " + " | ".join(cells) + " |")
    ref = payload.get("reference")
    if ref:
        lines += [
            "",
            f"Reference `aestetik==0.3.1` (`reference.py`, {ref['measured']}): DLPFC 151676 with the published "
            f"settings, {ref['seconds']:.0f} s, peak {ref['peak_rss_mb'] / 1024:.2f} GB, ARI {ref['ari']:.3f}.",
        ]
    return "\n".join(lines)


def _stored_reference() -> dict | None:
    path = RESULTS / "reference.json"
    if not path.exists():
        return None
    runs = [
        r
        for r in json.loads(path.read_text())["runs"]
        if r["case"] == "dlpfc" and r["implementation"] == "reference" and r["epochs"] == 100
    ]
    if not runs:
        return None
    r = runs[0]
    return {
        "measured": r["measured"],
        "seconds": r["seconds"]["total"],
        "peak_rss_mb": r["peak_rss_mb"],
        "ari": r["ari"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", default=None, choices=list(SECTIONS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--data-dir", default=None, help="default: $AESTETIK_DATA, else ../shared/data")
    p.add_argument("--banksy-python", default=None, help="a python with pybanksy (its own environment)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, written to a temporary folder")
    p.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help="folder of the result files (default results/)")
    p.add_argument("--worker", nargs=3, metavar=("PIPELINE", "SECTION", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    data = data_dir(args.data_dir)
    if args.worker:
        pipeline, section, seed = args.worker
        worker(pipeline, section, int(seed), data, args.epochs)
        return
    import anndata as ad

    epochs = 2 if args.quick else None
    out = args.out or (Path(tempfile.mkdtemp(prefix="speed_")) if args.quick else RESULTS)
    n_obs = {n: ad.read_h5ad(data / s.file, backed="r").n_obs for n, s in SECTIONS.items()}
    sections = args.sections or [n for n in SECTIONS if n_obs[n] <= MAX_SPOTS]
    pipelines = [*OURS_FIT, *(["banksy-kmeans", "banksy-leiden"] if args.banksy_python else [])]
    payload = {
        "question": "end-to-end wall time and peak memory of ours (defaults, all epochs) and BANKSY, whole processes, side by side",
        "commands": ["python benchmarks/speed.py " + " ".join(sys.argv[1:])],
        "machine": f"CPU ({platform.machine()}, {os.cpu_count()} cores), no thread limit",
        "seeds": args.seeds,
        "epochs": epochs or "default",
        "pipelines": pipelines,
        "sections": sections,
        "n_obs": {n: n_obs[n] for n in sections},
        "runs": [],
        "reference": _stored_reference(),
    }
    for name in sections:
        for seed in args.seeds:
            for pipeline in pipelines:
                python = sys.executable if pipeline in OURS_FIT else args.banksy_python
                result = run(python, pipeline, SECTIONS[name], seed, data, epochs)
                payload["runs"].append({"section": name, "pipeline": pipeline, "seed": seed, **result})
                print(f"{name:28s} {PIPELINES[pipeline]:20s} seed {seed}: {result}", flush=True)
    write_results("speed", tables(payload), payload, out)


if __name__ == "__main__":
    main()

"""How steady are the domains over seeds, one run against a consensus of runs?

For each section and seed ``s`` (the package defaults with the section's switch, one thread per run)::

    ae.pp.prepare(adata, n_clusters=K, <switch>, random_state=s)
    ae.tl.fit(adata, random_state=s); ae.tl.cluster(adata, n_clusters=K, random_state=s)      # one run
    ae.tl.consensus(adata, n_seeds=R, n_clusters=K, random_state=s, vary_pseudo_labels=False) # R runs, one set of pseudo-labels
    ae.tl.consensus(adata, n_seeds=R, n_clusters=K, random_state=s)  # the default: R whole runs, each with its pseudo-labels

and prints the ARI against the manual domains, mean (min-max) over the seeds, with seconds per call::

    python benchmarks/consensus.py                                  # the legacy ST sections, 3 seeds, 3 runs each
    python benchmarks/consensus.py --sections starmap_bz5 --seeds 0 1 2 3
    python benchmarks/consensus.py --quick                          # smoke run: one seed, 2 runs, 5 epochs, in /tmp
    python benchmarks/consensus.py --merge A.json B.json            # one table of earlier runs' results

Writes ``results/consensus.{md,json}`` (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _sections import RESULTS, SECTIONS, ari, data_dir, limit_threads, machine, read_section, spread, write_results

SINGLE = "one run (defaults)"
FIXED = "tl.consensus, one set of pseudo-labels"
VARIED = "tl.consensus, vary_pseudo_labels=True"  # the default of tl.consensus
KINDS = (SINGLE, FIXED, VARIED)


def run(adata, section, seed: int, n_runs: int, epochs: int | None = None) -> dict[str, tuple[float, float]]:
    """ARI and seconds of the three ways on one section and seed (``epochs``: a shorter training)."""
    import aestetik as ae

    k, quiet = section.n_domains, {"show_progress_bar": False}
    fit_kwargs = {"max_epochs": epochs} if epochs else {}
    truth = adata.obs["ground_truth"]
    prepared = adata.copy()
    ae.pp.prepare(prepared, n_clusters=k, random_state=seed, **section.prepare)
    found = {}
    a, t = prepared.copy(), time.perf_counter()
    ae.tl.fit(a, random_state=seed, **quiet, **fit_kwargs)
    ae.tl.cluster(a, n_clusters=k, random_state=seed, **quiet)
    found[SINGLE] = (ari(truth, a.obs["aestetik"]), time.perf_counter() - t)
    for kind, vary in ((FIXED, False), (VARIED, True)):
        a, t = prepared.copy(), time.perf_counter()
        ae.tl.consensus(
            a, n_seeds=n_runs, n_clusters=k, random_state=seed, vary_pseudo_labels=vary, fit_kwargs=fit_kwargs, **quiet
        )
        found[kind] = (ari(truth, a.obs["aestetik"]), time.perf_counter() - t)
    return found


def table(payload: dict) -> str:
    rows = payload["rows"]
    head = (
        "ARI against the manual domains, mean (min-max) over the seeds listed, and seconds per call; "
        f"consensus of {payload['n_runs']} runs; {payload['machine']}.\n\n"
        "| section | K | seeds | " + " | ".join(KINDS) + " |\n|---|---|---|" + "---|" * len(KINDS)
    )
    lines = [head]
    for name in dict.fromkeys(r["section"] for r in rows):
        seeds = sorted({r["seed"] for r in rows if r["section"] == name})
        cells = [", ".join(map(str, seeds))]
        for kind in KINDS:
            got = [r for r in rows if r["section"] == name and r["kind"] == kind]
            seconds = sum(r["seconds"] for r in got) / len(got)
            cells.append(f"{spread([r['ari'] for r in got])}, {seconds:.0f} s")
        lines.append(f"| {name} | {SECTIONS[name].n_domains} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merged(paths: list[Path]) -> tuple[str, dict]:
    """One table and payload of the rows of several results files (the same runs per consensus and machine)."""
    payloads = [json.loads(p.read_text()) for p in paths]
    for key in ("n_runs", "machine"):
        if len({str(p[key]) for p in payloads}) > 1:
            msg = f"the files differ in {key!r}; they do not belong in one table"
            raise SystemExit(msg)
    rows = [r for p in payloads for r in p["rows"]]
    payload = {**payloads[0], "seeds": sorted({r["seed"] for r in rows}), "rows": rows}
    notes = [p["note"] for p in payloads if p.get("note")]
    if notes:
        payload["note"] = " ".join(dict.fromkeys(notes))
    return table(payload), payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=["her2st_a1", "mob_rep12"], choices=sorted(SECTIONS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--runs", type=int, default=3, help="runs per consensus")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, 2 runs, 5 epochs, in a temp folder")
    parser.add_argument(
        "--merge", nargs="+", type=Path, help="combine these results files into one table; runs nothing"
    )
    args = parser.parse_args()
    if args.merge:
        write_results("consensus", *merged(args.merge), args.out or RESULTS)
        return
    seeds, n_runs, epochs = ([args.seeds[0]], 2, 5) if args.quick else (args.seeds, args.runs, None)
    out = args.out or (Path(tempfile.mkdtemp(prefix="consensus_")) if args.quick else RESULTS)
    limit_threads(1)
    data = data_dir(args.data_dir)
    rows = []
    for name in args.sections:
        adata = read_section(SECTIONS[name], data)
        for seed in seeds:
            for kind, (value, seconds) in run(adata, SECTIONS[name], seed, n_runs, epochs).items():
                rows.append({"section": name, "seed": seed, "kind": kind, "ari": value, "seconds": seconds})
                print(f"{name} seed {seed} {kind}: {value:.3f} ({seconds:.0f} s)", flush=True)
    payload = {"seeds": seeds, "n_runs": n_runs, "machine": machine(1), "rows": rows}
    write_results("consensus", table(payload), payload, out)


if __name__ == "__main__":
    main()

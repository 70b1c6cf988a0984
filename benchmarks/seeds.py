"""How far apart are the seeds of one run, and how many runs does a consensus need to steady them?

Three seeds per section (``accuracy.py``) cannot tell the spread of a section whose domains change with the seed.
For each section this runs the package defaults with the section's switch (one thread per run) for seeds
``0..N-1``::

    ae.pp.prepare(adata, n_clusters=K, <switch>, random_state=s)
    ae.tl.fit(adata, random_state=s); ae.tl.cluster(adata, n_clusters=K, random_state=s)

and then combines the runs of every window of ``R`` consecutive seeds ``s..s+R-1`` as ``ae.tl.consensus(adata,
n_seeds=R, random_state=s)`` combines its runs: the pairwise ARI, the medoid run as reference, Hungarian alignment
and a majority vote (``aestetik._domains._consensus``). The runs of ``tl.consensus`` differ from these only in
reusing the representations that the first ``prepare`` computed (here each run computes its own PCs), so this
measures the same distribution of consensus domains at the cost of ``N`` runs for every ``R``. Prints the ARI
against the manual domains, mean (min-max) over the seeds or windows::

    python benchmarks/seeds.py                           # the legacy ST sections, 15 seeds, windows of 3, 5, 9
    python benchmarks/seeds.py --sections starmap_bz5 --n-seeds 10
    python benchmarks/seeds.py --quick                   # smoke run: 3 seeds, windows of 2, 5 epochs, in /tmp
    python benchmarks/seeds.py --vary prepare --n-seeds 10   # only prepare's seed changes (fit, cluster: 0)
    python benchmarks/seeds.py --vary fit --n-seeds 10       # only fit's and cluster's (one set of pseudo-labels)

``--vary`` tells which stage carries the spread: ``prepare``'s seed draws the pseudo-labels (and the PCs), ``fit``'s
and ``cluster``'s the network and the final clustering. Its windows are consensus over whole runs (``prepare``) or
over training seeds on one set of pseudo-labels (``fit``, as ``tl.consensus(vary_pseudo_labels=False)``).

Each finished run is written at once, so a stopped run resumes (``--fresh`` starts over); the table holds every
section of the result file, each with the seeds it was run with. Writes ``results/seeds.{md,json}`` (``--out``
elsewhere).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _sections import RESULTS, SECTIONS, ari, data_dir, limit_threads, machine, read_section, spread, write_results

#: ``--vary``: which seeds of a run change with ``s`` (the others stay 0), and how the result file names its rows.
VARY = {
    "all": ("", "every seed"),
    "prepare": (" (prepare seed only)", "only the seed of `prepare` (the pseudo-labels); `fit` and `cluster` seed 0"),
    "fit": (" (fit seed only)", "only the seeds of `fit` and `cluster`; `prepare` seed 0, so one set of pseudo-labels"),
}


def one_run(adata, section, seed: int, epochs: int | None = None, vary: str = "all") -> tuple[np.ndarray, float]:
    """The domains of one run with the defaults (int labels) and its seconds; ``vary`` as :data:`VARY`."""
    import aestetik as ae

    a, k, quiet = adata.copy(), section.n_domains, {"show_progress_bar": False}
    prepare_seed = seed if vary in ("all", "prepare") else 0
    fit_seed = seed if vary in ("all", "fit") else 0
    t0 = time.perf_counter()
    ae.pp.prepare(a, n_clusters=k, random_state=prepare_seed, **section.prepare)
    ae.tl.fit(a, random_state=fit_seed, **quiet, **({"max_epochs": epochs} if epochs else {}))
    ae.tl.cluster(a, n_clusters=k, random_state=fit_seed, **quiet)
    return np.asarray(a.obs["aestetik"].cat.codes, dtype=np.int64), time.perf_counter() - t0


def consensus_of(runs: list[np.ndarray]) -> np.ndarray:
    """The domains that ``tl.consensus`` makes of these runs' domains."""
    from aestetik._domains._consensus import medoid, pairwise_ari, vote

    labels = np.column_stack(runs)
    return vote(labels, medoid(pairwise_ari(labels)))[0]


def windows(truth, runs: dict[int, str], size: int) -> list[float]:
    """ARI of the consensus of every ``size`` consecutive seeds that were run (one run: ``size`` 1)."""
    seeds = sorted(runs)
    found = []
    for start in seeds:
        chosen = list(range(start, start + size))
        if all(s in runs for s in chosen):
            found.append(ari(truth, consensus_of([np.asarray(runs[s].split(","), dtype=np.int64) for s in chosen])))
    return found


def table(payload: dict) -> str:
    sizes = payload["windows"]
    lines = [
        "ARI against the manual domains (NA left out): one run for each seed 0..N-1, and the consensus of every window "
        "of R consecutive seeds (as `tl.consensus(n_seeds=R)` combines its runs), mean (min-max) over the seeds or "
        f"windows; {payload['machine']}; aestetik {payload['aestetik']}. "
        + " ".join(f"Rows named{suffix}: {what}." for suffix, what in list(VARY.values())[1:]),
        "",
        "| section | seeds | one run | seconds per run | " + " | ".join(f"consensus of {r} runs" for r in sizes) + " |",
        "|---|---|---|---|" + "---|" * len(sizes),
    ]
    for name, row in payload["sections"].items():
        cells = []
        for r in sizes:
            found = row["consensus"][str(r)]
            cells.append(f"{spread(found)}, {len(found)} windows" if found else "not run")
        seeds = row["runs"]
        lines.append(
            f"| {name} | {seeds[0]}-{seeds[-1]} | {spread(row['one_run'])} | {np.mean(row['seconds']):.0f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", nargs="+", default=["her2st_a1", "mob_rep12"], choices=sorted(SECTIONS))
    p.add_argument("--n-seeds", type=int, default=15, help="one run for each of seeds 0..N-1")
    p.add_argument("--windows", nargs="+", type=int, default=[3, 5, 9], help="runs per consensus")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="smoke run: 3 seeds, windows of 2, 5 epochs, in /tmp")
    p.add_argument("--fresh", action="store_true", help="forget the runs already in the result file")
    p.add_argument(
        "--vary",
        choices=list(VARY),
        default="all",
        help="which seeds change from run to run: every seed (default), only prepare's, or only fit's and cluster's",
    )
    args = p.parse_args()
    limit_threads(1)
    import aestetik

    n_seeds, sizes, epochs = (3, [2], 5) if args.quick else (args.n_seeds, args.windows, None)
    out = Path(tempfile.mkdtemp(prefix="aestetik_seeds_")) if args.quick else (args.out or RESULTS)
    data = data_dir(args.data_dir)
    done_file = out / "seeds.json"
    done = {} if args.fresh or not done_file.exists() else json.loads(done_file.read_text()).get("labels", {})
    payload = {
        "windows": sizes,
        "machine": machine(1),
        "aestetik": aestetik.__version__,
        "sections": {},
        "labels": done,
    }
    suffix = VARY[args.vary][0]
    for name in args.sections:
        section, row = SECTIONS[name], name + suffix
        adata = read_section(section, data)
        runs = {int(s): v for s, v in done.get(row, {}).get("runs", {}).items()}
        seconds = {int(s): v for s, v in done.get(row, {}).get("seconds", {}).items()}
        for seed in range(n_seeds):
            if seed in runs:
                continue
            labels, took = one_run(adata, section, seed, epochs, args.vary)
            runs[seed], seconds[seed] = ",".join(map(str, labels.tolist())), took  # one line per run in the json
            print(f"{row} seed {seed}: {ari(adata.obs['ground_truth'], labels):.3f} ({took:.0f} s)", flush=True)
            done[row] = {"runs": runs, "seconds": seconds}
            out.mkdir(parents=True, exist_ok=True)
            done_file.write_text(json.dumps({**payload, "labels": done}))
    # every row of the result file, with the seeds it holds: sections in registry order, each varied as VARY lists
    rows = [(n + v, n) for n in SECTIONS for v, _ in VARY.values() if n + v in done]
    for row, name in rows:
        runs = {int(s): v for s, v in done[row]["runs"].items()}
        truth = read_section(SECTIONS[name], data).obs["ground_truth"]
        payload["sections"][row] = {
            "runs": sorted(runs),
            "one_run": windows(truth, runs, 1),
            "seconds": list(done[row]["seconds"].values()),
            "consensus": {str(r): windows(truth, runs, r) for r in sizes},
        }
    write_results("seeds", table(payload), payload, out)


if __name__ == "__main__":
    main()

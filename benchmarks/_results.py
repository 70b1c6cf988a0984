"""Helpers shared by the benchmark scripts: worker processes and result files."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """The environment of a worker process limited to ``threads`` threads."""
    return {**os.environ, **dict.fromkeys(THREAD_VARIABLES, str(threads))}


def run_worker(cmd: list[str], env: dict[str, str]) -> dict:
    """Run a worker process and return the JSON record on the last line of its output."""
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def write_results(directory: Path, name: str, table: str, payload: dict) -> None:
    """Print the markdown ``table`` and write ``<directory>/<name>.md`` and ``<name>.json``."""
    print(table)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.md").write_text(table + "\n")
    (directory / f"{name}.json").write_text(json.dumps(payload, indent=1))


def read_runs(path: Path) -> list[dict]:
    """The runs a resumable benchmark appended to ``path`` (JSON lines; none when it does not exist yet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def append_run(path: Path, run: dict) -> None:
    """Append one finished run to ``path``, so that a stopped benchmark resumes after it."""
    with path.open("a") as f:
        f.write(json.dumps(run) + "\n")


def run_logged(
    script: str, tasks: list[tuple[str, str, int]], data: Path, log: Path, jobs: int, extra: tuple[str, ...] = ()
) -> list[dict]:
    """``script --worker SECTION NAME SEED --data DATA [EXTRA]`` for every task, in ``jobs`` one-thread worker processes.

    Each finished run is appended to ``log`` (:func:`append_run`) at once, so a stopped benchmark resumes after
    it; the runs come back in the order of ``tasks``.
    """
    import sys
    from concurrent.futures import ThreadPoolExecutor

    def one(task: tuple[str, str, int]) -> dict:
        cmd = [sys.executable, script, "--worker", task[0], task[1], str(task[2]), "--data", str(data), *extra]
        run = run_worker(cmd, thread_env(1))
        append_run(log, run)
        return run

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, tasks))


def spread_table(first: str, sections: list[str], rows: dict[str, list[list[float]]]) -> str:
    """Markdown: per row name, the mean (min-max) over seeds in each section, the mean over sections and the
    largest seed spread (max - min) of any section. ``rows[name][i]`` holds the values of ``sections[i]``."""
    import numpy as np

    lines = [
        f"| {first} | " + " | ".join(sections) + " | mean | largest seed spread |",
        "|" + "---|" * (len(sections) + 3),
    ]
    for name, values in rows.items():
        cells = [f"{np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})" for v in values]
        spread = max(max(v) - min(v) for v in values)
        mean = np.mean([np.mean(v) for v in values])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.3f} | {spread:.3f} |")
    return "\n".join(lines)

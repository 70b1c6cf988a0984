"""How do time and memory of the lattice-window kernel grow from 10^4 to 10^7 spots?

A kernel micro-benchmark (it imports the kernels themselves): the int32 index of every spot's window (numba,
``window_index``) and the on-device gather + median fill of one batch of 8192 windows of 30 channels
(``gather_windows``), which training does per step when the filled windows do not fit the cache; beside the size
a dense float grid of the same windows would take::

    python benchmarks/grid_kernel.py                  # 10^4 to 10^7 spots, under a minute, 3 GB of memory
    python benchmarks/grid_kernel.py --quick          # 10^4 and 10^5 spots, written to a temporary folder

Writes ``results/grid_kernel.{md,json}``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from _sections import RESULTS, write_results


def hex_lattice(n: int) -> np.ndarray:
    """About ``n`` positions on a Visium-like hexagonal lattice (row + col even), with 10 % holes."""
    rng = np.random.default_rng(0)
    side = int(np.ceil(np.sqrt(n / 0.9)))
    r, c = np.meshgrid(np.arange(side), np.arange(2 * side), indexing="ij")
    keep = (r + c) % 2 == 0
    r, c = r[keep], c[keep]
    keep = rng.random(r.size) >= 0.1
    return np.c_[r[keep], c[keep]][:n].astype(np.int32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    p.add_argument("--window", type=int, default=7)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.sizes = [10_000, 100_000]

    import numba
    import torch

    from aestetik._model._windows import gather_windows
    from aestetik._space._grid import window_index

    window_index(hex_lattice(1000), np.zeros(1000, np.int32), args.window)  # compile once
    rows = []
    for n in args.sizes:
        lattice = hex_lattice(n)
        samples = np.zeros(len(lattice), np.int32)
        t = time.perf_counter()
        index = window_index(lattice, samples, args.window)
        build = time.perf_counter() - t
        feats = torch.rand(len(lattice), 30)
        batch = torch.from_numpy(index[:8192])
        gather_windows(feats, batch, args.window)
        t = time.perf_counter()
        for _ in range(5):
            gather_windows(feats, batch, args.window)
        gather = (time.perf_counter() - t) / 5
        dense_gb = len(lattice) * 30 * args.window**2 * 4 / 1e9
        rows.append(
            {
                "spots": len(lattice),
                "index_seconds": build,
                "index_mb": index.nbytes / 1e6,
                "dense_float_grid_gb_30_channels": dense_gb,
                "gather_fill_8192_seconds": gather,
            }
        )
    device = f"{datetime.date.today()}, CPU ({platform.machine()}, {os.cpu_count()} cores, numba {numba.get_num_threads()} threads, torch {torch.get_num_threads()} threads)"
    lines = [
        f"Window {args.window}x{args.window}, hexagonal lattice with 10 % holes; {device}",
        "",
        "| spots | index build s | index MB | dense float grid (30 ch) GB | gather + median fill of 8192 windows s |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['spots']:,} | {r['index_seconds']:.2f} | {r['index_mb']:.0f} | {r['dense_float_grid_gb_30_channels']:.1f} | "
        f"{r['gather_fill_8192_seconds']:.3f} |"
        for r in rows
    ]
    out = Path(tempfile.mkdtemp(prefix="grid_")) if args.quick else RESULTS
    write_results(
        "grid_kernel", "\n".join(lines), {"question": __doc__.splitlines()[0], "device": device, "rows": rows}, out
    )


if __name__ == "__main__":
    main()

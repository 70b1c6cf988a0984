"""Command line: ``python -m aestetik demo`` runs AESTETIK on the bundled DLPFC section."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import aestetik as ae
    from aestetik._domains._scores import ari_known, known_labels

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    adata = ae.datasets.dlpfc_151676()
    ae.pp.prepare(adata, n_clusters=args.n_clusters, random_state=args.seed)
    t1 = time.perf_counter()
    ae.tl.fit(
        adata,
        max_epochs=args.epochs,
        n_mc_samples=args.mc_samples,
        random_state=args.seed,
        show_progress_bar=not args.quiet,
    )
    t2 = time.perf_counter()
    ae.tl.cluster(adata, n_clusters=args.n_clusters, random_state=args.seed)
    t3 = time.perf_counter()
    truth = adata.obs["ground_truth"]
    ari = ari_known(truth, adata.obs["aestetik"].astype(str).to_numpy())
    known = known_labels(truth)
    figure = out / "aestetik_dlpfc_151676.png"
    ae.pl.spatial(adata, color=["aestetik", "ground_truth"], ground_truth="ground_truth", save=figure)
    loss_figure = out / "aestetik_loss.png"
    ae.pl.loss(adata, save=loss_figure)
    line = (
        f"ARI = {ari:.3f} (DLPFC 151676, {args.n_clusters} domains, {int(known.sum())} labelled spots, seed {args.seed}); "
        f"prepare {t1 - t0:.1f} s, fit {t2 - t1:.1f} s, cluster {t3 - t2:.1f} s; figure: {figure}"
    )
    sys.stdout.write(line + "\n")
    (out / "ari.txt").write_text(f"{ari:.6f}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m aestetik`` and the ``aestetik`` command."""
    parser = argparse.ArgumentParser(prog="aestetik", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run AESTETIK on the bundled DLPFC section and write a figure and the ARI")
    demo.add_argument("--out", default="aestetik_demo", help="output folder (default: ./aestetik_demo)")
    demo.add_argument("--epochs", type=int, default=100, help="training epochs at most (default 100)")
    demo.add_argument("--mc-samples", type=int, default=100, help="Monte-Carlo dropout passes (default 100)")
    demo.add_argument("--n-clusters", type=int, default=7, help="number of domains (default 7)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())

"""Figures of the benchmark results and of the method, drawn from ``benchmarks/results/*.json``.

Writes into ``docs/_static/figures/`` (or ``--out-dir``), with matplotlib (Agg), in under a minute:

- ``ari_by_section.png``: ARI per section and method (``accuracy.json``, ``peers.json``), bars at the mean over
  seeds, error bars from min to max, sections grouped by platform;
- ``scaling.png``: seconds and peak memory against the number of spots, log-log (``scaling_cpu.json``,
  ``scaling_gpu.json``, ``grid_kernel.json``, ``reference.json``);
- ``method.png``: the inputs, the window on the hexagonal lattice, the network and the loss, drawn on the
  bundled section ``ae.datasets.dlpfc_151676()``.

Every plotted number is read from a result file; the script prints which files each figure used::

    python benchmarks/figures.py
    python benchmarks/figures.py --only ari scaling --out-dir /tmp/figures
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch, Rectangle

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling module below, also when a test loads this file by its path
from _sections import GROUPS, SECTIONS  # noqa: E402

RESULTS = HERE / "results"
FIGURES = HERE.parent / "docs" / "_static" / "figures"
DPI = 150

OURS, BANKSY, SPAGCN, LEIDEN = "AESTETIK (defaults)", "BANKSY", "SpaGCN", "scanpy PCA + Leiden"
PCA_KMEANS, NBR_KMEANS = "PCA + k-means", "neighbour-averaged PCA + k-means"
METHODS = {  # method -> bar colour, in the order of the bars
    OURS: "#1f4e99",
    BANKSY: "#3a9a4a",
    SPAGCN: "#8e63b5",
    LEIDEN: "#8a8a8a",
    NBR_KMEANS: "#e0a224",
    PCA_KMEANS: "#f2d49b",
}


def _read(results: Path, name: str) -> dict | None:
    path = results / name
    return json.loads(path.read_text()) if path.exists() else None


def ari_table(results: Path = RESULTS) -> pd.DataFrame:
    """Mean, min and max ARI over seeds per section and method, as :func:`ari_by_section` plots them.

    BANKSY is the best of its clusterings by mean ARI on each section (``detail`` names it).
    """
    runs = []
    for name in ("accuracy.json", "peers.json"):
        if (d := _read(results, name)) is not None:
            runs += [{**r, "source": name} for r in d["runs"]]
    by: dict[tuple[str, str], dict] = {}
    for r in runs:
        method = (
            BANKSY if r["method"].startswith("BANKSY") else SPAGCN if r["method"].startswith("SpaGCN") else r["method"]
        )
        entry = by.setdefault((r["section"], method, r["method"]), {"aris": [], "source": r["source"]})
        entry["aris"].append(float(r["ari"]))
    best: dict[tuple[str, str], dict] = {}
    for (section, method, detail), e in by.items():
        key = (section, method)
        if key not in best or np.mean(e["aris"]) > np.mean(best[key]["aris"]):
            best[key] = {"section": section, "method": method, "detail": detail, **e}
    entries = [e for e in best.values() if e["method"] in METHODS]
    order = [n for g in GROUPS for n in SECTIONS if SECTIONS[n].group == g]
    entries.sort(key=lambda e: (order.index(e["section"]), list(METHODS).index(e["method"])))
    table = pd.DataFrame(entries)
    table["group"] = table["section"].map(lambda s: SECTIONS[s].group)
    table["n"] = table["aris"].map(len)
    for stat in ("mean", "min", "max"):
        table[stat] = table["aris"].map(getattr(np, stat))
    return table


def ari_by_section(results: Path = RESULTS, out_dir: Path = FIGURES) -> pd.DataFrame:
    """Grouped bars of the ARI per section and method; writes ``ari_by_section.png`` and returns the plotted table."""
    table = ari_table(results)
    sections = list(dict.fromkeys(table["section"]))
    width = 0.84 / table.groupby("section").size().max()
    fig, ax = plt.subplots(figsize=(12, 4.6))
    for i, section in enumerate(sections):
        rows = table[table["section"] == section]
        for j, (_, r) in enumerate(rows.iterrows()):
            x = i + (j - (len(rows) - 1) / 2) * width
            err = [[r["mean"] - r["min"]], [r["max"] - r["mean"]]]
            ax.bar(x, r["mean"], width * 0.92, color=METHODS[r["method"]], yerr=err, capsize=2, ecolor="0.2")
            text = f"{r['mean']:.2f}" + (" (1 run)" if r["n"] == 1 else "")
            ax.text(x, max(r["max"], 0) + 0.015, text, ha="center", va="bottom", fontsize=6, rotation=90)
    groups = [SECTIONS[s].group for s in sections]
    for i in range(1, len(sections)):
        if groups[i] != groups[i - 1]:
            ax.axvline(i - 0.5, color="0.6", lw=0.8)
    for g in dict.fromkeys(groups):
        idx = [i for i, x in enumerate(groups) if x == g]
        ax.text(np.mean(idx), 1.02, g, ha="center", va="bottom", fontsize=8.5, style="italic")
    labels = [
        s.replace("_counts", "\ncounts").replace("_hypothalamus_", "\nhypothalamus ").replace("_", " ", 1)
        for s in sections
    ]
    ax.set_xticks(range(len(sections)), labels)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylabel("ARI (mean over seeds; bars: min - max)")
    ax.set_ylim(min(0.0, table["min"].min() - 0.02), 1.12)
    ax.set_xlim(-0.5, len(sections) - 0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    present = [m for m in METHODS if m in set(table["method"])]
    handles = [Rectangle((0, 0), 1, 1, color=METHODS[m]) for m in present]
    labels = [m + (" (best of its 3 cuts)" if m == BANKSY else "") for m in present]
    ax.legend(handles, labels, ncol=len(present), fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, 1.16))
    fig.tight_layout()
    _save(fig, out_dir / "ari_by_section.png")
    return table


TIME = {"train, s per epoch": "C0", "embed, s per 100 passes": "C1", "prepare, s": "C2", "window index, s": "0.45"}
MEMORY = {"peak host memory (RSS)": "C4", "peak GPU memory": "C3", "window index": "0.45"}
SCALING_COLUMNS = ("panel", "quantity", "style", "n_spots", "value", "source")
CPU_RUNS, CPU_REF, REF = "ours, CPU", "ours, CPU (beside the reference)", "aestetik 0.3.1 (reference), CPU"
STYLES = {  # implementation / device -> (marker, line style, marker face)
    CPU_RUNS: ("o", "-", "full"),
    CPU_REF: ("o", ":", "none"),
    REF: ("s", "--", "full"),
    "ours, GPU": ("*", "", "full"),
    "ours, GPU, batch_size=65536": ("D", "", "none"),
}


def _gpu_style(config: str) -> str | None:
    if "batch_size=65536" in config:
        return "ours, GPU, batch_size=65536"
    return "ours, GPU" if "partners='batch'" not in config else None


def scaling_table(results: Path = RESULTS) -> pd.DataFrame:
    """Seconds and megabytes per number of spots, one row per plotted point (``panel`` is ``time`` or ``memory``)."""
    rows = []
    for name, gpu in (("scaling_cpu.json", False), ("scaling_gpu.json", True)):
        if (d := _read(results, name)) is None:
            continue
        for r in (r for r in d["runs"] if r["status"] == "ok"):
            style = _gpu_style(r["config"]) if gpu else CPU_RUNS
            if style is None:
                continue
            n, s = r["n_obs"], r["seconds"]
            rows.append(("time", "train, s per epoch", style, n, s["train"] / r["epochs"], name))
            if not gpu or style == "ours, GPU":
                rows.append(("time", "embed, s per 100 passes", style, n, s["embed"] / r["mc_passes"] * 100, name))
            if gpu:
                rows.append(("memory", "peak GPU memory", style, n, r["peak_gpu_mb"], name))
            else:
                rows.append(("time", "prepare, s", style, n, s["prepare"], name))
                rows.append(("memory", "peak host memory (RSS)", style, n, r["peak_rss_mb"], name))
    if (d := _read(results, "grid_kernel.json")) is not None:
        for r in d["rows"]:
            rows.append(("time", "window index, s", CPU_RUNS, r["spots"], r["index_seconds"], "grid_kernel.json"))
            rows.append(("memory", "window index", CPU_RUNS, r["spots"], r["index_mb"], "grid_kernel.json"))
    if (d := _read(results, "reference.json")) is not None:
        for r in (r for r in d["runs"] if r["case"] == "synthetic"):
            style, n, s = REF if r["implementation"] == "reference" else CPU_REF, r["n_spots"], r["seconds"]
            passes = s["embed"] - s.get("embed_setup", 0.0)  # the reference's embed re-runs its set-up
            rows.append(("time", "train, s per epoch", style, n, s["train"] / r["epochs"], "reference.json"))
            rows.append(("time", "embed, s per 100 passes", style, n, passes / r["mc_passes"] * 100, "reference.json"))
            rows.append(("time", "prepare, s", style, n, s["prepare"], "reference.json"))
            rows.append(("memory", "peak host memory (RSS)", style, n, r["peak_rss_mb"], "reference.json"))
    return pd.DataFrame(rows, columns=list(SCALING_COLUMNS))


def scaling(results: Path = RESULTS, out_dir: Path = FIGURES) -> pd.DataFrame:
    """Time and peak memory against the number of spots, log-log; writes ``scaling.png``, returns the plotted table."""
    table = scaling_table(results)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, panel, colours, label in ((axes[0], "time", TIME, "seconds"), (axes[1], "memory", MEMORY, "MB")):
        part = table[table["panel"] == panel]
        for (quantity, style), g in part.groupby(["quantity", "style"], sort=False):
            marker, line, face = STYLES[style]
            g = g.sort_values("n_spots")
            ax.plot(g["n_spots"], g["value"], marker=marker, linestyle=line, fillstyle=face, color=colours[quantity],
                    markersize=9 if marker == "*" else 6)  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel="spots", ylabel=label, xlim=(5e2, 2e7))
        ax.set_title("Time" if panel == "time" else "Peak memory", fontsize=11)
        ax.grid(which="major", alpha=0.3)
        present = [q for q in colours if q in set(part["quantity"])]
        ax.legend([Line2D([], [], color=colours[q], lw=3) for q in present], present, fontsize=8, loc="lower right")
    styles = [s for s in STYLES if s in set(table["style"])]
    handles = [Line2D([], [], color="0.2", marker=STYLES[s][0], linestyle=STYLES[s][1] or "none",
                      fillstyle=STYLES[s][2]) for s in styles]  # fmt: skip
    fig.legend(handles, styles, ncol=len(styles), fontsize=8, loc="lower center", frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _save(fig, out_dir / "scaling.png")
    return table


def method_inputs(window_size: int = 7) -> dict:
    """What :func:`method` draws from the bundled section: lattice, PC 1, the centre spot, its window and image.

    The window holds, at each offset from the centre spot, the spot that sits exactly there on the lattice
    (``-1``: none, filled with the window's median), as METHOD section 3 describes.
    """
    from sklearn.decomposition import PCA

    import aestetik as ae

    adata = ae.datasets.dlpfc_151676()
    lattice = adata.obs[["array_row", "array_col"]].to_numpy(np.int64)
    x = np.log1p(adata.X.toarray())
    genes = np.argsort(-x.var(axis=0), kind="stable")[:2000]
    pc1 = PCA(n_components=15, random_state=0).fit_transform(x[:, genes])[:, 0].astype(np.float32)
    scaled = (pc1 - pc1.min()) / (pc1.max() - pc1.min())  # min-max to [0, 1], the window's first channel
    middle = np.median(lattice, axis=0)
    centre = int(np.argmin(np.abs(lattice - middle).sum(axis=1)))
    where = {(int(r), int(c)): i for i, (r, c) in enumerate(lattice)}
    half, (r0, c0) = window_size // 2, lattice[centre]
    index = np.array([[where.get((r0 + i - half, c0 + j - half), -1) for j in range(window_size)]
                      for i in range(window_size)])  # fmt: skip
    values = np.where(index >= 0, scaled[np.maximum(index, 0)], np.nan)
    filled = np.where(np.isnan(values), np.nanmedian(values), values)
    lib = next(iter(adata.uns["spatial"]))
    spatial = adata.uns["spatial"][lib]
    scale = spatial["scalefactors"]["tissue_lowres_scalef"]
    return {
        "lattice": lattice, "pc1": scaled, "centre": centre, "index": index, "window": filled,
        "image": spatial["images"]["lowres"], "xy": adata.obsm["spatial"] * scale,
        "spot_px": spatial["scalefactors"]["spot_diameter_fullres"] * scale,
    }  # fmt: skip


def _box(ax, x, y, w, h, text, colour, size=7.5):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.08", fc=colour, ec="0.3", lw=0.8))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, linespacing=1.35)


def _arrow(ax, a, b, **kw):
    ax.annotate("", b, a, arrowprops={"arrowstyle": "-|>", "color": "0.3", "lw": 1.0, "shrinkA": 0, "shrinkB": 0, **kw})


def network(ax) -> None:
    """Boxes and arrows: window -> encoder units -> median z -> decoder units -> median reconstruction; the loss."""
    ax.set(xlim=(0, 10), ylim=(0, 6.2))
    ax.axis("off")
    ax.set_title("network (ensemble of 3 units, element-wise median) and loss", fontsize=9.5)
    enc = "Conv2d $3{\\times}3$ → 64\nBatchNorm2d\nDropout2d 0.3\nReLU\nMaxPool 3, stride 3\nLinear → 16"
    dec = "Linear, Unflatten\nReLU, upsample\nDropout2d 0.3\nConvTranspose2d\n$3{\\times}3$ → $C$\nBatchNorm2d\nSigmoid"
    for k in (2, 1, 0):  # three stacked units, the front one labelled
        _box(ax, 1.55 + 0.09 * k, 2.75 + 0.11 * k, 2.0, 2.6, "" if k else enc, "#d7e5f7", size=7)
        _box(ax, 5.35 + 0.09 * k, 2.75 + 0.11 * k, 2.0, 2.6, "" if k else dec, "#fde3c8", size=7)
    ax.text(2.65, 5.62, "3 encoder units", ha="center", fontsize=8)
    ax.text(6.45, 5.62, "3 decoder units", ha="center", fontsize=8)
    _box(ax, 0.02, 3.5, 1.2, 1.1, "window $x_a$\n$C \\times w \\times w$\n$C = d_t + d_m$", "#eef3fb", size=7.5)
    _box(ax, 3.95, 3.6, 1.0, 0.9, "median\n$z_a \\in \\mathbb{R}^{16}$", "#c9e7cf", size=7.5)
    _box(ax, 8.35, 3.5, 1.63, 1.1, "median:\nreconstruction\n$\\hat x_a$, $C \\times w \\times w$", "#fdf1e4", size=7.5)
    for a, b in (((1.22, 4.05), (1.55, 4.05)), ((3.55, 4.05), (3.95, 4.05)), ((4.95, 4.05), (5.35, 4.05))):
        _arrow(ax, a, b)
    _arrow(ax, (7.55, 4.05), (8.35, 4.05))
    mc = "embedding:\nmean of 1000\nMC-dropout\npasses"
    ax.text(4.45, 4.62, mc, ha="center", va="bottom", fontsize=6.5, color="0.3")
    trip = (
        "multi-triplet, per modality, on its pseudo-labels ($K$ clusters):\n"
        "positives $p_i$ from the anchor's cluster, one negative $n_i$\nfrom each of the $K-1$ others, "
        "$\\max(\\|z_a - z_{p_i}\\| - \\|z_a - z_{n_i}\\| + 1, 0)$"
    )
    _box(ax, 0.02, 1.15, 5.6, 1.2, trip, "#c9e7cf", size=7)
    _box(ax, 5.9, 1.15, 4.08, 1.2, "reconstruction: L1 between $x_a$ and $\\hat x_a$\non the transcriptomics "
         "($\\mathrm{L1}_t$)\nand the morphology channels ($\\mathrm{L1}_m$)", "#fdf1e4", size=7)  # fmt: skip
    _arrow(ax, (4.45, 3.6), (3.6, 2.35))
    _arrow(ax, (9.16, 3.5), (8.6, 2.35))
    loss = (
        "$\\mathcal{L} = w_t\\,(\\alpha_r\\,\\mathrm{L1}_t + \\alpha_\\tau\\,\\mathrm{Trip}_t)"
        " + w_m\\,(\\alpha_r\\,\\mathrm{L1}_m + \\alpha_\\tau\\,\\mathrm{Trip}_m)$"
    )
    _box(ax, 0.02, 0.05, 9.96, 0.8, loss, "#f2f2f2", size=10.5)
    _arrow(ax, (2.8, 1.15), (2.8, 0.85))
    _arrow(ax, (7.9, 1.15), (7.9, 0.85))


def _quantize(path: Path) -> None:
    """Rewrite a PNG with a 256-colour palette (a third of the size; the figures have few colours)."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    _quantize(path)


def method(out_dir: Path = FIGURES, window_size: int = 7) -> dict:
    """Draw ``method.png``: the three inputs on the bundled section, the window, the network and the loss."""
    d = method_inputs(window_size)
    fig = plt.figure(figsize=(12, 5))
    grid = fig.add_gridspec(2, 3, width_ratios=[1.25, 0.85, 3.0], wspace=0.12, hspace=0.35)
    r, c = d["lattice"][d["centre"]]
    half, lat = window_size / 2, d["lattice"]
    norm = {"cmap": "viridis", "vmin": np.percentile(d["pc1"], 2), "vmax": np.percentile(d["pc1"], 98)}
    ax = fig.add_subplot(grid[:, 0])  # transcriptomics and the spatial neighbourhood on the lattice
    ax.scatter(lat[:, 1], -lat[:, 0] * np.sqrt(3), c=d["pc1"], s=2.0, linewidths=0, **norm)
    ax.add_patch(Rectangle((c - half, -(r + half) * np.sqrt(3)), window_size, window_size * np.sqrt(3), fill=False,
                           ec="red", lw=1.3))  # fmt: skip
    ax.set_aspect("equal")
    ax.set_anchor("N")
    ax.axis("off")
    title = "transcriptomics (PC 1) on the\nhexagonal lattice; red: the\n$w \\times w$ window of one spot"
    ax.set_title(title, fontsize=9)
    ax = fig.add_subplot(grid[0, 1])  # morphology patch under the spot
    (x0, y0), p = d["xy"][d["centre"]], d["spot_px"]
    ax.imshow(d["image"], interpolation="bilinear")
    near = np.abs(d["xy"] - (x0, y0)).max(axis=1) < 7 * p
    for x, y in d["xy"][near]:
        ax.add_patch(plt.Circle((x, y), p / 2, fill=False, ec="white", lw=0.5, alpha=0.6))
    ax.add_patch(Rectangle((x0 - p, y0 - p), 2 * p, 2 * p, fill=False, ec="red", lw=1.3))
    ax.set(xlim=(x0 - 6 * p, x0 + 6 * p), ylim=(y0 + 6 * p, y0 - 6 * p), xticks=[], yticks=[])
    ax.set_title("morphology: H&E patch under\nthe spot (red), spots (white)", fontsize=9)
    ax = fig.add_subplot(grid[1, 1])  # the window, gaps filled with its median
    ax.imshow(d["window"], **norm)
    for i, j in zip(*np.nonzero(d["index"] < 0), strict=True):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", ec="white", lw=0))
    ax.add_patch(Rectangle((window_size // 2 - 0.5,) * 2, 1, 1, fill=False, ec="red", lw=1.3))
    ax.set(xticks=[], yticks=[])
    ax.set_title(f"the window ($w$ = {window_size}), one channel;\nhatched: no spot, window median", fontsize=9)
    network(fig.add_subplot(grid[:, 2]))
    fig.subplots_adjust(left=0.01, right=0.995, top=0.88, bottom=0.02)
    _save(fig, out_dir / "method.png")
    return d


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out-dir", type=Path, default=FIGURES)
    parser.add_argument("--only", nargs="+", choices=["ari", "scaling", "method"], default=["ari", "scaling", "method"])
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        if name == "method":
            method(args.out_dir)
            print("method.png from ae.datasets.dlpfc_151676() (no result file)")
            continue
        draw, png = {"ari": (ari_by_section, "ari_by_section.png"), "scaling": (scaling, "scaling.png")}[name]
        print(png, "from", ", ".join(sorted(set(draw(args.results, args.out_dir)["source"]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

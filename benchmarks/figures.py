"""Figures of the benchmark results and of the method, drawn from ``benchmarks/results/*.json``.

Writes into ``docs/_static/figures/`` (or ``--out-dir``), with matplotlib (Agg), in under a minute:

- ``ari_by_section.png``: ARI per section and method, bars at the mean over seeds, error bars from min to max;
- ``scaling.png``: seconds and peak memory against the number of spots, log-log, CPU and GPU where measured;
- ``method.png``: the inputs, the window on the hexagonal lattice, the network and the loss, drawn on the
  bundled section ``ae.datasets.dlpfc_151676()``.

Nothing is typed in by hand: every plotted number is read from a result file, and the script prints which
files each figure used::

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
from matplotlib.patches import Rectangle

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling module below, also when a test loads this file by its path
from _method_figure import method_inputs, network  # noqa: E402

RESULTS = HERE / "results"
FIGURES = HERE.parent / "docs" / "_static" / "figures"
DPI = 150

OURS, OURS_RNA, PUBLISHED = "AESTETIK, defaults", "AESTETIK, defaults, RNA only", "AESTETIK, published settings"
REFERENCE, LEIDEN = "aestetik 0.3.1 (reference)", "scanpy PCA + Leiden"
METHODS = {  # method -> bar colour, in the order of the bars
    OURS: "#1f4e99",
    OURS_RNA: "#5b8fd6",
    PUBLISHED: "#a9c6ec",
    REFERENCE: "#e07b24",
    "BANKSY": "#3a9a4a",
    "SpaGCN": "#8e63b5",
    LEIDEN: "#8a8a8a",
}
# defaults_candidates.json section -> the section of the other result files it replaces "AESTETIK, defaults" in
CANDIDATE_SECTIONS = {
    "151676 normalised": "DLPFC 151676 (bundled)",
    "151676 counts": "DLPFC 151676 counts",
    "151674 counts": "DLPFC 151674 counts",
    "synthetic hex": "synthetic hex",
    "synthetic square": "synthetic square",
}
DLPFC, CELLS = "DLPFC 151676 (bundled)", "STARmap BZ5 (cells)"
SYNTHETIC_SETTINGS = {"hex, noise 0.4": "synthetic hex", "square, noise 0.8": "synthetic square"}


def _read(results: Path, name: str) -> dict | None:
    path = results / name
    return json.loads(path.read_text()) if path.exists() else None


def _entry(section: str, method: str, aris, source: str, detail: str = "") -> dict:
    return {"section": section, "method": method, "aris": [float(a) for a in aris], "source": source, "detail": detail}


def _dlpfc(results: Path) -> list[dict]:
    out = []
    if (d := _read(results, "dlpfc_defaults.json")) is not None:
        for config, method in (("default", OURS), ("default, RNA only", OURS_RNA)):
            aris = [r["ari"] for r in d["records"] if r["config"] == config]
            out.append(_entry(DLPFC, method, aris, "dlpfc_defaults.json", config))
        if "scanpy_leiden" in d:
            out.append(_entry(DLPFC, LEIDEN, d["scanpy_leiden"], "dlpfc_defaults.json"))
    if (d := _read(results, "dlpfc_vs_reference.json")) is not None:
        ours = [r["ari"] for r in d["runs"] if r["implementation"] != "reference"]
        ref = [r["ari"] for r in d["runs"] if r["implementation"] == "reference"]
        detail = "identical inputs: pseudo_label_smoothing=0, bgm domains, RNA only"
        out += [_entry(DLPFC, PUBLISHED, ours, "dlpfc_vs_reference.json", detail)]
        out += [_entry(DLPFC, REFERENCE, ref, "dlpfc_vs_reference.json", detail)]
    return out


def _many_sections(results: Path) -> list[dict]:
    if (d := _read(results, "many_sections.json")) is None:
        return []
    return [
        _entry(f"DLPFC {s} counts", OURS, [r[f"alone_{s}"] for r in d["rows"]], "many_sections.json", "shared genes")
        for s in ("151676", "151674")
    ]


#: The STARmap run of the current defaults (merged pseudo-label mixture, spectral domains); ``starmap.json`` holds
#: the former defaults' run and the peers.
STARMAP_CURRENT = "starmap_mixture_spectral_domains.json"


def _starmap(results: Path) -> list[dict]:
    if (d := _read(results, "starmap.json")) is None:
        return []
    res, out, src = d["results"], [], "starmap.json"
    current = _read(results, STARMAP_CURRENT)
    if current is not None:
        for name, r in current["results"].items():
            out.append(_entry(CELLS, OURS, r["ari"], STARMAP_CURRENT, name))
    for name, r in res.items():
        if name.startswith("AESTETIK default") and current is None:
            out.append(_entry(CELLS, OURS, r["ari"], src, name))
        elif name.startswith("SpaGCN"):
            out.append(_entry(CELLS, "SpaGCN", r["ari"], src, name))
        elif name.startswith("scanpy"):
            out.append(_entry(CELLS, LEIDEN, r["ari"], src, name))
    banksy = {k: v for k, v in res.items() if k.startswith("BANKSY")}
    if banksy:  # the best of its settings by mean ARI
        best = max(banksy, key=lambda k: np.mean(banksy[k]["ari"]))
        out.append(_entry(CELLS, "BANKSY", banksy[best]["ari"], src, best))
    return out


def _dlpfc_peers(results: Path) -> list[dict]:
    """BANKSY (the best of its settings by mean ARI), SpaGCN and scanpy Leiden of ``dlpfc_peers.json``."""
    if (d := _read(results, "dlpfc_peers.json")) is None:
        return []
    out, src = [], "dlpfc_peers.json"
    for section in d["sections"]:
        by: dict[str, list[float]] = {}
        for r in (r for r in d["runs"] if r["section"] == section):
            by.setdefault(r["method"], []).append(r["ari"])
        name, banksy = CANDIDATE_SECTIONS.get(section, section), [m for m in by if m.startswith("BANKSY")]
        if banksy:  # the best of its settings by mean ARI
            best = max(banksy, key=lambda m: np.mean(by[m]))
            out.append(_entry(name, "BANKSY", by[best], src, best))
        out += [
            _entry(name, label, by[m], src, m)
            for m, label in (("SpaGCN", "SpaGCN"), ("scanpy PCA + Leiden", LEIDEN))
            if m in by
        ]
    return out


def _synthetic(results: Path) -> list[dict]:
    out = []
    if (d := _read(results, "synthetic_defaults.json")) is not None:
        configs = {"default (sigma 1, k-means domains)": OURS}
        configs["published (single-spot pseudo-labels, bgm domains)"] = PUBLISHED
        for setting, section in SYNTHETIC_SETTINGS.items():
            for config, method in configs.items():
                aris = [r["ari"] for r in d["records"] if r["setting"] == setting and r["config"] == config]
                if aris:
                    out.append(_entry(section, method, aris, "synthetic_defaults.json", config))
    for name in ("synthetic_vs_reference.json", "synthetic_vs_reference_100k/synthetic_vs_reference.json"):
        if (d := _read(results, name)) is None:
            continue
        for run in d["runs"]:
            section = f"synthetic {run['n_spots']:,} spots ({d['epochs']} epoch{'s' * (d['epochs'] > 1)})"
            method = REFERENCE if run["implementation"] == "reference" else PUBLISHED
            out.append(_entry(section, method, [run["record"]["ari"]], name, "identical inputs"))
    return out


def _candidates(results: Path) -> list[dict]:
    """The package defaults in ``defaults_candidates.json``, one entry per section.

    Per section, the runs of the configuration its ``"adopted"`` record names for that section (the defaults
    after the change it measured), else the ``"default"`` runs.
    """
    if (d := _read(results, "defaults_candidates.json")) is None:
        return []
    adopted = {s: c for c, secs in d.get("adopted", {}).get("runs", {}).items() for s in secs}
    out = []
    for section in d["sections"]:
        config = adopted.get(section, "default")
        aris = [r["ari"] for r in d["runs"] if r["section"] == section and r["config"] == config]
        if aris:
            name = CANDIDATE_SECTIONS.get(section, section)
            out.append(_entry(name, OURS, aris, "defaults_candidates.json", d["configs"].get(config, config)))
    return out


def ari_table(results: Path = RESULTS) -> pd.DataFrame:
    """Mean, min and max ARI over seeds per section and method, as :func:`ari_by_section` plots them.

    ``defaults_candidates.json``, where it exists, replaces the package defaults of the other files on its sections.
    """
    entries = _dlpfc(results) + _many_sections(results) + _starmap(results) + _synthetic(results)
    new = _candidates(results)
    replaced = {e["section"] for e in new}
    # the new defaults replace the old ones and, where they are the RNA-only runs, the RNA-only bars too
    entries = new + [e for e in entries if not (e["method"] in (OURS, OURS_RNA) and e["section"] in replaced)]
    peers = _dlpfc_peers(results)  # measured beside the new defaults: they replace a peer's older bar there
    measured = {(e["section"], e["method"]) for e in peers}
    entries = [e for e in entries if (e["section"], e["method"]) not in measured] + peers
    entries = [e for e in entries if e["aris"]]
    sections = list(dict.fromkeys(e["section"] for e in entries))
    order = list(METHODS)
    entries.sort(key=lambda e: (sections.index(e["section"]), order.index(e["method"])))
    table = pd.DataFrame(entries)
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
            ax.text(x, r["max"] + 0.015, text, ha="center", va="bottom", fontsize=6.5, rotation=90)
    labels = [s.replace(" (", "\n(").replace(" counts", "\ncounts") for s in sections]
    labels = [s.replace("synthetic ", "synthetic\n") for s in labels]
    ax.set_xticks(range(len(sections)), labels)
    ax.tick_params(axis="x", labelsize=8.5)
    ax.set_ylabel("ARI (mean over seeds; bars: min - max)")
    ax.set_ylim(min(0.0, table["min"].min() - 0.02), 1.08)
    ax.set_xlim(-0.5, len(sections) - 0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    present = [m for m in METHODS if m in set(table["method"])]
    handles = [Rectangle((0, 0), 1, 1, color=METHODS[m]) for m in present]
    ax.legend(handles, present, ncol=len(present), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.13))
    fig.tight_layout()
    _save(fig, out_dir / "ari_by_section.png")
    return table


TIME = {"train, s per epoch": "C0", "embed, s per 100 passes": "C1", "prepare, s": "C2", "window index, s": "0.45"}
MEMORY = {"peak host memory (RSS)": "C4", "peak GPU memory": "C3", "window index": "0.45"}
SCALING_COLUMNS = ("panel", "quantity", "style", "n_spots", "value", "source")
CPU_RUNS, CPU_REF = "ours, CPU (scaling runs)", "ours, CPU (beside the reference)"
GPU_CONFIGS = {"batch:high": "ours, GPU, batch 8,192", "batch:high:65536": "ours, GPU, batch_size=65536"}
STYLES = {  # implementation / device -> (marker, line style, marker face)
    CPU_RUNS: ("o", "-", "full"),
    CPU_REF: ("o", ":", "none"),
    "aestetik 0.3.1 (reference), CPU": ("s", "--", "full"),
    "ours, GPU, batch 8,192": ("*", "", "full"),
    "ours, GPU, batch_size=65536": ("D", "", "none"),
}


def scaling_table(results: Path = RESULTS) -> pd.DataFrame:
    """Seconds and megabytes per number of spots, one row per plotted point (``panel`` is ``time`` or ``memory``)."""
    rows = []
    if (d := _read(results, "synthetic_scaling.json")) is not None:
        style, src = CPU_RUNS, "synthetic_scaling.json"
        for r in (r for r in d["runs"] if r["status"] == "ok"):
            n, s, p = r["n_obs"], r["seconds"], r["params"]
            rows.append(("time", "train, s per epoch", style, n, s["train"] / p["max_epochs"], src))
            rows.append(("time", "embed, s per 100 passes", style, n, s["embed"] / p["n_mc_samples"] * 100, src))
            rows.append(("time", "prepare, s", style, n, s["prepare"], src))
            rows.append(("memory", "peak host memory (RSS)", style, n, r["peak_rss_mb"], src))
    if (d := _read(results, "grid_scaling.json")) is not None:
        for r in d["rows"]:
            rows.append(("time", "window index, s", CPU_RUNS, r["spots"], r["index_seconds"], "grid_scaling.json"))
            rows.append(("memory", "window index", CPU_RUNS, r["spots"], r["index_mb"], "grid_scaling.json"))
    for name in ("synthetic_vs_reference.json", "synthetic_vs_reference_100k/synthetic_vs_reference.json"):
        if (d := _read(results, name)) is None:
            continue
        for run in d["runs"]:
            ref = run["implementation"] == "reference"
            style = "aestetik 0.3.1 (reference), CPU" if ref else CPU_REF
            rec, n = run["record"], run["n_spots"]
            rows.append(("time", "train, s per epoch", style, n, rec["rates"]["epoch"], name))
            rows.append(("time", "embed, s per 100 passes", style, n, rec["rates"]["passes"], name))
            rows.append(("time", "prepare, s", style, n, rec["rates"]["prepare"], name))
            rows.append(("memory", "peak host memory (RSS)", style, n, rec["peak_rss_mb"], name))
    if (d := _read(results, "gpu/gpu_training.json")) is not None:
        src, n = "gpu/gpu_training.json", d["n_obs"]
        for r in d["runs"]:
            style = GPU_CONFIGS.get(r["config"])
            if style is None:
                continue
            rows.append(("time", "train, s per epoch", style, n, r["train_s"] / r["epochs"], src))
            rows.append(("memory", "peak GPU memory", style, n, r["peak_gpu_mb"], src))
            if r["config"] == "batch:high":
                rows.append(("time", "embed, s per 100 passes", style, n, r["embed_s"] / r["mc_passes"] * 100, src))
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
        ax.set(xscale="log", yscale="log", xlabel="spots", ylabel=label, xlim=(5e3, 2e7))
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

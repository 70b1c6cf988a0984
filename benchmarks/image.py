"""What does the tissue image add to the domains, and what does morphology from a full-resolution slide cost?

**Ablation** on the sections with an H&E image (``image=True`` in ``_sections.py``). For every image feature set
(``'summary'``, the default of ``ae.pp.morphology``, and ``'histology'``) and seed::

    ae.pp.morphology(adata, method=features)
    ae.pp.prepare(adata, n_clusters=K, coords=None, morphology_key="X_morphology", random_state=seed)
    ae.tl.ablation(adata, n_clusters=K, ground_truth_key="ground_truth", random_state=seed)

gives the ARI of the domains trained on the transcriptome only, on the image only and on both. Beside them the
package default, ``ae.pp.prepare(adata, n_clusters=K, coords=None, random_state=seed)`` (``morphology_key='auto'``:
summary features, used only when their pseudo-labels are as spatially coherent as the transcriptome's), with
``ae.tl.fit`` and ``ae.tl.cluster``, and what it decided.

**Slide**: the HER2+ section C2 as scanned (``her2st_c2/``: a 9,274 x 9,911 px JPEG, counts, spot positions), read
as a user would (counts and positions into an AnnData, the spot diameter half the spot pitch, the image as a file
path), then ``ae.pp.morphology(adata, img=path, method=...)`` in a fresh process: seconds and the peak resident
memory it added, from the JPEG and from the same image as a tiled TIFF (written to a temporary folder)::

    python benchmarks/image.py                 # both parts, 3 seeds
    python benchmarks/image.py --quick         # smoke run: one seed, 5 epochs, results in /tmp

Writes ``results/image.{md,json}``. One thread per run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _sections import SECTIONS, ari, data_dir, limit_threads, machine, read_section, spread, write_results

FEATURES = ("summary", "histology")
SETTINGS = ("transcriptomics", "morphology", "both")
SLIDE = "her2st_c2"


def run_ablation(adata, section, features: str, seed: int, epochs: int | None) -> dict:
    import aestetik as ae

    a = adata.copy()
    start = time.perf_counter()
    ae.pp.morphology(a, method=features)
    ae.pp.prepare(a, n_clusters=section.n_domains, morphology_key="X_morphology", random_state=seed, **section.prepare)
    fit_kwargs = {"max_epochs": epochs} if epochs else None
    ae.tl.ablation(
        a,
        n_clusters=section.n_domains,
        ground_truth_key="ground_truth",
        fit_kwargs=fit_kwargs,
        random_state=seed,
        show_progress_bar=False,
    )
    report = a.uns["aestetik_ablation"]
    return {
        "ari": {s: float(report["ari"][s]) for s in SETTINGS},
        "seconds": time.perf_counter() - start,
    }


def run_default(adata, section, seed: int, epochs: int | None) -> dict:
    import aestetik as ae

    a = adata.copy()
    start = time.perf_counter()
    ae.pp.prepare(a, n_clusters=section.n_domains, random_state=seed, **section.prepare)
    ae.tl.fit(a, random_state=seed, show_progress_bar=False, **({"max_epochs": epochs} if epochs else {}))
    ae.tl.cluster(a, n_clusters=section.n_domains, random_state=seed)
    rec = a.uns["aestetik"]["prepare"]
    return {
        "ari": ari(a.obs["ground_truth"], a.obs["aestetik"]),
        "seconds": time.perf_counter() - start,
        "image_used": rec["n_morphology"] > 0,
        "coherence": {k: float(v) for k, v in rec.get("morphology_coherence", {}).items()},
        "skipped": str(rec.get("morphology_skipped", "")),
    }


def slide_adata(folder: Path):
    """The C2 section as a user builds it: counts (spots x genes, ids ``XxY``), positions, the spot diameter."""
    import anndata as ad
    import pandas as pd
    from scipy import sparse
    from scipy.spatial import cKDTree

    counts = pd.read_csv(folder / "C2_counts.tsv.gz", sep="\t", index_col=0)
    spots = pd.read_csv(folder / "C2_spots.tsv", sep="\t")
    spots.index = spots["x"].astype(str) + "x" + spots["y"].astype(str)
    ids = counts.index.intersection(spots.index)
    adata = ad.AnnData(sparse.csr_matrix(counts.loc[ids].to_numpy(np.float32)))
    adata.obs_names, adata.var_names = ids, counts.columns
    adata.obsm["spatial"] = spots.loc[ids, ["pixel_x", "pixel_y"]].to_numpy(np.float64)
    pitch = float(np.median(cKDTree(adata.obsm["spatial"]).query(adata.obsm["spatial"], k=2)[0][:, 1]))
    adata.uns["spatial"] = {"C2": {"scalefactors": {"spot_diameter_fullres": pitch / 2}}}  # 100 µm spots, 200 µm pitch
    return adata


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> int:
    """The resident memory now (kB), with the peak reset to it (Linux; elsewhere the peak so far)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _status_kb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_kb() -> int:
    """The peak resident memory (kB) since :func:`_reset_peak`."""
    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def slide_worker(folder: str, image: str, features: str) -> None:
    """One ``pp.morphology`` from an image file, in this fresh process: seconds and added peak memory (JSON)."""
    limit_threads(1)
    import aestetik as ae

    adata = slide_adata(Path(folder))
    before = _reset_peak()
    start = time.perf_counter()
    ae.pp.morphology(adata, img=image, method=features)
    seconds = time.perf_counter() - start
    peak = _peak_kb()
    rec = adata.uns["morphology"]
    print(
        json.dumps(
            {
                "seconds": seconds,
                "added_peak_mb": (peak - before) / 1024,
                "peak_mb": peak / 1024,
                "n_spots": adata.n_obs,
                "patch_size": int(rec["patch_size"]),
                "image_shape": [int(v) for v in rec["libraries"]["C2"]["image_shape"]],
            }
        )
    )


def run_slide(folder: Path, features: str, tiff: Path | None) -> dict:
    image = str(tiff if tiff is not None else folder / "C2_HE_fullres.jpg")
    cmd = [sys.executable, __file__, "--slide-worker", str(folder), image, features]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def tables(payload: dict) -> str:
    lines = [
        "## Ablation: ARI of the domains from the transcriptome only, the image only and both",
        "",
        f"{payload['machine']}; seeds {payload['seeds']}; epochs: {payload['epochs']}. Mean (min-max) over seeds.",
        "",
        "| section | image features | RNA only | image only | both | default (`morphology_key='auto'`) |",
        "|---|---|---|---|---|---|",
    ]
    runs = payload["ablation"]
    for name in payload["sections"]:
        defaults = [r for r in payload["default"] if r["section"] == name]
        used = sum(r["image_used"] for r in defaults)
        default = f"{spread([r['ari'] for r in defaults])}, image used in {used} of {len(defaults)}" if defaults else ""
        for features in FEATURES:
            rows = [r for r in runs if r["section"] == name and r["features"] == features]
            if rows:
                cells = [spread([r["ari"][s] for r in rows]) for s in SETTINGS]
                lines.append(f"| `{name}` | `{features}` | {' | '.join(cells)} | {default} |")
    lines += ["", "Coherence of the pseudo-labels that `morphology_key='auto'` compared (seed 0):", ""]
    for r in payload["default"]:
        if r["seed"] == payload["seeds"][0] and r["coherence"]:
            c = r["coherence"]
            lines.append(
                f"- `{r['section']}`: transcriptome {c['transcriptomics']:.3f}, image {c['morphology']:.3f}"
                f" ({'used' if r['image_used'] else 'left out'})"
            )
    if payload.get("slide"):
        lines += [
            "",
            "## Morphology from a full-resolution slide (`her2st_c2`, fresh process per row)",
            "",
            "| image file | features | spots | patch (px) | seconds | peak memory added (MB) |",
            "|---|---|---|---|---|---|",
        ]
        for r in payload["slide"]:
            lines.append(
                f"| {r['file']} | `{r['features']}` | {r['n_spots']} | {r['patch_size']} | {r['seconds']:.1f} | "
                f"{r['added_peak_mb']:.0f} |"
            )
        shape = payload["slide"][0]["image_shape"]
        lines.append("")
        lines.append(f"The image is {shape[0]:,} x {shape[1]:,} px ({shape[0] * shape[1] * 3 / 2**20:.0f} MB as RGB).")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data-dir", default=None, help="default: $AESTETIK_DATA, else ../shared/data")
    p.add_argument("--quick", action="store_true", help="smoke run: one seed, 5 epochs, written to a temporary folder")
    p.add_argument("--out", type=Path, default=None, help="folder of the result files (default results/)")
    p.add_argument("--slide-worker", nargs=3, metavar=("FOLDER", "IMAGE", "FEATURES"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.slide_worker:
        slide_worker(*args.slide_worker)
        return
    limit_threads(1)
    import aestetik as ae

    data = data_dir(args.data_dir)
    seeds, epochs = ([args.seeds[0]], 5) if args.quick else (args.seeds, None)
    out = args.out or (Path(tempfile.mkdtemp(prefix="image_")) if args.quick else None)
    sections = [s for s in SECTIONS.values() if s.image]
    payload = {
        "question": "what the H&E image adds to the domains; morphology from a full-resolution slide",
        "commands": ["python benchmarks/image.py " + " ".join(sys.argv[1:])],
        "machine": machine(1),
        "aestetik": ae.__version__,
        "seeds": seeds,
        "epochs": epochs or "default",
        "sections": [s.name for s in sections],
        "ablation": [],
        "default": [],
        "slide": [],
    }
    for section in sections:
        adata = read_section(section, data)
        for seed in seeds:
            run = run_default(adata, section, seed, epochs)
            payload["default"].append({"section": section.name, "seed": seed, **run})
            print(f"{section.name:12s} default seed {seed}: ARI {run['ari']:.3f}, image used: {run['image_used']}")
            for features in FEATURES:
                run = run_ablation(adata, section, features, seed, epochs)
                payload["ablation"].append({"section": section.name, "features": features, "seed": seed, **run})
                print(f"{section.name:12s} {features:9s} seed {seed}: {run['ari']}", flush=True)
    folder = data / SLIDE
    if folder.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            import tifffile
            from PIL import Image

            Image.MAX_IMAGE_PIXELS = None
            tiff = Path(tmp) / "C2_HE_fullres.tif"
            tifffile.imwrite(tiff, np.asarray(Image.open(folder / "C2_HE_fullres.jpg").convert("RGB")), tile=(512, 512))
            for file, path in (("JPEG", None), ("tiled TIFF", tiff)):
                for features in FEATURES:
                    run = run_slide(folder, features, path)
                    payload["slide"].append({"file": file, "features": features, **run})
                    print(f"slide {file} {features}: {run}", flush=True)
    write_results("image", tables(payload), payload, out or Path(__file__).resolve().parent / "results")


if __name__ == "__main__":
    main()

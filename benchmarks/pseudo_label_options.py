"""How the pseudo-labels are made from the package's representation, on the DLPFC sections (issue 19).

``pseudo_label_candidates.py`` varies the representation that is clustered; this script keeps the package's
(15 PCs of 3,000 HVGs, smoothed at 1 spot spacing) and varies how it becomes pseudo-labels: the smoothing width, the
mixture's covariance or fitting, and how one labelling is chosen among the mixture's starts (the best bound of
the published 11 starts, of 44, or a consensus of them). The domains follow the pseudo-labels (median |ARI
difference| 0.007, ``results/defaults_candidates.jsonl``), so each option is scored by the ARI of the
transcriptomics pseudo-labels of ``ae.pp.prepare`` (``morphology_key=None``, 7 clusters), over prepare seeds.
The package path is used as it is; an option replaces one step of it (``cluster_features`` or
``gaussian_smooth`` inside ``pp.prepare``) in its own worker process. Runs are appended to
``results/pseudo_label_options.jsonl`` (a rerun skips those there). Prints and writes
``results/pseudo_label_options.{md,json}``::

    python benchmarks/pseudo_label_options.py --seeds 0 1 2 3 4 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from _former import former_mixture
from _results import read_runs, run_logged, spread_table, write_results

HERE = Path(__file__).resolve().parent
SECTIONS = {
    "151676 counts": "dlpfc_151676_counts.h5ad",
    "151674 counts": "dlpfc_151674_counts.h5ad",
    "151676 normalised": "dlpfc_151676.h5ad",
}
#: Starts of the mixture for the options that choose among more starts: 40 random, 4 from k-means.
STARTS = (("random", 40), ("kmeans", 4))
#: name: (kind, value). kinds: ``prepare`` (keyword arguments of pp.prepare), ``mixture`` (a choice among the
#: starts of :data:`STARTS`), ``covariance`` / ``em`` (the 11 published starts with another mixture), ``features``
#: (what is clustered instead of the smoothed representation).
OPTIONS: dict[str, tuple[str, object]] = {
    "package (sigma 1, highest bound of 11 starts)": ("prepare", {}),
    "smoothing sigma 0.75": ("prepare", {"pseudo_label_smoothing": 0.75}),
    "smoothing sigma 1.1": ("prepare", {"pseudo_label_smoothing": 1.1}),
    "smoothing sigma 1.25": ("prepare", {"pseudo_label_smoothing": 1.25}),
    "smoothing sigma 1.4": ("prepare", {"pseudo_label_smoothing": 1.4}),
    "smoothing sigma 1.5": ("prepare", {"pseudo_label_smoothing": 1.5}),
    "highest bound of 44 starts": ("mixture", "best"),
    "medoid of the 10 best-bound of 44 starts": ("mixture", "medoid top 10"),
    "vote of the 10 best-bound of 44 starts": ("mixture", "vote top 10"),
    "vote of all 44 starts": ("mixture", "vote"),
    "co-association of 44 starts (average linkage)": ("mixture", "coassociation"),
    "full covariance (11 starts)": ("covariance", "full"),
    "diagonal covariance (11 starts)": ("covariance", "diag"),
    "EM Gaussian mixture, tied (11 starts)": ("em", "tied"),
    "smoothed at sigma 1 and 2, side by side": ("features", "multiscale"),
    "own spot 0.2 and neighbourhood 0.8 (BANKSY-like)": ("features", "own+neighbourhood"),
}


def fit_starts(x, k: int, seed: int):
    """Every start of :data:`STARTS` (tied Bayesian mixture, as the package's), each with its own seed."""
    import warnings

    import numpy as np
    from sklearn.mixture import BayesianGaussianMixture

    fits = []
    for init, n in STARTS:
        for s in range(n):
            rng = np.random.RandomState(np.random.SeedSequence([seed, s, init == "kmeans"]).generate_state(1)[0])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bgm = BayesianGaussianMixture(
                    n_components=k, init_params=init, covariance_type="tied", max_iter=1000, random_state=rng
                )
                fits.append(bgm.fit(x))
    return fits


def choose(x, k: int, seed: int, rule: str):
    """Labels of ``x`` chosen among the starts of :data:`STARTS` by ``rule``."""
    import numpy as np
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    from aestetik._domains._consensus import medoid, pairwise_ari, vote
    from aestetik._domains._mixture import _lower_bound

    fits = fit_starts(x, k, seed)
    labels = np.column_stack([f.predict(x) for f in fits])
    bounds = np.array([_lower_bound(f) for f in fits])
    if rule == "best":
        return labels[:, int(np.argmax(bounds))]
    if rule == "coassociation":  # distance: the fraction of starts that separate two spots
        return fcluster(linkage(pdist(labels, metric="hamming"), method="average"), k, criterion="maxclust") - 1
    top = np.argsort(-bounds, kind="stable")[:10] if rule.endswith("top 10") else np.arange(len(fits))
    reference = medoid(pairwise_ari(labels[:, top]))
    if rule.startswith("medoid"):
        return labels[:, top[reference]]
    return vote(labels[:, top], reference)[0]


def worker(section: str, option: str, seed: int, data: Path) -> dict:
    import anndata as ad
    import numpy as np
    import scanpy as sc
    import sklearn.mixture
    from threadpoolctl import threadpool_limits

    import aestetik as ae
    import aestetik._domains._pseudo_labels as step1
    from aestetik._domains._clustering import ClusterResult
    from aestetik._domains._scores import ari_known
    from aestetik._keys import Key

    kind, value = OPTIONS[option]
    kwargs = value if kind == "prepare" else {}
    if kind == "mixture":

        def clustered(x, n_clusters, **_):
            labels = np.unique(choose(np.asarray(x), int(n_clusters), seed, value), return_inverse=True)[1]
            return ClusterResult(labels=labels, proba=None, resolution=None, n_clusters=int(labels.max()) + 1)

        step1.cluster_features = clustered
    elif kind in ("covariance", "em"):
        base = sklearn.mixture.BayesianGaussianMixture

        def mixture(**kw):
            if kind == "covariance":
                return base(**{**kw, "covariance_type": value})
            return sklearn.mixture.GaussianMixture(**kw)

        sklearn.mixture.BayesianGaussianMixture = mixture  # what the package's starts construct
    elif kind == "features":
        smooth = step1.gaussian_smooth

        def features(x, positions, samples, sigma):
            near = smooth(x, positions, samples, sigma=sigma)
            if value == "multiscale":
                return np.concatenate([near, smooth(x, positions, samples, sigma=2 * sigma)], axis=1)
            return np.concatenate([np.sqrt(0.2) * x, np.sqrt(0.8) * near], axis=1)

        step1.gaussian_smooth = features
    sc.settings.n_jobs = 1
    with threadpool_limits(1):
        adata = ad.read_h5ad(data / SECTIONS[section])
        ae.pp.prepare(adata, morphology_key=None, n_clusters=7, random_state=seed, **{**former_mixture(7), **kwargs})
        labels = adata.obs[Key.transcriptomics_cluster("aestetik")].to_numpy()
    return {"section": section, "option": option, "seed": seed, "ari": ari_known(adata.obs["ground_truth"], labels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--worker", nargs=3, metavar=("SECTION", "OPTION", "SEED"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], int(args.worker[2]), args.data)))
        return
    log = HERE / "results" / "pseudo_label_options.jsonl"
    done = [r for r in read_runs(log) if r["seed"] in args.seeds]
    have = {(r["section"], r["option"], r["seed"]) for r in done}
    tasks = [(s, o, seed) for o in OPTIONS for s in SECTIONS for seed in args.seeds if (s, o, seed) not in have]

    runs = done + run_logged(__file__, tasks, args.data, log, args.jobs)
    rows = {
        name: [[r["ari"] for r in runs if r["option"] == name and r["section"] == s] for s in SECTIONS]
        for name in OPTIONS
    }
    device = f"CPU ({platform.machine()}, {os.cpu_count()} cores), 1 thread per run"
    text = (
        "ARI of the transcriptomics pseudo-labels of `ae.pp.prepare` (7 clusters, no morphology, the package's "
        "representation) with one step of the pseudo-labelling replaced; mean (min-max) over prepare seeds "
        f"{args.seeds}; {device}.\n\n" + spread_table("option", list(SECTIONS), rows)
    )
    write_results(HERE / "results", "pseudo_label_options", text, {"device": device, "runs": runs})


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()

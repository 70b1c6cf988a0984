from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

import aestetik as ae
from aestetik._domains import _stability
from aestetik._domains._assign import n_cluster_candidates
from aestetik._domains._stability import choose_n_clusters, pairwise_shared_ari, stability_curve


def blob_adata(centres: np.ndarray, *, n_per: int = 40, sd: float = 0.5, seed: int = 0) -> ad.AnnData:
    """Gaussian blobs around ``centres`` as the embedding, spots on a square lattice."""
    x, truth = make_blobs(n_samples=[n_per] * len(centres), centers=centres, cluster_std=sd, random_state=seed)
    n = x.shape[0]
    side = int(np.ceil(np.sqrt(n)))
    adata = ad.AnnData(
        obs=pd.DataFrame({"truth": pd.Categorical(truth.astype(str))}, index=[f"s{i}" for i in range(n)])
    )
    adata.obsm["X_aestetik"] = x.astype(np.float32)
    adata.obsm["spatial"] = np.column_stack(np.divmod(np.arange(n), side)).astype(float)
    return adata


def corners(k: int, dim: int = 6, distance: float = 20.0) -> np.ndarray:
    """``k`` equidistant centres (scaled unit vectors)."""
    return distance * np.eye(k, dim)


# ---------------------------------------------------------------- candidates


def test_candidates_from_auto_range_and_list():
    np.testing.assert_array_equal(n_cluster_candidates("auto", 3460), np.arange(2, 16))
    np.testing.assert_array_equal(n_cluster_candidates(range(3, 8), 3460), [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(n_cluster_candidates([6, 3, 3, np.int64(4)], 3460), [3, 4, 6])
    np.testing.assert_array_equal(n_cluster_candidates(np.array([5, 2]), 3460), [2, 5])
    # "auto" keeps the candidates that an 80% subsample can hold
    np.testing.assert_array_equal(n_cluster_candidates("auto", 10), [2, 3, 4, 5, 6, 7, 8])
    assert n_cluster_candidates(7, 3460) is None
    assert n_cluster_candidates(0.5, 3460) is None


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("many", ValueError, "'auto'"),
        ([3], ValueError, "at least 2 different"),
        ([1, 2, 3], ValueError, r"\[2, 80\]"),
        (range(2, 90), ValueError, r"\[2, 80\]"),
        ([2, 3.0], TypeError, "ints"),
        ([True, 3], TypeError, "ints"),
        (1, ValueError, "at least 2"),
        (None, TypeError, "n_clusters"),
    ],
)
def test_candidates_rejected(value, error, match):
    with pytest.raises(error, match=match):
        n_cluster_candidates(value, 100)


# ---------------------------------------------------------------- stability pieces


def test_pairwise_shared_ari_uses_shared_rows_only():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 50)
    a = np.arange(0, 40)
    b = np.arange(10, 50)
    c = np.arange(0, 50, 2)
    la = truth[a]
    lb = (truth[b] + 1) % 3  # renamed: still ARI 1 on the shared rows
    lb_bad = lb.copy()
    lb_bad[b >= 40] = rng.integers(0, 3, (b >= 40).sum())  # changes outside a's rows only: no effect on (a, b)
    lc = rng.integers(0, 3, c.size)
    ari = pairwise_shared_ari([a, b, c], [la, lb_bad, lc])
    assert ari.shape == (3,)
    assert ari[0] == pytest.approx(1.0)
    shared = np.intersect1d(a, c)
    assert ari[1] == pytest.approx(adjusted_rand_score(truth[shared], lc[np.searchsorted(c, shared)]))
    shared = np.intersect1d(b, c)
    assert ari[2] == pytest.approx(
        adjusted_rand_score(lb_bad[np.searchsorted(b, shared)], lc[np.searchsorted(c, shared)])
    )


def test_choose_largest_within_tolerance():
    ks = np.array([2, 3, 4, 5, 6])
    mean = np.array([1.0, 0.99, 0.97, 0.6, 0.96])
    assert choose_n_clusters(ks, mean, 0.05) == 6
    assert choose_n_clusters(ks, mean, 0.035) == 4
    assert choose_n_clusters(ks, mean, 0.0) == 2
    assert choose_n_clusters(ks, np.array([0.2, 0.9, 0.5, 0.4, 0.3]), 0.05) == 3
    # a mixture that leaves components empty repeats a smaller K's stability: those K do not compete
    found = np.array([2, 3, 4, 4, 4.4])
    assert choose_n_clusters(ks, np.array([0.4, 0.6, 1.0, 1.0, 1.0]), 0.05, found) == 4
    assert choose_n_clusters(ks, mean, 0.05, np.ones(5)) == 6  # nothing filled: all compete


def test_stability_curve_base_sample_and_determinism(monkeypatch):
    x = blob_adata(corners(3)).obsm["X_aestetik"]
    monkeypatch.setattr(_stability, "STABILITY_MAX_SPOTS", 60)
    one = stability_curve(x, [2, 3, 4], method="kmeans", n_resamples=3, random_state=1)
    two = stability_curve(x, [4, 3, 2], method="kmeans", n_resamples=3, random_state=1)
    assert one.n_spots == 60
    np.testing.assert_array_equal(one.n_clusters, [2, 3, 4])
    np.testing.assert_array_equal(one.mean, two.mean)
    assert one.chosen == 3
    assert one.mean[1] == pytest.approx(1.0)
    np.testing.assert_array_equal(one.n_found, [2, 3, 4])
    with pytest.raises(ValueError, match="candidates"):
        stability_curve(x, [2, 49], method="kmeans")  # 80% of the base sample of 60 is 48


@pytest.mark.parametrize("method", ["leiden", "louvain"])
def test_stability_curve_of_graph_methods_equals_one_clustering_per_candidate(method, monkeypatch):
    """The graph of each subsample is built once and each resolution partitioned once for all candidates; the
    curve equals the plain computation (one ``cluster_features`` call per candidate and subsample)."""
    from aestetik._domains import _clustering
    from aestetik._domains._clustering import cluster_features

    # a coarser grid of resolutions keeps the search's paths (upward, then the low ones for K=2) at a tenth of the
    # partitions: with Leiden the full grid took 70 s here
    monkeypatch.setattr(_clustering, "RESOLUTIONS", np.round(np.arange(0.1, 3.0, 0.25), 6))

    x, _ = make_blobs(n_samples=250, centers=4, n_features=5, cluster_std=2.0, random_state=0)
    ks = [2, 3, 4, 6]
    got = stability_curve(x, ks, method=method, n_resamples=3, random_state=2)
    rng = np.random.default_rng(2)
    subsets = [np.sort(rng.choice(250, round(0.8 * 250), replace=False)) for _ in range(3)]
    for i, k in enumerate(ks):
        labels = [
            cluster_features(x[rows], k, method=method, random_state=2 + b).labels for b, rows in enumerate(subsets)
        ]
        ari = pairwise_shared_ari(subsets, labels)
        assert got.mean[i] == pytest.approx(ari.mean())
        assert got.n_found[i] == pytest.approx(np.mean([lab.max() + 1 for lab in labels]))
    assert got.n_found[0] == 2  # below the reference's lowest resolution (0.1 gives 4 here)


# ---------------------------------------------------------------- cluster(n_clusters="auto")


@pytest.mark.parametrize(("k", "method"), [(3, "bgm"), (5, "bgm"), (4, "kmeans")])
def test_auto_recovers_true_number_of_domains(k, method):
    adata = blob_adata(corners(k), seed=k)
    ae.tl.cluster(adata, range(2, 7), method=method, refine=False, n_resamples=4, show_progress_bar=False)
    info = adata.uns["aestetik"]["cluster"]
    assert info["stability"]["chosen"] == k
    assert info["n_clusters"] == k
    assert adjusted_rand_score(adata.obs["truth"], adata.obs["aestetik"]) == 1.0


def test_auto_does_not_favour_two_for_nested_domains():
    # two far apart pairs of close blobs: K=2 and K=4 are perfectly stable, K=3 and K=5 are not
    centres = np.zeros((4, 6))
    centres[[1, 3], 0] = 5.0
    centres[[2, 3], 1] = 60.0
    adata = blob_adata(centres, n_per=30, seed=3)
    ae.tl.cluster(adata, range(2, 8), method="kmeans", refine=False, show_progress_bar=False)
    curve = adata.uns["aestetik"]["cluster"]["stability"]
    mean = dict(zip(curve["n_clusters"].tolist(), curve["mean"], strict=True))
    assert mean[2] == pytest.approx(1.0)
    assert mean[4] == pytest.approx(1.0)
    assert mean[3] < 0.95
    assert mean[5] < 0.95
    assert curve["chosen"] == 4
    assert adata.obs["aestetik"].nunique() == 4


def test_auto_curve_is_stored_and_round_trips(tmp_path, monkeypatch):
    from aestetik._domains import _assign

    monkeypatch.setattr(_assign, "AUTO_N_CLUSTERS", (2, 3, 4, 5))  # "auto" itself: test_candidates_from_auto_range
    adata = blob_adata(corners(3))
    adata.uns["aestetik"] = {"fit": {"params": {"max_epochs": 3}}}
    ae.tl.cluster(adata, "auto", method="kmeans", n_resamples=3, stability_tolerance=0.05, show_progress_bar=False)
    info = adata.uns["aestetik"]["cluster"]
    params = info["params"]
    assert params["n_clusters"] == "auto"
    assert params["n_resamples"] == 3
    assert params["stability_tolerance"] == 0.05
    curve = info["stability"]
    np.testing.assert_array_equal(curve["n_clusters"], [2, 3, 4, 5])
    assert curve["mean"].shape == curve["sd"].shape == curve["n_found"].shape == (4,)
    assert np.all((curve["mean"] <= 1) & (curve["sd"] >= 0))
    assert curve["chosen"] == choose_n_clusters(curve["n_clusters"], curve["mean"], 0.05, curve["n_found"])
    assert info["n_clusters"] == adata.obs["aestetik"].nunique() == curve["chosen"]
    assert (curve["tolerance"], curve["n_resamples"]) == (0.05, 3)
    assert (curve["resample_fraction"], curve["n_spots"]) == (0.8, adata.n_obs)
    assert adata.uns["aestetik"]["fit"]["params"]["max_epochs"] == 3  # other records kept
    path = tmp_path / "auto.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    for name, value in curve.items():
        np.testing.assert_array_equal(back.uns["aestetik"]["cluster"]["stability"][name], value)
    assert back.uns["aestetik"]["cluster"]["params"]["n_clusters"] == "auto"

    ae.tl.cluster(adata, [2, 3, 4], method="kmeans", n_resamples=2, show_progress_bar=False)
    np.testing.assert_array_equal(adata.uns["aestetik"]["cluster"]["params"]["n_clusters"], [2, 3, 4])
    ae.tl.cluster(adata, 3, method="kmeans")  # a plain int leaves no stale curve
    assert "stability" not in adata.uns["aestetik"]["cluster"]
    assert adata.uns["aestetik"]["cluster"]["params"]["n_clusters"] == 3


def test_auto_is_deterministic():
    a, b = blob_adata(corners(4)), blob_adata(corners(4))
    for adata in (a, b):
        ae.tl.cluster(adata, [3, 4], method="bgm", n_resamples=3, random_state=2, show_progress_bar=False)
    np.testing.assert_array_equal(
        a.uns["aestetik"]["cluster"]["stability"]["mean"], b.uns["aestetik"]["cluster"]["stability"]["mean"]
    )
    pd.testing.assert_series_equal(a.obs["aestetik"], b.obs["aestetik"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_clusters": "sometimes"}, ValueError, "'auto'"),
        ({"n_clusters": [4]}, ValueError, "at least 2 different"),
        ({"n_clusters": "auto", "n_resamples": 1}, ValueError, "n_resamples"),
        ({"n_clusters": "auto", "stability_tolerance": 1.5}, ValueError, "stability_tolerance"),
        ({"n_clusters": "auto", "stability_tolerance": "5%"}, ValueError, "stability_tolerance"),
        ({"n_clusters": range(2, 200)}, ValueError, "candidates"),
    ],
)
def test_auto_errors_leave_adata_unchanged(kwargs, error, match):
    adata = blob_adata(corners(3))
    before = (list(adata.obs.columns), list(adata.uns.keys()))
    with pytest.raises(error, match=match):
        ae.tl.cluster(adata, **kwargs, method="kmeans", show_progress_bar=False)
    assert before == (list(adata.obs.columns), list(adata.uns.keys()))


# ---------------------------------------------------------------- pl.n_clusters


def test_plot_n_clusters_draws_the_curve(tmp_path):
    import matplotlib.pyplot as plt

    adata = blob_adata(corners(3))
    ae.tl.cluster(adata, range(2, 6), method="kmeans", n_resamples=3, show_progress_bar=False)
    curve = adata.uns["aestetik"]["cluster"]["stability"]
    path = tmp_path / "k.png"
    ax = ae.pl.n_clusters(adata, save=path)
    line = ax.lines[0]
    np.testing.assert_array_equal(line.get_xdata(), curve["n_clusters"])
    np.testing.assert_allclose(line.get_ydata(), curve["mean"])
    star = ax.lines[1]
    np.testing.assert_array_equal(star.get_xdata(), [curve["chosen"]])
    assert f"chosen K = {curve['chosen']}" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert path.stat().st_size > 0
    _, own = plt.subplots()
    assert ae.pl.n_clusters(adata, ax=own) is own
    plt.close("all")


def test_plot_n_clusters_without_curve():
    adata = blob_adata(corners(3))
    ae.tl.cluster(adata, 3, method="kmeans")
    with pytest.raises(KeyError, match=r"aestetik.tl.cluster\(adata, 'auto'"):
        ae.pl.n_clusters(adata)
    with pytest.raises(KeyError, match="'other'"):
        ae.pl.n_clusters(adata, key="other")

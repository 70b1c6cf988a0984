from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

import aestetik as ae
from aestetik._domains import _clustering, _mixture
from aestetik._domains._clustering import (
    ClusterResult,
    _consecutive,
    _search_resolution,
    cluster_features,
)
from aestetik._domains._refine import refine_labels

# ---------------------------------------------------------------- fixtures


def blobs(n_per: int = 25, n_centres: int = 4, dim: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs (centres 20 apart, sd 0.5)."""
    rng = np.random.default_rng(seed)
    centres = 20 * np.eye(n_centres, dim)
    truth = np.repeat(np.arange(n_centres), n_per)
    return centres[truth] + rng.normal(scale=0.5, size=(truth.size, dim)), truth


def square_lattice(n_rows: int, n_cols: int) -> np.ndarray:
    rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
    return np.column_stack([rows, cols]).astype(np.int32)


def make_adata(*, coords_key: str | None = "spatial", seed: int = 0) -> ad.AnnData:
    """100 spots on a 10x10 lattice; the embedding has 4 blobs, one per lattice quadrant."""
    coords = square_lattice(10, 10)
    truth = (coords[:, 0] >= 5) * 2 + (coords[:, 1] >= 5)
    x, blob = blobs(n_per=25, seed=seed)
    emb = np.empty_like(x)
    for q in range(4):
        emb[truth == q] = x[blob == q]
    adata = ad.AnnData(
        obs=pd.DataFrame({"truth": pd.Categorical(truth.astype(str))}, index=[f"s{i}" for i in range(100)])
    )
    adata.obsm["X_aestetik"] = emb.astype(np.float32)
    if coords_key is not None:
        adata.obsm[coords_key] = coords
    return adata


def snapshot(adata: ad.AnnData) -> tuple:
    return (
        list(adata.obs.columns),
        list(adata.obsm.keys()),
        {k: (sorted(v) if isinstance(v, dict) else v) for k, v in adata.uns.items()},
        adata.obs.copy(),
    )


def assert_same(before: tuple, after: tuple) -> None:
    assert before[:3] == after[:3]
    pd.testing.assert_frame_equal(before[3], after[3])


# ---------------------------------------------------------------- cluster_features


@pytest.mark.parametrize("method", ["bgm", "kmeans"])
def test_mixture_and_kmeans_recover_blobs(method):
    x, truth = blobs()
    res = cluster_features(x, 4, method=method)
    assert isinstance(res, ClusterResult)
    assert res.labels.dtype == np.int64
    assert adjusted_rand_score(truth, res.labels) == 1.0
    assert res.n_clusters == 4
    assert res.resolution is None
    if method == "bgm":
        assert res.proba.shape == (x.shape[0],)
        assert np.all((res.proba > 0.99) & (res.proba <= 1.0))
    else:
        assert res.proba is None


def test_consecutive_keeps_order():
    np.testing.assert_array_equal(_consecutive(np.array([5, 2, 5, 9, 2])), [1, 0, 1, 2, 0])
    assert _consecutive(np.array([5, 2])).dtype == np.int64


def test_empty_clusters_are_relabelled_consecutively():
    # 3 distinct points but 5 clusters asked: k-means leaves clusters empty (its ConvergenceWarning is logged only)
    x = np.repeat(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), 10, axis=0)
    res = cluster_features(x, 5, method="kmeans")
    assert res.n_clusters == 3
    np.testing.assert_array_equal(np.unique(res.labels), [0, 1, 2])
    assert adjusted_rand_score(np.repeat([0, 1, 2], 10), res.labels) == 1.0


def test_mixture_with_empty_components_is_relabelled(monkeypatch):
    # a mixture with 6 components that used only components 1 and 4
    used = np.array([4, 1, 1, 4, 4, 1, 1, 4])
    proba = np.linspace(0.5, 1.0, 8)
    monkeypatch.setattr(
        _clustering,
        "_bgm",
        lambda x, k, seed, fit_rows=None, n_jobs=1, n_components=None, inits=None: (used, proba, 1.0),
    )
    res = cluster_features(np.zeros((8, 2)), 6, method="bgm")
    np.testing.assert_array_equal(res.labels, [1, 0, 0, 1, 1, 0, 0, 1])
    assert res.n_clusters == 2
    np.testing.assert_array_equal(res.proba, proba)


def test_merge_components_joins_the_closest_means_under_the_shared_covariance():
    # the covariance is wide along the first axis: means 3 apart along it are closer (Mahalanobis 1) than means
    # 2 apart along the second axis (Mahalanobis 2); euclidean distances would merge components 0 and 2 first
    means = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 2.0], [20.0, 20.0]])
    cov = np.diag([9.0, 1.0])
    weights = np.full(4, 0.25)
    np.testing.assert_array_equal(_mixture.merge_components(means, cov, weights, 4), [0, 1, 2, 3])
    np.testing.assert_array_equal(_mixture.merge_components(means, cov, weights, 3), [0, 0, 1, 2])
    np.testing.assert_array_equal(_mixture.merge_components(means, cov, weights, 2), [0, 0, 0, 1])
    np.testing.assert_array_equal(_mixture.merge_components(means, cov, weights, 1), [0, 0, 0, 0])
    # the merged group sits at its weight-averaged mean: component 0 carries the weight, so {0, 1} is at
    # (0.03, 0), 2.0 from component 2 (Mahalanobis), nearer than component 3 -- and component 4 at (5.5, 0)
    # is 1.8 from it, so it joins before component 2 does
    means5 = np.vstack([means, [5.5, 0.0]])
    weights5 = np.array([0.99, 0.01, 0.3, 0.3, 0.3])
    np.testing.assert_array_equal(_mixture.merge_components(means5, cov, weights5, 3), [0, 0, 1, 2, 0])
    with pytest.raises(ValueError, match="Cannot merge 4"):
        _mixture.merge_components(means, cov, weights, 5)


def test_bgm_with_more_components_merges_a_band_into_one_cluster():
    # a band 12 long (two mixture components) and two round blobs: 4 components merged into 3 clusters
    rng = np.random.default_rng(0)
    band = np.column_stack([rng.uniform(0, 12, 200), rng.normal(0, 0.3, 200)])
    left, right = rng.normal([0, 6], 0.3, (100, 2)), rng.normal([12, 6], 0.3, (100, 2))
    x, truth = np.vstack([band, left, right]), np.repeat([0, 1, 2], [200, 100, 100])
    res = cluster_features(x, 3, method="bgm", n_components=4)
    assert res.n_clusters == 3
    assert adjusted_rand_score(truth, res.labels) == 1.0
    # the confidence is the summed posterior of the merged components
    bgm = _mixture.ranked_bgm(x, 4, 0)[0]
    groups = _mixture.merge_components(bgm.means_, bgm.covariances_, bgm.weights_, 3)
    merged = np.column_stack([bgm.predict_proba(x)[:, groups == g].sum(1) for g in range(3)])
    np.testing.assert_allclose(res.proba, merged.max(1))
    assert len(np.unique(groups[bgm.predict(band)])) == 1  # the band's two components went to one cluster
    assert len(np.unique(bgm.predict(band))) == 2
    # n_components == n_clusters is the plain mixture
    plain = cluster_features(x, 3, method="bgm", n_components=3)
    np.testing.assert_array_equal(plain.labels, cluster_features(x, 3, method="bgm").labels)


@pytest.mark.parametrize(
    ("n_clusters", "method", "n_components"), [(4, "kmeans", 5), (4, "bgm", 3), (4, "bgm", 101), (0.5, "leiden", 5)]
)
def test_cluster_features_rejects_n_components(n_clusters, method, n_components):
    with pytest.raises(ValueError, match="n_components"):
        cluster_features(blobs()[0], n_clusters, method=method, n_components=n_components)


def test_pseudo_labels_cluster_the_neighbourhood_average_and_name_the_input():
    """Step 1: the smoothed representation clustered by `cluster_features`; the errors name the input."""
    from aestetik._domains._pseudo_labels import pseudo_labels
    from aestetik._space._smoothing import gaussian_smooth

    x = blobs(n_per=25)[0].astype(np.float32)  # as prepare passes it
    positions = square_lattice(10, 10).astype(np.float64)
    samples = np.zeros(100, dtype=np.int32)
    kw = {"n_clusters": 4, "method": "bgm", "random_state": 1, "n_components": 5}
    inits = (("random", 3), ("kmeans", 1))
    smoothed = gaussian_smooth(x, positions, samples, sigma=1.0)
    assert not np.allclose(smoothed, x)
    for sigma, features in [(1.0, smoothed), (0.0, x)]:  # sigma 0: the spots as they are
        got = pseudo_labels(x, positions, samples, sigma=sigma, mixture_starts=3, **kw)
        expected = cluster_features(features, bgm_inits=inits, **kw)
        np.testing.assert_array_equal(got.labels, expected.labels)
    with pytest.raises(ValueError, match="the input X is the same for every spot"):
        pseudo_labels(np.ones((100, 3)), positions, samples, sigma=1.0, name="the input X", **kw)


def test_bgm_retries_with_larger_reg_covar(monkeypatch):
    import sklearn.mixture

    seen = []
    real = sklearn.mixture.BayesianGaussianMixture

    class Flaky(real):
        def fit(self, x, y=None):
            seen.append((self.init_params, self.reg_covar))
            if self.init_params == "random" and self.reg_covar < 5e-5:
                msg = "Fitting the mixture model failed ... increase reg_covar, or scale the input data."
                raise ValueError(msg)
            return super().fit(x, y)

    monkeypatch.setattr(sklearn.mixture, "BayesianGaussianMixture", Flaky)
    x, truth = blobs()
    res = cluster_features(x, 4, method="bgm")
    # the random initialisations needed two retries (all 10 starts each time); the k-means start, fine at the
    # default, is not refitted
    inits, reg_covars = zip(*seen, strict=True)
    assert inits == ("random",) * 10 + ("kmeans",) + ("random",) * 20
    np.testing.assert_allclose(reg_covars, [1e-6] * 11 + [1e-5] * 10 + [1e-4] * 10)
    assert adjusted_rand_score(truth, res.labels) == 1.0


def _overlapping_blobs() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = 2.5 * np.vstack([np.eye(4), -np.eye(4)[:1]])
    return np.concatenate([rng.normal(size=(120, 4)) + c for c in centres])


@pytest.mark.parametrize(("n_jobs", "threads"), [(1, 1), (1, 2), (2, 1)])
def test_bgm_starts_equal_one_sklearn_fit(monkeypatch, n_jobs, threads):
    """The starts fitted one by one (one after the other, in two threads, or in processes for n_jobs=2) are those of
    sklearn's own ``n_init`` loop: the same best bound, parameters and labels; the best start is not the first, so
    the skipped draws matter."""
    from sklearn.mixture import BayesianGaussianMixture
    from threadpoolctl import threadpool_limits

    monkeypatch.setattr(_mixture, "_start_threads", lambda: threads)
    x = _overlapping_blobs()
    with _mixture._one_blas_thread_quietly():
        bounds = [_mixture._lower_bound(_mixture._fit_bgm_start(x, 6, 0, "random", s, 1e-6)) for s in range(10)]
    assert int(np.argmax(bounds)) > 0
    assert len(set(np.round(bounds, 6))) > 3
    kw = {"n_components": 6, "covariance_type": "tied", "max_iter": 1000, "random_state": 0}
    with threadpool_limits(1):
        ref = {"random": BayesianGaussianMixture(init_params="random", n_init=10, **kw).fit(x)}
        ref["kmeans"] = BayesianGaussianMixture(init_params="kmeans", n_init=1, **kw).fit(x)
    expected = max(ref.values(), key=_mixture._lower_bound)
    got = _mixture.ranked_bgm(x, 6, 0, n_jobs=n_jobs)[0]
    assert (
        _mixture._lower_bound(got)
        == _mixture._lower_bound(expected)
        == max([*bounds, _mixture._lower_bound(ref["kmeans"])])
    )
    np.testing.assert_array_equal(got.means_, expected.means_)
    np.testing.assert_array_equal(got.predict(x), expected.predict(x))
    res = cluster_features(x, 6, method="bgm", n_jobs=n_jobs)
    np.testing.assert_array_equal(res.labels, _consecutive(expected.predict(x)))


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_bgm_starts_run_side_by_side_in_threads_with_one_blas_thread():
    """In one process the starts run in threads, concurrently (a barrier that two starts must reach together), each
    with one BLAS thread, in the order of the tasks; the process's BLAS threads are restored afterwards, and a user's
    limit on BLAS limits the threads."""
    import threading

    from threadpoolctl import threadpool_limits

    before = _blas_threads()
    barrier = threading.Barrier(2, timeout=30)

    def start(i):
        if i < 2:
            barrier.wait()  # raises BrokenBarrierError unless starts 0 and 1 run at the same time
        return i, threading.get_ident(), _blas_threads()

    out = _mixture._run(start, [(i,) for i in range(5)], n_jobs=1, threads=2)
    assert [i for i, _, _ in out] == list(range(5))
    assert len({ident for _, ident, _ in out[:2]}) == 2
    assert all(set(blas) == {1} for _, _, blas in out)
    assert _blas_threads() == before
    with threadpool_limits(1):
        assert _mixture._start_threads() == 1


def test_bgm_keeps_the_initialisation_with_the_higher_bound():
    """Domains made of tight sub-groups (as an embedding trained on two modalities' pseudo-labels): the 10
    random starts of the published mixture all end in a poor split, the k-means start finds the domains and
    has the higher variational bound, so it is kept."""
    from sklearn.mixture import BayesianGaussianMixture

    rng = np.random.default_rng(1)
    centres, sub = rng.normal(size=(4, 8)) * 3, rng.normal(size=(4, 4, 8))
    truth, part = np.repeat(np.arange(4), 200), np.tile(np.repeat(np.arange(4), 50), 4)
    x = centres[truth] + sub[truth, part] + 0.1 * rng.normal(size=(800, 8))
    fits = {
        init: BayesianGaussianMixture(
            n_components=4, init_params=init, covariance_type="tied", max_iter=1000, n_init=n, random_state=0
        ).fit(x)
        for init, n in _mixture.BGM_INITS
    }
    assert adjusted_rand_score(truth, fits["random"].predict(x)) < 0.8
    assert float(np.ravel(fits["kmeans"].lower_bound_)[-1]) > float(np.ravel(fits["random"].lower_bound_)[-1])
    res = cluster_features(x, 4, method="bgm")
    np.testing.assert_array_equal(res.labels, fits["kmeans"].predict(x))
    assert adjusted_rand_score(truth, res.labels) == 1.0


def test_bgm_agreement_is_the_ari_of_the_two_best_starts(monkeypatch):
    """The agreement against a plain computation: every start fitted by hand, the two with the highest bounds
    merged into clusters, their ARI. Separated blobs: the two best starts agree; structureless noise: they cut it
    differently, and the pseudo-labels warn that they are not settled."""
    from sklearn.mixture import BayesianGaussianMixture

    from aestetik._domains import _pseudo_labels
    from aestetik._domains._pseudo_labels import UNSETTLED_AGREEMENT, pseudo_labels

    logged = []
    monkeypatch.setattr(_pseudo_labels.logg, "warning", lambda msg, *a, **k: logged.append(msg))

    rng = np.random.default_rng(0)
    blobs = np.repeat(rng.normal(size=(3, 4)) * 10, 60, axis=0) + rng.normal(size=(180, 4))
    noise = rng.normal(size=(180, 4))
    inits = (("random", 6), ("kmeans", 1))
    found = {}
    for name, x in (("blobs", blobs), ("noise", noise)):
        fits = []
        for init, n in inits:
            stream = np.random.RandomState(0)  # the random starts read one stream in turn, as sklearn's n_init
            for _ in range(n):
                fits.append(
                    BayesianGaussianMixture(
                        n_components=4, init_params=init, covariance_type="tied", max_iter=1000, random_state=stream
                    ).fit(x)
                )
        best, second = sorted(fits, key=lambda f: -float(np.ravel(f.lower_bound_)[-1]))[:2]

        def merged(f, x=x):
            groups = _mixture.merge_components(f.means_, f.covariances_, f.weights_, 3)
            return groups[f.predict_proba(x).argmax(axis=1)]

        res = cluster_features(x, 3, method="bgm", n_components=4, bgm_inits=inits)
        assert adjusted_rand_score(res.labels, merged(best)) == 1.0
        assert res.agreement == pytest.approx(adjusted_rand_score(merged(best), merged(second)))
        found[name] = res.agreement
    assert found["blobs"] == 1.0
    assert found["noise"] < UNSETTLED_AGREEMENT
    assert cluster_features(blobs, 3, method="bgm", bgm_inits=(("kmeans", 1),)).agreement is None
    assert cluster_features(blobs, 3, method="kmeans").agreement is None
    grid = np.stack(np.meshgrid(np.arange(18), np.arange(10)), axis=-1).reshape(-1, 2).astype(float)
    kw = {"n_clusters": 3, "method": "bgm", "sigma": 0, "random_state": 0, "n_components": 4, "mixture_starts": 6}
    for x, warned in ((blobs, False), (noise, True)):
        logged.clear()
        pseudo_labels(x, grid, np.zeros(180, int), **kw, name="`adata.obsm['X_pca']`")
        assert any("are not settled" in m for m in logged) == warned
        # with the fallback: k-means' clusters where the starts disagree (no warning), the mixture's where they agree
        logged.clear()
        res = pseudo_labels(x, grid, np.zeros(180, int), **kw, fallback="kmeans")
        plain = cluster_features(x, 3, method="bgm", n_components=4, bgm_inits=inits)
        if warned:
            plain = cluster_features(x, 3, method="kmeans")
        np.testing.assert_array_equal(res.labels, plain.labels)
        assert (res.method, res.agreement) == ("kmeans" if warned else "bgm", found["noise" if warned else "blobs"])
        assert not any("are not settled" in m for m in logged)


def test_bgm_gives_up_after_retries(monkeypatch):
    import sklearn.mixture

    class Broken(sklearn.mixture.BayesianGaussianMixture):
        def fit(self, x, y=None):
            raise np.linalg.LinAlgError

    monkeypatch.setattr(sklearn.mixture, "BayesianGaussianMixture", Broken)
    with pytest.raises(ValueError, match=r"reg_covar=0\.001"):
        cluster_features(blobs()[0], 4, method="bgm")


@pytest.mark.parametrize("method", ["leiden", "louvain"])
def test_graph_methods_find_exactly_k(method):
    x, truth = blobs()
    res = cluster_features(x, 4, method=method)
    assert res.n_clusters == 4
    assert adjusted_rand_score(truth, res.labels) == 1.0
    assert res.resolution == pytest.approx(0.1)  # the first resolution tried already gives 4
    assert res.proba is None
    again = cluster_features(x, 4, method=method, random_state=0)
    np.testing.assert_array_equal(res.labels, again.labels)


@pytest.mark.parametrize("method", ["leiden", "louvain"])
def test_graph_methods_accept_resolution(method):
    x, _ = blobs()
    low = cluster_features(x, 0.2, method=method, random_state=1)
    high = cluster_features(x, 2.9, method=method, random_state=1)
    assert low.resolution == 0.2
    assert high.resolution == 2.9
    assert high.n_clusters > low.n_clusters
    np.testing.assert_array_equal(high.labels, cluster_features(x, 2.9, method=method, random_state=1).labels)


def test_search_resolution_stops_at_first_exact_match():
    calls = []

    def run(res):
        calls.append(res)
        return np.arange(int(res * 10))

    labels, res = _search_resolution(run, 3, np.array([0.1, 0.2, 0.3, 0.4]))
    assert res == 0.3
    assert labels.size == 3
    assert calls == [0.1, 0.2, 0.3]


def test_search_resolution_falls_back_to_closest_count():
    counts = {0.1: 2, 0.2: 4, 0.3: 6}  # 3 never appears; 2 and 4 are equally close -> smallest resolution
    labels, res = _search_resolution(lambda r: np.arange(counts[r]), 3, np.array([0.1, 0.2, 0.3]))
    assert res == 0.1
    assert labels.size == 2


def test_search_resolution_goes_below_the_reference_grid_only_when_every_count_is_too_high():
    counts = {0.1: 5, 0.2: 6, 0.05: 4, 0.01: 3, 0.001: 2}
    calls = []

    def run(res):
        calls.append(res)
        return np.arange(counts[res])

    low = np.array([0.05, 0.01, 0.001])
    labels, res = _search_resolution(run, 3, np.array([0.1, 0.2]), low)
    assert (res, labels.size) == (0.01, 3)
    assert calls == [0.1, 0.2, 0.05, 0.01]
    # a count at or below the target on the reference grid: the lower resolutions are not tried
    calls.clear()
    counts.update({0.1: 2, 0.2: 4})
    labels, res = _search_resolution(run, 3, np.array([0.1, 0.2]), low)
    assert calls == [0.1, 0.2]
    assert (res, labels.size) == (0.1, 2)


def test_graph_methods_reach_fewer_clusters_than_the_lowest_reference_resolution_gives():
    """Overlapping blobs: resolution 0.1 already gives 4 clusters, so the reference's upward search cannot give 2;
    the lower resolutions do (and the partitions of the search are those of each resolution alone)."""
    from sklearn.datasets import make_blobs

    from aestetik._domains._clustering import RESOLUTIONS, GraphPartitions, _neighbour_graph, _partition

    x, _ = make_blobs(n_samples=400, centers=4, n_features=5, cluster_std=2.0, random_state=0)
    partitions = GraphPartitions(x, "louvain", 0)
    assert np.unique(partitions(0.1)).size > 2
    reference, _ = _search_resolution(partitions, 2, RESOLUTIONS)
    assert np.unique(reference).size != 2
    res = cluster_features(x, 2, method="louvain", random_state=0)
    assert res.n_clusters == 2
    assert res.resolution < 0.1
    graph, weights = _neighbour_graph(x, "louvain", 0)
    plain = _partition(graph, weights, res.resolution, method="louvain", random_state=0)
    np.testing.assert_array_equal(res.labels, _consecutive(plain))


@pytest.mark.parametrize(
    ("n_clusters", "method", "match"),
    [
        (2.5, "bgm", "float resolution"),
        (3.0, "kmeans", "float resolution"),
        (4, "nope", "Unknown method"),
        (500, "bgm", "between"),
    ],
)
def test_cluster_features_rejects(n_clusters, method, match):
    with pytest.raises(ValueError, match=match):
        cluster_features(blobs()[0], n_clusters, method=method)


# ---------------------------------------------------------------- refine_labels


def halves(n_rows: int = 10, n_cols: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A square lattice, label 0 on the left half and 1 on the right half."""
    coords = square_lattice(n_rows, n_cols)
    return coords, (coords[:, 1] >= n_cols // 2).astype(np.int64)


def test_refine_fixes_isolated_spots():
    coords, truth = halves()
    noisy = truth.copy()
    flipped = [21, 38, 67, 72]  # isolated, >= 2 columns from the border (ties there depend on the k-NN search)
    noisy[flipped] = 1 - noisy[flipped]
    refined = refine_labels(noisy, coords, n_neighbors=10)
    assert refined.dtype == np.int64
    np.testing.assert_array_equal(refined, truth)


def test_refine_trains_on_confident_spots_only():
    coords, truth = halves(10, 14)
    labels = truth.copy()
    block = np.flatnonzero((coords[:, 0] >= 3) & (coords[:, 0] <= 5) & (coords[:, 1] >= 10) & (coords[:, 1] <= 12))
    labels[block] = 0  # a 3x3 block of 0 inside the 1-half
    centre = block[4]
    # with all spots voting the block survives ...
    assert refine_labels(labels, coords)[centre] == 0
    # ... but its spots are unsure, so only the confident 1-spots around vote
    confidence = np.full(labels.size, 0.95)
    confidence[block] = 0.5
    refined = refine_labels(labels, coords, confidence=confidence, threshold=0.9)
    np.testing.assert_array_equal(refined, truth)


def test_refine_never_mixes_groups():
    coords, truth = halves()
    both = np.concatenate([coords, coords])  # two samples at identical positions
    labels = np.concatenate([truth, 1 - truth])
    groups = np.repeat(["a", "b"], coords.shape[0])
    np.testing.assert_array_equal(refine_labels(labels, both, groups=groups), labels)
    # without groups the samples would contaminate each other
    assert not np.array_equal(refine_labels(labels, both), labels)


def test_refine_leaves_group_with_one_confident_label_unchanged():
    coords, truth = halves()
    noisy = truth.copy()
    noisy[[22, 47]] = 1 - noisy[[22, 47]]
    both = np.concatenate([coords, coords])
    labels = np.concatenate([noisy, noisy])
    confidence = np.concatenate([np.ones(100), np.where(noisy == 0, 1.0, 0.0)])  # group b: only label 0 confident
    refined = refine_labels(labels, both, confidence=confidence, threshold=0.5, groups=np.repeat([0, 1], 100))
    np.testing.assert_array_equal(refined[:100], truth)
    np.testing.assert_array_equal(refined[100:], noisy)


def test_refine_with_fewer_confident_spots_than_neighbours():
    coords, truth = halves()
    confidence = np.zeros(100)
    confidence[[0, 9, 90]] = 1.0  # two 0-spots in column 0, one 1-spot in column 9
    refined = refine_labels(truth, coords, confidence=confidence, n_neighbors=10)
    np.testing.assert_array_equal(refined, np.zeros(100))  # 3 voters, majority 0 everywhere


# ---------------------------------------------------------------- public cluster()


def test_cluster_writes_keys():
    adata = make_adata()
    adata.uns["aestetik"] = {"fit": {"params": {"max_epochs": 3}}, "prepare": {"params": {"window_size": 7}}}
    assert ae.tl.cluster(adata, 4) is None
    domains = adata.obs["aestetik"]
    assert isinstance(domains.dtype, pd.CategoricalDtype)
    assert list(domains.cat.categories) == ["0", "1", "2", "3"]
    assert adjusted_rand_score(adata.obs["truth"], domains) == 1.0
    assert "aestetik_proba" not in adata.obs  # k-means (the default) has no posterior
    info = adata.uns["aestetik"]["cluster"]
    assert info["n_clusters"] == 4
    assert "resolution" not in info
    params = info["params"]
    assert params["n_clusters"] == 4
    assert params["method"] == "auto"
    assert info["method_used"] in ("spectral", "kmeans")
    assert params["refine"] is True
    assert params["n_neighbors"] == 0  # 1/50 of a domain of 25 spots: under 2, no refinement
    ae.tl.cluster(adata, 4, n_neighbors=6)
    assert adata.uns["aestetik"]["cluster"]["params"]["n_neighbors"] == 6
    assert params["use_rep"] == "X_aestetik"
    assert params["random_state"] == 0
    assert params["coords_key"] == "spatial"
    assert params["aestetik_version"] == ae.__version__
    # the mixture writes its posterior
    ae.tl.cluster(adata, 4, method="bgm")
    proba = adata.obs["aestetik_proba"]
    assert proba.dtype == np.float32
    assert proba.between(0, 1).all()
    assert adjusted_rand_score(adata.obs["truth"], adata.obs["aestetik"]) == 1.0
    # other steps' results are kept
    assert adata.uns["aestetik"]["fit"] == {"params": {"max_epochs": 3}}
    assert adata.uns["aestetik"]["prepare"] == {"params": {"window_size": 7}}


def test_cluster_copy_and_key_added():
    adata = make_adata()
    adata.uns["dom"] = {"fit": {"params": {"max_epochs": 3}}}
    before = snapshot(adata)
    out = ae.tl.cluster(adata, 4, method="kmeans", key_added="dom", copy=True)
    assert out is not adata
    assert_same(before, snapshot(adata))
    assert "cluster" not in adata.uns["dom"]
    assert out.uns["dom"]["fit"] == adata.uns["dom"]["fit"]
    assert out.uns["dom"]["fit"] is not adata.uns["dom"]["fit"]  # no shared nested dicts
    assert "dom" in out.obs
    assert "dom_proba" not in out.obs
    assert out.uns["dom"]["cluster"]["params"]["method"] == "kmeans"
    assert adjusted_rand_score(out.obs["truth"], out.obs["dom"]) == 1.0


def test_cluster_compares_the_domains_with_the_pseudo_labels(monkeypatch):
    """The agreement recorded is the ARI of the domains with each modality's pseudo-labels, computed here by hand;
    a warning only when every modality agrees below DOMAIN_AGREEMENT and the number of domains was given."""
    from aestetik._domains import _pseudo_labels
    from aestetik._domains._pseudo_labels import DOMAIN_AGREEMENT

    logged = []
    monkeypatch.setattr(_pseudo_labels.logg, "warning", lambda msg, *a, **k: logged.append(msg))
    adata = make_adata()
    ae.tl.cluster(adata, 4, method="kmeans")
    assert "pseudo_label_agreement" not in adata.uns["aestetik"]["cluster"]  # nothing prepared: nothing compared

    scattered = np.random.default_rng(0).integers(0, 4, adata.n_obs).astype(str)
    adata.obs["aestetik_transcriptomics_cluster"] = pd.Categorical(scattered)
    ae.tl.cluster(adata, 4, method="kmeans")
    agreement = adata.uns["aestetik"]["cluster"]["pseudo_label_agreement"]
    assert agreement == {
        "transcriptomics": pytest.approx(adjusted_rand_score(scattered, adata.obs["aestetik"].to_numpy()))
    }
    assert agreement["transcriptomics"] < DOMAIN_AGREEMENT
    assert sum("agree little" in m and "transcriptomics" in m for m in logged) == 1

    logged.clear()  # a chosen number of domains is recorded, not warned about
    ae.tl.cluster(adata, [3, 4], method="kmeans", n_resamples=2, show_progress_bar=False)
    assert "pseudo_label_agreement" in adata.uns["aestetik"]["cluster"]
    assert not any("agree little" in m for m in logged)

    missing = pd.Series(scattered, dtype=object)
    missing[:50] = None  # spots of a section that was not prepared are left out
    adata.obs["aestetik_transcriptomics_cluster"] = pd.Categorical(missing)
    ae.tl.cluster(adata, 4, method="kmeans")
    assert adata.uns["aestetik"]["cluster"]["pseudo_label_agreement"]["transcriptomics"] == pytest.approx(
        adjusted_rand_score(scattered[50:], adata.obs["aestetik"].to_numpy()[50:])
    )

    logged.clear()
    adata.obs["aestetik_morphology_cluster"] = adata.obs["truth"].to_numpy()  # one modality agrees: no warning
    ae.tl.cluster(adata, 4, method="kmeans")
    agreement = adata.uns["aestetik"]["cluster"]["pseudo_label_agreement"]
    assert set(agreement) == {"transcriptomics", "morphology"}
    assert agreement["morphology"] == 1.0
    assert not any("agree little" in m for m in logged)


def test_cluster_graph_method_records_resolution():
    adata = make_adata()
    ae.tl.cluster(adata, 4, method="leiden", refine=False)
    info = adata.uns["aestetik"]["cluster"]
    assert info["resolution"] == pytest.approx(0.1)
    assert info["params"]["refine"] is False
    assert "coords_key" not in info["params"]
    assert adata.obs["aestetik"].nunique() == 4


def test_cluster_prefers_lattice_and_refines_per_sample():
    one = make_adata(coords_key="aestetik_lattice")
    two = make_adata(coords_key="aestetik_lattice", seed=1)
    two.obsm["X_aestetik"] = two.obsm["X_aestetik"][::-1].copy()  # sample b: domains mirrored at the same positions
    two.obs["truth"] = one.obs["truth"].to_numpy()[::-1]
    adata = ad.concat({"a": one, "b": two}, label="sample", index_unique="-")
    adata.uns["aestetik"] = {"prepare": {"params": {"batch_key": "sample"}}}
    ae.tl.cluster(adata, 4, method="kmeans")
    params = adata.uns["aestetik"]["cluster"]["params"]
    assert params["coords_key"] == "aestetik_lattice"
    assert params["batch_key"] == "sample"
    assert adjusted_rand_score(adata.obs["truth"], adata.obs["aestetik"]) == 1.0


def test_cluster_removes_stale_proba_and_skips_refine_for_one_neighbour():
    adata = make_adata(coords_key=None)
    ae.tl.cluster(adata, 4, method="bgm", refine=False)
    assert "aestetik_proba" in adata.obs
    ae.tl.cluster(adata, 4, method="kmeans", n_neighbors=1)  # no coordinates needed: refinement is skipped
    assert "aestetik_proba" not in adata.obs
    assert adata.uns["aestetik"]["cluster"]["params"]["refine"] is False


def test_cluster_is_deterministic():
    a, b = make_adata(), make_adata()
    ae.tl.cluster(a, 4, method="louvain", random_state=3)
    ae.tl.cluster(b, 4, method="louvain", random_state=3)
    pd.testing.assert_series_equal(a.obs["aestetik"], b.obs["aestetik"])


def test_cluster_bgm_does_not_depend_on_n_jobs():
    """The mixture's starts in 2 processes give the domains, posteriors and stability curve of 1 process."""
    rng = np.random.default_rng(5)
    one, two = make_adata(), make_adata()
    noise = rng.normal(scale=1.5, size=one.obsm["X_aestetik"].shape)  # overlapping blobs: the starts disagree
    for a in (one, two):
        a.obsm["X_aestetik"] = a.obsm["X_aestetik"] + noise
    ae.tl.cluster(one, [3, 4], method="bgm", n_resamples=2, n_jobs=1, show_progress_bar=False)
    ae.tl.cluster(two, [3, 4], method="bgm", n_resamples=2, n_jobs=2, show_progress_bar=False)
    pd.testing.assert_series_equal(one.obs["aestetik"], two.obs["aestetik"])
    np.testing.assert_array_equal(one.obs["aestetik_proba"], two.obs["aestetik_proba"])
    curve_one, curve_two = (a.uns["aestetik"]["cluster"]["stability"] for a in (one, two))
    np.testing.assert_array_equal(curve_one["mean"], curve_two["mean"])
    assert "n_jobs" not in two.uns["aestetik"]["cluster"]["params"]  # the result does not depend on it


def test_cluster_h5ad_round_trip(tmp_path):
    adata = make_adata()
    adata.uns["aestetik"] = {"fit": {"params": {"max_epochs": 3}}}
    ae.tl.cluster(adata, 4, method="bgm")
    path = tmp_path / "clustered.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_series_equal(back.obs["aestetik"], adata.obs["aestetik"])
    np.testing.assert_array_equal(back.obs["aestetik_proba"], adata.obs["aestetik_proba"])
    assert back.uns["aestetik"]["cluster"]["params"] == adata.uns["aestetik"]["cluster"]["params"]
    assert back.uns["aestetik"]["cluster"]["n_clusters"] == 4
    assert back.uns["aestetik"]["fit"]["params"]["max_epochs"] == 3


def _with_nan(adata):
    adata.obsm["X_aestetik"][3, 1] = np.nan


@pytest.mark.parametrize(
    ("setup", "kwargs", "error", "match"),
    [
        (
            lambda a: a.obsm.pop("X_aestetik"),
            {},
            KeyError,
            r"X_aestetik.*Run `aestetik.tl.fit\(adata\)` first or pass `use_rep`",
        ),
        (None, {"use_rep": "X_other"}, KeyError, "X_other"),
        (None, {"method": "dbscan"}, ValueError, "method='dbscan'"),
        (None, {"n_clusters": 101}, ValueError, "n_clusters"),
        (None, {"n_clusters": 1}, ValueError, "n_clusters"),
        (None, {"n_clusters": 2.5}, ValueError, "n_clusters"),
        (None, {"n_neighbors": 0}, ValueError, "n_neighbors"),
        (None, {"random_state": None}, TypeError, "random_state"),
        (None, {"n_jobs": 0}, ValueError, "n_jobs"),
        (None, {"n_jobs": 1.5}, ValueError, "n_jobs"),
        (_with_nan, {}, ValueError, "X_aestetik"),
        (lambda a: a.obsm.pop("spatial"), {}, KeyError, "spatial"),
        (lambda a: a.uns.__setitem__("aestetik", "text"), {}, TypeError, "aestetik"),
        (
            lambda a: a.uns.__setitem__("aestetik", {"prepare": {"params": {"batch_key": "sample"}}}),
            {},
            KeyError,
            "sample",
        ),
    ],
)
def test_cluster_errors_leave_adata_unchanged(setup, kwargs, error, match):
    adata = make_adata()
    adata.obs["aestetik_proba"] = np.float32(0.5)  # a previous run's column must survive a failed call
    if setup is not None:
        setup(adata)
    before = snapshot(adata)
    kwargs = {"n_clusters": 4, **kwargs}
    with pytest.raises(error, match=match):
        ae.tl.cluster(adata, **kwargs)
    assert_same(before, snapshot(adata))


def test_cluster_refuses_view():
    adata = make_adata()
    view = adata[:50]
    with pytest.raises(ValueError, match="view"):
        ae.tl.cluster(view, 4)
    assert view.is_view
    assert "aestetik" not in adata.obs
    out = ae.tl.cluster(view, 2, method="kmeans", copy=True)  # a copy of a view is fine
    assert out.n_obs == 50
    assert "aestetik" not in adata.obs


def test_private_module_constants():
    assert _clustering.RESOLUTIONS[0] == 0.1
    assert _clustering.RESOLUTIONS[-1] == pytest.approx(2.98)
    assert _clustering.CLUSTER_METHODS == ("auto", "bgm", "kmeans", "leiden", "louvain", "spectral")
    assert _clustering.KMEANS_CUT_RATIO == 0.8


@pytest.mark.parametrize("method", ["bgm", "kmeans"])
def test_fit_on_a_subsample_then_predict_all(method):
    """Above ``max_fit_spots`` the model is fitted on a random subsample and labels every spot the same way."""
    from sklearn.datasets import make_blobs
    from sklearn.metrics import adjusted_rand_score

    from aestetik._domains._clustering import cluster_features

    x, truth = make_blobs(n_samples=3000, centers=4, n_features=5, cluster_std=1.0, random_state=0)
    full = cluster_features(x, 4, method=method, random_state=0)
    sub = cluster_features(x, 4, method=method, random_state=0, max_fit_spots=300)
    assert sub.labels.shape == (3000,)
    assert adjusted_rand_score(truth, sub.labels) > 0.95
    assert adjusted_rand_score(full.labels, sub.labels) > 0.95
    # deterministic
    again = cluster_features(x, 4, method=method, random_state=0, max_fit_spots=300)
    np.testing.assert_array_equal(sub.labels, again.labels)


@pytest.mark.parametrize("method", ["leiden", "louvain"])
def test_graph_methods_partition_a_subsample_and_label_the_rest_by_neighbours(method):
    """Above ``max_fit_spots`` the graph of a random subsample is partitioned (the same partition as on those rows
    alone) and every other row takes the majority label of its 15 nearest partitioned rows (brute force here)."""
    from sklearn.datasets import make_blobs

    from aestetik._domains._clustering import MAX_FIT_SPOTS, PREDICT_NEIGHBORS, _neighbour_graph, _partition

    assert MAX_FIT_SPOTS[method] == 50_000
    x, truth = make_blobs(n_samples=900, centers=4, n_features=5, cluster_std=2.5, random_state=0)
    got = cluster_features(x, 4, method=method, random_state=0, max_fit_spots=300)
    rows = np.sort(np.random.default_rng(0).choice(900, size=300, replace=False))
    graph, weights = _neighbour_graph(x[rows], method, 0)
    run = lambda res: _partition(graph, weights, res, method=method, random_state=0)
    part, resolution = _search_resolution(run, 4, _clustering.RESOLUTIONS)
    distances = ((x[:, None, :] - x[rows][None, :, :]) ** 2).sum(axis=-1)
    nearest = np.argsort(distances, axis=1)[:, :PREDICT_NEIGHBORS]
    expected = np.array([np.bincount(part[n], minlength=part.max() + 1).argmax() for n in nearest])
    expected[rows] = part
    np.testing.assert_array_equal(got.labels, _consecutive(expected))
    assert got.resolution == resolution
    assert adjusted_rand_score(truth, got.labels) > 0.9


def test_refinement_with_a_kd_tree_matches_brute_force(monkeypatch):
    """At scale the refinement uses a KD-tree; on a jittered (tie-free) layout it votes like brute force."""
    from aestetik._domains import _refine

    rng = np.random.default_rng(0)
    coords = rng.random((800, 2)) * 20
    labels = (coords[:, 0] > 10).astype(int)
    noisy = np.where(rng.random(800) < 0.15, 1 - labels, labels)
    brute = _refine.refine_labels(noisy, coords, n_neighbors=10)
    monkeypatch.setattr(_refine, "BRUTE_FORCE_MAX_SPOTS", 10)
    tree = _refine.refine_labels(noisy, coords, n_neighbors=10)
    np.testing.assert_array_equal(brute, tree)
    assert (tree == labels).mean() > (noisy == labels).mean()


def test_mixture_on_many_spots_is_fitted_on_a_subsample(monkeypatch):
    """The published random initialisation degenerates on many spots; the default (5,000 spots) does not."""
    from sklearn.datasets import make_blobs
    from sklearn.metrics import adjusted_rand_score

    from aestetik._domains._clustering import MAX_FIT_SPOTS, cluster_features

    x, truth = make_blobs(n_samples=40_000, centers=4, n_features=15, cluster_std=1.0, random_state=0)
    x = x.astype(np.float32)
    assert MAX_FIT_SPOTS["bgm"] < x.shape[0]
    default = cluster_features(x, 4, method="bgm", random_state=0)
    assert adjusted_rand_score(truth, default.labels) > 0.95
    # the k-means start alone rescues a fit on every spot ...
    everything = cluster_features(x, 4, method="bgm", random_state=0, max_fit_spots=x.shape[0])
    assert adjusted_rand_score(truth, everything.labels) > 0.95
    # ... where the published random starts alone fail (and each costs a fit on every spot)
    monkeypatch.setattr(_mixture, "BGM_INITS", (("random", 10),))
    published = cluster_features(x, 4, method="bgm", random_state=0, max_fit_spots=x.shape[0])
    assert adjusted_rand_score(truth, published.labels) < 0.5

from __future__ import annotations

from collections import Counter
from itertools import permutations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _data import FAST_FIT, make_small
from sklearn.metrics import adjusted_rand_score

import aestetik as ae
from aestetik._domains._consensus import align_labels, majority_vote, medoid, pairwise_ari, vote
from aestetik.tl._consensus import prepare_arguments

FIT = {k: v for k, v in FAST_FIT.items() if k != "show_progress_bar"}
RUN = {"n_seeds": 3, "n_clusters": 3, "method": "kmeans", "fit_kwargs": FIT, "show_progress_bar": False}


@pytest.fixture(scope="module")
def prepared():
    adata = make_small()
    ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=3, clustering_method="kmeans")
    return adata


@pytest.fixture(scope="module")
def done(prepared):
    adata = prepared.copy()
    ae.tl.consensus(adata, **RUN)
    return adata


def snapshot(adata: ad.AnnData) -> tuple:
    return (
        adata.obs.copy(),
        {k: np.array(v, copy=True) for k, v in adata.obsm.items()},
        {k: (sorted(v) if isinstance(v, dict) else v) for k, v in adata.uns.items()},
        sorted(adata.uns["aestetik"]) if isinstance(adata.uns.get("aestetik"), dict) else None,
    )


def assert_same(before: tuple, after: tuple) -> None:
    pd.testing.assert_frame_equal(before[0], after[0])
    assert before[1].keys() == after[1].keys()
    for k, v in before[1].items():
        np.testing.assert_array_equal(v, after[1][k])
    assert before[2:] == after[2:]


# ---------------------------------------------------------------- alignment and vote


def test_alignment_undoes_a_permutation():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 5, 300)
    perm = rng.permutation(5)
    np.testing.assert_array_equal(align_labels(perm[reference], reference), reference)
    noisy = perm[reference]
    flip = rng.random(300) < 0.15
    noisy[flip] = rng.integers(0, 5, flip.sum())
    inverse = np.argsort(perm)
    np.testing.assert_array_equal(align_labels(noisy, reference), inverse[noisy])


def test_alignment_maximises_agreement_like_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(20):
        reference = rng.integers(0, 4, 60)
        labels = rng.integers(0, 4, 60)
        best = max(np.sum(np.asarray(p)[labels] == reference) for p in permutations(range(4)))
        aligned = align_labels(labels, reference)
        assert np.sum(aligned == reference) == best
        assert adjusted_rand_score(labels, aligned) == 1.0  # a renaming, nothing merged


def test_alignment_with_more_clusters_than_the_reference():
    reference = np.repeat([0, 1, 2], 10)
    labels = np.repeat([3, 0, 2, 1], [10, 10, 5, 5])  # the reference's cluster 2 split in two
    aligned = align_labels(labels, reference)
    np.testing.assert_array_equal(aligned[:20], reference[:20])
    assert set(aligned[20:]) == {2, 3}  # one half matched, the other gets a new id after the reference's


def reference_vote(row: np.ndarray, order: list[int]) -> int:
    counts = Counter(row.tolist())
    top = max(counts.values())
    return next(int(row[j]) for j in order if counts[row[j]] == top)


def test_majority_vote_and_confidence():
    rng = np.random.default_rng(2)
    aligned = rng.integers(0, 4, size=(200, 5))
    order = [2, 0, 1, 3, 4]
    winner, confidence = majority_vote(aligned, order)
    expected = np.array([reference_vote(row, order) for row in aligned])
    np.testing.assert_array_equal(winner, expected)
    np.testing.assert_allclose(confidence, (aligned == expected[:, None]).mean(axis=1))
    # ties go to the first run in `order`
    tie = np.array([[0, 1], [1, 0]])
    np.testing.assert_array_equal(majority_vote(tie, [1, 0])[0], [1, 0])
    np.testing.assert_array_equal(majority_vote(tie, [0, 1])[0], [0, 1])


def test_vote_recovers_the_truth_from_renamed_noisy_runs():
    rng = np.random.default_rng(3)
    truth = np.repeat(np.arange(4), 50)
    runs = []
    for _ in range(5):
        labels = rng.permutation(4)[truth]
        wrong = rng.choice(truth.size, 20, replace=False)  # 10% wrong in each run
        labels[wrong] = (labels[wrong] + 1) % 4
        runs.append(labels)
    labels = np.column_stack(runs)
    consensus, confidence, aligned = vote(labels, 0)
    assert adjusted_rand_score(truth, consensus) == 1.0
    np.testing.assert_array_equal(consensus, align_labels(truth, labels[:, 0]))  # in the reference's names
    np.testing.assert_allclose(confidence, (aligned == consensus[:, None]).mean(axis=1))
    assert set(np.unique(confidence)) <= {0.6, 0.8, 1.0}
    for j in range(5):
        assert adjusted_rand_score(aligned[:, j], labels[:, j]) == 1.0


def test_pairwise_ari_and_medoid():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 3, 100)
    labels = np.column_stack([truth, truth, (truth + 1) % 3, rng.integers(0, 3, 100)])
    ari = pairwise_ari(labels)
    np.testing.assert_array_equal(ari, ari.T)
    np.testing.assert_array_equal(np.diag(ari), 1.0)
    for i in range(4):
        for j in range(4):
            assert ari[i, j] == pytest.approx(adjusted_rand_score(labels[:, i], labels[:, j]))
    assert medoid(ari) == 0  # runs 0-2 agree fully; the first wins the tie


# ---------------------------------------------------------------- tl.consensus


def test_consensus_writes_everything(done, prepared):
    adata = done
    info = adata.uns["aestetik"]["consensus"]
    n = adata.n_obs
    labels = adata.obsm["aestetik_seed_labels"]
    assert labels.shape == (n, 3)
    assert labels.dtype == np.int32
    dom = adata.obs["aestetik"]
    assert isinstance(dom.dtype, pd.CategoricalDtype)
    assert list(dom.cat.categories) == [str(i) for i in range(info["n_domains"])]
    codes = dom.astype(int).to_numpy()
    conf = adata.obs["aestetik_confidence"]
    assert conf.dtype == np.float32
    np.testing.assert_allclose(conf, (labels == codes[:, None]).mean(axis=1), rtol=1e-6)
    assert np.isclose(conf.to_numpy()[:, None], [1 / 3, 2 / 3, 1.0]).any(axis=1).all()
    # the consensus is the majority vote of the stored runs, ties to the reference
    order = [info["reference"]] + [j for j in range(3) if j != info["reference"]]
    np.testing.assert_array_equal(codes, [reference_vote(row, order) for row in labels])
    # pairwise ARI of the runs (renaming does not change it)
    np.testing.assert_allclose(info["ari"], pairwise_ari(labels.astype(np.int64)))
    off = info["ari"][~np.eye(3, dtype=bool)]
    assert info["mean_ari"] == pytest.approx(off.mean())
    assert info["min_ari"] == pytest.approx(off.min())
    assert info["reference"] == medoid(info["ari"])
    np.testing.assert_array_equal(info["seeds"], [0, 1, 2])
    assert info["reference_seed"] == info["reference"]
    assert info["n_clusters"] == 3
    assert info["mean_confidence"] == pytest.approx(float(conf.mean()), rel=1e-6)
    p = info["params"]
    assert (p["n_seeds"], p["n_clusters"], p["method"], p["refine"]) == (3, 3, "kmeans", True)
    assert p["fit_kwargs"] == FIT
    # the reference run's fit: the same as preparing (by default; seed 0 is prepare's own) and fitting with its seed
    rec = adata.uns["aestetik"]["fit"]
    seed = info["reference_seed"]
    assert rec["params"]["random_state"] == seed
    assert p["vary_pseudo_labels"] is True
    assert "prepare" in adata.uns["aestetik"]
    single = prepared.copy()
    if seed != 0:
        ae.pp.prepare(single, **prepare_arguments(prepared.uns["aestetik"]["prepare"], "aestetik"), random_state=seed)
    ae.tl.fit(single, random_state=seed, **FAST_FIT)
    np.testing.assert_array_equal(adata.obsm["X_aestetik"], single.obsm["X_aestetik"])
    # X was not needed, nothing else was added
    assert set(adata.obsm) - set(prepared.obsm) == {"X_aestetik", "aestetik_seed_labels"}
    assert set(adata.obs.columns) - set(prepared.obs.columns) == {"aestetik", "aestetik_confidence"}


def test_consensus_keeps_downstream_working(done, tmp_path):
    import matplotlib.pyplot as plt

    adata = done.copy()
    ax = ae.pl.consensus(adata)
    np.testing.assert_allclose(ax.images[0].get_array(), adata.uns["aestetik"]["consensus"]["ari"])
    ref = adata.uns["aestetik"]["consensus"]["reference"]
    assert ax.get_xticklabels()[ref].get_text().endswith("*")
    assert ae.pl.loss(adata) is not None
    ax = ae.pl.spatial(adata, color="aestetik_confidence")
    assert ax is not None
    plt.close("all")
    path = tmp_path / "c.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    info, info2 = adata.uns["aestetik"]["consensus"], back.uns["aestetik"]["consensus"]
    np.testing.assert_array_equal(info2["ari"], info["ari"])
    assert info2["params"]["fit_kwargs"] == info["params"]["fit_kwargs"]
    np.testing.assert_array_equal(back.obsm["aestetik_seed_labels"], adata.obsm["aestetik_seed_labels"])
    ae.tl.cluster(adata, 3, method="kmeans")  # the reference embedding can be clustered again
    assert "aestetik_confidence" in adata.obs


def test_consensus_same_seed_same_output(done, prepared):
    again = ae.tl.consensus(prepared, **RUN, copy=True)
    assert "aestetik" not in prepared.obs  # copy=True left the input alone
    pd.testing.assert_series_equal(again.obs["aestetik"], done.obs["aestetik"])
    np.testing.assert_array_equal(again.obs["aestetik_confidence"], done.obs["aestetik_confidence"])
    np.testing.assert_array_equal(again.obsm["aestetik_seed_labels"], done.obsm["aestetik_seed_labels"])
    np.testing.assert_array_equal(again.obsm["X_aestetik"], done.obsm["X_aestetik"])
    np.testing.assert_array_equal(again.uns["aestetik"]["consensus"]["ari"], done.uns["aestetik"]["consensus"]["ari"])


def test_consensus_replaces_a_stale_cluster_record(prepared):
    adata = prepared.copy()
    ae.tl.fit(adata, **FAST_FIT)
    ae.tl.cluster(adata, 3, method="bgm")  # writes aestetik_proba
    assert "aestetik_proba" in adata.obs
    ae.tl.consensus(adata, **{**RUN, "n_seeds": 2})
    assert "aestetik_proba" not in adata.obs
    assert set(adata.uns["aestetik"]) == {"prepare", "fit", "consensus"}


def test_consensus_auto_number_of_domains(prepared):
    adata = prepared.copy()
    ae.tl.consensus(adata, **{**RUN, "n_seeds": 2, "n_clusters": range(2, 6)}, cluster_kwargs={"n_resamples": 3})
    info = adata.uns["aestetik"]["consensus"]
    curve = info["stability"]
    np.testing.assert_array_equal(curve["n_clusters"], [2, 3, 4, 5])
    assert info["n_clusters"] == curve["chosen"]
    np.testing.assert_array_equal(info["params"]["n_clusters"], [2, 3, 4, 5])
    assert info["params"]["cluster_kwargs"] == {"n_resamples": 3}
    ax = ae.pl.n_clusters(adata)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), curve["mean"])


def test_consensus_failure_writes_nothing(prepared, monkeypatch):
    from aestetik._model import _module as _training

    adata = prepared.copy()
    adata.obs["aestetik"] = pd.Categorical(["0"] * adata.n_obs)  # an earlier result must survive
    before = snapshot(adata)
    calls = {"n": 0}
    original = _training.AestetikModule.training_step

    def failing(self, batch, batch_idx):
        calls["n"] += 1
        if calls["n"] == 4:  # second epoch of the second run
            msg = "boom"
            raise RuntimeError(msg)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(_training.AestetikModule, "training_step", failing)
    with pytest.raises(RuntimeError, match="boom"):
        ae.tl.consensus(adata, **RUN)
    assert calls["n"] == 4
    assert_same(before, snapshot(adata))


@pytest.mark.parametrize(
    ("edit", "kwargs", "error", "match"),
    [
        (None, {"n_seeds": 1}, ValueError, "n_seeds"),
        (None, {"n_clusters": 2.5}, TypeError, "resolution"),
        (None, {"n_clusters": 1}, ValueError, "n_clusters"),
        (None, {"method": "dbscan"}, ValueError, "method"),
        (None, {"random_state": None}, TypeError, "random_state"),
        (None, {"fit_kwargs": {"random_state": 3}}, ValueError, r"fit_kwargs.*random_state"),
        (None, {"fit_kwargs": {"epochs": 3}}, TypeError, r"fit_kwargs.*epochs"),
        (None, {"fit_kwargs": {"checkpoint_path": "ckpt"}}, ValueError, r"same checkpoint"),
        (None, {"fit_kwargs": {"resume": True}}, ValueError, r"'resume'.*same checkpoint"),
        (None, {"cluster_kwargs": {"use_rep": "X"}}, ValueError, "use_rep"),
        (None, {"cluster_kwargs": ["n_neighbors"]}, TypeError, "cluster_kwargs"),
        (None, {"prepare_key": "other"}, KeyError, "other"),
        (lambda a: a.uns.__setitem__("dom", "text"), {"key_added": "dom"}, TypeError, "dom"),
    ],
)
def test_consensus_bad_input_leaves_adata_unchanged(prepared, edit, kwargs, error, match):
    adata = prepared.copy()
    if edit is not None:
        edit(adata)
    before = snapshot(adata)
    with pytest.raises(error, match=match):
        ae.tl.consensus(adata, **{**RUN, **kwargs})
    assert_same(before, snapshot(adata))


def test_consensus_refuses_view(prepared):
    with pytest.raises(ValueError, match="view"):
        ae.tl.consensus(prepared[:100], **RUN)


# ---------------------------------------------------------------- pseudo-labels per run


def test_prepare_arguments_reproduce_the_prepare_call():
    """The recorded arguments, called again with the same seed on a copy, give the same inputs and pseudo-labels;
    with the spatial lattice (coords=None) and with the mixture's defaults resolved."""
    from aestetik.tl._consensus import prepare_arguments

    adata = make_small()
    del adata.obs["array_row"], adata.obs["array_col"]  # the lattice comes from the positions
    ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=3, coords=None, random_state=2)
    args = prepare_arguments(adata.uns["aestetik"]["prepare"], "aestetik")
    assert args["coords"] is None
    assert args["morphology_key"] == "X_morphology"
    assert args["mixture_components"] == 4
    assert args["mixture_fallback"] == "kmeans"
    published = ae.pp.prepare(adata, n_clusters=3, mixture_fallback=None, copy=True)
    assert prepare_arguments(published.uns["aestetik"]["prepare"], "aestetik")["mixture_fallback"] is None
    del published.uns["aestetik"]["prepare"]["params"]["mixture_fallback"]  # a record from before it existed
    assert prepare_arguments(published.uns["aestetik"]["prepare"], "aestetik")["mixture_fallback"] is None
    again = ae.pp.prepare(adata, **args, random_state=2, copy=True)
    for key in ("aestetik_input", "aestetik_grid", "aestetik_lattice"):
        np.testing.assert_array_equal(again.obsm[key], adata.obsm[key])
    for key in ("aestetik_transcriptomics_cluster", "aestetik_morphology_cluster"):
        pd.testing.assert_series_equal(again.obs[key], adata.obs[key])
    assert again.uns["aestetik"]["prepare"]["params"] == adata.uns["aestetik"]["prepare"]["params"]


@pytest.mark.parametrize("vary", [True, False])
def test_consensus_varies_the_pseudo_labels(prepared, monkeypatch, vary):
    """By default every run prepares again with its own seed, on a copy: its pseudo-labels are those of prepare with
    that seed, the input's stay as they were, and the record says so. With `vary_pseudo_labels=False` every run
    trains on the input's pseudo-labels."""
    from aestetik.tl import _consensus

    adata = prepared.copy()
    before = adata.obs["aestetik_transcriptomics_cluster"].copy()
    seen = []
    real = _consensus.fit_prepared

    def recorded(inputs, **kwargs):
        seen.append((kwargs["random_state"], inputs.labels_transcriptomics.copy()))
        return real(inputs, **kwargs)

    monkeypatch.setattr(_consensus, "fit_prepared", recorded)
    ae.tl.consensus(adata, **{**RUN, "random_state": 5}, **({} if vary else {"vary_pseudo_labels": False}))
    assert [seed for seed, _ in seen] == [5, 6, 7]
    args = _consensus.prepare_arguments(prepared.uns["aestetik"]["prepare"], "aestetik")
    for seed, labels in seen:
        expected = ae.pp.prepare(prepared, **args, random_state=seed if vary else 0, copy=True)
        np.testing.assert_array_equal(labels, expected.obs["aestetik_transcriptomics_cluster"].to_numpy())
    assert len({tuple(labels) for _, labels in seen}) == (3 if vary else 1)  # the small section's seeds differ
    pd.testing.assert_series_equal(adata.obs["aestetik_transcriptomics_cluster"], before)
    assert adata.uns["aestetik"]["consensus"]["params"]["vary_pseudo_labels"] is vary
    assert adata.obsm["aestetik_seed_labels"].shape == (adata.n_obs, 3)


def test_consensus_refuses_a_projected_section(prepared):
    """A section projected onto a model has no pseudo-labels to train on, to vary or not: the error names the fix."""
    model = prepared.copy()
    ae.tl.fit(model, **FIT, show_progress_bar=False)
    new = make_small()
    ae.pp.prepare(new, morphology_key="X_morphology", reference=model)
    before = snapshot(new)
    for vary in (True, False):
        with pytest.raises(ValueError, match=r"projected onto a trained model.*tl\.embed\(adata, model=\.\.\.\)"):
            ae.tl.consensus(new, **RUN, vary_pseudo_labels=vary)
    assert_same(before, snapshot(new))


def test_consensus_reuses_the_pseudo_labels_of_the_recorded_seed(prepared, monkeypatch):
    """The run whose seed `prepare` already used trains on adata's own inputs (they are the same as a new call's,
    test above); only the other runs prepare again."""
    from aestetik.tl import _consensus

    again = []
    real = _consensus._prepared_again

    def recorded(adata, args, prepare_key, seed):
        again.append(seed)
        return real(adata, args, prepare_key, seed)

    monkeypatch.setattr(_consensus, "_prepared_again", recorded)
    assert int(prepared.uns["aestetik"]["prepare"]["params"]["random_state"]) == 0
    ae.tl.consensus(prepared.copy(), **RUN)
    assert again == [1, 2]


def test_prepared_again_leaves_the_genes_out(prepared, monkeypatch):
    """A run that prepares again copies the AnnData without its genes when the representation is in obsm, and gets
    the inputs of prepare on the whole AnnData; without the representation it copies the genes, to compute it."""
    import aestetik.pp
    from aestetik._records import read_prepared
    from aestetik.tl._consensus import _prepared_again

    args = prepare_arguments(prepared.uns["aestetik"]["prepare"], "aestetik")
    assert args["transcriptomics_key"] in prepared.obsm
    genes, real = [], aestetik.pp.prepare

    def recorded(adata, **kwargs):
        genes.append(adata.n_vars)
        return real(adata, **kwargs)

    for adata in (prepared, _without_representation(prepared, args["transcriptomics_key"])):
        full = read_prepared(ae.pp.prepare(adata, **args, random_state=3, copy=True), "aestetik")
        with monkeypatch.context() as m:
            m.setattr(aestetik.pp, "prepare", recorded)
            again = _prepared_again(adata, args, "aestetik", 3)
        for name in ("features", "grid", "lattice", "labels_transcriptomics", "labels_morphology"):
            np.testing.assert_array_equal(getattr(again, name), getattr(full, name))
        assert adata.n_vars == prepared.n_vars > 0  # the input keeps its genes
    assert genes == [0, prepared.n_vars]


def _without_representation(adata: ad.AnnData, key: str) -> ad.AnnData:
    out = adata.copy()
    del out.obsm[key]
    return out

"""pp.morphology: patches, squidpy-equal features, outside/clipped spots, methods, PCA, scale checks, prepare."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _data import make_small

import aestetik as ae
from aestetik._image import _features as F
from aestetik._image import _patches as P
from aestetik.pp import _tissue_images as T

SCALEF = 0.5  # hires
DIAMETER = 10.0  # full-resolution pixels: 5 image pixels


def _image(seed: int = 0, shape: tuple[int, int] = (60, 80)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*shape, 3), dtype=np.uint8)


def _adata(*, border: bool = True, seed: int = 0) -> ad.AnnData:
    """Spots on a 20 px (full resolution) grid inside a 60 x 80 image; with ``border``, 2 clipped and 1 outside."""
    x, y = np.meshgrid(np.arange(20.0, 150.0, 20.0), np.arange(20.0, 110.0, 20.0))
    xy = np.c_[x.ravel(), y.ravel()]
    if border:
        xy = np.r_[xy, [[2.0, 60.0], [100.0, 117.0], [230.0, 60.0]]]  # clipped left, clipped bottom, outside right
    rng = np.random.default_rng(seed)
    adata = ad.AnnData(X=rng.poisson(1.0, size=(len(xy), 5)).astype(np.float32))
    adata.obsm["spatial"] = xy
    adata.uns["spatial"] = {
        "lib": {
            "images": {"hires": _image(seed), "lowres": _image(seed + 1, (15, 20))},
            "scalefactors": {
                "tissue_hires_scalef": SCALEF,
                "tissue_lowres_scalef": SCALEF / 4,
                "spot_diameter_fullres": DIAMETER,
            },
        }
    }
    return adata


def _snapshot(adata):
    return (
        list(adata.obs.columns),
        {k: np.asarray(v).copy() for k, v in adata.obsm.items()},
        sorted(adata.uns.keys()),
        {k: sorted(v["scalefactors"].items()) for k, v in adata.uns["spatial"].items()},
    )


def _assert_unchanged(adata, snap):
    obs, obsm, uns, factors = snap
    assert list(adata.obs.columns) == obs
    assert sorted(adata.obsm.keys()) == sorted(obsm)
    for k, v in obsm.items():
        np.testing.assert_array_equal(np.asarray(adata.obsm[k]), v)
    assert sorted(adata.uns.keys()) == uns
    assert {k: sorted(v["scalefactors"].items()) for k, v in adata.uns["spatial"].items()} == factors


def _boxes(adata, spot_scale: float = 1.0, image_key: str = "hires"):
    image = adata.uns["spatial"]["lib"]["images"][image_key]
    scalef = adata.uns["spatial"]["lib"]["scalefactors"][f"tissue_{image_key}_scalef"]
    side = F.patch_side(DIAMETER, scalef, spot_scale)
    centres = adata.obsm["spatial"][:, ::-1] * scalef
    start, status = F.patch_boxes(centres, side, image.shape[:2])
    return image, centres, side, start, status


def _mean_features(p):
    return p.reshape(len(p), -1, 3).mean(axis=1)


def _pairwise(x):
    return np.linalg.norm(x[:, None] - x[None], axis=-1)


def test_patches_match_numpy_crops():
    adata = _adata()
    image, centres, side, start, status = _boxes(adata)
    assert side == 5
    np.testing.assert_array_equal(status, [0] * (len(status) - 3) + [1, 1, 2])
    patches = F.gather_patches(image, start, side)
    for i in np.flatnonzero(status == 0):
        cy, cx = (int(v) for v in centres[i])  # odd side: the centre pixel is floor(c), as squidpy
        np.testing.assert_array_equal(patches[i], image[cy - 2 : cy + 3, cx - 2 : cx + 3])
    # clipped: the part inside, padded with the nearest border pixels
    cy, cx = (int(v) for v in centres[-3])
    assert cx == 1
    np.testing.assert_array_equal(
        patches[-3], np.pad(image[cy - 2 : cy + 3, 0:4], ((0, 0), (1, 0), (0, 0)), mode="edge")
    )
    # even side: the side x side window whose centre is nearest the spot centre
    even = F.patch_side(DIAMETER, SCALEF, 0.8)
    assert even == 4
    s, _ = F.patch_boxes(centres, even, image.shape[:2])
    assert np.all(np.abs(s + even / 2 - centres) <= 0.5)
    assert F.patch_side(DIAMETER, SCALEF, 0.01) == 1


def test_features_equal_squidpy():
    import squidpy as sq

    adata = _adata()
    image, centres, side, start, status = _boxes(adata)
    img = sq.im.ImageContainer(image, layer="hires", scale=SCALEF)
    spots = [0, 7, 20, 33]
    sub = adata[spots].copy()
    ref = sq.im.calculate_image_features(
        sub,
        img,
        layer="hires",
        library_id="lib",
        features=["summary", "histogram", "texture"],
        features_kwargs={"histogram": {"v_range": (0, 255)}},
        copy=True,
        n_jobs=1,
        show_progress_bar=False,
    )
    patches = F.gather_patches(image, start[spots], side)
    for name, f in F._FUNCTIONS.items():
        mine = f(patches) * (side * side if name == "histogram" else 1)  # fractions of the patch pixels
        np.testing.assert_allclose(mine, ref[F._feature_names([name])].to_numpy(float), rtol=1e-10, atol=1e-10)
    # clipped spots use only the part inside the image
    lib = T.resolve_libraries(
        adata, img=None, library_id=None, library_key=None, image_key=None, spatial_key="spatial"
    )[0]
    feats, st, scales = P._library_features(lib, side, F.resolve_method(["summary", "texture"]), batch_size=8)
    assert scales == {}
    cy = int(centres[-3][0])
    part = sq.im.ImageContainer(image[cy - 2 : cy + 3, 0:4], layer="hires")
    expected = {**part.features_summary("hires"), **part.features_texture("hires")}
    np.testing.assert_allclose(feats[-3], list(expected.values()), rtol=1e-10, atol=1e-10)
    assert np.isnan(feats[-1]).all()
    np.testing.assert_array_equal(st, status)


def test_morphology_writes_and_reports_border_spots():
    adata = _adata()
    with pytest.warns(UserWarning, match=r"1 spot\(s\) have no pixel.*and 2 spot\(s\) have a patch clipped"):
        assert ae.pp.morphology(adata, spot_scale=1.0) is None
    n = adata.n_obs
    x = adata.obsm["X_morphology"]
    assert x.dtype == np.float32
    assert x.shape == (n, 15)
    flag = adata.obs["morphology_outside"]
    assert flag.dtype == bool
    np.testing.assert_array_equal(flag.to_numpy(), np.arange(n) == n - 1)
    rec = adata.uns["morphology"]
    assert (rec["n_outside"], rec["n_clipped"], rec["patch_size"], rec["n_features"]) == (1, 2, 5, 15)
    assert rec["libraries"]["lib"]["image_key"] == "hires"
    assert rec["params"]["library_id"] == "lib"
    assert rec["params"]["method"] == "summary"
    assert list(rec["feature_names"][:4]) == [
        "summary_ch-0_quantile-0.9",
        "summary_ch-0_quantile-0.5",
        "summary_ch-0_quantile-0.1",
        "summary_ch-0_mean",
    ]
    ratio = rec["variance_ratio"]
    assert ratio.shape == (15,)
    assert np.all(np.diff(ratio) <= 1e-12)
    assert ratio.sum() == pytest.approx(1.0)  # 15 PCs of 15 standardised features


def test_imputation_and_pca_are_exact():
    """3 mean-colour features and 3 PCs: the embedding is a rotation of the standardised features."""
    adata = _adata()
    image, _, side, start, status = _boxes(adata)
    with pytest.warns(UserWarning, match="no pixel"):
        ae.pp.morphology(adata, method=_mean_features, spot_scale=1.0, n_components=3)
    feats = _mean_features(F.gather_patches(image, start, side))  # clipped ones padded by border pixels
    inside = status != 2
    feats[~inside] = np.median(feats[inside], axis=0)
    z = (feats - feats[inside].mean(0)) / feats[inside].std(0)
    emb = adata.obsm["X_morphology"]
    np.testing.assert_allclose(_pairwise(emb), _pairwise(z), atol=1e-4)
    ratio = adata.uns["morphology"]["variance_ratio"]
    np.testing.assert_allclose(ratio, emb[inside].var(0) / 3, rtol=1e-4)
    assert adata.uns["morphology"]["params"]["method"] == "callable:_mean_features"
    # fewer components on request, never more than the features
    adata = _adata(border=False)
    ae.pp.morphology(adata, method=_mean_features, n_components=2)
    assert adata.obsm["X_morphology"].shape == (adata.n_obs, 2)
    ae.pp.morphology(adata, method=_mean_features, n_components=50)
    assert adata.obsm["X_morphology"].shape == (adata.n_obs, 3)


def test_torch_module_equals_callable_and_keeps_mode():
    import torch

    adata = _adata(border=False)
    ae.pp.morphology(adata, method=lambda p: _mean_features(p) / 255, n_components=3, key_added="X_ref")
    module = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    module.train()
    seen = []
    module.register_forward_pre_hook(lambda m, args: seen.append((args[0].shape, args[0].dtype, float(args[0].max()))))
    ae.pp.morphology(adata, method=module, n_components=3, batch_size=16)
    assert module.training  # mode restored; dropout was off during the call
    np.testing.assert_allclose(adata.obsm["X_morphology"], adata.obsm["X_ref"], atol=1e-4)
    assert [s[0][0] for s in seen] == [16, 16, 3]  # 35 spots in batches
    assert all(s[0][1:] == (3, 10, 10) and s[1] == torch.float32 and s[2] <= 1.0 for s in seen)
    assert adata.uns["morphology"]["params"]["method"] == "torch.nn.Module:Sequential"


def test_callable_output_is_checked():
    adata = _adata(border=False)
    snap = _snapshot(adata)
    with pytest.raises(ValueError, match="returned shape"):
        ae.pp.morphology(adata, method=lambda p: p.mean())
    with pytest.raises(ValueError, match="NaN"):
        ae.pp.morphology(adata, method=lambda p: np.full((len(p), 2), np.nan))
    with pytest.raises(ValueError, match="'colour'"):
        ae.pp.morphology(adata, method=["summary", "colour"])
    with pytest.raises(TypeError, match="method"):
        ae.pp.morphology(adata, method=3)
    _assert_unchanged(adata, snap)


def test_combined_methods_and_image_key():
    adata = _adata(border=False)
    ae.pp.morphology(adata, method=["summary", "histogram", "texture"], image_key="lowres", spot_scale=4.0)
    rec = adata.uns["morphology"]
    assert rec["n_features"] == 15 + 30 + 60
    assert rec["params"]["image_key"] == "lowres"
    assert rec["patch_size"] == 5  # 10 px * 0.125 * 4
    assert rec["params"]["method"] == "summary+histogram+texture"


def test_image_container_gives_the_same_result():
    import squidpy as sq

    adata = _adata(border=False)
    img = sq.im.ImageContainer.from_adata(adata, img_key="hires")
    ae.pp.morphology(adata, img=img, key_added="X_img")
    ae.pp.morphology(adata)
    np.testing.assert_array_equal(adata.obsm["X_img"], adata.obsm["X_morphology"])
    assert adata.uns["img"]["params"]["from_image_container"]


def test_several_libraries():
    a, b = _adata(border=False, seed=0), _adata(border=False, seed=5)
    a.obs["library"], b.obs["library"] = "a", "b"
    adata = ad.concat([a, b], index_unique="-")
    adata.uns["spatial"] = {"a": a.uns["spatial"]["lib"], "b": b.uns["spatial"]["lib"]}
    with pytest.raises(ValueError, match="2 libraries"):
        ae.pp.morphology(adata)
    ae.pp.morphology(adata, library_key="library", method=_mean_features, n_components=3)
    feats = []
    for part in (a, b):
        image, _, side, start, _ = _boxes(part, spot_scale=2.0)
        feats.append(_mean_features(F.gather_patches(image, start, side)))
    feats = np.concatenate(feats)
    z = (feats - feats.mean(0)) / feats.std(0)
    np.testing.assert_allclose(_pairwise(adata.obsm["X_morphology"]), _pairwise(z), atol=1e-4)
    assert set(adata.uns["morphology"]["libraries"]) == {"a", "b"}
    assert adata.uns["morphology"]["params"]["library_key"] == "library"


@pytest.mark.parametrize(
    ("edit", "kwargs", "error", "match"),
    [
        (lambda a: a.uns["spatial"]["lib"]["scalefactors"].update(tissue_hires_scalef=5.0), {}, ValueError,
         r"(?s)(?=.*fall outside)(?=.*\['scalefactors'\]\['tissue_hires_scalef'\])(?=.*obsm\['spatial'\])"),
        (lambda a: a.obsm.__setitem__("spatial", a.obsm["spatial"] * SCALEF / 4), {}, ValueError,
         r"(?s)already scaled.*spot_diameter_fullres"),
        (lambda a: a.uns.pop("spatial"), {}, KeyError, r"uns\['spatial'\]"),
        (lambda a: a.uns["spatial"]["lib"]["scalefactors"].pop("tissue_hires_scalef"), {}, KeyError, "tissue_hires_scalef"),
        (None, {"image_key": "fullres"}, KeyError, "fullres"),
        (None, {"library_id": "other"}, KeyError, "other"),
        (None, {"spot_scale": 0}, ValueError, "spot_scale"),
        (None, {"n_components": 0}, ValueError, "n_components"),
        (lambda a: a.obsm["spatial"].__setitem__((0, 0), np.nan), {}, ValueError, "NaN"),
    ],
)  # fmt: skip
def test_bad_input_leaves_adata_unchanged(edit, kwargs, error, match):
    adata = _adata()
    if edit is not None:
        edit(adata)
    snap = _snapshot(adata) if "spatial" in adata.uns else None
    with pytest.raises(error, match=match):
        ae.pp.morphology(adata, **kwargs)
    if snap is not None:
        _assert_unchanged(adata, snap)
    assert "X_morphology" not in adata.obsm
    assert "morphology_outside" not in adata.obs


def test_view_and_copy():
    adata = _adata(border=False)
    view = adata[:20]
    with pytest.raises(ValueError, match="view"):
        ae.pp.morphology(view)
    out = ae.pp.morphology(view, copy=True)
    assert out.obsm["X_morphology"].shape == (20, 15)
    snap = _snapshot(adata)
    out = ae.pp.morphology(adata, copy=True)
    _assert_unchanged(adata, snap)
    assert "morphology" in out.uns
    assert not out.obs["morphology_outside"].any()


def test_record_survives_h5ad(tmp_path):
    adata = _adata(border=False)
    ae.pp.morphology(adata)
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    rec, orig = back.uns["morphology"], adata.uns["morphology"]
    assert rec["params"] == orig["params"]
    np.testing.assert_array_equal(rec["variance_ratio"], orig["variance_ratio"])
    assert rec["libraries"]["lib"]["patch_size"] == 10


def _small_with_image(scalef: float = 0.2):
    """make_small (hexagonal, 100 px spacing) without X_morphology, with an image whose colour follows the bands.

    Spots are ``55 * scalef`` px wide in it: 11 px by default, 2.75 px with ``scalef=0.05`` (under the 10 px below
    which ``morphology_key='auto'`` computes no morphology).
    """
    from scipy.spatial import cKDTree

    adata = make_small(morphology=False)
    domain = adata.obs["ground_truth"].astype(int).to_numpy()
    adata.obsm["spatial"] = adata.obsm["spatial"] + 100.0  # 5 image pixels (at scalef 0.05) from the border
    xy = adata.obsm["spatial"] * scalef
    shape = (round(80 * scalef / 0.05), round(110 * scalef / 0.05))
    image = np.full((*shape, 3), 200, dtype=np.uint8)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    near = cKDTree(xy[:, ::-1]).query(np.c_[rows.ravel(), cols.ravel()])[1].reshape(shape)
    image[..., 0] = 60 + 70 * domain[near] + np.random.default_rng(0).integers(0, 20, size=shape)
    adata.uns["spatial"] = {
        "s": {
            "images": {"lowres": image},
            "scalefactors": {"tissue_lowres_scalef": scalef, "spot_diameter_fullres": 55.0},
        }
    }
    return adata


def test_prepare_auto_uses_the_image():
    adata = _small_with_image()
    ae.pp.prepare(adata, n_clusters=3, clustering_method="kmeans")
    rec = adata.uns["aestetik"]["prepare"]
    assert rec["morphology_computed"]
    assert rec["params"]["morphology_key"] == "X_morphology"
    assert rec["n_morphology"] == adata.obsm["X_morphology"].shape[1] == adata.uns["morphology"]["n_components"]
    assert rec["morphology_skipped"] == ""
    assert adata.uns["morphology"]["patch_size"] == 22  # 55 px * 0.2 * 2
    labels = adata.obs["aestetik_morphology_cluster"]
    assert pd.crosstab(labels, adata.obs["ground_truth"]).to_numpy().max(1).sum() > 0.9 * adata.n_obs
    # an existing representation is used as is
    adata.obsm["X_morphology"] = adata.obsm["X_morphology"][:, :2].copy()
    ae.pp.prepare(adata, n_clusters=3, clustering_method="kmeans")
    rec = adata.uns["aestetik"]["prepare"]
    assert not rec["morphology_computed"]
    assert rec["n_morphology"] == 2
    # None means no morphology even with an image
    ae.pp.prepare(adata, morphology_key=None, n_clusters=3, clustering_method="kmeans")
    assert adata.uns["aestetik"]["prepare"]["n_morphology"] == 0
    assert "aestetik_morphology_cluster" not in adata.obs


def test_prepare_auto_leaves_out_images_of_few_pixels(monkeypatch):
    """Spots under 10 px wide: 'auto' trains without morphology, says why and how to use the image anyway."""
    logged = []
    monkeypatch.setattr(P.logg, "warning", lambda msg, *a, **k: logged.append(msg))
    adata = _small_with_image(scalef=0.05)  # 2.75 px per spot
    ae.pp.prepare(adata, n_clusters=3, clustering_method="kmeans")
    rec = adata.uns["aestetik"]["prepare"]
    assert rec["n_morphology"] == 0
    assert not rec["morphology_computed"]
    assert rec["params"]["morphology_key"] == ""
    assert rec["morphology_skipped"] == "2.8 px wide in image 'lowres' of library 's'"
    assert "X_morphology" not in adata.obsm
    assert "aestetik_morphology_cluster" not in adata.obs
    assert len(logged) == 1
    assert "Training without morphology: spots are 2.8 px wide in image 'lowres' of library 's'" in logged[0]
    assert "morphology_key='X_morphology'" in logged[0]
    # the advice works: computed explicitly, the same image is used (pp.morphology warns about the width itself)
    ae.pp.morphology(adata)
    ae.pp.prepare(adata, n_clusters=3, clustering_method="kmeans")
    rec = adata.uns["aestetik"]["prepare"]
    assert rec["n_morphology"] == adata.obsm["X_morphology"].shape[1]
    assert rec["morphology_skipped"] == ""
    assert len(logged) == 2
    assert "2.8 px wide in image 'lowres' of library 's'" in logged[1]
    assert "`aestetik.pp.prepare(morphology_key='auto')` leaves such an image out" in logged[1]


def test_prepare_auto_without_image_and_bad_scale():
    adata = make_small(morphology=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ae.pp.prepare(adata, n_clusters=3, clustering_method="kmeans")
    assert adata.uns["aestetik"]["prepare"]["n_morphology"] == 0
    assert "X_morphology" not in adata.obsm
    bad = _small_with_image()
    bad.uns["spatial"]["s"]["scalefactors"]["tissue_lowres_scalef"] = 0.5
    snap = _snapshot(bad)
    with pytest.raises(ValueError, match=r"(?s)tissue_lowres_scalef.*morphology_key=None"):
        ae.pp.prepare(bad, n_clusters=3, clustering_method="kmeans")
    _assert_unchanged(bad, snap)


def test_spots_of_few_pixels_are_reported_in_the_log(monkeypatch):
    """Spots under 10 px wide in the image get a warning naming the image, the width and the fix; wider ones none."""
    logged = []
    monkeypatch.setattr(P.logg, "warning", lambda msg, *a, **k: logged.append(msg))
    small = _adata(border=False)  # 10 full-resolution px x 0.5 = 5 px in 'hires'
    ae.pp.morphology(small, image_key="hires", spot_scale=1.0, n_components=3)
    assert len(logged) == 1
    assert "5.0 px wide in image 'hires' of library 'lib'" in logged[0]
    assert "image_key='hires'" in logged[0]
    wide = _adata(border=False)
    wide.uns["spatial"]["lib"]["scalefactors"]["spot_diameter_fullres"] = 30.0  # 15 px in 'hires'
    ae.pp.morphology(wide, image_key="hires", spot_scale=1.0, n_components=3)
    assert len(logged) == 1


def test_spatial_coherence_equals_a_plain_count():
    from aestetik._domains._pseudo_labels import COHERENCE_NEIGHBORS, spatial_coherence

    rng = np.random.default_rng(0)
    positions = rng.uniform(0, 10, (80, 2))
    samples = (np.arange(80) >= 50).astype(int)  # two samples: neighbours never cross
    labels = rng.integers(0, 3, 80)
    same = total = 0
    for s in (0, 1):
        idx = np.flatnonzero(samples == s)
        d = np.linalg.norm(positions[idx, None] - positions[None, idx], axis=-1)
        np.fill_diagonal(d, np.inf)
        nearest = np.argsort(d, axis=1, kind="stable")[:, :COHERENCE_NEIGHBORS]
        same += (labels[idx][nearest] == labels[idx][:, None]).sum()
        total += nearest.size
    chance = ((np.bincount(labels) / 80) ** 2).sum()
    assert spatial_coherence(labels, positions, samples) == pytest.approx((same / total - chance) / (1 - chance))
    bands = (positions[:, 0] > 5).astype(int)  # two halves: nearly every neighbour agrees
    assert spatial_coherence(bands, positions, samples) > 0.7
    assert abs(spatial_coherence(rng.permutation(bands), positions, samples)) < 0.3


def test_prepare_auto_leaves_out_an_image_less_coherent_than_the_transcriptome():
    adata = _small_with_image()
    image = adata.uns["spatial"]["s"]["images"]["lowres"]
    rng = np.random.default_rng(1)
    image[..., 0] = rng.integers(0, 255, size=image.shape[:2])  # colour scattered at random, not by domain
    ae.pp.prepare(adata, n_clusters=3, clustering_method="kmeans")
    rec = adata.uns["aestetik"]["prepare"]
    coherence = rec["morphology_coherence"]
    assert coherence["morphology"] < coherence["transcriptomics"]
    assert rec["n_morphology"] == 0
    assert rec["params"]["morphology_key"] == ""
    assert "less spatially coherent than the transcriptome's" in rec["morphology_skipped"]
    assert "aestetik_morphology_cluster" not in adata.obs
    assert "X_morphology" in adata.obsm  # computed, kept, to pass explicitly
    assert "morphology" not in rec["transforms"]
    # the image of the bands is kept
    kept = _small_with_image()
    ae.pp.prepare(kept, n_clusters=3, clustering_method="kmeans")
    rec = kept.uns["aestetik"]["prepare"]
    assert rec["morphology_coherence"]["morphology"] >= rec["morphology_coherence"]["transcriptomics"]
    assert rec["n_morphology"] > 0


def test_prepare_auto_warns_of_unsettled_image_pseudo_labels_only_when_it_keeps_the_image(monkeypatch):
    """Image features that 'auto' computed and then left out are no concern of the user's: their pseudo-labels do
    not warn. Kept, they warn as the transcriptome's do (every mixture warns here: the threshold is above 1; the
    coherence check is replaced by one that keeps or leaves out the image as told)."""
    from aestetik._domains import _pseudo_labels
    from aestetik.pp import _prepare

    logged = []
    monkeypatch.setattr(_pseudo_labels, "UNSETTLED_AGREEMENT", 1.01)
    monkeypatch.setattr(_pseudo_labels.logg, "warning", lambda msg, *a, **k: logged.append(msg))
    for kept in (False, True):
        reason = "" if kept else "its pseudo-labels are less spatially coherent than the transcriptome's"
        monkeypatch.setattr(_prepare, "incoherent_image", lambda *a, reason=reason: ({}, reason))
        adata = _small_with_image()
        logged.clear()
        ae.pp.prepare(adata, n_clusters=3, mixture_fallback=None)  # the mixture's pseudo-labels, which warn
        rec = adata.uns["aestetik"]["prepare"]
        assert (rec["n_morphology"] > 0) == kept
        assert sum("not settled" in m and "'X_pca'" in m for m in logged) == 1
        assert sum("not settled" in m and "'X_morphology'" in m for m in logged) == int(kept)
        assert ("morphology" in rec["pseudo_label_agreement"]) == kept

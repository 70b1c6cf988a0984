"""Histology features against plain per-patch skimage computations, and images read rectangle by rectangle."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import aestetik as ae
from aestetik._image import _histology as H
from aestetik._image._features import resolve_method
from aestetik._image._sources import ImageSource, image_source

DIAMETER = 32.0  # full-resolution pixels; the image is at full resolution


def _he_image(seed: int = 0, shape: tuple[int, int] = (200, 260), stain: float = 1.0) -> np.ndarray:
    """A pink (eosin) background with dark purple (haematoxylin) nuclei of several sizes; ``stain`` scales the dyes."""
    rng = np.random.default_rng(seed)
    img = np.empty((*shape, 3))
    img[:] = 255 - stain * np.array([25.0, 75.0, 45.0])  # eosin pink
    img += rng.normal(0, 6, size=img.shape)
    rows, cols = np.indices(shape)
    for _ in range(shape[0] * shape[1] // 350):
        r, c = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        a, b = rng.uniform(1.5, 4.5), rng.uniform(1.5, 4.5)
        inside = ((rows - r) / a) ** 2 + ((cols - c) / b) ** 2 <= 1
        img[inside] = 255 - stain * np.array([150.0, 170.0, 90.0]) + rng.normal(0, 6, size=(inside.sum(), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _patches(seed: int = 0, n: int = 6, side: int = 40) -> np.ndarray:
    img = _he_image(seed)
    rng = np.random.default_rng(seed + 1)
    starts = rng.integers(0, (img.shape[0] - side, img.shape[1] - side), size=(n, 2))
    return np.stack([img[r : r + side, c : c + side] for r, c in starts])


def test_stain_densities_are_skimage_rgb2hed_per_patch():
    from skimage.color import rgb2hed

    p = _patches()
    got = H.stain_densities(p)
    for k in range(len(p)):
        np.testing.assert_allclose(got[k], rgb2hed(p[k].astype(np.float32) / 255)[..., :2], rtol=1e-6, atol=1e-7)


def test_nuclei_statistics_equal_skimage_regionprops_per_patch():
    from skimage.measure import label, regionprops

    p = _patches(seed=3)
    scales = H.fit_histology(p, DIAMETER)
    mask = H.stain_densities(p)[..., 0] > scales.threshold
    min_area = 4
    got = H.nuclei_statistics(mask, min_area)
    for k in range(len(p)):
        regions = [r for r in regionprops(label(mask[k], connectivity=1)) if r.area >= min_area]
        pixels = mask[k].size
        assert got[k, 0] == pytest.approx(mask[k].mean())
        assert got[k, 1] == pytest.approx(len(regions) / pixels * 1000)
        assert got[k, 2] == pytest.approx(np.mean([r.area for r in regions]) / pixels)
        elong = [1 - np.sqrt(max(r.inertia_tensor_eigvals[1], 0) / r.inertia_tensor_eigvals[0]) for r in regions]
        assert got[k, 3] == pytest.approx(np.mean(elong), abs=1e-9)
    assert len(regions) > 3  # the patches hold nuclei to count
    empty = H.nuclei_statistics(np.zeros((2, 5, 5), dtype=bool), 2)
    np.testing.assert_array_equal(empty, 0)


@pytest.mark.parametrize("distance", [1, 3, 6])
def test_texture_statistics_equal_skimage_glcm(distance):
    from skimage.feature import graycomatrix, graycoprops

    grey = np.random.default_rng(distance).integers(0, H.LEVELS, size=(4, 17, 23)).astype(np.uint8)
    grey[1, :, :10] = 7  # a flat part
    grey[2] = 5  # flat: correlation 1
    got = H.texture_statistics(grey, (distance,))
    angles = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    for k in range(len(grey)):
        glcm = graycomatrix(grey[k], [distance], angles, levels=H.LEVELS)
        expected = [graycoprops(glcm, prop)[0].mean() for prop in ("contrast", "homogeneity", "correlation", "ASM")]
        np.testing.assert_allclose(got[k], expected, rtol=1e-9, atol=1e-12)
    assert got[2, 2] == 1.0
    np.testing.assert_array_equal(H.texture_statistics(grey[:, :3, :3], (5,))[:, 2], 1.0)  # no pairs: correlation 1


def test_fit_histology_follows_the_slide():
    from skimage.filters import threshold_otsu

    p = _patches()
    scales = H.fit_histology(p, DIAMETER)
    h = H.stain_densities(p)[..., 0].ravel()
    lo, hi = np.quantile(h, (0.01, 0.99))
    assert scales.threshold == pytest.approx(threshold_otsu(np.clip(h, lo, hi)))
    assert scales.h_max == pytest.approx(hi)
    assert scales.distances == (1, 2, 4)  # 1/32, 1/16, 1/8 of 32 px
    assert H.fit_histology(p, 128.0).distances == (4, 8, 16)
    assert H.fit_histology(p, 128.0).min_area == 10  # (128 / 40)^2 rounded
    # a paler stain: a lower nuclear threshold, about the same nuclear fraction
    pale = _patches(seed=0)
    pale = (255 - (255 - pale.astype(float)) * 0.6).astype(np.uint8)
    pale_scales = H.fit_histology(pale, DIAMETER)
    assert pale_scales.threshold < scales.threshold
    frac = (H.stain_densities(p)[..., 0] > scales.threshold).mean()
    pale_frac = (H.stain_densities(pale)[..., 0] > pale_scales.threshold).mean()
    assert abs(frac - pale_frac) < 0.05
    # the nuclei are found: their pixels are about the drawn fraction, far from all or none
    assert 0.05 < frac < 0.4


def _adata(img: np.ndarray, *, spacing: float = 40.0) -> ad.AnnData:
    h, w = img.shape[:2]
    x, y = np.meshgrid(np.arange(spacing / 2, w, spacing), np.arange(spacing / 2, h, spacing))
    xy = np.c_[x.ravel(), y.ravel()]
    adata = ad.AnnData(X=np.random.default_rng(0).poisson(1.0, size=(len(xy), 5)).astype(np.float32))
    adata.obsm["spatial"] = xy
    adata.uns["spatial"] = {
        "lib": {
            "images": {"hires": img},
            "scalefactors": {"tissue_hires_scalef": 1.0, "spot_diameter_fullres": DIAMETER},
        }
    }
    return adata


def test_morphology_histology_writes_names_and_scales():
    adata = _adata(_he_image())
    ae.pp.morphology(adata, method="histology", spot_scale=1.0, n_components=5)
    rec = adata.uns["morphology"]
    assert rec["n_features"] == 26
    assert list(rec["feature_names"]) == H.histology_names()
    lib = rec["libraries"]["lib"]
    assert lib["patch_size"] == 32
    np.testing.assert_array_equal(lib["histology_distances"], [1, 2, 4])
    assert lib["histology_min_area"] == 2
    assert lib["histology_threshold"] > 0
    assert adata.obsm["X_morphology"].shape == (adata.n_obs, 5)
    # the method's features are those of the engine on the same patches with the slide's fitted scales
    method = resolve_method(["summary", "histology"])
    assert method.fit is not None
    assert len(method.names) == 15 + 26
    with pytest.raises(RuntimeError, match=r"Method\.fit"):
        method.fn(_patches())


def test_morphology_histology_two_slides_fit_their_own_threshold():
    dark, pale = _he_image(seed=1, stain=1.0), _he_image(seed=2, stain=0.6)
    a, b = _adata(dark), _adata(pale)
    b.uns["spatial"] = {"other": b.uns["spatial"]["lib"]}
    a.obs["library"], b.obs["library"] = "lib", "other"
    both = ad.concat([a, b], uns_merge="unique", index_unique="-")
    ae.pp.morphology(both, method="histology", library_key="library", spot_scale=1.0)
    libs = both.uns["morphology"]["libraries"]
    assert libs["other"]["histology_threshold"] < libs["lib"]["histology_threshold"]


class _Counting:
    """An array that records the rectangles read from it (a stand-in for a lazily read slide)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.reads = data, []
        self.shape, self.ndim, self.dtype = data.shape, data.ndim, data.dtype

    def __getitem__(self, key):
        out = self.data[key]
        self.reads.append(out.shape[0] * out.shape[1])
        return out


def _features(adata, **kwargs) -> np.ndarray:
    return ae.pp.morphology(adata, method=["summary", "histology"], spot_scale=1.0, copy=True, **kwargs).obsm[
        "X_morphology"
    ]


def test_image_read_band_by_band_gives_the_same_features():
    img = _he_image(shape=(400, 300))
    adata = _adata(img)
    expected = _features(adata)
    lazy = _Counting(img)
    got = _features(adata, img=lazy, batch_size=8)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    whole = img.shape[0] * img.shape[1]
    assert max(lazy.reads) < whole / 3  # never the whole slide at once
    assert sum(lazy.reads) < 2 * whole  # each pixel read about once (plus the fit sample)


def test_image_files_and_lazy_arrays(tmp_path):
    import dask.array as da
    import tifffile
    import xarray as xr
    from PIL import Image

    img = _he_image(shape=(300, 260))
    adata = _adata(img)
    expected = _features(adata)
    tiled = tmp_path / "tiled.tif"
    tifffile.imwrite(tiled, img, tile=(64, 64))
    planar = tmp_path / "planar.tiff"
    tifffile.imwrite(planar, np.moveaxis(img, -1, 0), photometric="rgb", planarconfig="separate")
    png = tmp_path / "slide.png"
    Image.fromarray(img).save(png)
    chunks = da.from_array(img, chunks=(64, 64, 3))
    element = xr.DataArray(np.moveaxis(img, -1, 0), dims=("c", "y", "x"))
    for source in (str(tiled), planar, png, chunks, element):
        np.testing.assert_allclose(_features(adata, img=source), expected, rtol=1e-5, atol=1e-5)
    rec = ae.pp.morphology(adata, img=tiled, spot_scale=1.0, copy=True).uns["morphology"]
    assert rec["params"]["image_file"] == str(tiled)
    assert not rec["params"]["from_image_container"]
    assert rec["libraries"]["lib"]["image_key"] == "file"


def test_image_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="did not find the image file"):
        image_source(tmp_path / "missing.tif", where="`img`")
    with pytest.raises(ValueError, match="expected an \\(height, width, 3\\)"):
        ImageSource(np.zeros((2, 3, 4, 5)), where="`img`")
    with pytest.raises(ValueError, match="pass uint8, or floats in \\[0, 1\\]"):
        image_source(np.full((10, 10, 3), 2.0), where="`img`")
    lazy = ImageSource(np.full((10, 10, 3), 2.0), where="`img`")  # lazily read: checked rectangle by rectangle
    with pytest.raises(ValueError, match="`img` has dtype float64"):
        lazy.read(0, 5, 0, 5)


def test_image_file_in_other_pixels_names_the_fix(tmp_path):
    import tifffile

    img = _he_image(shape=(120, 160))
    adata = _adata(img)
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, img[::2, ::2])  # half the resolution of obsm['spatial']
    with pytest.raises(ValueError, match=r"the scale of `img` \(1: full-resolution pixels\)"):
        ae.pp.morphology(adata, img=path, spot_scale=1.0)
    assert "morphology" not in adata.uns

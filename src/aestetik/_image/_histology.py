"""Histology features of H&E patches: stain densities, nuclei and texture at several scales.

Colour deconvolution (:func:`skimage.color.rgb2hed`, Ruifrok and Johnston's H&E-DAB stain vectors) turns every
pixel into haematoxylin (nuclei) and eosin (cytoplasm, stroma) densities. Nuclei are the connected pixels whose
haematoxylin density is above one threshold per slide (Otsu's, of a sample of its patches). Texture is the
grey-level co-occurrence of the haematoxylin density (32 levels) at three distances that follow the spot's size
in pixels.
Each scale (the threshold, the distances, the smallest nucleus) comes from the slide itself: :func:`fit_histology`
sets them from a sample of patches and the spot diameter, and :func:`histology_features` applies them to every
batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._glcm import glcm_pairs, glcm_props

_QUANTILES = (0.1, 0.5, 0.9)
#: Texture distances as fractions of the spot diameter in pixels (at least 1 px each).
TEXTURE_FRACTIONS = (1 / 32, 1 / 16, 1 / 8)
#: Smallest nucleus, as a fraction of the spot diameter (its side in pixels, at least 2 px in area).
NUCLEUS_FRACTION = 1 / 40
_TEXTURE_PROPS = ("contrast", "homogeneity", "correlation", "ASM")
_PROP_INDEX = (0, 2, 3, 4)  # their columns among :func:`glcm_props`' five
#: Grey levels of the haematoxylin density for the texture (its 99th percentile of the slide is the top level).
LEVELS = 32
_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)  # skimage's graycomatrix offsets: (round(d sin a), round(d cos a))
_LABEL_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_LABEL_STRUCTURE[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]  # 4-connected within a patch, never across patches


@dataclass(frozen=True)
class HistologyScales:
    """What :func:`fit_histology` sets from a slide: nuclear threshold, density ranges, distances, smallest nucleus."""

    threshold: float  # haematoxylin density above which a pixel is nuclear
    h_max: float  # haematoxylin density at the top of the texture's grey levels (99th percentile)
    distances: tuple[int, ...]  # texture distances in pixels, one per :data:`TEXTURE_FRACTIONS`
    min_area: int  # pixels of the smallest nucleus counted


def stain_densities(p: np.ndarray) -> np.ndarray:
    """(..., h, w, 2) haematoxylin and eosin densities of RGB patches (uint8, or floats in [0, 1])."""
    from skimage.color import rgb2hed

    x = p.astype(np.float32) / 255 if p.dtype == np.uint8 else p.astype(np.float32)
    return rgb2hed(x, channel_axis=-1)[..., :2]


def fit_histology(sample: np.ndarray, spot_pixels: float) -> HistologyScales:
    """The scales of one slide from a sample of its patches (b, h, w, 3) and the spot diameter in its pixels."""
    from skimage.filters import threshold_otsu

    step = max(1, 2**20 // max(1, sample.shape[1] * sample.shape[2]))  # about a million pixels at a time
    h = np.concatenate([stain_densities(sample[k : k + step])[..., 0].ravel() for k in range(0, len(sample), step)])
    lo, hi = np.quantile(h, (0.01, 0.99))
    threshold = float(threshold_otsu(np.clip(h, lo, hi))) if hi > lo else float(hi)
    distances = tuple(max(1, round(spot_pixels * f)) for f in TEXTURE_FRACTIONS)
    min_area = max(2, round((spot_pixels * NUCLEUS_FRACTION) ** 2))
    return HistologyScales(threshold, float(max(hi, 1e-6)), distances, int(min_area))


def histology_names() -> list[str]:
    """Names of the columns of :func:`histology_features` (texture scale ``k``: the ``k``-th of the distances)."""
    names = []
    for stain in ("haematoxylin", "eosin"):
        names += [f"{stain}_mean", f"{stain}_std"] + [f"{stain}_quantile-{q}" for q in _QUANTILES]
    names += ["nuclear_fraction", "nuclei_per_1000px", "nucleus_area_fraction", "nucleus_elongation"]
    for k in range(1, len(TEXTURE_FRACTIONS) + 1):
        names += [f"texture_haematoxylin_{p}_scale-{k}" for p in _TEXTURE_PROPS]
    return names


def _stain_statistics(density: np.ndarray) -> list[np.ndarray]:
    """Mean, std and quantiles 0.1/0.5/0.9 per patch of one stain's densities (b, pixels)."""
    q = np.quantile(density, _QUANTILES, axis=1).T
    return [density.mean(axis=1)[:, None], density.std(axis=1)[:, None], q]


def nuclei_statistics(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Per patch of the nuclear ``mask`` (b, h, w): nuclear fraction, nuclei per 1000 px, mean area, elongation.

    Nuclei are the 4-connected components of at least ``min_area`` pixels; the area is a fraction of the patch,
    the elongation ``1 - sqrt(l2 / l1)`` of the eigenvalues of a nucleus' pixel covariance (0 for a disc).
    """
    from scipy import ndimage

    b, h, w = mask.shape
    labels, n = ndimage.label(mask, structure=_LABEL_STRUCTURE)
    flat = labels.ravel()
    size = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    patch = np.zeros(n, dtype=np.int64)
    on = flat > 0
    patch[flat[on] - 1] = np.repeat(np.arange(b), h * w)[on]
    rows, cols = np.indices((h, w), dtype=np.float64)
    rows, cols = np.tile(rows.ravel(), b), np.tile(cols.ravel(), b)

    def mean(v: np.ndarray) -> np.ndarray:
        return np.bincount(flat, weights=v, minlength=n + 1)[1:] / np.maximum(size, 1)

    mr, mc = mean(rows), mean(cols)
    vr, vc, cv = mean(rows * rows) - mr**2, mean(cols * cols) - mc**2, mean(rows * cols) - mr * mc
    half = (vr + vc) / 2
    spread = np.sqrt(np.maximum(half**2 - (vr * vc - cv**2), 0))
    l1, l2 = half + spread, np.maximum(half - spread, 0)
    elongation = np.where(l1 > 0, 1 - np.sqrt(l2 / np.where(l1 > 0, l1, 1)), 0.0)
    kept = size >= min_area
    count = np.bincount(patch[kept], minlength=b).astype(np.float64)
    area = np.bincount(patch[kept], weights=size[kept], minlength=b) / np.maximum(count, 1)
    elong = np.bincount(patch[kept], weights=elongation[kept], minlength=b) / np.maximum(count, 1)
    pixels = h * w
    return np.stack([mask.reshape(b, -1).mean(axis=1), count / pixels * 1000, area / pixels, elong], axis=1)


def texture_statistics(grey: np.ndarray, distances: tuple[int, ...], levels: int = LEVELS) -> np.ndarray:
    """Per patch of ``grey`` (b, h, w) levels ``0..levels-1``: GLCM contrast, homogeneity, correlation and ASM.

    skimage's ``graycoprops`` of ``graycomatrix(levels=levels)`` at each distance and the angles 0, 45, 90 and
    135 degrees (:func:`aestetik._image._glcm.glcm_props`), averaged over the angles. A patch without pairs at
    a distance (not smaller than the patch) gets 0, and correlation 1.
    """
    g = grey.astype(np.float64)
    out = []
    for d in distances:
        props = [
            glcm_props(*glcm_pairs(g, round(np.sin(a) * d), round(np.cos(a) * d)), levels)[:, _PROP_INDEX]
            for a in _ANGLES
        ]
        out.append(np.mean(props, axis=0))
    return np.concatenate(out, axis=1)


def histology_features(p: np.ndarray, scales: HistologyScales) -> np.ndarray:
    """(b, f) histology features of RGB patches ``p`` (b, h, w, 3) with the scales of their slide.

    Columns (:func:`histology_names`): per stain the mean, std and quantiles 0.1/0.5/0.9 of its density; the
    nuclei (:func:`nuclei_statistics`); the haematoxylin texture (:func:`texture_statistics`).
    """
    b = p.shape[0]
    density = stain_densities(p)
    h = density[..., 0]
    stats = _stain_statistics(h.reshape(b, -1)) + _stain_statistics(density[..., 1].reshape(b, -1))
    nuclei = nuclei_statistics(h > scales.threshold, scales.min_area)
    grey = np.minimum(np.floor(np.clip(h, 0, None) / scales.h_max * LEVELS), LEVELS - 1).astype(np.uint8)
    texture = texture_statistics(grey, scales.distances)
    return np.concatenate([*stats, nuclei, texture], axis=1)

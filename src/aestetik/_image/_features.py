"""Image features of tissue patches: patch geometry and squidpy's summary / histogram / texture features.

The features equal squidpy's ``ImageContainer.features_*`` (tested against them) and are computed for a batch of
patches at once; :func:`resolve_method` also accepts a callable or a ``torch.nn.Module`` for deep features.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from aestetik._validation import assert_choice

from ._glcm import PROPS as _PROPS
from ._glcm import glcm_pairs, glcm_props

FEATURES = ("summary", "histogram", "texture", "histology")
"""Names of the built-in image features: squidpy's three (vectorised, equal to squidpy's) and ``'histology'``
(:mod:`aestetik._image._histology`: H&E stain densities, nuclei and texture at the spot's scales)."""
_QUANTILES = (0.9, 0.5, 0.1)  # squidpy's ``features_summary`` defaults
_BINS = 10  # squidpy's ``features_histogram`` default
_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)  # at distance 1
_OFFSETS = tuple((round(np.sin(a)), round(np.cos(a))) for a in _ANGLES)  # (row, col) step, as skimage's graycomatrix
INSIDE, CLIPPED, OUTSIDE = 0, 1, 2
"""Patch status of :func:`patch_boxes`: inside the image, clipped by its border, entirely outside."""


def patch_side(diameter: float, scalef: float, spot_scale: float) -> int:
    """Side of the square patch in image pixels: ``diameter * scalef * spot_scale`` rounded half up, at least 1."""
    return max(1, int(np.floor(diameter * scalef * spot_scale + 0.5)))


def patch_boxes(centres: np.ndarray, side: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """First (row, col) pixel of every patch and its status (0 inside, 1 clipped by the border, 2 outside)."""
    start = np.floor(centres - side / 2 + 0.5).astype(np.int64)
    stop = start + side
    bounds = np.asarray(shape[:2])
    inside = (start >= 0).all(axis=1) & (stop <= bounds).all(axis=1)
    outside = (stop <= 0).any(axis=1) | (start >= bounds).any(axis=1)
    return start, np.where(inside, INSIDE, np.where(outside, OUTSIDE, CLIPPED))


def gather_patches(
    image: np.ndarray,
    start: np.ndarray,
    side: int,
    *,
    shape: tuple[int, int] | None = None,
    offset: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """(b, side, side, 3) patches; pixels beyond the border repeat the nearest border pixel.

    ``image`` may be a rectangle of a larger image of ``shape`` whose first pixel is at ``offset``, with ``start``
    relative to that pixel; the rectangle must hold every patch pixel inside the larger image.
    """
    h, w = image.shape[:2] if shape is None else shape
    offsets = np.arange(side)
    rows = np.clip(start[:, :1] + offset[0] + offsets, 0, h - 1) - offset[0]
    cols = np.clip(start[:, 1:] + offset[1] + offsets, 0, w - 1) - offset[1]
    return image[rows[:, :, None], cols[:, None, :]]


def summary_features(p: np.ndarray) -> np.ndarray:
    """Per patch of ``p`` (b, h, w, c), squidpy's ``features_summary``: per channel quantiles 0.9/0.5/0.1, mean, std."""
    x = p.reshape(p.shape[0], -1, p.shape[-1])
    q = np.moveaxis(np.quantile(x, _QUANTILES, axis=1), 0, -1)
    return np.concatenate([q, x.mean(axis=1)[..., None], x.std(axis=1)[..., None]], axis=2).reshape(len(p), -1)


def histogram_features(p: np.ndarray) -> np.ndarray:
    """Per patch, squidpy's ``features_histogram`` (10 bins per channel over the dtype range) as pixel fractions."""
    b, c = p.shape[0], p.shape[-1]
    hi = 255 if p.dtype == np.uint8 else 1.0
    edges = np.linspace(0, hi, _BINS + 1)
    idx = np.clip(np.searchsorted(edges, p.reshape(b, -1, c), side="right") - 1, 0, _BINS - 1)
    codes = (np.arange(b)[:, None, None] * c + np.arange(c)) * _BINS + idx
    counts = np.bincount(codes.ravel(), minlength=b * c * _BINS).reshape(b, c * _BINS)
    return counts / (p.shape[1] * p.shape[2])


def texture_features(p: np.ndarray) -> np.ndarray:
    """Per patch, squidpy's ``features_texture`` (GLCM at distance 1, 4 angles, 256 levels), vectorised."""
    if p.dtype != np.uint8:
        from skimage.util import img_as_ubyte

        p = img_as_ubyte(p)
    b, c = p.shape[0], p.shape[-1]
    g = np.moveaxis(p, -1, 1).astype(np.float64)
    out = np.empty((b, c, len(_PROPS), len(_OFFSETS)))
    for a, (dr, dc) in enumerate(_OFFSETS):
        out[..., a] = glcm_props(*glcm_pairs(g, dr, dc))
    return out.reshape(b, -1)


class Method(NamedTuple):
    """A resolved ``method`` of :func:`aestetik.pp.morphology`."""

    fn: Callable[[np.ndarray], np.ndarray]  # features (b, f) of a batch of (b, h, w, 3) patches
    what: str  # description, for the record and messages
    exact: bool  # whether clipped patches are cut to the part inside the image (else padded by border pixels)
    names: list[str] | None  # feature names, when known
    #: For features whose scales come from the slide: ``fit(sample, spot_pixels)`` -> (the slide's feature
    #: function, its scales for the record), from a sample of its patches and the spot diameter in its pixels.
    fit: Callable[[np.ndarray, float], tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]] | None = None


_FUNCTIONS = {"summary": summary_features, "histogram": histogram_features, "texture": texture_features}


def _fitted(names: Sequence[str]) -> Callable[[np.ndarray, float], tuple[Callable, dict[str, Any]]]:
    """``Method.fit`` of built-in features that include ``'histology'``: its scales are set per slide."""
    from ._histology import fit_histology, histology_features

    def fit(sample: np.ndarray, spot_pixels: float) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
        scales = fit_histology(sample, spot_pixels)
        fns = [_FUNCTIONS[n] if n != "histology" else (lambda p: histology_features(p, scales)) for n in names]
        record = {
            "histology_threshold": scales.threshold,
            "histology_h_max": scales.h_max,
            "histology_distances": np.asarray(scales.distances, dtype=np.int64),
            "histology_min_area": scales.min_area,
        }
        return (lambda p: np.concatenate([f(p) for f in fns], axis=1)), record

    return fit


def _feature_names(names: Sequence[str], n_channels: int = 3) -> list[str]:
    """The feature names of squidpy, in the order of the columns."""
    out = []
    for name in names:
        for ch in range(n_channels):
            if name == "summary":
                out += [f"summary_ch-{ch}_quantile-{q}" for q in _QUANTILES] + [
                    f"summary_ch-{ch}_{s}" for s in ("mean", "std")
                ]
            elif name == "histogram":
                out += [f"histogram_ch-{ch}_bin-{i}" for i in range(_BINS)]
            elif name == "texture":
                out += [f"texture_ch-{ch}_{p}_dist-1_angle-{a:.2f}" for p in _PROPS for a in _ANGLES]
        if name == "histology":
            from ._histology import histology_names

            out += histology_names()
    return out


def resolve_method(method: Any) -> Method:
    """The :class:`Method` of ``method``: feature function of a batch of patches, description, exactness, names."""
    if isinstance(method, str) or (
        isinstance(method, Sequence) and not isinstance(method, str) and all(isinstance(m, str) for m in method)
    ):
        names = [method] if isinstance(method, str) else list(method)
        if not names or len(set(names)) != len(names):
            msg = f"`method` must name distinct features of {FEATURES}, got {method!r}."
            raise ValueError(msg)
        for name in names:
            assert_choice(name, FEATURES, name="method")
        if "histology" in names:
            fit = _fitted(names)
            return Method(_unfitted, "+".join(names), exact=True, names=_feature_names(names), fit=fit)
        fns = [_FUNCTIONS[n] for n in names]
        return Method(
            lambda p: np.concatenate([f(p) for f in fns], axis=1),
            "+".join(names),
            exact=True,
            names=_feature_names(names),
        )
    torch = sys.modules.get("torch")  # a torch.nn.Module exists only once torch is imported; spare the import
    if torch is not None and isinstance(method, torch.nn.Module):
        return Method(_module_features(method), f"torch.nn.Module:{type(method).__name__}", exact=False, names=None)
    if callable(method):
        return Method(method, f"callable:{getattr(method, '__name__', type(method).__name__)}", exact=False, names=None)
    msg = f"`method` must be one of {FEATURES}, a list of them, a callable or a torch.nn.Module; got {type(method).__name__}."
    raise TypeError(msg)


def _unfitted(p: np.ndarray) -> np.ndarray:
    msg = "These features set their scales per slide: call `Method.fit` first."
    raise RuntimeError(msg)


def _module_features(module: Any) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    first = next(iter([*module.parameters(), *module.buffers()]), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32

    def features(p: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(p)).to(device).permute(0, 3, 1, 2)
        x = x.to(dtype) / 255 if p.dtype == np.uint8 else x.to(dtype)
        was_training = module.training
        module.eval()
        try:
            with torch.inference_mode():
                out = module(x)
        finally:
            module.train(was_training)
        return out.reshape(len(p), -1).float().cpu().numpy()

    return features


def call_method(fn: Callable[[np.ndarray], np.ndarray], p: np.ndarray, *, what: str) -> np.ndarray:
    """``fn(p)`` as float64, checked to be a numeric (b, f) array of the ``b`` patches ``p``."""
    out = np.asarray(fn(p))
    if out.ndim != 2 or out.shape[0] != len(p) or out.shape[1] == 0 or not np.issubdtype(out.dtype, np.number):
        msg = f"`method` ({what}) returned shape {out.shape} ({out.dtype}) for {len(p)} patches; expected a numeric (b, f) array, f >= 1."
        raise ValueError(msg)
    return out.astype(np.float64)

"""Morphology on arrays: a library's image and spot centres, checks, features per patch, imputation and PCA.

:func:`embed_patches` computes everything :func:`aestetik.pp.morphology` writes except its ``params``, from the
:class:`Library` objects that ``pp`` resolves from an AnnData. Messages name the AnnData fields the arrays came
from (``spatial_key``, the ``obs`` column of the outside flags), so that they say what to fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scanpy import logging as logg

from ._features import CLIPPED, INSIDE, OUTSIDE, Method, call_method, gather_patches, patch_boxes, patch_side
from ._sources import ImageSource

_MAX_OUTSIDE = 0.5  # above this fraction of spot centres outside the image the scale factors are wrong
_MIN_SPACING = 0.5  # nearest-neighbour spacing / spot diameter below which coordinates look already scaled
#: Spot diameter in image pixels below which the patches show colour, not cells: a nucleus (about 10 µm of a
#: 55 µm Visium spot) is then under 2 pixels wide. ``pp.prepare(morphology_key='auto')`` computes no morphology
#: from such an image, and ``pp.morphology`` warns.
FEW_PIXELS = 10.0


@dataclass
class Library:
    """The tissue image of one library and its spots."""

    name: str
    spots: np.ndarray  # indices of its spots among all spots (rows of the AnnData)
    image: ImageSource  # (h, w, 3), uint8 or float in [0, 1], read one rectangle at a time
    image_key: str
    scalef: float
    scalef_where: str  # where the scale factor came from, for messages
    diameter: float  # spot diameter in full-resolution pixels
    centres: np.ndarray  # (m, 2) spot centres (row, col) in image pixels


@dataclass
class PatchEmbedding:
    """What :func:`embed_patches` computes: the embedding, the outside flags and the record without ``params``."""

    embedding: np.ndarray  # (n, k) float32
    outside: np.ndarray  # (n,) bool
    record: dict[str, Any]  # ``n_features`` ... ``libraries``, in the order of ``uns['morphology']`` after ``params``


def positive(value: Any, *, where: str) -> float:
    """``value`` as a float; raise naming ``where`` unless it is a finite positive number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        msg = f"{where} must be a positive number, got {value!r}."
        raise ValueError(msg)
    return value


def check_scale(lib: Library, xy: np.ndarray, *, spatial_key: str) -> None:
    """Raise when the coordinates ``xy`` (full-resolution), the spot diameter and the scale factor cannot belong to this image."""
    where = f"`adata.uns[{spatial_key!r}][{lib.name!r}]['scalefactors']['spot_diameter_fullres']`"
    if len(xy) >= 2:
        from scipy.spatial import cKDTree

        spacing = float(np.median(cKDTree(xy).query(xy, k=2)[0][:, 1]))
        if spacing < _MIN_SPACING * lib.diameter:
            msg = (
                f"Neighbouring spots of library {lib.name!r} are {spacing:.3g} px apart in `adata.obsm[{spatial_key!r}]` "
                f"(median), less than half the spot diameter {where} = {lib.diameter:.4g} px, so the coordinates look "
                f"already scaled to an image. Store full-resolution pixel coordinates in `adata.obsm[{spatial_key!r}]` "
                "(divide scaled ones by their scale factor), or fix 'spot_diameter_fullres'."
            )
            raise ValueError(msg)
    h, w = lib.image.shape[:2]
    r, c = lib.centres.T
    outside = (r < 0) | (r >= h) | (c < 0) | (c >= w)
    if outside.mean() > _MAX_OUTSIDE:
        fit = min(w / max(xy[:, 0].max(), 1e-12), h / max(xy[:, 1].max(), 1e-12))
        msg = (
            f"{int(outside.sum())} of {len(r)} spot centres of library {lib.name!r} fall outside its {lib.image_key!r} image "
            f"({h} x {w} px) after scaling `adata.obsm[{spatial_key!r}]` (x {xy[:, 0].min():.4g}..{xy[:, 0].max():.4g}, "
            f"y {xy[:, 1].min():.4g}..{xy[:, 1].max():.4g}) by {lib.scalef_where} = {lib.scalef:.4g} (scaled x "
            f"{c.min():.4g}..{c.max():.4g}, y {r.min():.4g}..{r.max():.4g}). The coordinates must be full-resolution "
            f"pixels (x, y) and the scale factor must map them onto this image (at most {fit:.4g} keeps every spot "
            "inside); fix the scale factor, the coordinates or `image_key`."
        )
        raise ValueError(msg)


#: Pixels per call of the feature function, at most: large patches (a full-resolution slide) go in smaller batches.
BATCH_PIXELS = 2**20
#: Patches of a slide sampled to set the scales of features that follow the slide (``Method.fit``).
FIT_SAMPLE = 64


def _read_patches(image: ImageSource, start: np.ndarray, side: int) -> np.ndarray:
    """(b, side, side, 3) patches of ``image`` from one read of their bounding box (border pixels repeated)."""
    h, w = image.shape[:2]
    r0, c0 = np.clip(start.min(axis=0), 0, (h - 1, w - 1))
    r1, c1 = np.clip(start.max(axis=0) + side, (r0 + 1, c0 + 1), (h, w))
    return gather_patches(
        image.read(int(r0), int(r1), int(c0), int(c1)), start - (r0, c0), side, shape=(h, w), offset=(r0, c0)
    )


def _fit_sample(lib: Library, start: np.ndarray, status: np.ndarray, side: int) -> np.ndarray:
    """Up to :data:`FIT_SAMPLE` patches inside the image, evenly spaced in spot order."""
    inside = np.flatnonzero(status == INSIDE)
    if inside.size == 0:
        inside = np.flatnonzero(status != OUTSIDE)
    pick = inside[np.unique(np.linspace(0, inside.size - 1, min(FIT_SAMPLE, inside.size)).round().astype(int))]
    return np.concatenate([_read_patches(lib.image, start[[i]], side) for i in pick])


def _library_features(
    lib: Library, side: int, method: Method, *, batch_size: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Raw features (m, f), NaN rows for outside spots, the patch status of every spot of ``lib``, and the scales.

    Batches of nearby spots (ordered by row band, then column; at most ``batch_size`` patches and
    :data:`BATCH_PIXELS` pixels) are cut from one read of their bounding box, so a lazily read slide is read
    once, band by band. Features whose scales follow the slide (``method.fit``) fit
    them to a sample of its patches first; the scales are returned for the record.
    """
    h, w = lib.image.shape[:2]
    start, status = patch_boxes(lib.centres, side, (h, w))
    fn, scales = method.fn, {}
    if method.fit is not None and (status != OUTSIDE).any():
        fn, scales = method.fit(_fit_sample(lib, start, status, side), spot_pixels(lib))
    batched = np.flatnonzero(status == INSIDE) if method.exact else np.flatnonzero(status != OUTSIDE)
    batched = batched[np.lexsort((start[batched, 1], start[batched, 0] // max(side, 1)))]
    rows: dict[int, np.ndarray] = {}
    per_batch = max(1, min(batch_size, BATCH_PIXELS // (side * side)))
    for k in range(0, len(batched), per_batch):
        sel = batched[k : k + per_batch]
        patches = _read_patches(lib.image, start[sel], side)
        rows.update(zip(sel.tolist(), call_method(fn, patches, what=method.what), strict=True))
    if method.exact:  # only the part of the patch inside the image
        for i in np.flatnonzero(status == CLIPPED).tolist():
            (r0, c0), (r1, c1) = np.maximum(start[i], 0), np.minimum(start[i] + side, (h, w))
            rows[i] = call_method(fn, lib.image.read(int(r0), int(r1), int(c0), int(c1))[None], what=method.what)[0]
    n_features = len(next(iter(rows.values())))
    if any(len(v) != n_features for v in rows.values()):
        msg = f"`method` ({method.what}) returned a different number of features for different batches."
        raise ValueError(msg)
    out = np.full((len(status), n_features), np.nan)
    for i, v in rows.items():
        out[i] = v
    return out, status, scales


def _reduce(
    x: np.ndarray, computed: np.ndarray, n_components: int, random_state: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Impute outside spots with the column median, standardise and PCA (fitted on the computed spots).

    Also returns the transform (:func:`apply_transform` applies it to the features of other spots).
    """
    from sklearn.decomposition import PCA

    fit = x[computed]
    if not np.all(np.isfinite(fit)):
        msg = "The image features contain NaN or infinite values; check `method`."
        raise ValueError(msg)
    median = np.median(fit, axis=0)
    x = np.where(computed[:, None], x, median)
    sd = fit.std(axis=0)
    keep = sd > 0
    k = min(n_components, int(keep.sum()), int(computed.sum()) - 1)
    if k < 1:
        msg = f"The image features are constant over the {int(computed.sum())} spot(s) inside the image; nothing to reduce. Check the image and the spot coordinates."
        raise ValueError(msg)
    mean = fit[:, keep].mean(axis=0)
    z = (x[:, keep] - mean) / sd[keep]
    pca = PCA(n_components=k, random_state=random_state).fit(z[computed])
    transform = {
        "median": median.astype(np.float64),
        "keep": keep,
        "mean": mean.astype(np.float64),
        "sd": sd[keep].astype(np.float64),
        "pca_mean": pca.mean_.astype(np.float64),
        "components": pca.components_.astype(np.float64),
    }
    return pca.transform(z).astype(np.float32), pca.explained_variance_ratio_.astype(np.float64), transform


def apply_transform(x: np.ndarray, computed: np.ndarray, transform: dict[str, np.ndarray]) -> np.ndarray:
    """The morphology PCs of raw features ``x`` (n, f) with a stored transform of :func:`_reduce` (training spots').

    Spots not ``computed`` (patch outside the image) get the training median; then the training standardisation
    and PCA: ``((x[:, keep] - mean) / sd - pca_mean) @ components.T``.
    """
    median = np.asarray(transform["median"], dtype=np.float64)
    if x.shape[1] != median.shape[0]:
        msg = (
            f"The image features have {x.shape[1]} columns but the reference morphology transform expects "
            f"{median.shape[0]}; compute them with the reference's `method`."
        )
        raise ValueError(msg)
    x = np.where(computed[:, None], x, median)
    if not np.all(np.isfinite(x)):
        msg = "The image features contain NaN or infinite values; check `method`."
        raise ValueError(msg)
    keep = np.asarray(transform["keep"], dtype=bool)
    z = (x[:, keep] - np.asarray(transform["mean"])) / np.asarray(transform["sd"])
    return ((z - np.asarray(transform["pca_mean"])) @ np.asarray(transform["components"]).T).astype(np.float32)


def spot_pixels(lib: Library) -> float:
    """The spot diameter of ``lib`` in pixels of its image."""
    return float(lib.diameter * lib.scalef)


def _warn_few_pixels(lib: Library) -> None:
    """Log a warning when the spots of ``lib`` are under :data:`FEW_PIXELS` pixels wide in its image."""
    pixels = spot_pixels(lib)
    if pixels < FEW_PIXELS:
        logg.warning(
            f"Spots are {pixels:.1f} px wide in image {lib.image_key!r} of library {lib.name!r}, under "
            f"{FEW_PIXELS:.0f} px: the patches show the tissue's colour rather than cells, and "
            "`aestetik.pp.prepare(morphology_key='auto')` leaves such an image out. For features of cells, pass a "
            "higher-resolution image (`image_key='hires'`, or the full-resolution image as a squidpy `ImageContainer` "
            "through `img`)."
        )


def embed_patches(
    libraries: Sequence[Library],
    n_obs: int,
    method: Method,
    *,
    spot_scale: float,
    n_components: int,
    batch_size: int,
    random_state: int,
    outside_column: str,
    stacklevel: int,
    transform: dict[str, np.ndarray] | None = None,
) -> PatchEmbedding:
    """Features of every spot's patch in its library's image, imputed, standardised and reduced by PCA together.

    ``n_obs`` spots in all, each in the ``spots`` of one library. Warns (``stacklevel`` counted from this function)
    when patches lie outside the image (flagged in ``adata.obs[outside_column]``) or are clipped by its border.
    With ``transform`` (of a reference section, see :func:`apply_transform`) the features are projected with it
    instead of fitting a new standardisation and PCA.
    """
    x: np.ndarray | None = None
    status = np.zeros(n_obs, dtype=np.int8)
    per_library = {}
    for lib in libraries:
        side = patch_side(lib.diameter, lib.scalef, spot_scale)
        feats, st, scales = _library_features(lib, side, method, batch_size=batch_size)
        if x is None:
            x = np.full((n_obs, feats.shape[1]), np.nan)
        elif feats.shape[1] != x.shape[1]:
            msg = f"`method` ({method.what}) returned {feats.shape[1]} features for library {lib.name!r} but {x.shape[1]} before."
            raise ValueError(msg)
        x[lib.spots], status[lib.spots] = feats, st
        _warn_few_pixels(lib)
        per_library[lib.name] = {
            "image_key": lib.image_key,
            "image_shape": np.asarray(lib.image.shape[:2], dtype=np.int64),
            "scalef": float(lib.scalef),
            "spot_diameter_fullres": float(lib.diameter),
            "patch_size": int(side),
            "n_outside": int((st == OUTSIDE).sum()),
            "n_clipped": int((st == CLIPPED).sum()),
            **scales,
        }
    outside = status == OUTSIDE
    if transform is None:
        embedding, ratio, transform = _reduce(x, ~outside, n_components, random_state)
    else:
        embedding, ratio = apply_transform(x, ~outside, transform), np.zeros(0)
    n_out, n_clip = int(outside.sum()), int((status == CLIPPED).sum())
    if n_out or n_clip:
        warnings.warn(
            f"{n_out} spot(s) have no pixel of their image patch inside the image (features imputed with the median "
            f"of the other spots, flagged in `adata.obs[{outside_column!r}]`) and {n_clip} spot(s) have a patch clipped "
            "by the image border (features of the part inside).",
            UserWarning,
            stacklevel=stacklevel,
        )
    sizes = {v["patch_size"] for v in per_library.values()}
    names = method.names or [f"{method.what.split(':')[-1]}_{i}" for i in range(x.shape[1])]
    record = {
        "n_features": int(x.shape[1]),
        "feature_names": np.asarray(names, dtype=object),
        "n_components": int(embedding.shape[1]),
        "variance_ratio": ratio,
        "patch_size": int(max(sizes)),
        "n_outside": n_out,
        "n_clipped": n_clip,
        "libraries": per_library,
        "transform": transform,
    }
    return PatchEmbedding(embedding, outside, record)

"""``pp.morphology``: image features of the tissue patch under every spot, reduced by PCA."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scanpy import logging as logg

from aestetik._docs import doc_params
from aestetik._image._features import resolve_method
from aestetik._image._patches import FEW_PIXELS, Library, check_scale, embed_patches, positive, spot_pixels
from aestetik._image._sources import ImageSource, image_source
from aestetik._spatialdata import spatialdata_input
from aestetik._validation import _listing, assert_int, assert_not_view, assert_obs_key

if TYPE_CHECKING:
    from anndata import AnnData
    from squidpy.im import ImageContainer


def morphology_keys(key_added: str) -> tuple[str, str]:
    """``uns`` record and ``obs`` outside-flag names of a morphology ``key_added`` (``X_morphology`` -> ``morphology``)."""
    base = key_added.removeprefix("X_") or key_added
    return base, f"{base}_outside"


@dataclass
class MorphologyResult:
    """What :func:`compute_morphology` computes and :func:`write_morphology` writes."""

    embedding: np.ndarray
    outside: np.ndarray
    record: dict[str, Any]
    key_added: str


def _default_image_key(images: Mapping[str, Any], *, where: str) -> str:
    if not images:
        msg = f"Did not find any image in `{where}['images']`. Add the tissue image or pass `img=` (a squidpy ImageContainer)."
        raise KeyError(msg)
    for key in ("hires", "lowres"):
        if key in images:
            return key
    if len(images) == 1:
        return next(iter(images))
    msg = f"`{where}['images']` holds several images ({_listing(images)}); pass `image_key=` one of them."
    raise ValueError(msg)


def _is_image_container(img: Any) -> bool:
    """Whether ``img`` is a squidpy ``ImageContainer``, without importing squidpy."""
    return any(cls.__name__ == "ImageContainer" for cls in type(img).__mro__)


def _libraries(
    adata: AnnData,
    *,
    img: ImageContainer | str | os.PathLike | Any | None,
    library_id: str | None,
    library_key: str | None,
    image_key: str | None,
    spatial_key: str,
) -> list[Library]:
    """Resolve image, scale factor and spot centres (image pixels) per library; raise naming the fix."""
    if spatial_key not in adata.obsm:
        msg = f"Did not find `adata.obsm[{spatial_key!r}]` (found: {_listing(adata.obsm)}). Store the spot centres (x, y) in full-resolution pixels there."
        raise KeyError(msg)
    coords = np.asarray(adata.obsm[spatial_key])
    if coords.ndim != 2 or coords.shape[1] < 2 or not np.issubdtype(coords.dtype, np.number):
        msg = f"`adata.obsm[{spatial_key!r}]` has shape {coords.shape} and dtype {coords.dtype}; expected numeric (n, 2) (x, y) pixels."
        raise ValueError(msg)
    coords = coords[:, :2].astype(np.float64)
    if not np.all(np.isfinite(coords)):
        msg = f"`adata.obsm[{spatial_key!r}]` contains NaN or infinite coordinates. Remove these spots first."
        raise ValueError(msg)
    spatial = adata.uns.get(spatial_key)
    if not isinstance(spatial, Mapping) or not spatial:
        msg = (
            f"Did not find the tissue image metadata `adata.uns[{spatial_key!r}]` (found: {_listing(adata.uns)}). "
            "Read the data with `scanpy.read_visium`/`squidpy.read.visium`, or add "
            f"`adata.uns[{spatial_key!r}][library_id] = {{'images': {{'hires': image}}, 'scalefactors': {{...}}}}`."
        )
        raise KeyError(msg)
    if library_key is not None:
        if library_id is not None:
            msg = "Pass either `library_id` (one library for all spots) or `library_key` (an obs column), not both."
            raise ValueError(msg)
        assert_obs_key(adata, library_key, fix="Pass the obs column that names the library of every spot.")
        labels = adata.obs[library_key].astype(str).to_numpy()
        names = list(dict.fromkeys(labels))
        missing = [n for n in names if n not in spatial]
        if missing:
            msg = f"Libraries {_listing(missing)} of `adata.obs[{library_key!r}]` are not in `adata.uns[{spatial_key!r}]` (found: {_listing(spatial)})."
            raise KeyError(msg)
        groups = {n: np.flatnonzero(labels == n) for n in names}
    else:
        if library_id is None:
            if len(spatial) != 1:
                msg = (
                    f"`adata.uns[{spatial_key!r}]` holds {len(spatial)} libraries ({_listing(spatial)}); pass `library_id=` "
                    "one of them, or `library_key=` naming the obs column that maps spots to libraries."
                )
                raise ValueError(msg)
            library_id = next(iter(spatial))
        elif library_id not in spatial:
            msg = f"Did not find library {library_id!r} in `adata.uns[{spatial_key!r}]` (found: {_listing(spatial)})."
            raise KeyError(msg)
        groups = {str(library_id): np.arange(adata.n_obs)}

    out: list[Library] = []
    shared: dict[str, ImageSource] = {}  # an `img` file or array is opened once, for every library
    try:
        for name, spots in groups.items():
            where = f"adata.uns[{spatial_key!r}][{name!r}]"
            meta = spatial[name]
            factors = meta.get("scalefactors", {}) if isinstance(meta, Mapping) else {}
            if "spot_diameter_fullres" not in factors:
                msg = f"Did not find `{where}['scalefactors']['spot_diameter_fullres']` (found: {_listing(factors)}). Add the spot diameter in full-resolution pixels."
                raise KeyError(msg)
            diameter = positive(
                factors["spot_diameter_fullres"], where=f"`{where}['scalefactors']['spot_diameter_fullres']`"
            )
            offset = np.zeros(2)
            if img is None:
                images = meta.get("images", {}) if isinstance(meta, Mapping) else {}
                key = _default_image_key(images, where=where) if image_key is None else image_key
                if key not in images:
                    msg = f"Did not find `{where}['images'][{key!r}]` (found: {_listing(images)})."
                    raise KeyError(msg)
                image = image_source(images[key], where=f"`{where}['images'][{key!r}]`")
                sf_key = f"tissue_{key}_scalef"
                scalef_where = f"`{where}['scalefactors'][{sf_key!r}]`"
                if sf_key not in factors:
                    msg = f"Did not find {scalef_where} (found: {_listing(factors)}). Add the scale factor from full-resolution pixels to this image (1.0 for a full-resolution image)."
                    raise KeyError(msg)
                scalef = positive(factors[sf_key], where=scalef_where)
            elif not _is_image_container(img):
                key = "file" if isinstance(img, (str, os.PathLike)) else "array"
                if "img" not in shared:
                    shared["img"] = image_source(img, where="`img`")
                image = shared["img"]
                scalef, scalef_where = 1.0, "the scale of `img` (1: full-resolution pixels)"
            else:
                layers = list(img)
                key = (layers[0] if len(layers) == 1 else "") if image_key is None else image_key
                if key not in layers:
                    msg = f"Pass `image_key=` naming one of the ImageContainer's layers ({_listing(layers)})."
                    raise KeyError(msg)
                z = name if name in img.library_ids else (img.library_ids[0] if len(img.library_ids) == 1 else None)
                if z is None:
                    msg = f"The ImageContainer has no library {name!r} (found: {_listing(img.library_ids)})."
                    raise KeyError(msg)
                image = image_source(img[key].sel(z=z), where=f"the ImageContainer layer {key!r}")
                scalef_where = "the ImageContainer's scale (`img.data.attrs['scale']`)"
                scalef = positive(img.data.attrs.get("scale", 1.0), where=scalef_where)
                crop = img.data.attrs.get("coords")
                if crop is not None and hasattr(crop, "x0"):
                    offset = np.array([crop.y0, crop.x0], dtype=np.float64)
            centres = coords[spots][:, ::-1] * scalef - offset
            lib = Library(name, spots, image, key, scalef, scalef_where, diameter, centres)
            check_scale(lib, coords[spots], spatial_key=spatial_key)
            out.append(lib)
    except BaseException:  # an `img` file opened here is closed before the error leaves
        for source in shared.values():
            source.close()
        raise
    return out


def compute_morphology(
    adata: AnnData,
    *,
    img: ImageContainer | str | os.PathLike | Any | None = None,
    library_id: str | None = None,
    library_key: str | None = None,
    image_key: str | None = None,
    spot_scale: float = 2.0,
    method: Any = "summary",
    n_components: int = 15,
    spatial_key: str = "spatial",
    batch_size: int = 256,
    random_state: int = 0,
    key_added: str = "X_morphology",
    stacklevel: int = 3,
    transform: dict[str, np.ndarray] | None = None,
    libraries: list[Library] | None = None,
) -> MorphologyResult:
    """Validate and compute everything :func:`morphology` writes, touching nothing.

    ``stacklevel`` of the warning about outside and clipped patches counts from this function (3: the caller of
    :func:`morphology`). ``transform``: the stored standardisation + PCA of a reference section, applied instead
    of fitting new ones (``aestetik.pp.prepare(reference=...)``). ``libraries``: the images and spots already
    resolved from these arguments (``prepare(morphology_key='auto')`` resolves them once for its width check).
    """
    from aestetik._version import __version__

    spot_scale = positive(spot_scale, where="`spot_scale`")
    assert_int(n_components=n_components, batch_size=batch_size)
    assert_int(minimum=0, random_state=random_state)
    if not isinstance(key_added, str) or not key_added:
        msg = f"`key_added` must be a non-empty string, got {key_added!r}."
        raise ValueError(msg)
    resolved = resolve_method(method)
    libs = libraries
    if libs is None:
        libs = _libraries(
            adata, img=img, library_id=library_id, library_key=library_key, image_key=image_key, spatial_key=spatial_key
        )
    try:
        patches = embed_patches(
            libs,
            adata.n_obs,
            resolved,
            spot_scale=spot_scale,
            n_components=n_components,
            batch_size=batch_size,
            random_state=random_state,
            outside_column=morphology_keys(key_added)[1],
            stacklevel=stacklevel + 1,
            transform=transform,
        )
    finally:
        for lib in libs:
            lib.image.close()
    params = {
        "library_id": libs[0].name if len(libs) == 1 else "",
        "library_key": library_key or "",
        "image_key": libs[0].image_key if len(libs) == 1 else "",
        "from_image_container": img is not None and _is_image_container(img),
        "image_file": os.fspath(img) if isinstance(img, (str, os.PathLike)) else "",
        "spot_scale": float(spot_scale),
        "method": resolved.what,
        "n_components": int(n_components),
        "spatial_key": spatial_key,
        "batch_size": int(batch_size),
        "random_state": int(random_state),
        "aestetik_version": __version__,
    }
    return MorphologyResult(patches.embedding, patches.outside, {"params": params, **patches.record}, key_added)


def write_morphology(adata: AnnData, result: MorphologyResult) -> None:
    """Write ``result`` to ``obsm``, ``obs`` and ``uns`` of ``adata``."""
    base, col = morphology_keys(result.key_added)
    adata.obsm[result.key_added] = result.embedding
    adata.obs[col] = result.outside
    adata.uns[base] = result.record


def library_key_for(adata: AnnData, batch_key: str | None, spatial_key: str) -> str | None:
    """``batch_key`` when its values name libraries of ``adata.uns[spatial_key]`` (morphology per library), else None."""
    libraries = adata.uns[spatial_key]
    if batch_key is not None and set(adata.obs[batch_key].astype(str)) <= set(map(str, libraries)):
        return batch_key
    return None


def coarse_images(libs: Sequence[Library]) -> list[str]:
    """One line (spot width, image, name) per library whose spots are under ``FEW_PIXELS`` pixels wide."""
    return [
        f"{spot_pixels(lib):.1f} px wide in image {lib.image_key!r} of library {lib.name!r}"
        for lib in libs
        if spot_pixels(lib) < FEW_PIXELS
    ]


def default_morphology(
    adata: AnnData, *, spatial_key: str, batch_key: str | None, random_state: int, key_added: str
) -> tuple[MorphologyResult | None, list[str]]:
    """``pp.morphology`` with its defaults for ``morphology_key='auto'``; errors say how to opt out.

    Also returns the images whose spots are under ``FEW_PIXELS`` wide: then no morphology (``None``), with a
    warning saying why and how to use the image anyway.
    """
    library_key = library_key_for(adata, batch_key, spatial_key)
    try:  # the images are resolved once, for the width check and the features
        libs = _libraries(
            adata, img=None, library_id=None, library_key=library_key, image_key=None, spatial_key=spatial_key
        )
        coarse = coarse_images(libs)
        if coarse:
            logg.warning(
                f"Training without morphology: spots are {', '.join(coarse)}, under {FEW_PIXELS:.0f} px, too few for "
                "the patches to show cells. To use this image anyway, run `aestetik.pp.morphology(adata)` and then "
                f"`aestetik.pp.prepare(adata, morphology_key={key_added!r})`, or add a higher-resolution image."
            )
            return None, coarse
        logg.info(f"    computing `adata.obsm[{key_added!r}]` from the tissue image (`aestetik.pp.morphology`)")
        result = compute_morphology(
            adata,
            library_key=library_key,
            spatial_key=spatial_key,
            random_state=random_state,
            key_added=key_added,
            stacklevel=4,
            libraries=libs,
        )
    except (KeyError, ValueError) as e:
        msg = (
            f"{e.args[0] if e.args else e} (while computing the morphology representation from the tissue image for "
            "`morphology_key='auto'`; fix the image metadata, run `aestetik.pp.morphology` with other options first, "
            "or pass `morphology_key=None` to train without morphology)"
        )
        raise type(e)(msg) from e
    return result, []


def incoherent_image(
    transcriptomics: np.ndarray, morphology: np.ndarray, positions: np.ndarray, samples: np.ndarray
) -> tuple[dict[str, float], str]:
    """The check of ``morphology_key='auto'`` on features it computed: are the image's pseudo-labels coherent enough?

    Returns the spatial coherence of both modalities' pseudo-labels
    (:func:`aestetik._domains._pseudo_labels.spatial_coherence`) and, when the image's is below the transcriptome's,
    why it is left out (logged here), else ``''``.
    """
    from aestetik._domains._pseudo_labels import spatial_coherence

    coherence = {
        "transcriptomics": spatial_coherence(transcriptomics, positions, samples),
        "morphology": spatial_coherence(morphology, positions, samples),
    }
    if coherence["morphology"] >= coherence["transcriptomics"]:
        return coherence, ""
    logg.info(
        "    training without the image: its pseudo-labels agree less with their neighbours than the transcriptome's "
        f"(spatial coherence {coherence['morphology']:.2f} < {coherence['transcriptomics']:.2f}); "
        "morphology_key='X_morphology' uses it anyway"
    )
    reason = (
        "the image's pseudo-labels are less spatially coherent than the transcriptome's "
        f"({coherence['morphology']:.2f} < {coherence['transcriptomics']:.2f})"
    )
    return coherence, reason


def has_image(adata: AnnData, spatial_key: str = "spatial") -> bool:
    """Whether ``adata.uns[spatial_key]`` holds a tissue image in some library."""
    spatial = adata.uns.get(spatial_key)
    return isinstance(spatial, Mapping) and any(
        isinstance(meta, Mapping) and isinstance(meta.get("images"), Mapping) and len(meta["images"]) > 0
        for meta in spatial.values()
    )


@spatialdata_input(image=True)
@doc_params
def morphology(
    adata: AnnData,
    *,
    library_id: str | None = None,
    image_key: str | None = None,
    img: ImageContainer | str | os.PathLike | Any | None = None,
    library_key: str | None = None,
    spot_scale: float = 2.0,
    method: Literal["summary", "histogram", "texture", "histology"]
    | Sequence[str]
    | Callable[[np.ndarray], Any] = "summary",
    n_components: int = 15,
    spatial_key: str = "spatial",
    batch_size: int = 256,
    random_state: int = 0,
    key_added: str = "X_morphology",
    copy: bool = False,
) -> AnnData | None:
    """Morphology representation: features of the tissue image patch under every spot, reduced by PCA.

    Cuts the square patch of side ``spot_diameter_fullres * scalef * spot_scale`` pixels centred on every
    spot from the tissue image in ``adata.uns[spatial_key][library_id]['images'][image_key]``, computes image
    features per patch, standardises them and keeps their first ``n_components`` principal components: the
    morphology representation of :func:`aestetik.pp.prepare` :cite:p:`Nonchev2024`.

    Patches are the ``side`` pixels from ``floor(c - side / 2 + 1 / 2)`` on each axis, ``c`` the spot centre
    in image pixels (for an odd side the centre pixel is ``floor(c)``, as squidpy). A patch clipped by the
    image border uses the part inside (callables and modules get it padded to full size with the nearest
    border pixels); a spot whose patch has no pixel in the image gets the median features of the other spots.
    Both are counted in a warning; outside spots are flagged in ``obs``.

    Before computing anything the coordinates are checked against the image: spots closer than half the spot
    diameter (coordinates already scaled) or more than half of the spot centres outside the image (wrong scale
    factor) raise a :class:`ValueError` naming the scale factor, ``obsm[spatial_key]`` and the fix.

    Parameters
    ----------
    {adata}
    library_id
        Library in ``adata.uns[spatial_key]``; ``None`` takes the only one.
    image_key
        Image in ``adata.uns[spatial_key][library_id]['images']`` (or layer of ``img``); ``None`` takes
        ``'hires'`` if present, else ``'lowres'``, else the only image. Its scale factor is
        ``scalefactors['tissue_' + image_key + '_scalef']``. When spots are under 10 pixels wide in it, a
        warning in the log says that the patches show colour rather than cells.
    img
        The image to read instead of ``uns``: the path of an image file, an array (NumPy, dask, zarr or an
        xarray ``DataArray`` with dims ``y``, ``x`` and a channel dim, such as a SpatialData image element), or a
        :class:`squidpy.im.ImageContainer`. A file or an array is in the pixels of ``obsm[spatial_key]``
        (full resolution, scale factor 1); an ImageContainer's ``scale`` attribute and crop offset map
        ``obsm[spatial_key]`` onto it. ``spot_diameter_fullres`` still comes from ``uns``. Only the rectangles
        under the spots are read, band by band: a TIFF (pyramidal and OME-TIFF included: its full-resolution
        level) tile by tile, lazy arrays chunk by chunk. JPEG and PNG files have no random access and are
        decoded once, whole (3 bytes per pixel); convert a large slide to a tiled TIFF to keep the memory low.
    library_key
        ``adata.obs`` column naming the library of every spot, for several sections in one AnnData; each is
        cut from its own image and the features are reduced together.
    spot_scale
        Patch side in spot diameters. The default 2 is about the centre-to-centre spacing of Visium spots
        (100 µm for a 55 µm spot), so the patches tile the tissue: every pixel between spots is used about
        once, instead of discarding the gaps (``1``) or averaging over the neighbouring spots, which the
        neighbourhood window of :func:`aestetik.pp.prepare` already does (``>= 3``). Choose a larger value when
        the image has few pixels per spot or the domains are broad, a smaller one for small structures in a
        high-resolution image (see the method page).
    method
        ``'summary'`` (per channel quantiles 0.9/0.5/0.1, mean and std; 15 features), ``'histogram'``
        (10-bin histogram per channel over the dtype range, as pixel fractions; 30) or ``'texture'``
        (grey-level co-occurrence contrast, dissimilarity, homogeneity, correlation and ASM at distance 1
        and 4 angles per channel; 60) — squidpy's image features
        (:func:`squidpy.im.calculate_image_features`), computed vectorised with equal values —;
        ``'histology'`` (26 features of an H&E stain: the haematoxylin and eosin densities of colour
        deconvolution, ``skimage.color.rgb2hed``, their mean, std and quantiles 0.1/0.5/0.9; the nuclei,
        connected pixels whose haematoxylin density is above the Otsu threshold of a sample of 64 of the
        slide's patches: their fraction of the patch, number per 1000 px, mean area and elongation; and the
        grey-level co-occurrence contrast, homogeneity, correlation and ASM of the haematoxylin density
        (32 levels) at 1/32, 1/16 and 1/8 of the spot diameter, averaged over 4 angles; every scale is
        recorded per library in ``uns``); a list of them, a callable ``f(patches) -> (b, f)`` of a batch of ``(b, h, w, 3)`` patches in the image's
        dtype, or a ``torch.nn.Module`` applied in eval mode under ``torch.inference_mode()`` to float
        ``(b, 3, h, w)`` tensors in [0, 1] on the module's device (resize inside it if it needs a fixed size).
        The default ``'summary'`` describes colour and its spread, which a patch of few pixels still shows;
        ``'texture'``, callables and networks need patches large enough to show cells, i.e. a higher-resolution
        image (see the method page).
    n_components
        Principal components kept (at most the number of non-constant features and spots - 1).
    spatial_key
        ``adata.obsm`` key of the spot centres (x, y) in full-resolution pixels, and ``adata.uns`` key of
        the image metadata (as squidpy).
    batch_size
        Patches per call of the feature function, at most; batches of large patches hold at most about 1
        million pixels (``2**20``), so that a full-resolution slide's batches stay small in memory.
    {random_state}
    key_added
        ``adata.obsm`` key of the result; the record goes to ``uns`` and the flag to ``obs`` under the
        same name without a leading ``'X_'``.
    {copy}

    Returns
    -------
    {returns_copy} Sets (names for the default ``key_added='X_morphology'``):

    `adata.obsm['X_morphology']` : ndarray (n, n_components), float32
        Principal components of the standardised image features.
    `adata.obs['morphology_outside']` : bool
        Whether the spot's patch lies entirely outside the image (features imputed).
    `adata.uns['morphology']` : dict
        ``params``; ``n_features``, ``feature_names``; ``n_components``; ``variance_ratio``; ``patch_size``
        (px); ``n_outside``, ``n_clipped``; and per library in ``libraries``: ``image_key``,
        ``image_shape``, ``scalef``, ``spot_diameter_fullres``, ``patch_size``, ``n_outside``, ``n_clipped``;
        ``transform``: the fitted projection (``median`` imputing outside spots, ``keep`` the non-constant
        features, their ``mean`` and ``sd``, the PCA's ``pca_mean`` and ``components``), which
        ``aestetik.pp.prepare(reference=...)`` applies to new sections.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.dlpfc_151676()
    >>> ae.pp.morphology(adata)
    >>> adata.obsm["X_morphology"].shape
    (3460, 15)
    """
    assert_not_view(adata, copy=copy)
    start = logg.info("computing morphology features from the tissue image")
    result = compute_morphology(
        adata,
        img=img,
        library_id=library_id,
        library_key=library_key,
        image_key=image_key,
        spot_scale=spot_scale,
        method=method,
        n_components=n_components,
        spatial_key=spatial_key,
        batch_size=batch_size,
        random_state=random_state,
        key_added=key_added,
    )
    adata = adata.copy() if copy else adata
    write_morphology(adata, result)
    base, col = morphology_keys(key_added)
    logg.info(
        "    finished",
        time=start,
        deep=f"added\n    'obsm[{key_added!r}]', 'obs[{col!r}]', 'uns[{base!r}]'",
    )
    return adata if copy else None

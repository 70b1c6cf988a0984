"""``pp.morphology``: image features of the tissue patch under every spot, reduced by PCA."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scanpy import logging as logg

from aestetik._docs import doc_params
from aestetik._image._features import resolve_method
from aestetik._image._patches import Library, embed_patches, positive
from aestetik._spatialdata import spatialdata_input
from aestetik._validation import assert_int, assert_not_view

from ._tissue_images import is_image_container, resolve_libraries

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
        libs = resolve_libraries(
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
        "from_image_container": img is not None and is_image_container(img),
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

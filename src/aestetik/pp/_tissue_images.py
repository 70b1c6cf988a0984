"""The tissue images of an AnnData: which image, scale factor and spot centres each library's patches come from."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from aestetik._image._patches import Library, check_scale, positive
from aestetik._image._sources import ImageSource, image_source
from aestetik._validation import _listing, assert_obs_key

if TYPE_CHECKING:
    from anndata import AnnData
    from squidpy.im import ImageContainer


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


def is_image_container(img: Any) -> bool:
    """Whether ``img`` is a squidpy ``ImageContainer``, without importing squidpy."""
    return any(cls.__name__ == "ImageContainer" for cls in type(img).__mro__)


def resolve_libraries(
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
            elif not is_image_container(img):
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


def library_key_for(adata: AnnData, batch_key: str | None, spatial_key: str) -> str | None:
    """``batch_key`` when its values name libraries of ``adata.uns[spatial_key]`` (morphology per library), else None."""
    libraries = adata.uns[spatial_key]
    if batch_key is not None and set(adata.obs[batch_key].astype(str)) <= set(map(str, libraries)):
        return batch_key
    return None


def has_image(adata: AnnData, spatial_key: str = "spatial") -> bool:
    """Whether ``adata.uns[spatial_key]`` holds a tissue image in some library."""
    spatial = adata.uns.get(spatial_key)
    return isinstance(spatial, Mapping) and any(
        isinstance(meta, Mapping) and isinstance(meta.get("images"), Mapping) and len(meta["images"]) > 0
        for meta in spatial.values()
    )

"""Tissue images read region by region: in-memory arrays, lazy arrays (dask, xarray, zarr) and image files.

An :class:`ImageSource` hands out the pixels of a rectangle as an (h, w, 3) array, uint8 or floats in [0, 1]
(greyscale replicated, alpha dropped), so that patches are cut from a slide without loading all of it. A TIFF
(pyramidal and OME-TIFF included) is read through tifffile's zarr view, tile by tile; dask, xarray (a SpatialData
image element, a squidpy ``ImageContainer`` layer) and zarr arrays read only the chunks a rectangle touches.
JPEG and PNG files have no random access and are decoded once, whole (by imagecodecs, a dependency of squidpy,
else Pillow).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: File suffixes read through tifffile's zarr view (tile by tile); every other file is decoded by Pillow.
TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".scn", ".btf", ".tf8", ".bif")


def rgb(x: Any, *, where: str) -> np.ndarray:
    """An (h, w, 3) uint8 or float-in-[0, 1] view of an image (grey replicated, alpha dropped)."""
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4) or min(x.shape[:2]) == 0:
        msg = f"{where} has shape {x.shape}; expected an (height, width, 3) RGB image (greyscale and RGBA also work)."
        raise ValueError(msg)
    x = np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x[..., :3]
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating) and np.all(np.isfinite(x)) and x.min() >= 0 and x.max() <= 1:
        return x
    msg = f"{where} has dtype {x.dtype} (values {x.min()}..{x.max()}); pass uint8, or floats in [0, 1] (divide by 255)."
    raise ValueError(msg)


class ImageSource:
    """The pixels of an image, read one rectangle at a time.

    ``data`` is indexed ``[rows, cols, channels]`` (or ``[channels, rows, cols]`` with ``channels_first``); only
    the rectangle asked for is converted to a NumPy array and checked (:func:`rgb`).
    """

    def __init__(
        self, data: Any, *, where: str, channels_first: bool = False, close: Callable[[], None] | None = None
    ) -> None:
        shape = tuple(int(s) for s in data.shape)
        if len(shape) == 2:
            height, width = shape
        elif len(shape) == 3:
            height, width = shape[1:] if channels_first else shape[:2]
        else:
            msg = f"{where} has shape {shape}; expected an (height, width, 3) RGB image (greyscale and RGBA also work)."
            raise ValueError(msg)
        if min(height, width) == 0:
            msg = f"{where} has shape {shape}: it holds no pixels."
            raise ValueError(msg)
        self._data, self._channels_first, self._close, self.where = data, channels_first, close, where
        self._ndim, self.shape = len(shape), (height, width, 3)

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Pixels of rows ``r0:r1`` and columns ``c0:c1`` (inside the image) as an (h, w, 3) array."""
        if self._ndim == 2:
            block = self._data[r0:r1, c0:c1]
        elif self._channels_first:
            block = np.moveaxis(np.asarray(self._data[:, r0:r1, c0:c1]), 0, -1)
        else:
            block = self._data[r0:r1, c0:c1]
        return rgb(block, where=self.where)

    def close(self) -> None:
        """Release the file behind the image, if any."""
        if self._close is not None:
            self._close()
            self._close = None


def _xarray_source(x: Any, *, where: str) -> ImageSource:
    """An xarray image (dims ``y``, ``x`` and one channel dim, e.g. ``c`` or ``channels``), read lazily."""
    dims = list(x.dims)
    if "y" not in dims or "x" not in dims or len(dims) > 3:
        msg = f"{where} has dims {tuple(dims)}; expected 'y', 'x' and one channel dimension."
        raise ValueError(msg)
    rest = [d for d in dims if d not in ("y", "x")]
    data = x.transpose("y", "x", *rest).data  # a NumPy or dask array: slicing reads only the chunks touched
    return ImageSource(data, where=where)


def open_file(path: str | os.PathLike, *, where: str) -> ImageSource:
    """An image file: TIFF through tifffile's zarr view (its full-resolution level), else decoded by Pillow."""
    path = os.fspath(path)
    if not Path(path).is_file():
        msg = f"{where}: did not find the image file {path!r}."
        raise FileNotFoundError(msg)
    if path.lower().endswith(TIFF_SUFFIXES):
        import tifffile
        import zarr

        tif = tifffile.TiffFile(path)
        try:
            series = tif.series[0]
            axes = series.axes.upper()
            data = zarr.open(series.aszarr(level=0), mode="r")
            if axes not in ("YX", "YXS", "YXC", "SYX", "CYX"):
                msg = f"{where}: the TIFF's first series has axes {series.axes!r} {series.shape}; expected YX, YXS or CYX."
                raise ValueError(msg)
            return ImageSource(data, where=where, channels_first=axes[0] in "CS", close=tif.close)
        except Exception:
            tif.close()
            raise
    try:  # decodes straight into one array (Pillow holds a second copy while converting)
        import imagecodecs

        return ImageSource(rgb(imagecodecs.imread(path), where=where), where=where)
    except Exception:  # noqa: BLE001 - any format or codec imagecodecs lacks: Pillow's turn
        pass
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # a slide is larger than Pillow's decompression-bomb guard; the user chose the file
    try:
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB") if im.mode not in ("RGB", "L") else im)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return ImageSource(pixels, where=where)


def image_source(x: Any, *, where: str) -> ImageSource:
    """An :class:`ImageSource` of a path, an xarray image, a lazy array (dask, zarr) or an in-memory array."""
    if isinstance(x, ImageSource):
        return x
    if isinstance(x, (str, os.PathLike)):
        return open_file(x, where=where)
    if hasattr(x, "dims") and hasattr(x, "transpose"):
        return _xarray_source(x, where=where)
    if isinstance(x, np.ndarray) or not hasattr(x, "shape"):
        return ImageSource(rgb(x, where=where), where=where)  # checked whole, now: it is in memory anyway
    shape = tuple(x.shape)
    channels_first = len(shape) == 3 and shape[-1] not in (1, 3, 4) and shape[0] in (1, 3, 4)
    return ImageSource(x, where=where, channels_first=channels_first)

"""Every public function also takes a ``spatialdata.SpatialData`` (its table), and checks the names it writes.

``spatialdata`` is optional (``pip install "aestetik[spatialdata]"``) and imported only when a SpatialData is
passed; recognising one never imports it.
"""

from __future__ import annotations

import copy as _copy
import functools
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from aestetik._docs import _DOCS
from aestetik._keys import Key
from aestetik._validation import _listing, assert_key_name

F = TypeVar("F", bound=Callable)

#: Arguments naming what a public function writes (or reads from what another one wrote).
_KEY_ARGUMENTS = ("key_added", "key", "prepare_key")
#: Arguments that take a trained AnnData (or a model file), read through the same ``table_key`` when a SpatialData.
_TRAINED_ARGUMENTS = ("model", "reference")
_INSTALL = 'pip install "aestetik[spatialdata]"'
_MISSING = object()
#: What ``pp.prepare(morphology_key='auto')`` uses when present instead of reading the image.
_MORPHOLOGY = Key.morphology()


def is_spatialdata(obj: Any) -> bool:
    """Whether ``obj`` is a ``spatialdata.SpatialData``, without importing spatialdata."""
    return any(
        cls.__name__ == "SpatialData" and cls.__module__.split(".")[0] == "spatialdata" for cls in type(obj).__mro__
    )


def _import_spatialdata() -> Any:
    try:
        import spatialdata
    except ImportError as e:
        msg = f"Reading a SpatialData needs the `spatialdata` package: `{_INSTALL}`."
        raise ImportError(msg) from e
    return spatialdata


def _with_table_key(sig: inspect.Signature) -> inspect.Signature:
    """``sig`` with the keyword ``table_key: str = 'table'`` before ``copy`` (else before ``**kwargs``, else last)."""
    params = list(sig.parameters.values())
    new = inspect.Parameter("table_key", inspect.Parameter.KEYWORD_ONLY, default="table", annotation="str")
    names = [p.name for p in params]
    if "copy" in names:
        at = names.index("copy")
    elif params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
        at = len(params) - 1
    else:
        at = len(params)
    return sig.replace(parameters=[*params[:at], new, *params[at:]])


def _doc_with_table_key(doc: str | None) -> str | None:
    """Add the ``table_key`` entry to the numpydoc Parameters section (before ``copy`` / ``**kwargs``, else last)."""
    if not doc:
        return doc
    doc = inspect.cleandoc(doc)
    text = _DOCS["table_key"]
    section = re.search(r"^Parameters\n-+\n", doc, flags=re.MULTILINE)
    if section is None:
        return doc
    end = re.search(r"^\S[^\n]*\n-+\n", doc[section.end() :], flags=re.MULTILINE)
    stop = section.end() + end.start() if end else len(doc)
    copy_entry = re.search(r"^(copy|\*\*\w+)\n", doc[section.end() : stop], flags=re.MULTILINE)
    if copy_entry is not None:
        at = section.end() + copy_entry.start()
        return doc[:at] + text + "\n" + doc[at:]
    head = doc[:stop].rstrip("\n")
    return head + "\n" + text + "\n\n" + doc[stop:]


def spatialdata_input(func: F | None = None, *, image: bool = False) -> F | Callable[[F], F]:
    """Let a public function take a SpatialData as well as an AnnData, and check its key names first.

    A ``spatialdata.SpatialData`` passed as ``adata`` is read through its table ``sdata.tables[table_key]``
    (the added keyword ``table_key='table'``): the function runs on that table as on an AnnData and writes into it,
    so ``copy=False`` changes the SpatialData in place, while ``copy=True`` returns a new SpatialData that holds
    the new table and shares its images, shapes, points, labels and other tables with the input (spatialdata has
    no cheap deep copy of images; call ``spatialdata.deepcopy`` on the result if it must own them). Functions
    without ``copy`` (plots, ``tl.save_model``) return what they return for the table.

    With ``image=True`` (``pp.morphology``; ``pp.prepare`` with ``morphology_key='auto'`` and no
    ``obsm['X_morphology']`` yet; ``pl.spatial``, to draw it) the tissue image comes from an image element of the
    SpatialData, when it has one and no ``img=`` is passed: ``image_key`` (``img_key`` for the plot) names the
    element (by default the only one, else the one whose name ends in ``'hires'`` then ``'lowres'``
    (``'hires_image'``, as spatialdata-io names them)). The spot centres and diameter come from the shapes element
    of circles that the table annotates (``region`` / ``instance_key`` of its ``spatialdata_attrs``), mapped onto
    the image through the coordinate transformations of both to a coordinate system they share (``'global'`` if
    both have it). For the call only, ``obsm[spatial_key]`` and ``uns[spatial_key]`` of the table hold these
    centres and the image squidpy-style; afterwards (also after an error) both are as before. The image stays
    lazy, at the resolution of the element (the full-resolution level of a multiscale image): ``pp.morphology``
    reads the rectangles under the spots, chunk by chunk (a plot reads the whole image).

    A SpatialData passed as a trained section (``model=`` of ``tl.embed`` / ``tl.cluster``, ``reference=`` of
    ``pp.prepare``) is read through its table of the same ``table_key``.

    Before anything runs, ``key_added``, ``key`` and ``prepare_key`` are checked for names that h5ad or zarr
    cannot write (containing a slash, backslash or NUL; '.', '..', '_index' or empty), for an AnnData as for a
    SpatialData.
    """
    if func is None:
        return functools.partial(spatialdata_input, image=image)
    sig = inspect.signature(func)
    checked = [name for name in _KEY_ARGUMENTS if name in sig.parameters]
    trained = [name for name in _TRAINED_ARGUMENTS if name in sig.parameters]

    @functools.wraps(func)
    def wrapper(adata: Any, *args: Any, table_key: str = "table", **kwargs: Any) -> Any:
        try:
            bound = sig.bind(adata, *args, **kwargs)
        except TypeError:
            return func(adata, *args, **kwargs)  # the function's own error
        for name in checked:
            value = bound.arguments.get(name, sig.parameters[name].default)
            if value is not None:
                assert_key_name(value, name=name)
        for name in trained:
            if is_spatialdata(bound.arguments.get(name)):
                _import_spatialdata()
                bound.arguments[name] = _table(bound.arguments[name], table_key)
        if not is_spatialdata(adata):
            return func(*bound.args, **bound.kwargs)
        return _run_on_table(func, sig, bound, table_key=table_key, image=image)

    wrapper.__signature__ = _with_table_key(sig)  # type: ignore[attr-defined]
    wrapper.__doc__ = _doc_with_table_key(func.__doc__)
    return wrapper  # type: ignore[return-value]


def _table(sdata: Any, table_key: str) -> Any:
    tables = sdata.tables
    if not isinstance(table_key, str) or table_key not in tables:
        msg = (
            f"Did not find the table `sdata.tables[{table_key!r}]` (found: {_listing(tables)}). "
            "Pass `table_key=` naming the table of spots."
        )
        raise KeyError(msg)
    return tables[table_key]


def _argument(sig: inspect.Signature, bound: inspect.BoundArguments, name: str, default: Any = None) -> Any:
    if name in bound.arguments:
        return bound.arguments[name]
    param = sig.parameters.get(name)
    return default if param is None or param.default is inspect.Parameter.empty else param.default


def _run_on_table(
    func: Callable, sig: inspect.Signature, bound: inspect.BoundArguments, *, table_key: str, image: bool
) -> Any:
    sd = _import_spatialdata()
    sdata = bound.arguments[next(iter(sig.parameters))]
    table = _table(sdata, table_key)
    copy = bool(_argument(sig, bound, "copy", default=False))
    spatial_key = _argument(sig, bound, "spatial_key", default="spatial")
    temporary = None
    if image and len(sdata.images) > 0 and _argument(sig, bound, "img") is None and _needs_image(sig, bound, table):
        image_key = _argument(sig, bound, "image_key", default=_argument(sig, bound, "img_key"))
        temporary = image_inputs(sd, sdata, table, image_key=image_key)
    args = list(bound.args)
    args[0] = table
    if temporary is None:
        result = func(*args, **bound.kwargs)
    else:
        saved = _swap(table, spatial_key, *temporary)
        try:
            result = func(*args, **bound.kwargs)
        finally:
            _swap(table, spatial_key, *saved)
        if copy and result is not None:
            _swap(result, spatial_key, *(v if v is _MISSING else _copy.deepcopy(v) for v in saved))
    if not copy or result is None:
        return result
    return sd.SpatialData(
        images=dict(sdata.images),
        labels=dict(sdata.labels),
        points=dict(sdata.points),
        shapes=dict(sdata.shapes),
        tables={**dict(sdata.tables), table_key: result},
        attrs=dict(sdata.attrs),
    )


def _needs_image(sig: inspect.Signature, bound: inspect.BoundArguments, table: Any) -> bool:
    """``pp.prepare`` reads the image only for ``morphology_key='auto'`` without ``obsm['X_morphology']``."""
    if "morphology_key" not in sig.parameters:
        return True
    return _argument(sig, bound, "morphology_key") == "auto" and _MORPHOLOGY not in table.obsm


def _swap(table: Any, spatial_key: str, coords: Any, meta: Any) -> tuple[Any, Any]:
    """Put ``coords`` in ``obsm[spatial_key]`` and ``meta`` in ``uns[spatial_key]`` (absent: removed); return the old."""
    old = (table.obsm.get(spatial_key, _MISSING), table.uns.get(spatial_key, _MISSING))
    for mapping, value in ((table.obsm, coords), (table.uns, meta)):
        if value is _MISSING:
            mapping.pop(spatial_key, None)
        else:
            mapping[spatial_key] = value
    return old


def _pick_image(images: Mapping[str, Any], image_key: str | None) -> str:
    if image_key is not None:
        if image_key not in images:
            msg = f"Did not find the image element `sdata.images[{image_key!r}]` (found: {_listing(images)})."
            raise KeyError(msg)
        return image_key
    if len(images) == 1:
        return next(iter(images))
    for suffix in ("hires", "hires_image", "lowres", "lowres_image"):
        found = [name for name in images if name.endswith(suffix)]
        if len(found) == 1:
            return found[0]
    msg = f"The SpatialData holds several images ({_listing(images)}); pass `image_key=` one of them."
    raise ValueError(msg)


def _affine(element: Any, system: str) -> np.ndarray:
    """3 x 3 matrix from the element's (x, y) to ``system``."""
    from spatialdata.transformations import get_transformation

    transform = get_transformation(element, to_coordinate_system=system)
    return np.asarray(transform.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")), dtype=np.float64)


def _common_system(shapes: Any, img: Any, names: tuple[str, str]) -> str:
    from spatialdata.transformations import get_transformation

    systems = [set(get_transformation(e, get_all=True)) for e in (shapes, img)]
    common = systems[0] & systems[1]
    if "global" in common:
        return "global"
    if len(common) == 1:
        return next(iter(common))
    msg = (
        f"The shapes `{names[0]}` (coordinate systems {_listing(sorted(systems[0]))}) and the image `{names[1]}` "
        f"({_listing(sorted(systems[1]))}) share {'no' if not common else 'several'} coordinate systems"
        f"{'' if not common else ' (' + _listing(sorted(common)) + ')'}; set a transformation of both to 'global' "
        "(`spatialdata.transformations.set_transformation`)."
    )
    raise ValueError(msg)


def _spots(sdata: Any, table: Any) -> tuple[str, Any, np.ndarray, float]:
    """Name, shapes element, centres (x, y) and median diameter (in the shapes' units) of the table's spots."""
    from spatialdata.models import get_table_keys

    try:
        region, _, instance_key = get_table_keys(table)
    except (KeyError, ValueError, TypeError) as e:
        msg = (
            "The table does not say which shapes it annotates (no `uns['spatialdata_attrs']`), so the spot centres "
            "for the image are unknown. Parse it with `spatialdata.models.TableModel.parse(table, region=..., "
            "region_key=..., instance_key=...)`, or pass `img=` / `morphology_key=None`."
        )
        raise KeyError(msg) from e
    regions = [region] if isinstance(region, str) else list(region)
    if len(regions) != 1 or regions[0] not in sdata.shapes:
        msg = (
            f"The table annotates {_listing(regions)}; the image features need exactly one shapes element of "
            f"circles among `sdata.shapes` ({_listing(sdata.shapes)}). Subset the SpatialData to one region first."
        )
        raise ValueError(msg)
    shapes = sdata.shapes[regions[0]]
    if "radius" not in shapes.columns or not (shapes.geometry.geom_type == "Point").all():
        msg = f"`sdata.shapes[{regions[0]!r}]` is not an element of circles (points with a 'radius' column)."
        raise ValueError(msg)
    ids = table.obs[instance_key].to_numpy()
    missing = ~np.isin(ids, shapes.index.to_numpy())
    if missing.any():
        msg = (
            f"{int(missing.sum())} spot(s) of the table (`obs[{instance_key!r}]`) are not in "
            f"`sdata.shapes[{regions[0]!r}]`."
        )
        raise KeyError(msg)
    spots = shapes.loc[ids]
    centres = np.column_stack([spots.geometry.x.to_numpy(), spots.geometry.y.to_numpy()]).astype(np.float64)
    return regions[0], shapes, centres, 2.0 * float(np.median(spots["radius"].to_numpy(dtype=np.float64)))


def image_inputs(sd: Any, sdata: Any, table: Any, *, image_key: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    """Spot centres and squidpy-style image metadata that ``pp.morphology`` reads, from the SpatialData elements.

    The centres are in the shared coordinate system, shifted by the image's offset, with the image's scale as
    ``tissue_<image>_scalef`` when the image maps to that system by an isotropic scale and shift (as spatialdata-io
    writes Visium images: then centres, scale factor and spot diameter are those of the AnnData); otherwise the
    centres and the diameter are in the image's pixels (scale factor 1).
    """
    name = _pick_image(sdata.images, image_key)
    element = sdata.images[name]
    import xarray as xr

    data = element if isinstance(element, xr.DataArray) else sd.get_pyramid_levels(element, n=0)
    library, shapes, centres, diameter = _spots(sdata, table)
    system = _common_system(shapes, element, (library, name))
    to_system, image_to_system = _affine(shapes, system), _affine(element, system)
    linear, shift = image_to_system[:2, :2], image_to_system[:2, 2]
    scale = float(np.sqrt(abs(np.linalg.det(to_system[:2, :2]))))
    in_system = centres @ to_system[:2, :2].T + to_system[:2, 2]
    if np.allclose(linear, linear[0, 0] * np.eye(2)) and linear[0, 0] > 0:
        coords, scalef, diameter = in_system - shift, 1.0 / float(linear[0, 0]), diameter * scale
    else:
        to_image = np.linalg.inv(image_to_system)
        coords = in_system @ to_image[:2, :2].T + to_image[:2, 2]
        scalef, diameter = 1.0, diameter * float(np.sqrt(abs(np.linalg.det((to_image @ to_system)[:2, :2]))))
    pixels = data.transpose("y", "x", "c")  # lazy: pp.morphology reads the patches' rectangles only
    meta = {
        library: {
            "images": {name: pixels},
            "scalefactors": {f"tissue_{name}_scalef": scalef, "spot_diameter_fullres": diameter},
        }
    }
    return coords, meta

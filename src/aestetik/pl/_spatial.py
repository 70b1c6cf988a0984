"""Domains over the tissue: spatial scatter with the H&E image, ARI against a ground truth in the titles."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scanpy as sc
from scipy.spatial import cKDTree

from aestetik._docs import doc_params
from aestetik._domains._scores import ari_known
from aestetik._spatialdata import spatialdata_input
from aestetik._validation import _listing, assert_obs_key, assert_obsm_key

from ._colors import match_to_truth, relabel_legend, untouched
from ._utils import finish

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes


def _assert_color_key(adata: AnnData, key: str) -> None:
    if not isinstance(key, str):
        msg = f"`color` must name an obs column or a gene, got {type(key).__name__} ({key!r})."
        raise TypeError(msg)
    in_raw = adata.raw is not None and key in adata.raw.var_names
    if key not in adata.obs.columns and key not in adata.var_names and not in_raw:
        msg = (
            f"Did not find {key!r} in `adata.obs` or `adata.var_names` (found obs columns: {_listing(adata.obs.columns)}). "
            "Pass an obs column, e.g. the `key_added` of `aestetik.tl.cluster`, or a gene name."
        )
        raise KeyError(msg)


def _is_labels(values: pd.Series) -> bool:
    return (
        isinstance(values.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(values)
        or pd.api.types.is_string_dtype(values)
    )


def _ari(adata: AnnData, key: str, ground_truth: str) -> float | None:
    return ari_known(adata.obs[ground_truth], adata.obs[key].astype(str).to_numpy())


def _resolve_image(adata: AnnData, library_id: str | None, img_key: str | None) -> tuple[str | None, str | None]:
    """Library and image key to draw, ``(None, None)`` when there is no image."""
    libraries = adata.uns.get("spatial", {})
    if not isinstance(libraries, dict):
        libraries = {}
    if library_id is not None:
        if library_id not in libraries:
            msg = f"Did not find `adata.uns['spatial'][{library_id!r}]` (found: {_listing(libraries)}). Pass one of these as `library_id`."
            raise KeyError(msg)
    elif len(libraries) > 1:
        msg = (
            f"`adata.uns['spatial']` holds several libraries ({_listing(libraries)}). Pass `library_id` "
            "(and plot the spots of that library only, e.g. `adata[adata.obs['sample'] == library_id]`)."
        )
        raise ValueError(msg)
    elif len(libraries) == 1:
        library_id = next(iter(libraries))
    images = libraries[library_id].get("images", {}) if library_id is not None else {}
    if img_key is not None:
        if img_key not in images:
            msg = f"Did not find the image `adata.uns['spatial'][{library_id!r}]['images'][{img_key!r}]` (found: {_listing(images)})."
            raise KeyError(msg)
        return library_id, img_key
    img_key = next((k for k in ("hires", "lowres") if k in images), next(iter(images), None))
    return (library_id, img_key) if img_key is not None else (None, None)


def _default_spot_size(adata: AnnData, library_id: str | None) -> float:
    """Spot diameter in ``obsm['spatial']`` units: Visium's when known, else the median nearest-neighbour distance."""
    libraries = adata.uns.get("spatial", {})
    if library_id is None and isinstance(libraries, dict) and len(libraries) == 1:
        library_id = next(iter(libraries))
    if library_id is not None:
        diameter = libraries[library_id].get("scalefactors", {}).get("spot_diameter_fullres")
        if diameter is not None:
            return float(diameter)
    xy = np.unique(np.asarray(adata.obsm["spatial"], dtype=float)[:, :2], axis=0)
    if len(xy) < 2:
        return 1.0
    dist, _ = cKDTree(xy).query(xy, k=2)
    return float(np.median(dist[:, 1]))


@spatialdata_input(image=True)
@doc_params
def spatial(
    adata: AnnData,
    *,
    color: str | Sequence[str],
    ground_truth: str | None = None,
    match_colors: bool = True,
    library_id: str | None = None,
    img_key: str | None = None,
    spot_size: float | None = None,
    ncols: int = 4,
    title: str | Sequence[str] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **kwargs: Any,
) -> Axes | list[Axes]:
    """Spatial domains (or any obs column or gene) drawn over the tissue.

    With an image in ``adata.uns['spatial']`` the spots are drawn over it with
    :func:`scanpy.pl.spatial`; without one (e.g. :func:`aestetik.datasets.synthetic`) as circles at
    ``obsm['spatial']`` with the y axis pointing down, like an image. With ``ground_truth``, the title
    of every categorical ``color`` other than the ground truth reports its adjusted Rand index (ARI)
    against it, over the spots whose ground truth is known (not missing and not ``'NA'``), and its
    domains are drawn in the colours of the ground-truth labels they match (``match_colors``).

    Parameters
    ----------
    adata
        Annotated data matrix of spots with ``obsm['spatial']``; for the image, spots of one library.
    color
        Obs column(s) (e.g. the ``key_added`` of :func:`aestetik.tl.cluster`) or gene name(s); one panel each.
    ground_truth
        Obs column with the true domains; adds ``ARI = ...`` to the titles of categorical panels.
    match_colors
        With ``ground_truth``: match the domains of every other categorical panel one-to-one to the
        ground-truth labels (Hungarian matching on the contingency table over the spots with a known label)
        and draw each matched domain in the colour of its label, with the label in the legend
        (e.g. ``'3 (Layer_4)'``). The ground truth keeps its palette (``adata.uns[ground_truth + '_colors']``
        when it holds valid colours, else scanpy's default); domains left without a label (more domains than
        labels, or no shared spot) get colours the ground truth does not use. Ignored when ``palette`` is passed.
    library_id
        Key of ``adata.uns['spatial']`` whose image to show; needed when there are several.
    img_key
        Image to show; by default ``'hires'`` when present, else ``'lowres'``.
    spot_size
        Spot diameter in ``obsm['spatial']`` units; by default the Visium spot diameter from the
        scale factors, or, without those, the median distance between neighbouring spots.
    ncols
        Number of panels per row.
    title
        Panel title(s); by default the ``color`` names.
    ax
        Axes to draw into (only with a single ``color``).
    {show}
    {save}
    **kwargs
        Passed on to :func:`scanpy.pl.spatial` (e.g. ``palette``, ``alpha_img``, ``legend_loc``).

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`, or a list of them when ``color`` names several keys. ``adata`` is
    not modified: the palettes scanpy stores in ``adata.uns[color + '_colors']`` while drawing (and the string
    columns it turns into categoricals) are put back as they were.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.synthetic(n_spots=1000)
    >>> ax = ae.pl.spatial(adata, color="ground_truth")
    >>> axs = ae.pl.spatial(adata, color=["transcriptomics_group", "morphology_group"], ground_truth="ground_truth")
    >>> axs[0].get_title().splitlines()
    ['transcriptomics_group', 'ARI = 0.500']
    >>> [t.get_text() for t in axs[0].get_legend().get_texts()]  # each group and the layer whose colour it takes
    ['0 (1)', '1 (2)']
    """
    colors = [color] if isinstance(color, str) else list(color)
    if not colors:
        msg = "`color` is empty; pass at least one obs column or gene."
        raise ValueError(msg)
    for key in colors:
        _assert_color_key(adata, key)
    if ground_truth is not None:
        assert_obs_key(adata, ground_truth, fix="Pass the obs column that holds the true domains as `ground_truth`.")
    assert_obsm_key(adata, "spatial", fix="Spatial plots need spot coordinates in `adata.obsm['spatial']`.")
    if ax is not None and len(colors) > 1:
        msg = f"`ax` can hold one panel, but `color` names {len(colors)}; leave `ax=None` to get a grid of panels."
        raise ValueError(msg)
    if title is None:
        titles = list(colors)
    else:
        titles = [title] * len(colors) if isinstance(title, str) else list(title)
        if len(titles) != len(colors):
            msg = f"`title` has {len(titles)} entries but `color` names {len(colors)} keys."
            raise ValueError(msg)
    library_id, img_key = _resolve_image(adata, library_id, img_key)
    if spot_size is None:
        spot_size = _default_spot_size(adata, library_id)

    if ground_truth is not None:
        for i, key in enumerate(colors):
            if key == ground_truth or key not in adata.obs.columns or not _is_labels(adata.obs[key]):
                continue
            ari = _ari(adata, key, ground_truth)
            if ari is None:
                warnings.warn(f"`adata.obs[{ground_truth!r}]` has no known labels; no ARI shown.", stacklevel=2)
                break
            titles[i] = f"{titles[i]}\nARI = {ari:.3f}"

    with untouched(adata), warnings.catch_warnings():
        # scanpy deprecates its spatial plot in favour of squidpy's; the deprecation is not the user's to act on.
        warnings.filterwarnings("ignore", message=".*squidpy.pl.spatial_scatter.*", category=FutureWarning)
        # scanpy calls Colormap.set_bad, which matplotlib >= 3.11 marks for deprecation.
        warnings.filterwarnings("ignore", message=".*set_bad.*", category=PendingDeprecationWarning)
        plans = {}
        if ground_truth is not None and match_colors and "palette" not in kwargs:
            adata.strings_to_categoricals()  # as scanpy does first, so that the categories are the ones it draws
            plans = match_to_truth(adata.obs, adata.uns, colors, ground_truth)
            for key, (palette, _) in plans.items():
                adata.uns[f"{key}_colors"] = palette
        axs = sc.pl.spatial(
            adata,
            color=colors,
            library_id=library_id,
            img_key=img_key,
            spot_size=spot_size,
            ncols=ncols,
            title=titles,
            ax=ax,
            show=False,
            **kwargs,
        )
    axs = list(axs) if isinstance(axs, list | tuple) else [axs]
    for panel, key in zip(axs, colors, strict=False):
        if key in plans:
            relabel_legend(panel, plans[key][1])
    finish(axs[0].figure, show=show, save=save)
    return axs if len(axs) > 1 else axs[0]

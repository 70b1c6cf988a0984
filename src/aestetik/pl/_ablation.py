"""The modality ablation of :func:`aestetik.tl.ablation`: domain maps per setting and a bar chart of the scores."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aestetik._docs import doc_params
from aestetik._domains._matching import match_labels
from aestetik._spatialdata import spatialdata_input
from aestetik._validation import assert_obs_key, assert_obsm_key
from aestetik.pl._spatial import spatial

from ._utils import finish

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

_REFERENCE = "both"


def _record(adata: AnnData, key: str) -> Mapping[str, Any]:
    record = adata.uns.get(key)
    if not isinstance(record, Mapping) or "settings" not in record or "silhouette" not in record:
        msg = f"Did not find the ablation report `adata.uns[{key!r}]`. Run `aestetik.tl.ablation(adata, key_added={key!r})` first."
        raise KeyError(msg)
    return record


def _base_palette(n: int) -> list[str]:
    from scanpy.plotting import palettes

    base = list(palettes.default_20 if n <= 20 else palettes.default_102)
    return [base[i % len(base)] for i in range(n)]


def _aligned_palettes(obs: pd.DataFrame, columns: list[str], reference: str) -> dict[str, list[str]]:
    """One colour list per column; a domain gets the colour of the reference domain it overlaps most (one-to-one)."""
    ref = obs[reference].cat
    n_ref = len(ref.categories)
    base = _base_palette(n_ref + sum(len(obs[c].cat.categories) for c in columns if c != reference))
    palettes = {reference: base[:n_ref]}
    spare = iter(base[n_ref:])
    for column in columns:
        if column == reference:
            continue
        values = obs[column].cat
        mapping = match_labels(values.codes.to_numpy(), ref.codes.to_numpy(), len(values.categories), n_ref)
        palettes[column] = [base[m] if m >= 0 else next(spare) for m in mapping]
    return palettes


@spatialdata_input
@doc_params
def ablation(
    adata: AnnData,
    *,
    key: str = "aestetik_ablation",
    spatial_key: str = "spatial",
    library_id: str | None = None,
    img_key: str | None = None,
    spot_size: float | None = None,
    align_colors: bool = True,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **kwargs: Any,
) -> list[Axes]:
    """The modality ablation of :func:`aestetik.tl.ablation`: three domain maps and their scores.

    Draws the domains of the settings ``'transcriptomics'``, ``'morphology'`` and ``'both'`` side by side
    over the tissue (with :func:`aestetik.pl.spatial`, over the H&E image when ``adata.uns['spatial']`` holds
    one), then a bar chart of each setting's adjusted Rand index (ARI) against the ground truth, or, when the
    ablation ran without one, of the silhouette of its domains in its embedding. The score is also in each
    map's title.

    Parameters
    ----------
    adata
        Annotated data matrix after :func:`aestetik.tl.ablation`.
    key
        The ``key_added`` of :func:`aestetik.tl.ablation`.
    spatial_key
        ``adata.obsm`` key of the spot coordinates (the image's pixel coordinates when there is an image).
    library_id
        Key of ``adata.uns['spatial']`` whose image to show; needed when there are several.
    img_key
        Image to show; by default ``'hires'`` when present, else ``'lowres'``.
    spot_size
        Spot diameter in coordinate units; by default as :func:`aestetik.pl.spatial`.
    align_colors
        Give each domain of the single-modality settings the colour of the ``'both'`` domain it overlaps most
        (matched one-to-one), so that the maps can be compared; ignored when ``palette`` is passed.
    figsize
        Size of the figure; by default 4 inches per panel.
    {show}
    {save}
    **kwargs
        Passed on to :func:`aestetik.pl.spatial` (e.g. ``palette``, ``alpha_img``, ``legend_loc``).

    Returns
    -------
    The four :class:`~matplotlib.axes.Axes`: the maps of ``'transcriptomics'``, ``'morphology'`` and
    ``'both'``, then the bar chart. ``adata`` is not modified.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.synthetic(n_spots=1000)
    >>> ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=4)  # doctest: +SKIP
    >>> ae.tl.ablation(adata, n_clusters=4, ground_truth_key="ground_truth")  # doctest: +SKIP
    >>> axs = ae.pl.ablation(adata)  # doctest: +SKIP
    """
    from anndata import AnnData

    record = _record(adata, key)
    settings = [str(s) for s in record["settings"]]
    columns = [f"{key}_{s}" for s in settings]
    for column in columns:
        assert_obs_key(adata, column, fix=f"Run `aestetik.tl.ablation(adata, key_added={key!r})` again.")
    xy = assert_obsm_key(adata, spatial_key, fix="Pass the obsm key of the spot coordinates as `spatial_key`.")
    fixed = sorted(set(kwargs) & {"ax", "color", "title", "ground_truth", "show", "save"})
    if fixed:
        msg = f"`aestetik.pl.ablation` sets {', '.join(map(repr, fixed))} of each panel itself; it draws a new figure of four panels."
        raise TypeError(msg)
    scores = record.get("ari")
    if isinstance(scores, Mapping):
        truth = str(record.get("params", {}).get("ground_truth_key", "")) or "ground truth"
        metric, label = "ARI", f"ARI vs {truth!r}"
    else:
        scores, metric, label = record["silhouette"], "silhouette", "silhouette (embedding)"
    values = [float(scores[s]) for s in settings]

    # plot a light AnnData: the domain columns, the coordinates as 'spatial' and the image record (not copied)
    obs = pd.DataFrame({c: adata.obs[c].astype("category").array for c in columns}, index=adata.obs_names)
    plot_data = AnnData(obs=obs, obsm={"spatial": xy})
    if "spatial" in adata.uns:
        plot_data.uns["spatial"] = adata.uns["spatial"]
    palettes = {}
    if align_colors and "palette" not in kwargs and f"{key}_{_REFERENCE}" in columns:
        palettes = _aligned_palettes(plot_data.obs, columns, f"{key}_{_REFERENCE}")

    n_panels = len(settings) + 1
    fig, axs = plt.subplots(1, n_panels, figsize=figsize or (4.0 * n_panels, 4.0), layout="constrained")
    axs = list(axs)
    for ax, setting, column, value in zip(axs[:-1], settings, columns, values, strict=True):
        score = "n/a" if np.isnan(value) else f"{value:.3f}"
        spatial(
            plot_data,
            color=column,
            title=f"{setting}\n{metric} = {score}",
            library_id=library_id,
            img_key=img_key,
            spot_size=spot_size,
            ax=ax,
            show=False,
            **({"palette": palettes[column]} if column in palettes else {}),
            **kwargs,
        )
    bar = axs[-1]
    heights = np.nan_to_num(values)
    bar.bar(settings, heights, color=[f"C{i}" for i in range(len(settings))])
    for x, (h, value) in enumerate(zip(heights, values, strict=True)):
        bar.annotate(
            "n/a" if np.isnan(value) else f"{value:.3f}",
            (x, h),
            xytext=(0, 3 if h >= 0 else -3),
            textcoords="offset points",
            ha="center",
            va="bottom" if h >= 0 else "top",
            fontsize="small",
        )
    low = min(0.0, float(heights.min()))
    bar.set_ylim(low - 0.1 * (low < 0), max(1.0, float(heights.max())) * 1.1)
    bar.axhline(0, color="black", linewidth=0.8)
    bar.set_ylabel(label)
    bar.set_title(f"modality ablation ({metric})")
    bar.spines[["top", "right"]].set_visible(False)
    finish(fig, show=show, save=save)
    return axs

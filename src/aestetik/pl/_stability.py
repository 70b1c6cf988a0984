"""How many domains, and how much the training seeds agree: curves of :func:`aestetik.tl.cluster` and consensus."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np

from aestetik._docs import doc_params
from aestetik._spatialdata import spatialdata_input

from ._utils import finish

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

_CURVE = ("n_clusters", "mean", "sd", "chosen")


def _stability(adata: AnnData, key: str) -> dict[str, Any]:
    """The stability curve of ``tl.cluster`` (preferred) or ``tl.consensus`` under ``adata.uns[key]``."""
    results = adata.uns.get(key, {})
    results = results if isinstance(results, Mapping) else {}
    for step in ("cluster", "consensus"):
        record = results.get(step, {})
        curve = record.get("stability") if isinstance(record, Mapping) else None
        if isinstance(curve, Mapping) and all(name in curve for name in _CURVE):
            return dict(curve)
    msg = (
        f"Did not find a stability curve in `adata.uns[{key!r}]['cluster']` or `['consensus']`. "
        f"Run `aestetik.tl.cluster(adata, 'auto', key_added={key!r})` (or pass a range of `n_clusters`) first."
    )
    raise KeyError(msg)


@spatialdata_input
@doc_params
def n_clusters(
    adata: AnnData,
    *,
    key: str = "aestetik",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
) -> Axes:
    """Stability of each number of domains, with the chosen one marked.

    Draws the mean pairwise adjusted Rand index (ARI) between clusterings of random subsamples for every candidate
    ``K`` (± one standard deviation), the band within the tolerance of the best stability, and the chosen ``K``
    (the largest inside the band), as computed by ``aestetik.tl.cluster(adata, n_clusters='auto')`` or
    :func:`aestetik.tl.consensus` with ``n_clusters='auto'``.

    Parameters
    ----------
    adata
        Annotated data matrix after choosing the number of domains.
    key
        The ``key_added`` of :func:`aestetik.tl.cluster` (or :func:`aestetik.tl.consensus`); the curve comes from
        ``adata.uns[key]['cluster']['stability']``, else ``adata.uns[key]['consensus']['stability']``.
    {ax}
    {show}
    {save}

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`; its first line is the curve (x: candidates, y: mean stability).

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.dlpfc_151676()  # doctest: +SKIP
    >>> ae.pp.prepare(adata)  # doctest: +SKIP
    >>> ae.tl.fit(adata)  # doctest: +SKIP
    >>> ae.tl.cluster(adata, "auto")  # doctest: +SKIP
    >>> ax = ae.pl.n_clusters(adata)  # doctest: +SKIP
    """
    curve = _stability(adata, key)
    ks = np.asarray(curve["n_clusters"], dtype=float).ravel()
    mean = np.asarray(curve["mean"], dtype=float).ravel()
    sd = np.asarray(curve["sd"], dtype=float).ravel()
    chosen = int(curve["chosen"])
    if not ks.size == mean.size == sd.size:
        msg = f"The stability curve in `adata.uns[{key!r}]` has arrays of different lengths ({ks.size}, {mean.size}, {sd.size})."
        raise ValueError(msg)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ks, mean, marker="o", color="black", label="stability")
    ax.fill_between(ks, mean - sd, mean + sd, color="grey", alpha=0.25, linewidth=0, label="± sd")
    tolerance = curve.get("tolerance")
    if tolerance is not None:
        ax.axhspan(mean.max() - float(tolerance), mean.max(), color="tab:blue", alpha=0.1, label="tolerance")
    at = np.flatnonzero(ks == chosen)
    if at.size:
        ax.plot([chosen], mean[at[:1]], marker="*", markersize=14, color="tab:red", linestyle="none")
    ax.axvline(chosen, color="tab:red", linestyle="--", linewidth=1, label=f"chosen K = {chosen}")
    ax.set_xticks(ks)
    ax.set_xlabel("number of domains K")
    ax.set_ylabel("mean pairwise ARI of subsamples")
    ax.set_title("stability of K" if key == "aestetik" else f"stability of K ({key})")
    ax.legend(frameon=False, fontsize="small")
    finish(ax.figure, show=show, save=save)
    return ax


@spatialdata_input
@doc_params
def consensus(
    adata: AnnData,
    *,
    key: str = "aestetik",
    cmap: str = "viridis",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
) -> Axes:
    """Agreement between the training seeds of :func:`aestetik.tl.consensus`: their pairwise ARI as a heatmap.

    Every cell holds the adjusted Rand index (ARI) between the domains of two runs; the reference (medoid) run is
    marked with ``*``. The per-spot confidence of the consensus is drawn over the tissue with
    ``aestetik.pl.spatial(adata, color=key + '_confidence')``.

    Parameters
    ----------
    adata
        Annotated data matrix after :func:`aestetik.tl.consensus`.
    key
        Its ``key_added``; the matrix comes from ``adata.uns[key]['consensus']['ari']``.
    cmap
        Colour map of the heatmap (ARI from 0 to 1).
    {ax}
    {show}
    {save}

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`; the heatmap is its first image (``ax.images[0]``).

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.dlpfc_151676()  # doctest: +SKIP
    >>> ae.pp.prepare(adata)  # doctest: +SKIP
    >>> ae.tl.consensus(adata, n_seeds=5)  # doctest: +SKIP
    >>> ax = ae.pl.consensus(adata)  # doctest: +SKIP
    >>> ax = ae.pl.spatial(adata, color="aestetik_confidence")  # doctest: +SKIP
    """
    results = adata.uns.get(key, {})
    record = results.get("consensus") if isinstance(results, Mapping) else None
    if not isinstance(record, Mapping) or "ari" not in record:
        msg = f"Did not find `adata.uns[{key!r}]['consensus']`. Run `aestetik.tl.consensus(adata, key_added={key!r})` first."
        raise KeyError(msg)
    ari = np.asarray(record["ari"], dtype=float)
    seeds = np.asarray(record.get("seeds", np.arange(ari.shape[0]))).ravel()
    reference = int(record.get("reference", -1))
    if ax is None:
        _, ax = plt.subplots(figsize=(1 + 0.6 * ari.shape[0], 0.6 + 0.6 * ari.shape[0]))
    image = ax.imshow(ari, vmin=0, vmax=1, cmap=cmap)
    for i in range(ari.shape[0]):
        for j in range(ari.shape[1]):
            ax.text(j, i, f"{ari[i, j]:.2f}", ha="center", va="center", fontsize="small", color="white")
    labels = [f"{s}*" if i == reference else str(s) for i, s in enumerate(seeds)]
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.set_xlabel("seed")
    ax.set_ylabel("seed")
    ax.set_title(f"pairwise ARI (mean {float(record.get('mean_ari', np.nan)):.2f})")
    ax.figure.colorbar(image, ax=ax, label="ARI")
    finish(ax.figure, show=show, save=save)
    return ax

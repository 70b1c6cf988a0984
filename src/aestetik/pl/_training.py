"""Training curves recorded by :func:`aestetik.tl.fit`."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from aestetik._docs import doc_params
from aestetik._spatialdata import spatialdata_input

from ._utils import finish

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

_TOTAL = "loss"
_PARTS = (
    ("reconstruction_transcriptomics", "reconstruction (transcriptomics)"),
    ("reconstruction_morphology", "reconstruction (morphology)"),
    ("triplet_transcriptomics", "triplet (transcriptomics)"),
    ("triplet_morphology", "triplet (morphology)"),
)


def _history(adata: AnnData, key: str) -> dict[str, np.ndarray]:
    fit = adata.uns.get(key, {})
    fit = fit.get("fit", {}) if isinstance(fit, Mapping) else {}
    history = fit.get("history") if isinstance(fit, Mapping) else None
    if not isinstance(history, Mapping) or _TOTAL not in history:
        msg = f"Did not find the training history `adata.uns[{key!r}]['fit']['history']`. Run `aestetik.tl.fit(adata)` first."
        raise KeyError(msg)
    history = {name: np.asarray(values, dtype=float).ravel() for name, values in history.items()}
    lengths = {name: len(values) for name, values in history.items()}
    if len(set(lengths.values())) > 1:
        msg = f"The arrays of `adata.uns[{key!r}]['fit']['history']` differ in length: {lengths}."
        raise ValueError(msg)
    return history


@spatialdata_input
@doc_params
def loss(
    adata: AnnData,
    *,
    key: str = "aestetik",
    logy: bool = False,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
) -> Axes:
    """Training loss of :func:`aestetik.tl.fit`: the total and its parts, per optimisation step.

    The total weighted loss is drawn with the reconstruction (L1) and multi-triplet terms of each
    modality; terms that are zero throughout (e.g. morphology when its weight was 0) are left out.
    When training took several steps per epoch, a second x axis on top shows the epoch.

    Parameters
    ----------
    adata
        Annotated data matrix after :func:`aestetik.tl.fit`.
    key
        The ``key_added`` of :func:`aestetik.tl.fit`; the curves come from ``adata.uns[key]['fit']['history']``.
    logy
        Logarithmic y axis.
    {ax}
    {show}
    {save}

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` with one line per drawn term.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.synthetic(n_spots=1000)
    >>> ae.pp.prepare(adata)  # doctest: +SKIP
    >>> ae.tl.fit(adata, max_epochs=20)  # doctest: +SKIP
    >>> ax = ae.pl.loss(adata, logy=True)  # doctest: +SKIP
    """
    history = _history(adata, key)
    total = history[_TOTAL]
    steps = np.arange(len(total))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, total, color="black", linewidth=2, label="total")
    for name, label in _PARTS:
        values = history.get(name)
        if values is not None and np.any(values != 0):
            ax.plot(steps, values, linewidth=1, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training loss" if key == "aestetik" else f"training loss ({key})")
    ax.legend(frameon=False, fontsize="small")

    epochs = history.get("epoch")
    if epochs is not None and len(epochs) > 1:
        n_epochs = len(np.unique(epochs))
        steps_per_epoch = len(epochs) / n_epochs
        if steps_per_epoch > 1:
            first = float(epochs.min())
            top = ax.secondary_xaxis(
                "top",
                functions=(lambda s: s / steps_per_epoch + first, lambda e: (e - first) * steps_per_epoch),
            )
            top.set_xlabel("epoch")
    finish(ax.figure, show=show, save=save)
    return ax

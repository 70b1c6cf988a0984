"""Colours of categorical panels: the ground truth's palette, domains in the colours of the labels they match."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aestetik._domains._matching import match_labels
from aestetik._domains._scores import known_labels

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

#: Spare colours closer than this (Euclidean distance in RGB, from 0 to sqrt(3)) to a used one are skipped.
_MIN_DISTANCE = 0.2


def _hex(color: Any) -> str:
    """``'#rrggbb'`` (``'#rrggbbaa'`` when translucent): scanpy draws legend entries with ``c=``, which takes no tuple."""
    from matplotlib.colors import to_hex, to_rgba

    rgba = to_rgba(color)
    return to_hex(rgba, keep_alpha=rgba[3] < 1)


def default_palette(n: int) -> list[str]:
    """The colours scanpy gives ``n`` categories when none are stored (its default palettes, in its order)."""
    from matplotlib import rcParams
    from scanpy.plotting import palettes

    cycle = list(rcParams["axes.prop_cycle"].by_key().get("color", []))
    if len(cycle) >= n:
        return [_hex(c) for c in cycle[:n]]
    for palette in (palettes.default_20, palettes.default_28, palettes.default_102):
        if len(palette) >= n:
            return [_hex(c) for c in palette[:n]]
    return ["grey"] * n


def stored_palette(uns: Mapping[str, Any], key: str, n: int) -> list[str] | None:
    """``uns[key + '_colors']`` (as hex) when it holds at least ``n`` matplotlib colours, else ``None``."""
    from matplotlib.colors import is_color_like

    stored = uns.get(f"{key}_colors")
    if stored is None or isinstance(stored, str) or not isinstance(stored, Sequence | np.ndarray):
        return None
    stored = list(stored)
    if len(stored) < n or not all(is_color_like(c) for c in stored[:n]):
        return None
    return [_hex(c) for c in stored[:n]]


def spare_colors(used: Sequence[Any], n: int) -> list[str]:
    """``n`` colours, each different from the others and from every colour in ``used``.

    Taken in order from scanpy's 102-colour palette, skipping those close to a used colour (closer than
    :data:`_MIN_DISTANCE` in RGB); when these run out, the close ones follow, then grey.
    """
    from matplotlib.colors import to_hex, to_rgb
    from scanpy.plotting import palettes

    used_rgb = np.array([to_rgb(c) for c in used]).reshape(-1, 3)
    used_hex = {to_hex(c) for c in used}
    candidates = [c for c in dict.fromkeys(to_hex(c) for c in palettes.default_102) if c not in used_hex]
    far, near = [], []
    for c in candidates:
        distance = np.sqrt(((used_rgb - np.array(to_rgb(c))) ** 2).sum(axis=1)).min() if used_rgb.size else np.inf
        (far if distance >= _MIN_DISTANCE else near).append(c)
    pool = far + near
    return [pool[i] if i < len(pool) else "grey" for i in range(n)]


def matched_palette(truth_colors: Sequence[str], mapping: np.ndarray) -> list[str]:
    """One colour per domain: that of its matched label (``mapping[i] >= 0``), else a spare colour."""
    mapping = np.asarray(mapping)
    spare = iter(spare_colors(truth_colors, int((mapping < 0).sum())))
    return [truth_colors[m] if m >= 0 else next(spare) for m in mapping]


def _categories(values: pd.Series) -> pd.Index | None:
    return values.cat.categories if isinstance(values.dtype, pd.CategoricalDtype) else None


def match_to_truth(
    obs: pd.DataFrame, uns: Mapping[str, Any], keys: Sequence[str], ground_truth: str
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Palette and legend labels of every categorical panel in ``keys``, matched to the ground truth.

    The ground truth keeps its stored palette (else scanpy's default); every other categorical column
    takes, category by category, the colour of the label it is matched to (Hungarian matching on the spots
    with a known ground truth), and its legend shows the match (``'3 (L4)'``). Columns that are not
    categorical (genes, numbers) are left out, and so is everything when the ground truth is not categorical.
    """
    truth = obs[ground_truth]
    truth_categories = _categories(truth)
    if truth_categories is None:
        return {}
    truth_colors = stored_palette(uns, ground_truth, len(truth_categories)) or default_palette(len(truth_categories))
    truth_codes = np.where(known_labels(truth), truth.cat.codes.to_numpy(), -1)
    plans: dict[str, tuple[list[str], dict[str, str]]] = {ground_truth: (truth_colors, {})}
    for key in keys:
        categories = _categories(obs[key]) if key in obs.columns and key not in plans else None
        if categories is None:
            continue
        codes = obs[key].cat.codes.to_numpy()
        mapping = match_labels(codes, truth_codes, len(categories), len(truth_categories))
        legend = {str(c): f"{c} ({truth_categories[m]})" for c, m in zip(categories, mapping, strict=True) if m >= 0}
        plans[key] = (matched_palette(truth_colors, mapping), legend)
    return {key: plan for key, plan in plans.items() if key in keys}


def relabel_legend(ax: Axes, labels: Mapping[str, str]) -> None:
    """Rename the legend entries of ``ax`` (and the labels drawn on the data) found in ``labels``."""
    legend = ax.get_legend()
    texts = [*(legend.get_texts() if legend is not None else []), *ax.texts]
    for text in texts:
        new = labels.get(text.get_text())
        if new is not None:
            text.set_text(new)


@contextmanager
def untouched(adata: AnnData) -> Iterator[None]:
    """Undo, on exit (also on error), what plotting with scanpy writes into ``adata``.

    scanpy stores palettes in ``uns[key + '_colors']`` and turns string columns of ``obs`` and ``var`` into
    categoricals; both are put back as they were.
    """
    colors = {key: value for key, value in adata.uns.items() if str(key).endswith("_colors")}
    columns = {
        name: {c: values for c, values in df.items() if not isinstance(values.dtype, pd.CategoricalDtype)}
        for name, df in (("obs", adata.obs), ("var", adata.var))
        if df.columns.is_unique
    }
    try:
        yield
    finally:
        for key in [k for k in adata.uns if str(k).endswith("_colors") and k not in colors]:
            del adata.uns[key]
        for key, value in colors.items():
            if adata.uns.get(key) is not value:
                adata.uns[key] = value
        for name, saved in columns.items():
            df = getattr(adata, name)
            for c, values in saved.items():
                if c in df.columns and df[c].dtype != values.dtype:
                    df[c] = values

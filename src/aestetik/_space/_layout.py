"""Where every spot sits on the lattice, from whichever source ``pp.prepare(coords=...)`` names.

- two ``obs`` columns (Visium ``array_row``, ``array_col``): read and snapped by :func:`lattice_from_obs`;
- ``None``: derived from the positions (``obsm['spatial']``) by :func:`aestetik._space._detect.detect_lattice`
  (hexagonal or square), also when the default columns are absent;
- ``'cells'``: single cells, every cell its own site on a square grid (:mod:`aestetik._space._cells`).

Irregular positions are never turned into a cell grid unless asked for: a lattice that fails to be detected (a
wrong ``spatial_key``, distorted coordinates) should stop the run, not silently change what a window means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scanpy import logging as logg

from ._cells import CELLS_PER_SITE, DENSITY_NEIGHBORS, cell_lattice
from ._detect import detect_lattice
from ._lattice import assert_unique_positions, lattice_from_obs, lattice_type
from ._smoothing import physical_positions

#: The single-cell mode of ``coords``.
CELLS = "cells"
#: The default ``coords``: 10x Visium lattice columns.
DEFAULT_COORDS = ("array_row", "array_col")

Coords = tuple[str, str] | Literal["cells"] | None


@dataclass(frozen=True)
class Layout:
    """The lattice of every spot and how it was found.

    Attributes
    ----------
    lattice
        (n, 2) int32 (row, col).
    kind
        ``'hex'`` or ``'square'``.
    positions
        (n, 2) positions in site spacings for the pseudo-label smoothing.
    columns
        The ``obs`` columns read (empty when derived from positions).
    record
        The h5ad-writable ``uns[key]['prepare']['lattice']`` record: ``source`` (``'obs'``, ``'spatial'`` or
        ``'cells'``), ``layout`` and what the source adds (spacing, angle, collisions, ...).
    """

    lattice: np.ndarray
    kind: Literal["hex", "square"]
    positions: np.ndarray
    columns: tuple[str, ...]
    record: dict[str, Any]


def check_coords(coords: object) -> Coords:
    """``coords`` as ``prepare`` takes it, or a ValueError that names the three forms."""
    if coords is None or coords == CELLS:
        return coords  # type: ignore[return-value]
    if isinstance(coords, tuple | list) and len(coords) == 2 and all(isinstance(c, str) for c in coords):
        return (str(coords[0]), str(coords[1]))
    msg = (
        f"`coords` must name two obs columns (row, col), be None (derive the lattice from `adata.obsm[spatial_key]`) "
        f"or {CELLS!r} (single cells), got {coords!r}."
    )
    raise ValueError(msg)


def _spatial(spatial: np.ndarray | None, n: int, spatial_key: str, why: str) -> np.ndarray:
    if spatial is None:
        msg = (
            f"Did not find `adata.obsm[{spatial_key!r}]`, which {why} needs. Pass `spatial_key` naming the (n, 2) "
            "positions, or `coords=(row_column, col_column)` naming integer lattice positions in obs."
        )
        raise KeyError(msg)
    xy = np.asarray(spatial)
    if xy.ndim != 2 or xy.shape[0] != n or xy.shape[1] < 2 or not np.issubdtype(xy.dtype, np.number):
        msg = f"`adata.obsm[{spatial_key!r}]` has shape {xy.shape} ({xy.dtype}); {why} needs (n_obs, 2) numbers."
        raise ValueError(msg)
    xy = xy[:, :2].astype(np.float64)
    if not np.all(np.isfinite(xy)):
        bad = int((~np.isfinite(xy)).any(axis=1).sum())
        msg = (
            f"`adata.obsm[{spatial_key!r}]` has NaN or infinite values ({bad} spots); every spot needs a position. "
            "Remove those spots (e.g. `adata = adata[np.isfinite(adata.obsm[spatial_key]).all(1)].copy()`)."
        )
        raise ValueError(msg)
    return xy


def lattice_layout(
    obs: pd.DataFrame,
    spatial: np.ndarray | None,
    coords: Coords,
    samples: np.ndarray,
    sample_names: list[str],
    *,
    spatial_key: str,
) -> Layout:
    """The lattice of every spot from ``coords`` (see the module docstring), per sample, validated.

    ``spatial`` is ``adata.obsm[spatial_key]`` (or ``None`` when absent); it is read only when ``coords`` is
    ``None`` or ``'cells'``, or the default columns are absent.
    """
    n = len(obs)
    if coords == CELLS:
        xy = _spatial(spatial, n, spatial_key, "`coords='cells'`")
        cells = cell_lattice(xy, samples)
        record = {
            "source": "cells",
            "layout": "square",
            "spatial_key": spatial_key,
            "spacing": cells.spacing,
            "cells_per_site": float(CELLS_PER_SITE),
            "density_neighbors": int(DENSITY_NEIGHBORS),
            "n_displaced": cells.n_displaced,
            "max_displacement": cells.max_displacement,
            "mean_displacement": cells.mean_displacement,
        }
        return Layout(cells.lattice, "square", cells.positions, (), record)
    if coords is not None and not (tuple(coords) == DEFAULT_COORDS and not set(coords) <= set(obs.columns)):
        lattice = lattice_from_obs(obs, coords)
        assert_unique_positions(lattice, samples, sample_names, coords)
        kind = lattice_type(lattice, samples)
        record = {"source": "obs", "layout": kind, "columns": np.asarray(coords, dtype=str)}
        return Layout(lattice, kind, physical_positions(lattice, kind), tuple(coords), record)
    why = "deriving the lattice from the positions (`coords=None`" + (
        ")" if coords is None else ", as `adata.obs` has no 'array_row'/'array_col')"
    )
    xy = _spatial(spatial, n, spatial_key, why)
    if coords is not None:
        logg.info(
            f"    no `adata.obs[{coords[0]!r}]`/`[{coords[1]!r}]`: deriving the lattice from `adata.obsm[{spatial_key!r}]`"
        )
    found = detect_lattice(xy, samples, where=f"`adata.obsm[{spatial_key!r}]`")
    record = {
        "source": "spatial",
        "layout": found.kind,
        "spatial_key": spatial_key,
        "spacing": found.spacing,
        "angle": found.angle,
        "concentration": found.concentration,
        "residual": found.residual,
    }
    return Layout(found.lattice, found.kind, physical_positions(found.lattice, found.kind), (), record)


def describe(layout: Layout) -> str:
    """One line for the log: where the lattice came from."""
    rec = layout.record
    if rec["source"] == "obs":
        return f"lattice from `adata.obs[{list(layout.columns)}]` ({layout.kind})"
    spacing = ", ".join(f"{s:.4g}" for s in np.atleast_1d(rec["spacing"]))
    where = f"`adata.obsm[{rec['spatial_key']!r}]`"
    if rec["source"] == "cells":
        displaced = int(np.sum(rec["n_displaced"]))
        return f"single cells on a square grid from {where} (spacing {spacing}; {displaced} cells moved to a free site)"
    angle = ", ".join(f"{a:.2f}" for a in np.atleast_1d(rec["angle"]))
    return f"{'hexagonal' if layout.kind == 'hex' else 'square'} lattice detected in {where} (spacing {spacing}, angle {angle}°)"

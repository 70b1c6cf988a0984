"""Integer lattice positions per spot: validation, hex/square detection."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from scanpy import logging as logg

#: Largest distance from the nearest lattice point, in steps, that snapping accepts.
SNAP_TOLERANCE = 0.25


def snap_to_lattice(values: np.ndarray, name: str) -> np.ndarray:
    """Whole-number lattice indices of ``values`` (float array of one coordinate).

    Whole numbers whose differences share a divisor above 1 are divided by it (bins at 0, 50, 100 -> 0, 1, 2).
    Other values are snapped to ``round((v - min) / step)`` with ``step`` the median gap between consecutive
    distinct values, when every value lies within ``SNAP_TOLERANCE`` steps of a lattice point; otherwise the
    values are not on a lattice and a ValueError says so.
    """
    if values.size == 0:
        return values
    rounded = np.round(values)
    whole = np.all(np.abs(values - rounded) <= 1e-6)
    unique = np.unique(rounded if whole else values)
    if unique.size < 2:
        return rounded if whole else np.zeros_like(values)
    gaps = np.diff(unique)
    if whole:
        step = int(np.gcd.reduce(gaps.astype(np.int64)))
        if step <= 1:
            return rounded
        logg.info(f"    `adata.obs[{name!r}]`: whole numbers {step} apart, divided by {step} to lattice indices")
        return np.round((rounded - unique[0]) / step) + np.round(unique[0] / step)
    # gaps between lattice lines, not the jitter within one: the gaps above a quarter of the largest one
    step = float(np.median(gaps[gaps > 0.25 * gaps.max()]))
    q = np.round((values - unique[0]) / step)
    if np.ptp(q) > 0:  # refine spacing and offset by least squares: values ~ offset + step * q
        step, offset = np.polyfit(q, values, 1)
    else:
        offset = float(values.mean())
    q = (values - offset) / step
    deviation = float(np.abs(q - np.round(q)).max())
    q -= np.round(q).min()
    if deviation > SNAP_TOLERANCE:
        msg = (
            f"`adata.obs[{name!r}]` holds non-integer values (e.g. {values[0]:g}) that are not on a regular lattice "
            f"(median spacing {step:g}; a value lies {deviation:.2f} spacings from the nearest lattice point). "
            "Pass the integer lattice indices (Visium 'array_row'/'array_col', or bin indices), not pixel coordinates."
        )
        raise ValueError(msg)
    logg.info(f"    `adata.obs[{name!r}]`: non-integer values snapped to a lattice of spacing {step:g}")
    return np.round(q)


def lattice_from_obs(obs: pd.DataFrame, coords: tuple[str, str]) -> np.ndarray:
    """Return the (n, 2) int32 lattice (row, col) read from two ``obs`` columns.

    Raises when the columns are missing, not numeric or negative, or hold values that are not on a regular
    lattice; values on a regular lattice with another spacing (e.g. bin coordinates 0, 50, 100, ... or
    pixel-like floats on a grid) are snapped to consecutive integers (see :func:`snap_to_lattice`).
    """
    out = np.empty((len(obs), 2), dtype=np.int64)
    for j, name in enumerate(coords):
        if name not in obs.columns:
            found = ", ".join(repr(c) for c in obs.columns[:20]) or "nothing"
            msg = (
                f"Did not find the lattice coordinate `adata.obs[{name!r}]` (found: {found}). "
                "Pass `coords=(row_column, col_column)` naming the integer lattice positions "
                "(10x Visium: 'array_row', 'array_col')."
            )
            raise KeyError(msg)
        col = obs[name]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            msg = f"`adata.obs[{name!r}]` has dtype {col.dtype}; lattice coordinates must be integers."
            raise ValueError(msg)
        values = col.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(values)):
            msg = f"`adata.obs[{name!r}]` contains NaN or infinite values; every spot needs a lattice position."
            raise ValueError(msg)
        if np.any(values < 0):
            msg = (
                f"`adata.obs[{name!r}]` contains negative values (min {values.min():g}); lattice positions start at 0."
            )
            raise ValueError(msg)
        rounded = snap_to_lattice(values, name)
        out[:, j] = rounded.astype(np.int64)
    if out.size and out.max() >= np.iinfo(np.int32).max // 4:
        msg = "Lattice coordinates are too large for an integer lattice; pass lattice indices, not pixel coordinates."
        raise ValueError(msg)
    return out.astype(np.int32)


def sample_codes(obs: pd.DataFrame, batch_key: str | None) -> tuple[np.ndarray, list[str]]:
    """Integer sample code per spot (all zeros without ``batch_key``) and the sample names."""
    if batch_key is None:
        return np.zeros(len(obs), dtype=np.int32), ["0"]
    if batch_key not in obs.columns:
        found = ", ".join(repr(c) for c in obs.columns[:20]) or "nothing"
        msg = f"Did not find `adata.obs[{batch_key!r}]` (found: {found}). Pass the obs column that names the sample of each spot, or `batch_key=None`."
        raise KeyError(msg)
    col = obs[batch_key]
    if col.isna().any():
        msg = f"`adata.obs[{batch_key!r}]` has missing values; every spot must belong to a sample."
        raise ValueError(msg)
    cat = pd.Categorical(col.astype(str))
    return cat.codes.astype(np.int32), [str(c) for c in cat.categories]


def assert_unique_positions(
    lattice: np.ndarray, samples: np.ndarray, names: list[str], coords: tuple[str, str]
) -> None:
    """Raise when two spots of one sample share a lattice position."""
    keys = pd.DataFrame({"s": samples, "r": lattice[:, 0], "c": lattice[:, 1]})
    dup = keys.duplicated(keep=False)
    if dup.any():
        first = keys[dup].iloc[0]
        where = f" in sample {names[int(first.s)]!r}" if len(names) > 1 else ""
        msg = (
            f"{int(dup.sum())} spots share a lattice position{where}, e.g. ({coords[0]}={int(first.r)}, "
            f"{coords[1]}={int(first.c)}). Each spot needs its own position: remove duplicates or pass "
            "`batch_key` when the AnnData holds several samples."
        )
        raise ValueError(msg)


def lattice_type(lattice: np.ndarray, samples: np.ndarray) -> Literal["hex", "square"]:
    """``'hex'`` when row + col has one parity per sample (Visium), else ``'square'``."""
    if lattice.shape[0] == 0:
        return "square"
    parity = (lattice[:, 0] + lattice[:, 1]) % 2
    for s in np.unique(samples):
        if np.unique(parity[samples == s]).size > 1:
            return "square"
    return "hex"

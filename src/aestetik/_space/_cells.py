"""A lattice for single cells (irregular positions): every cell its own site on a square grid.

So that the windows, the network and everything downstream stay the method's, irregular positions get a lattice
of their own (``pp.prepare(coords='cells')``):

- **Spacing**: two sites per cell (``CELLS_PER_SITE = 0.5``), the occupancy of Visium's hexagonal lattice in
  (``array_row``, ``array_col``) indices, where every other position is empty: a 7 x 7 window then holds about
  24 cells, as it holds about 24 spots on Visium, and the gaps are filled as there (median of the window). At one
  cell per site nearly every site is needed and the last cells find a free one far away; at two sites per cell
  fewer cells are displaced, and only by a few sites. The local density at each cell is ``k / (pi r_k^2)`` with
  ``r_k`` the distance to its ``k = DENSITY_NEIGHBORS``-th nearest cell; the site spacing is ``sqrt(CELLS_PER_SITE /
  density)`` at the median density (per sample). The median, not the area of the bounding box or hull, so that
  holes, gaps between tissue pieces and a concave outline do not change it; unit-free (µm or pixels).
- **Sites**: the grid's rows follow the second coordinate (``obsm['spatial']`` y) and its columns the first, so
  that a cell's own site is ``round((y - min y) / spacing), round((x - min x) / spacing)``.
- **Collisions**: cells are taken in order of their distance to their own site's centre (ties by index); each
  takes the free site nearest to its position (its own when free; ties by row, then column). Deterministic, and
  the cells nearest a site's centre keep it. A window of ``w x w`` sites then holds the cell and about
  ``w * w / 2`` cells around it.

The search is a numba loop over rings of sites around the cell's own site, stopped as soon as no farther ring
can hold a closer free site; a plain reference is in ``tests/test_cells.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ._smoothing import domain_side

#: Neighbours of the k-NN density estimate behind the site spacing.
DENSITY_NEIGHBORS = 10
#: Cells per site at the median density (0.5: two sites per cell, the occupancy of the Visium lattice indices).
CELLS_PER_SITE = 0.5
#: ``pseudo_label_smoothing`` of single cells (sites of their grid) when the number of domains is a resolution, not
#: an int: a Gaussian of 3 sites averages about 57 cells (``4 pi sigma^2`` times 0.5 cells per site).
CELL_SMOOTHING = 3.0
#: The default smoothing of single cells is the side of a square with the area of one domain over this number (see
#: :func:`cell_smoothing`).
CELL_DOMAIN_WIDTHS = 7.5
#: The widest default smoothing of single cells, in sites: about 230 cells, within reach of every cell's kernel on
#: sections of millions of cells and few domains.
CELL_SMOOTHING_MAX = 6.0
#: Free sites added around the cells' bounding box, for cells pushed outward by collisions.
_MARGIN = 16


def cell_smoothing(n_cells: float, n_clusters: int) -> float:
    """Default ``pseudo_label_smoothing`` (sites) of single cells: a fixed fraction of the width of one domain.

    A spot already averages several cells, a cell does not: its layer shows only in its neighbourhood (BANKSY
    weights the neighbourhood 0.8 for domains of cells, 0.2 for spots), so cells are averaged over a fixed share of
    a domain rather than over their first ring. One domain of a sample of ``n_cells`` cells cut into ``n_clusters``
    covers ``n_cells / n_clusters / CELLS_PER_SITE`` sites on average; the smoothing is the side of a square of that
    area over :data:`CELL_DOMAIN_WIDTHS`, so that the Gaussian averages about a fifth of a domain's cells (``4 pi
    sigma^2`` times :data:`CELLS_PER_SITE`), and at most :data:`CELL_SMOOTHING_MAX`.
    """
    side = domain_side(n_cells, n_clusters, 1.0 / CELLS_PER_SITE)
    return float(min(CELL_SMOOTHING_MAX, side / CELL_DOMAIN_WIDTHS))


@dataclass(frozen=True)
class CellLattice:
    """Sites of single cells on a square grid.

    Attributes
    ----------
    lattice
        (n, 2) int32 (row, col) site per cell, unique per sample.
    positions
        (n, 2) float64 real positions in site spacings, (y, x) order as the lattice: what the smoothing uses.
    spacing
        Per sample, the site spacing in coordinate units.
    n_displaced
        Per sample, cells that did not get their own site (collisions resolved to the nearest free one).
    max_displacement, mean_displacement
        Per sample, the largest and the mean distance from a cell to its site, in spacings.
    """

    lattice: np.ndarray
    positions: np.ndarray
    spacing: np.ndarray
    n_displaced: np.ndarray
    max_displacement: np.ndarray
    mean_displacement: np.ndarray


def cell_spacing(xy: np.ndarray) -> float:
    """Site spacing of about ``CELLS_PER_SITE`` cells per site at the median k-NN density of ``xy`` (n, 2)."""
    from scipy.spatial import cKDTree

    n = xy.shape[0]
    k = min(DENSITY_NEIGHBORS, n - 1)
    if k < 1:
        return 1.0
    r_k = cKDTree(xy).query(xy, k=k + 1)[0][:, k]
    r_k = r_k[r_k > 0]
    if not r_k.size:
        msg = "All cells sit at one position; no grid can be built from their coordinates."
        raise ValueError(msg)
    density = k / (np.pi * float(np.median(r_k)) ** 2)
    return float(np.sqrt(CELLS_PER_SITE / density))


@numba.njit(cache=True)
def _assign(pos, own, order, occupied, out):  # pragma: no cover - numba; tests/test_cells.py checks it
    height, width = occupied.shape
    for o in range(order.shape[0]):
        i = order[o]
        r0, c0 = own[i, 0], own[i, 1]
        if not occupied[r0, c0]:
            occupied[r0, c0] = True
            out[i, 0], out[i, 1] = r0, c0
            continue
        best, br, bc = np.inf, -1, -1
        ring = 1
        while True:
            for dr in range(-ring, ring + 1):
                step = 1 if abs(dr) == ring else 2 * ring
                for dc in range(-ring, ring + 1, step):
                    r, c = r0 + dr, c0 + dc
                    if r < 0 or r >= height or c < 0 or c >= width or occupied[r, c]:
                        continue
                    d = (pos[i, 0] - r) ** 2 + (pos[i, 1] - c) ** 2
                    if d < best or (d == best and (r < br or (r == br and c < bc))):
                        best, br, bc = d, r, c
            # every site of the next ring is at least ring + 0.5 away (the cell lies within half a site of r0, c0)
            if br >= 0 and best < (ring + 0.5) ** 2:
                break
            if ring > height + width:
                break
            ring += 1
        occupied[br, bc] = True
        out[i, 0], out[i, 1] = br, bc


def assign_sites(pos: np.ndarray) -> np.ndarray:
    """Integer site per cell from real positions ``pos`` (n, 2) in site spacings (>= 0): own site, else nearest free.

    Cells go in order of their distance to their own site's centre (stable); ties between free sites go to the
    smaller row, then column. Sites may lie up to ``_MARGIN`` outside the cells' bounding box.
    """
    pos = np.ascontiguousarray(pos, dtype=np.float64) + _MARGIN
    own = np.round(pos).astype(np.int64)
    order = np.argsort(np.sum((pos - own) ** 2, axis=1), kind="stable").astype(np.int64)
    shape = (int(own[:, 0].max()) + _MARGIN + 1, int(own[:, 1].max()) + _MARGIN + 1) if len(pos) else (1, 1)
    occupied = np.zeros(shape, dtype=np.bool_)
    out = np.empty_like(own)
    if len(pos):
        _assign(pos, own, order, occupied, out)
    return out - _MARGIN


def cell_lattice(xy: np.ndarray, samples: np.ndarray) -> CellLattice:
    """Every cell its own site on a square grid of two sites per cell, per sample (see the module docstring).

    Parameters
    ----------
    xy
        (n, 2) finite cell positions (x, y) in any unit, e.g. ``obsm['spatial']``.
    samples
        (n,) integer sample code; every sample gets its own grid.

    Returns
    -------
    The sites, the real positions in site spacings and the construction's summary (:class:`CellLattice`).
    """
    xy = np.asarray(xy, dtype=np.float64)
    n = xy.shape[0]
    lattice = np.zeros((n, 2), dtype=np.int64)
    positions = np.zeros((n, 2), dtype=np.float64)
    codes = np.unique(samples)
    spacing, displaced, furthest, mean = [], [], [], []
    for s in codes:
        members = np.flatnonzero(samples == s)
        yx = xy[members][:, ::-1]
        sp = cell_spacing(yx)
        pos = (yx - yx.min(axis=0)) / sp
        sites = assign_sites(pos)
        own = np.round(pos).astype(np.int64)
        lattice[members] = sites - sites.min(axis=0)
        positions[members] = pos
        spacing.append(sp)
        displaced.append(int(np.any(sites != own, axis=1).sum()))
        distance = np.sqrt(np.sum((pos - sites) ** 2, axis=1))
        furthest.append(float(distance.max()) if members.size else 0.0)
        mean.append(float(distance.mean()) if members.size else 0.0)
    if lattice.size and lattice.max() >= np.iinfo(np.int32).max // 4:
        msg = "The cells span too many grid sites for int32 positions."
        raise ValueError(msg)
    return CellLattice(
        lattice=lattice.astype(np.int32),
        positions=positions,
        spacing=np.asarray(spacing, dtype=np.float64),
        n_displaced=np.asarray(displaced, dtype=np.int64),
        max_displacement=np.asarray(furthest, dtype=np.float64),
        mean_displacement=np.asarray(mean, dtype=np.float64),
    )

"""The integer lattice of spots or bins from their positions (``obsm['spatial']``): hexagonal or square.

Per sample, from the vectors between each spot and its nearest neighbours:

1. the neighbour vectors shorter than ``NEIGHBOUR_CUT`` times the median length of the first shell are kept (a
   square lattice's diagonals, at sqrt(2) spacings, are not);
2. the layout is read from their angles: on a hexagonal lattice they repeat every 60°, on a square one every 90°,
   measured by the order-6 and order-4 circular concentrations ``|mean(exp(6 i theta))|`` and
   ``|mean(exp(4 i theta))|`` (one is close to 1, the other close to 0; both are small for irregular points);
3. the neighbour vectors, rotated by multiples of 60° (90°) onto the one closest to the x axis, average to the
   first lattice vector ``a1``; the second is ``a1`` turned by 60° (90°);
4. every point gets integer coordinates ``(u, v)`` in the basis ``(a1, a2)``, after the common offset (the
   circular mean of the fractional parts); the basis and offset are refined by least squares on all points
   (so small errors of the first estimate do not add up over hundreds of steps) until the integers no longer
   change;
5. ``(u, v)`` becomes Visium's convention: hexagonal ``row = v``, ``col = 2 u + v`` (horizontal neighbours differ
   by 2 columns, rows are offset by one), square ``row = v``, ``col = u``; both start at 0.

The points are refused as not on a lattice when the angles show neither layout or when two of them fall on the
same lattice site. It is invariant to the unit (µm or pixels), rotation, missing spots and jitter well below half
a spacing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

#: Neighbour vectors longer than this many spacings are left out (square diagonals are sqrt(2) spacings).
NEIGHBOUR_CUT = 1.2
#: Smallest circular concentration of the neighbour angles (order 6 or 4) accepted as a lattice.
MIN_CONCENTRATION = 0.5
#: Points used to estimate the lattice vectors (every point is then mapped): enough for 1e-4 precision.
MAX_ESTIMATE_POINTS = 200_000
#: Half side, in spacings, of the first region the lattice vectors are refined on (then doubled up to all points).
FIT_RADIUS = 4

_NOT_A_LATTICE = (
    "For single cells or other irregular positions, pass `coords='cells'`: every cell then gets its own site on a "
    "square grid (two sites per cell). For spots with lattice indices in obs, pass `coords=(row_column, "
    "col_column)`."
)


@dataclass(frozen=True)
class DetectedLattice:
    """Integer lattice positions derived from coordinates.

    Attributes
    ----------
    lattice
        (n, 2) int32 (row, col), Visium's convention for ``'hex'``.
    kind
        ``'hex'`` or ``'square'``.
    spacing
        Per sample, the distance between neighbouring sites in coordinate units.
    angle
        Per sample, the direction of the first lattice vector (rows run along it), degrees from the x axis.
    concentration
        Per sample, the circular concentration of the neighbour angles for the detected layout (1 = perfect).
    residual
        Per sample, the median distance of the points from their site, in spacings.
    """

    lattice: np.ndarray
    kind: Literal["hex", "square"]
    spacing: np.ndarray
    angle: np.ndarray
    concentration: np.ndarray
    residual: np.ndarray


def _neighbour_vectors(xy: np.ndarray) -> np.ndarray:
    """Vectors from (a subset of) the points to their neighbours in the first shell of the lattice.

    The shell is cut at ``NEIGHBOUR_CUT`` times the median length of the vectors it keeps (iterated from the
    median nearest-neighbour distance, which alone underestimates the spacing under jitter).
    """
    from scipy.spatial import cKDTree

    tree = cKDTree(xy)
    n = xy.shape[0]
    query = np.arange(n) if n <= MAX_ESTIMATE_POINTS else np.linspace(0, n - 1, MAX_ESTIMATE_POINTS).astype(np.int64)
    dist, idx = tree.query(xy[query], k=min(7, n))
    dist, idx = dist[:, 1:], idx[:, 1:]
    positive = dist[:, 0][dist[:, 0] > 0]
    if not positive.size:
        return np.empty((0, 2))
    spacing = float(np.median(positive))
    for _ in range(10):  # the median of the first shell, which the cut itself depends on
        previous, spacing = spacing, float(np.median(dist[(dist > 0) & (dist < NEIGHBOUR_CUT * spacing)]))
        if abs(spacing - previous) <= 1e-6 * previous:
            break
    keep = (dist > 0) & (dist < NEIGHBOUR_CUT * spacing)
    vectors = xy[idx] - xy[query][:, None, :]
    return vectors[keep]


def _rotate(v: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], axis=-1)


def _fit_basis(xy: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real (u, v) of every point in the refined basis (columns a1, a2), whose integer parts are the sites.

    The basis and offset are refined by least squares on the points within ``FIT_RADIUS`` spacings of the
    central point first, then on twice that radius, and so on up to all points: each step rounds with a basis
    precise enough for its radius, so an error of the first estimate never adds up to a wrong site far out.
    """
    centre = xy[np.argmin(np.linalg.norm(xy - np.median(xy, axis=0), axis=1))]
    rel = xy - centre
    uv = np.linalg.solve(basis, rel.T).T
    phase = np.angle(np.exp(2j * np.pi * uv[np.abs(uv).max(axis=1) <= FIT_RADIUS]).mean(axis=0)) / (2 * np.pi)
    offset = basis @ phase
    radius = FIT_RADIUS
    while True:
        uv = np.linalg.solve(basis, (rel - offset).T).T
        inside = np.abs(uv).max(axis=1) <= radius
        for _ in range(5):
            uv_int = np.round(uv[inside])
            design = np.column_stack([uv_int, np.ones(len(uv_int))])
            coef = np.linalg.lstsq(design, rel[inside], rcond=None)[0]
            if len(uv_int) < 3 or np.linalg.matrix_rank(coef[:2]) < 2:
                break
            basis, offset = coef[:2].T, coef[2]
            uv = np.linalg.solve(basis, (rel - offset).T).T
            if np.array_equal(np.round(uv[inside]), uv_int):
                break
        if inside.all():
            return uv, basis
        radius *= 2


def _nearest_site(uv: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Integer (u, v) of the lattice site nearest to each point (the Voronoi cell, not the parallelogram of ``round``).

    On both layouts (basis at 60° or 90°) the nearest site is a corner of the basis cell holding the point.
    """
    base = np.floor(uv)
    best, best_d = base, np.full(len(uv), np.inf)
    for corner in ((0, 0), (1, 0), (0, 1), (1, 1)):
        site = base + corner
        d = np.sum(((uv - site) @ basis.T) ** 2, axis=1)
        closer = d < best_d
        best = np.where(closer[:, None], site, best)
        best_d = np.where(closer, d, best_d)
    return best.astype(np.int64)


def _detect_one(xy: np.ndarray, where: str) -> tuple[np.ndarray, str, float, float, float, float]:
    """(n, 2) integer (row, col), kind, spacing, angle (degrees), concentration and median residual of one sample."""
    n = xy.shape[0]
    if n < 3:
        msg = f"{where} has {n} point(s) in a sample; at least 3 are needed to detect a lattice. {_NOT_A_LATTICE}"
        raise ValueError(msg)
    vectors = _neighbour_vectors(xy)
    if vectors.shape[0] < 2:
        msg = f"{where}: the points have no distinct neighbours (all at one position?), so no lattice. {_NOT_A_LATTICE}"
        raise ValueError(msg)
    theta = np.arctan2(vectors[:, 1], vectors[:, 0])
    r6 = np.exp(6j * theta).mean()
    r4 = np.exp(4j * theta).mean()
    kind, order, r = ("hex", 6, r6) if abs(r6) >= abs(r4) else ("square", 4, r4)
    concentration = float(abs(r))
    if concentration < MIN_CONCENTRATION:
        msg = (
            f"The positions in {where} are not on a lattice: the directions to their nearest neighbours repeat "
            f"neither every 60° (hexagonal, concentration {abs(r6):.2f}) nor every 90° (square, {abs(r4):.2f}; a "
            f"lattice gives at least {MIN_CONCENTRATION}). {_NOT_A_LATTICE}"
        )
        raise ValueError(msg)
    step = 2 * np.pi / order
    theta0 = float(np.angle(r)) / order  # the lattice direction closest to the x axis
    turns = np.round((theta - theta0) / step)
    a1 = _rotate(vectors, -turns * step).mean(axis=0)
    basis = np.column_stack([a1, _rotate(a1, step)])
    uv, basis = _fit_basis(xy, basis)
    uv_int = _nearest_site(uv, basis)
    residual = float(np.median(np.linalg.norm((uv - uv_int) @ basis.T, axis=1) / np.linalg.norm(basis[:, 0])))
    if kind == "hex":
        rc = np.column_stack([uv_int[:, 1], 2 * uv_int[:, 0] + uv_int[:, 1]])
    else:
        rc = np.column_stack([uv_int[:, 1], uv_int[:, 0]])
    rc -= rc.min(axis=0)
    key = rc[:, 0] * (int(rc[:, 1].max()) + 1) + rc[:, 1]
    n_shared = n - np.unique(key).size
    if n_shared:
        msg = (
            f"The positions in {where} are not on a {'hexagonal' if kind == 'hex' else 'square'} lattice: mapped "
            f"to one (spacing {np.linalg.norm(basis[:, 0]):.4g}), {n_shared} of {n} points share a site with another "
            f"(median distance from the site {residual:.2f} spacings). {_NOT_A_LATTICE}"
        )
        raise ValueError(msg)
    spacing = float(np.sqrt(abs(np.linalg.det(basis)) / (np.sin(step))))
    angle = float(np.degrees(np.arctan2(basis[1, 0], basis[0, 0])))
    return rc, kind, spacing, angle, concentration, residual


def detect_lattice(xy: np.ndarray, samples: np.ndarray, *, where: str = "the coordinates") -> DetectedLattice:
    """Detect the hexagonal or square lattice of the points ``xy`` (n, 2) per sample and map them onto it.

    Parameters
    ----------
    xy
        (n, 2) finite positions in any unit (µm, pixels), e.g. ``obsm['spatial']``.
    samples
        (n,) integer sample code; every sample gets its own lattice, all of one layout.
    where
        How error messages name ``xy``.

    Returns
    -------
    The integer positions and, per sample, the spacing, orientation and fit (:class:`DetectedLattice`).
    """
    xy = np.asarray(xy, dtype=np.float64)
    samples = np.asarray(samples)
    n = xy.shape[0]
    lattice = np.zeros((n, 2), dtype=np.int64)
    codes = np.unique(samples)
    kinds, spacing, angle, concentration, residual = [], [], [], [], []
    for s in codes:
        members = np.flatnonzero(samples == s)
        label = f"{where} (sample {int(s)})" if codes.size > 1 else where
        rc, kind, sp, an, co, re = _detect_one(xy[members], label)
        lattice[members] = rc
        kinds.append(kind)
        spacing.append(sp)
        angle.append(an)
        concentration.append(co)
        residual.append(re)
    if len(set(kinds)) > 1:
        msg = (
            f"{where}: the samples are on different lattices ({', '.join(kinds)}); prepare samples of one "
            "layout together (hexagonal Visium spots or square bins), or pass `coords='cells'`."
        )
        raise ValueError(msg)
    if lattice.size and lattice.max() >= np.iinfo(np.int32).max // 4:
        msg = f"{where}: the derived lattice is too large for int32 positions."
        raise ValueError(msg)
    return DetectedLattice(
        lattice=lattice.astype(np.int32),
        kind=kinds[0] if kinds else "square",  # type: ignore[arg-type]
        spacing=np.asarray(spacing, dtype=np.float64),
        angle=np.asarray(angle, dtype=np.float64),
        concentration=np.asarray(concentration, dtype=np.float64),
        residual=np.asarray(residual, dtype=np.float64),
    )

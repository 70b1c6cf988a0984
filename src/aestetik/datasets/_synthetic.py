"""The simulation of the AESTETIK paper: domains that only transcriptomics and morphology together resolve."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from aestetik._validation import assert_choice

_LATTICES = ("hex", "square")
#: Centre-to-centre distance of neighbouring spots in ``obsm['spatial']`` units (Visium: 100 µm).
_PITCH = 100.0
#: Amplitude of the smooth warp that bends the domain boundaries (fraction of the tissue side).
_WARP = 0.06


def _check_int(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        msg = f"`{name}` must be an int, got {type(value).__name__} ({value!r})."
        raise TypeError(msg)
    if value < minimum:
        msg = f"`{name}` must be at least {minimum}, got {value}."
        raise ValueError(msg)


def _check_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        msg = f"`{name}` must be a number, got {type(value).__name__} ({value!r})."
        raise TypeError(msg)
    value = float(value)
    if not math.isfinite(value):
        msg = f"`{name}` must be finite, got {value}."
        raise ValueError(msg)
    return value


def _lattice_positions(n_spots: int, lattice: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer (row, col) of a roughly square patch of ~``n_spots`` positions and their (x, y) coordinates."""
    if lattice == "hex":
        # Visium: rows are sqrt(3)/2 pitches apart, a row holds one spot every 2 columns, parities match.
        n_rows = max(2, round(math.sqrt(n_spots * 2 / math.sqrt(3))))
        per_row = max(2, round(n_spots / n_rows))
        rows, k = np.divmod(np.arange(n_rows * per_row), per_row)
        cols = 2 * k + rows % 2
        xy = np.column_stack([cols * _PITCH / 2, rows * _PITCH * math.sqrt(3) / 2])
    else:
        side = max(2, round(math.sqrt(n_spots)))
        rows, cols = np.divmod(np.arange(side * side), side)
        xy = np.column_stack([cols * _PITCH, rows * _PITCH])
    return rows, cols, xy


def _kmeans_labels(points: np.ndarray, k: int, rng: np.random.Generator, n_iter: int = 50) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; on evenly spread points its cells are balanced and convex."""
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        d2 = np.min(((points[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(points[rng.choice(len(points), p=d2 / d2.sum())])
    centres = np.asarray(centres)
    labels = np.zeros(len(points), dtype=np.int64)
    for _ in range(n_iter):
        labels = ((points[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        new = np.asarray([points[labels == j].mean(0) if np.any(labels == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return labels


def _make_contiguous(xy: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Give every piece of a domain but its largest to the domain that surrounds it most."""
    pairs = cKDTree(xy).query_pairs(_PITCH * 1.01, output_type="ndarray")
    pairs = np.concatenate([pairs, pairs[:, ::-1]])
    labels = labels.copy()
    for _ in range(10):
        same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
        graph = coo_matrix((np.ones(same.sum()), (pairs[same, 0], pairs[same, 1])), shape=(len(xy), len(xy)))
        n_comp, comp = connected_components(graph, directed=False)
        sizes = np.bincount(comp, minlength=n_comp)
        largest = np.zeros(n_comp, dtype=bool)
        for lab in np.unique(labels):
            comps = np.unique(comp[labels == lab])
            largest[comps[np.argmax(sizes[comps])]] = True
        stray = ~largest[comp]
        if not stray.any():
            break
        for c in np.unique(comp[stray]):
            members = comp == c
            border = pairs[members[pairs[:, 0]] & ~members[pairs[:, 1]], 1]
            labels[members] = np.bincount(labels[border]).argmax()
    return labels


def _domain_layout(xy: np.ndarray, n_domains: int, rng: np.random.Generator) -> np.ndarray:
    """Contiguous domains with curved boundaries: k-means cells of smoothly warped coordinates."""
    span = np.ptp(xy, axis=0)
    uv = (xy - xy.min(0)) / np.where(span > 0, span, 1.0)
    freq = rng.uniform(0.75, 1.5, size=2)
    phase = rng.uniform(0.0, 1.0, size=2)
    warped = np.column_stack(
        [
            uv[:, 0] + _WARP * np.sin(2 * np.pi * (freq[0] * uv[:, 1] + phase[0])),
            uv[:, 1] + _WARP * np.sin(2 * np.pi * (freq[1] * uv[:, 0] + phase[1])),
        ]
    )
    labels = _make_contiguous(xy, _kmeans_labels(warped, n_domains, rng))
    # Number the domains by position (top-left first) so that labels do not depend on the seeding order.
    centres = np.asarray([uv[labels == j].mean(0) if np.any(labels == j) else (2.0, 2.0) for j in range(n_domains)])
    order = np.lexsort((centres[:, 0], centres[:, 1]))
    rank = np.empty(n_domains, dtype=np.int64)
    rank[order] = np.arange(n_domains)
    return rank[labels]


def _group_centres(n_groups: int, n_features: int, rng: np.random.Generator) -> np.ndarray:
    """Random group centres, rescaled so that the closest two are exactly 1 apart."""
    centres = rng.normal(size=(n_groups, n_features))
    centres -= centres.mean(0)
    dist = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1))
    closest = dist[np.triu_indices(n_groups, 1)].min()
    return centres / closest


def synthetic(
    n_spots: int = 2000,
    n_domains: int = 4,
    *,
    lattice: Literal["hex", "square"] = "hex",
    n_genes: int = 50,
    n_morphology_features: int = 15,
    noise: float = 0.4,
    holes: float = 0.0,
    n_samples: int = 1,
    random_state: int = 0,
) -> AnnData:
    """Simulated sections whose domains only the two modalities together identify.

    The simulation of the AESTETIK paper :cite:p:`Nonchev2024`. Spots sit on a lattice covering a
    square piece of tissue that is split into ``n_domains`` spatially contiguous domains with curved
    boundaries (cells of a k-means partition of smoothly warped coordinates, so each domain holds a
    similar share of spots). Each modality sees only merged domains:

    * transcriptomics group = ``domain // 2`` (for 4 domains: ``{0, 1}`` and ``{2, 3}``),
    * morphology group = ``domain % 2`` (for 4 domains: ``{0, 2}`` and ``{1, 3}``),

    so within a group a modality's features have the same distribution, and only the pair of groups
    identifies the domain. The per-spot noise makes single spots ambiguous, while the average over a
    spot's lattice neighbourhood (AESTETIK's 7 x 7 window) is clear.

    In each modality the group centres are random and rescaled so that the two closest are exactly 1
    apart; every feature of every spot gets independent Gaussian noise with standard deviation
    ``noise``, so along the line joining two groups a single spot is off by ``noise`` while the groups
    are 1 apart. Transcriptomics lives in log space: the counts are Poisson draws with rate
    ``exp(b_g + centre + noise * ε)`` (``b_g`` a gene-specific baseline around ``log 12``).

    Parameters
    ----------
    n_spots
        Approximate total number of lattice positions over all samples, before ``holes`` are removed.
    n_domains
        Number of true domains, at least 4.
    lattice
        ``'hex'`` (Visium-like: ``array_col`` has the parity of ``array_row`` and horizontal neighbours
        are 2 columns apart) or ``'square'`` (every integer position).
    n_genes
        Number of genes in ``X``.
    n_morphology_features
        Number of columns of ``obsm['X_morphology']``.
    noise
        Standard deviation of the per-spot, per-feature noise, in units of the distance between the two
        closest group centres of a modality (see above). The default makes single spots ambiguous.
    holes
        Fraction of lattice positions, in ``[0, 1)``, randomly dropped from every sample.
    n_samples
        Number of independent sections. They share the domain profiles and the range of lattice
        coordinates, but each has its own domain layout and holes; spots are split evenly.
    random_state
        Seed; the same seed gives the same data.

    Returns
    -------
    An :class:`~anndata.AnnData` with

    `X` : ndarray
        Counts (non-negative, integer-valued, float32), spots x ``n_genes``.
    `obsm['X_morphology']` : ndarray
        Morphology features, float32, spots x ``n_morphology_features``.
    `obsm['spatial']` : ndarray
        (x, y) coordinates, neighbouring spots 100 units apart (Visium pixels at 1 µm per pixel).
    `obs['array_row']`, `obs['array_col']` : int
        Integer lattice coordinates.
    `obs['ground_truth']` : categorical
        True domain, ``'0'`` .. ``str(n_domains - 1)``.
    `obs['transcriptomics_group']`, `obs['morphology_group']` : categorical
        The merged groups each modality sees (``domain // 2`` and ``domain % 2``).
    `obs['sample']` : categorical
        ``'sample_0'`` .. ``f'sample_{n_samples - 1}'`` (also present for a single sample).
    `uns['synthetic']` : dict
        The parameters of this call.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.synthetic(n_spots=1000, n_domains=4, random_state=0)
    >>> adata.obs["ground_truth"].cat.categories.tolist()
    ['0', '1', '2', '3']
    """
    _check_int(n_spots, "n_spots", 1)
    _check_int(n_domains, "n_domains", 4)
    assert_choice(lattice, _LATTICES, name="lattice")
    _check_int(n_genes, "n_genes", 1)
    _check_int(n_morphology_features, "n_morphology_features", 1)
    noise = _check_float(noise, "noise")
    if noise < 0:
        msg = f"`noise` must be non-negative, got {noise}."
        raise ValueError(msg)
    holes = _check_float(holes, "holes")
    if not 0 <= holes < 1:
        msg = f"`holes` is the fraction of lattice positions to drop and must lie in [0, 1), got {holes}."
        raise ValueError(msg)
    _check_int(n_samples, "n_samples", 1)
    _check_int(random_state, "random_state", 0)
    per_sample = n_spots // n_samples
    if per_sample < 10 * n_domains:
        msg = (
            f"`n_spots`={n_spots} gives {per_sample} positions per sample, too few for {n_domains} domains; "
            f"ask for at least {10 * n_domains * n_samples} spots (10 per domain and sample)."
        )
        raise ValueError(msg)

    seeds = np.random.SeedSequence(random_state).spawn(n_samples + 1)
    rng = np.random.default_rng(seeds[0])
    n_t = (n_domains + 1) // 2
    centres_t = _group_centres(n_t, n_genes, rng)
    centres_m = _group_centres(2, n_morphology_features, rng)
    baseline = rng.normal(math.log(12.0), 0.5, size=n_genes)

    rows, cols, xy = _lattice_positions(per_sample, lattice)
    parts = []
    for s in range(n_samples):
        rng_s = np.random.default_rng(seeds[s + 1])
        domain = _domain_layout(xy, n_domains, rng_s)
        n_keep = len(rows) - round(holes * len(rows))
        keep = np.sort(rng_s.choice(len(rows), size=n_keep, replace=False))
        domain = domain[keep]
        t_group, m_group = domain // 2, domain % 2
        log_rate = baseline + centres_t[t_group] + noise * rng_s.normal(size=(n_keep, n_genes))
        counts = rng_s.poisson(np.exp(log_rate)).astype(np.float32)
        morphology = (centres_m[m_group] + noise * rng_s.normal(size=(n_keep, n_morphology_features))).astype(
            np.float32
        )
        parts.append((s, rows[keep], cols[keep], xy[keep], domain, counts, morphology))

    domain = np.concatenate([p[4] for p in parts])
    sample = np.concatenate([np.full(len(p[1]), p[0]) for p in parts])

    def _categorical(values: np.ndarray, n: int, prefix: str = "") -> pd.Categorical:
        return pd.Categorical([f"{prefix}{v}" for v in values], categories=[f"{prefix}{i}" for i in range(n)])

    obs = pd.DataFrame(
        {
            "array_row": np.concatenate([p[1] for p in parts]).astype(np.int64),
            "array_col": np.concatenate([p[2] for p in parts]).astype(np.int64),
            "ground_truth": _categorical(domain, n_domains),
            "transcriptomics_group": _categorical(domain // 2, n_t),
            "morphology_group": _categorical(domain % 2, 2),
            "sample": _categorical(sample, n_samples, "sample_"),
        }
    )
    obs.index = [f"spot_{i}" for i in range(len(obs))]
    var = pd.DataFrame(index=[f"gene_{j}" for j in range(n_genes)])
    adata = AnnData(X=np.concatenate([p[5] for p in parts]), obs=obs, var=var)
    adata.obsm["X_morphology"] = np.concatenate([p[6] for p in parts])
    adata.obsm["spatial"] = np.concatenate([p[3] for p in parts]).astype(np.float64)
    adata.uns["synthetic"] = {
        "n_spots": int(n_spots),
        "n_domains": int(n_domains),
        "lattice": str(lattice),
        "n_genes": int(n_genes),
        "n_morphology_features": int(n_morphology_features),
        "noise": float(noise),
        "holes": float(holes),
        "n_samples": int(n_samples),
        "random_state": int(random_state),
    }
    return adata

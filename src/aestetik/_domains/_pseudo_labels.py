"""Step 1 of the method: the pseudo-labels of one modality.

The representation is averaged over each spot's lattice neighbourhood (:func:`~aestetik._space._smoothing.
gaussian_smooth`, ``sigma`` in spot spacings; 0 leaves it as it is) and clustered
(:func:`~aestetik._domains._clustering.cluster_features`). The labels define the triplets of training, so a
representation that is the same for every spot is refused. A cluster of a single spot has no positive partner: its
spot joins the cluster of its nearest spot (:func:`join_single_spots`). Where the mixture's two best starts disagree,
the pseudo-labels may come from k-means instead (``fallback``; not in the reference).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
from scanpy import logging as logg

from aestetik._domains._clustering import ClusterResult, _consecutive, cluster_features
from aestetik._space._smoothing import gaussian_smooth
from aestetik._validation import assert_choice

if TYPE_CHECKING:
    import pandas as pd

#: Below this adjusted Rand index between the clusters of the mixture's two best starts, :func:`pseudo_labels`
#: warns that the pseudo-labels are not settled. Half-way: where the mixture's objective clearly prefers one
#: partition, its two best starts found nearly the same one (0.7 or more in 37 of 40 section-seed pairs of the
#: benchmark sections); well below it they cut the tissue differently, as when the winner merges two layers
#: (see the method page).
UNSETTLED_AGREEMENT = 0.5
#: What may replace the mixture's pseudo-labels where they are not settled (:func:`pseudo_labels`' ``fallback``).
MIXTURE_FALLBACKS: tuple[str, ...] = ("kmeans",)


def pseudo_labels(
    x: np.ndarray,
    positions: np.ndarray,
    samples: np.ndarray,
    *,
    n_clusters: int | float,
    method: str,
    sigma: float,
    random_state: int,
    n_jobs: int = 1,
    n_components: int | None = None,
    mixture_starts: int = 10,
    fallback: str | None = None,
    name: str = "the representation",
    warn: bool = True,
) -> ClusterResult:
    """Cluster the neighbourhood-averaged ``x`` (``(n_spots, n_features)``) into the modality's pseudo-labels.

    ``positions`` are the spots' physical lattice positions and ``samples`` their section codes (the average
    never crosses sections). ``n_components`` and ``mixture_starts`` go to the Bayesian mixture
    (``method='bgm'``): that many components merged into ``n_clusters`` (``None``: as many as clusters), the best
    of ``mixture_starts`` random starts and one from k-means; their two best starts' agreement is the result's
    ``agreement``. Where it is below :data:`UNSETTLED_AGREEMENT`, the mixture's objective does not tell two
    partitions apart and the seed picks one; with ``fallback='kmeans'`` the pseudo-labels then come from k-means
    (100 starts) on the same averaged ``x``, whose partition the seed does not change (the result's ``method`` is
    ``'kmeans'``, its ``agreement`` still the mixture's). Without a fallback, a warning says they are not settled.
    ``name`` names the input in the errors and that warning (``warn=False`` leaves it to the caller,
    :func:`warn_if_unsettled`, for pseudo-labels that may yet be left out).
    """
    assert_choice(fallback, (*MIXTURE_FALLBACKS, None), name="fallback")
    if x.shape[0] > 1 and np.all(np.ptp(x, axis=0) == 0):
        msg = (
            f"{name} is the same for every spot, so it holds nothing to learn from. Check how it was computed, or "
            "leave this modality out (`morphology_key=None` for morphology)."
        )
        raise ValueError(msg)
    x = gaussian_smooth(x, positions, samples, sigma=sigma)
    res = cluster_features(
        x,
        n_clusters,
        method=method,
        random_state=random_state,
        n_jobs=n_jobs,
        n_components=n_components,
        bgm_inits=(("random", int(mixture_starts)), ("kmeans", 1)),
    )
    if fallback is not None and _unsettled(res):
        logg.info(
            f"    the mixture's two best starts cut {name} differently (adjusted Rand index {res.agreement:.2f}): its "
            f"pseudo-labels come from {fallback} instead"
        )
        found = cluster_features(x, n_clusters, method=fallback, random_state=random_state)
        res = dataclasses.replace(found, agreement=res.agreement)
    elif warn:
        warn_if_unsettled(res, name=name)
    return join_single_spots(res, x, name=name)


def _unsettled(res: ClusterResult) -> bool:
    """Whether ``res`` is the mixture's and its two best starts agree below :data:`UNSETTLED_AGREEMENT`."""
    return res.method == "bgm" and res.agreement is not None and res.agreement < UNSETTLED_AGREEMENT


def warn_if_unsettled(res: ClusterResult, *, name: str = "the representation") -> None:
    """Warn when ``res`` is the mixture's and its two best starts agree below :data:`UNSETTLED_AGREEMENT`."""
    if _unsettled(res):
        logg.warning(
            f"The pseudo-labels of {name} are not settled: the mixture's two best starts give different clusters "
            f"(adjusted Rand index {res.agreement:.2f} between them), so another `random_state` may give other "
            "pseudo-labels and other domains. Take k-means' pseudo-labels there (`mixture_fallback='kmeans'`, the "
            "default of `prepare`), compare a few seeds, or combine whole runs: `aestetik.tl.consensus(adata)`."
        )


#: Below this adjusted Rand index between the domains and every set of pseudo-labels the embedding was trained on,
#: :func:`aestetik.tl.cluster` warns that the domains may change with the seed. The domains follow the pseudo-labels
#: they were trained on: over the default runs of the benchmark sections (2026-12-07; DLPFC, STARmap, osmFISH and
#: MERFISH 3 seeds each, the legacy ST sections 15) they agreed at 0.86-0.98, 0.71-0.81 on MERFISH, 0.50-0.95 on MOB
#: Rep12 (whose domains are better than its pseudo-labels) and 0.67-0.98 on HER2+ A1, except one HER2+ A1 seed at
#: 0.24, where the clustering cut the large tumour region in two (ARI 0.227 against the manual domains).
DOMAIN_AGREEMENT = 0.4


def domain_agreement(domains: np.ndarray, pseudo: dict[str, pd.Series]) -> dict[str, float]:
    """The adjusted Rand index between ``domains`` and each set of pseudo-labels in ``pseudo`` (name -> labels).

    As :func:`~aestetik._domains._scores.ari_known`: spots whose pseudo-label is missing (as after joining sections
    of which one was not prepared) are left out; a set with none known is left out of the result.
    """
    from aestetik._domains._scores import ari_known

    found = {name: ari_known(labels, domains) for name, labels in pseudo.items()}
    return {name: value for name, value in found.items() if value is not None}


def warn_if_domains_left(agreement: dict[str, float]) -> None:
    """Warn when the domains agree with every set of pseudo-labels below :data:`DOMAIN_AGREEMENT`."""
    if agreement and max(agreement.values()) < DOMAIN_AGREEMENT:
        found = ", ".join(f"{name} {value:.2f}" for name, value in agreement.items())
        logg.warning(
            f"The domains agree little with the pseudo-labels of `prepare` (adjusted Rand index: {found}): the "
            "clustering cut the pseudo-labels' groups differently, as when it splits one large domain of a small "
            "section, so another `random_state` may give other domains. Compare a few seeds, or combine whole runs: "
            "`aestetik.tl.consensus(adata)`."
        )


def join_single_spots(res: ClusterResult, x: np.ndarray, *, name: str = "the representation") -> ClusterResult:
    """``res`` with every cluster of a single spot joined to the cluster of that spot's nearest other spot in ``x``.

    A cluster of one spot gives that spot no triplet partner, and a mixture fit can leave one where a start put a
    component on an outlier; the spot is not a domain of its own. The labels are renumbered ``0..k-1`` in their
    former order and the joins are logged; ``res`` is returned as it is when there is none. ``name`` names the
    input in the error raised when every cluster is a single spot.
    """
    from scipy.spatial import cKDTree

    labels = res.labels
    sizes = np.bincount(labels, minlength=res.n_clusters)
    lonely = np.flatnonzero(sizes == 1)
    if lonely.size == 0:
        return res
    if lonely.size == labels.size:
        msg = (
            f"Every pseudo-label of {name} is a single spot, which gives no triplet partner. Use a smaller "
            "`n_clusters`."
        )
        raise ValueError(msg)
    alone = np.isin(labels, lonely)
    spots = np.flatnonzero(alone)
    x = np.asarray(x, dtype=np.float64)
    # among its spots.size + 1 nearest spots, each has one that is not a single spot of its own
    near = cKDTree(x).query(x[spots], k=min(labels.size, spots.size + 1))[1].reshape(spots.size, -1)
    labels = labels.copy()
    labels[spots] = [labels[next(j for j in row if not alone[j])] for row in near]
    labels = _consecutive(labels)
    n = int(labels.max()) + 1
    logg.warning(
        f"The pseudo-labels had {lonely.size} cluster(s) of a single spot, which give no triplet partner; each such "
        f"spot joins the cluster of its nearest spot ({n} pseudo-labels instead of {res.n_clusters})."
    )
    return dataclasses.replace(res, labels=labels, n_clusters=n)


#: Neighbours of each spot in :func:`spatial_coherence` (the first ring of a hexagonal lattice).
COHERENCE_NEIGHBORS = 6


def spatial_coherence(labels: np.ndarray, positions: np.ndarray, samples: np.ndarray) -> float:
    """How much more often a spot shares its label with its nearest spots than chance: Cohen's kappa of the pairs.

    Over every spot and each of its :data:`COHERENCE_NEIGHBORS` nearest spots of the same sample (by
    ``positions``), the fraction ``p`` of pairs with the same label against the fraction ``c = sum_k f_k^2``
    expected from the label frequencies ``f_k`` alone: ``(p - c) / (1 - c)``; 1 when every neighbourhood is one
    label, about 0 for labels scattered at random. Without labels of the domains, it says whether a set of
    pseudo-labels describes spatial structure.
    """
    from scipy.spatial import cKDTree

    labels = np.asarray(labels)
    same, total = 0.0, 0
    for s in np.unique(samples):
        members = np.flatnonzero(samples == s)
        k = min(COHERENCE_NEIGHBORS, members.size - 1)
        if k < 1:
            continue
        idx = cKDTree(positions[members]).query(positions[members], k=k + 1)[1][:, 1:]
        lab = labels[members]
        same += float((lab[idx] == lab[:, None]).sum())
        total += idx.size
    if total == 0:
        return 0.0
    freq = np.bincount(np.unique(labels, return_inverse=True)[1].ravel()) / labels.size
    chance = float((freq**2).sum())
    return float((same / total - chance) / max(1.0 - chance, 1e-12))

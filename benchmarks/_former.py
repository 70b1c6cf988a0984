"""The package defaults that the stored runs of the benchmark scripts used, pinned where a default has changed since.

Each accuracy script passes these, so that rerunning it reproduces its stored table (``results/``) after a
default changes. Changed on 2026-12-04: the domains are cut by spectral clustering (was k-means), and the
pseudo-label mixture has one component more than the clusters, merged, and 40 random starts (was the published
mixture: as many components as clusters, 10 random starts).
"""

from __future__ import annotations

#: ``tl.cluster`` / ``tl.consensus`` arguments of the domains before 2026-12-04.
FORMER_CLUSTER: dict = {"method": "kmeans"}


def former_mixture(n_clusters: int) -> dict:
    """``pp.prepare`` arguments of the pseudo-label mixture before 2026-12-04 (the published one)."""
    return {"mixture_components": int(n_clusters), "mixture_starts": 10}

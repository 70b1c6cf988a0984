"""Triplet partners drawn with vectorised tensor ops from per-cluster index pools."""

from __future__ import annotations

import numpy as np
import torch


class TripletSampler:
    """Positives and negatives for anchors, from one modality's pseudo-labels.

    For an anchor of cluster ``c`` the multi-triplet variant draws, with replacement, ``(K - 1) * n_repeats``
    positives from cluster ``c`` and ``n_repeats`` negatives from every other cluster (in cluster order);
    the single-triplet variant draws ``n_repeats`` of each from one random other cluster. ``K`` counts the
    clusters that are present.

    Parameters
    ----------
    labels
        (n,) pseudo-label per spot (any hashable values).
    n_repeats
        Partners per other cluster.
    multi_triplet
        Multi-triplet (default) or single-triplet variant.
    """

    def __init__(self, labels: np.ndarray, *, n_repeats: int = 1, multi_triplet: bool = True) -> None:
        _, codes = np.unique(np.asarray(labels), return_inverse=True)
        codes = codes.astype(np.int64)
        self.n_clusters = int(codes.max()) + 1 if codes.size else 0
        if self.n_clusters < 2:
            msg = "Triplets need at least two pseudo-label clusters."
            raise ValueError(msg)
        self.n_repeats, self.multi_triplet = n_repeats, multi_triplet
        counts = np.bincount(codes, minlength=self.n_clusters)
        k = self.n_clusters
        others = np.array([[j for j in range(k) if j != c] for c in range(k)], dtype=np.int64)
        self.labels = torch.from_numpy(codes)
        self.order = torch.from_numpy(np.argsort(codes, kind="stable"))
        self.starts = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64))
        self.counts = torch.from_numpy(counts.astype(np.int64))
        self.others = torch.from_numpy(others)

    @property
    def n_partners(self) -> int:
        """Positives (= negatives) per anchor."""
        return (self.n_clusters - 1) * self.n_repeats if self.multi_triplet else self.n_repeats

    def to(self, device: torch.device | str) -> TripletSampler:
        """Move the index pools to ``device``."""
        for name in ("labels", "order", "starts", "counts", "others"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def pools(self, within: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(order, starts, counts)``: spots sorted by cluster, where each cluster starts, its size.

        With ``within`` (spot indices, e.g. the anchors of a batch) partners come from those spots; a cluster
        absent from them is drawn from all spots.
        """
        if within is None:
            return self.order, self.starts, self.counts
        codes = self.labels[within]
        counts = torch.bincount(codes, minlength=self.n_clusters)
        order = within[torch.argsort(codes, stable=True)]
        starts = torch.cumsum(counts, 0) - counts
        missing = counts == 0
        if bool(missing.any()):
            starts = torch.where(missing, within.shape[0] + self.starts, starts)
            counts = torch.where(missing, self.counts, counts)
            order = torch.cat([order, self.order])
        return order, starts, counts

    @staticmethod
    def _draw(clusters, pools, generator: torch.Generator | None) -> torch.Tensor:
        order, starts, counts = pools
        u = torch.rand(clusters.shape, generator=generator, device=clusters.device, dtype=torch.float64)
        offset = (u * counts[clusters]).long().clamp_max_(counts[clusters] - 1)
        return order[starts[clusters] + offset]

    def sample(
        self, anchors: torch.Tensor, generator: torch.Generator | None = None, *, within: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) anchor indices -> ``(positives, negatives)``, each (B, S) spot indices (from ``within`` if given)."""
        pools = self.pools(within)
        c = self.labels[anchors]
        b, s = anchors.shape[0], self.n_partners
        positives = self._draw(c[:, None].expand(b, s), pools, generator)
        if self.multi_triplet:
            neg_clusters = self.others[c].repeat_interleave(self.n_repeats, dim=1)
        else:
            pick = torch.randint(0, self.n_clusters - 1, (b,), generator=generator, device=anchors.device)
            neg_clusters = self.others[c, pick][:, None].expand(b, s)
        return positives, self._draw(neg_clusters, pools, generator)

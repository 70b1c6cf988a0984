"""Plots: domains over the tissue and training curves."""

from __future__ import annotations

from ._ablation import ablation
from ._spatial import spatial
from ._stability import consensus, n_clusters
from ._training import loss

__all__ = ["ablation", "consensus", "loss", "n_clusters", "spatial"]

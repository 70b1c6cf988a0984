"""Plots: domains over the tissue and training curves."""

from __future__ import annotations

from ._spatial import spatial
from ._training import loss

__all__ = ["loss", "spatial"]

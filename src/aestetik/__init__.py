"""AESTETIK: spatial domains from transcriptomics, morphology and spatial neighbourhood."""

from __future__ import annotations

from . import datasets, pl, pp, tl
from ._version import __version__

__all__ = ["datasets", "pl", "pp", "tl"]

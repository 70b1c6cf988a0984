"""AESTETIK: spatial domains from transcriptomics, morphology and spatial neighbourhood."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import datasets, pl, pp, tl

try:
    __version__ = version("aestetik")
except PackageNotFoundError:  # pragma: no cover - source checkout without install
    __version__ = "0.0.0"

__all__ = ["datasets", "pl", "pp", "tl"]

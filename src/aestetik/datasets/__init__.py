"""Data sets: the bundled DLPFC section and the simulation of the AESTETIK paper."""

from __future__ import annotations

from ._dlpfc import dlpfc_151676
from ._synthetic import synthetic

__all__ = ["dlpfc_151676", "synthetic"]

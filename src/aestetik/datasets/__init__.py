"""Data sets: the bundled DLPFC section, the bundled STARmap section and the simulation of the AESTETIK paper."""

from __future__ import annotations

from ._dlpfc import dlpfc_151676
from ._starmap import starmap_bz5
from ._synthetic import synthetic

__all__ = ["dlpfc_151676", "starmap_bz5", "synthetic"]

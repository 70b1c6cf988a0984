"""Data sets: the bundled DLPFC, HER2+ tumour and STARmap sections and the simulation of the AESTETIK paper."""

from __future__ import annotations

from ._dlpfc import dlpfc_151676
from ._her2st import her2st_a1
from ._starmap import starmap_bz5
from ._synthetic import synthetic

__all__ = ["dlpfc_151676", "her2st_a1", "starmap_bz5", "synthetic"]

from __future__ import annotations

from ._cluster import cluster
from ._fit import fit

__all__: list[str] = ["cluster", "fit"]

from __future__ import annotations

from ._ablation import ablation
from ._cluster import cluster
from ._fit import fit
from ._model import embed, load_model, save_model

__all__: list[str] = ["ablation", "cluster", "embed", "fit", "load_model", "save_model"]

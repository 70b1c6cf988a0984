from __future__ import annotations

from ._ablation import ablation
from ._cluster import cluster
from ._consensus import consensus
from ._fit import fit
from ._model import embed, load_model, save_model

__all__: list[str] = ["ablation", "cluster", "consensus", "embed", "fit", "load_model", "save_model"]

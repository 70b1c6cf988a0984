"""Trained weights as plain arrays: into ``adata.uns`` and to/from a file without unpickling objects."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "aestetik-weights-v1"


def state_to_arrays(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A torch ``state_dict`` as ``{name: ndarray}`` (h5ad-writable)."""
    return {name: t.detach().cpu().numpy().copy() for name, t in state.items()}


def arrays_to_state(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: ndarray}`` back into a torch ``state_dict``."""
    import torch

    return {name: torch.from_numpy(np.asarray(a).copy()) for name, a in arrays.items()}


def save_weights(path: str | PathLike, arrays: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> None:
    """Write weights and the configuration needed to rebuild the network (tensors and plain types only)."""
    import torch

    payload = {"format": FORMAT, "config": dict(config), "state": arrays_to_state(arrays)}
    torch.save(payload, Path(path))


def load_weights(path: str | PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`save_weights` with ``weights_only=True``; reject anything else."""
    import torch

    path = Path(path)
    if not path.is_file():
        msg = f"No weights file at {str(path)!r}."
        raise FileNotFoundError(msg)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)  # noqa: TID251 - the one allowed place
    except Exception as e:
        msg = f"{str(path)!r} is not a readable aestetik weights file (truncated or another format): {e}"
        raise ValueError(msg) from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        msg = f"{str(path)!r} is not an aestetik weights file (expected format {FORMAT!r})."
        raise ValueError(msg)
    return state_to_arrays(payload["state"]), dict(payload["config"])

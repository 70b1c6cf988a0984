"""Trained weights as plain arrays (for ``uns``), weights files read without unpickling objects, and model files."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "aestetik-weights-v1"
#: The parameters of the network itself (what a weights file needs to rebuild it).
NETWORK_PARAMS = ("c_hid", "latent_dim", "kernel_size", "n_ensemble", "dropout")


def network_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """The arguments of :class:`~aestetik._model._network.AestetikNetwork` among the fit parameters."""
    return {k: params[k] for k in NETWORK_PARAMS}


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


def to_file_value(value: Any) -> Any:
    """``value`` as :func:`torch.load` with ``weights_only=True`` reads it: numeric arrays as tensors, text as lists."""
    import torch

    if isinstance(value, Mapping):
        return {str(k): to_file_value(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OUS":
            return [str(v) for v in value.reshape(-1)]
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, list | tuple):
        return [to_file_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_file_value(value: Any) -> Any:
    """Inverse of :func:`to_file_value`: tensors back to arrays, lists of text to str arrays."""
    if isinstance(value, Mapping):
        return {str(k): from_file_value(v) for k, v in value.items()}
    if hasattr(value, "numpy") and hasattr(value, "dtype"):
        return value.numpy()
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return np.asarray(value, dtype=object).astype(str)
    if isinstance(value, list):
        return [from_file_value(v) for v in value]
    return value


#: What a model file keeps of the ``prepare`` record for projecting new sections.
REFERENCE_FIELDS = ("params", "n_transcriptomics", "n_morphology", "lattice_type", "transforms")


#: Marks the configuration of a file written by :func:`aestetik.tl.save_model` (a bare ``save_weights`` file lacks it).
MODEL_KIND = "aestetik-model-v1"
#: Sizes of the prepared input that a model's network depends on, with their names in error messages.
LAYOUT = (
    ("n_transcriptomics", "transcriptomics channels"),
    ("n_morphology", "morphology channels"),
    ("window_size", "window size"),
)


def layout(prep: Mapping[str, Any]) -> dict[str, int]:
    """The sizes of :data:`LAYOUT` in a ``prepare`` record."""
    return {
        "n_transcriptomics": int(prep["n_transcriptomics"]),
        "n_morphology": int(prep["n_morphology"]),
        "window_size": int(prep["params"]["window_size"]),
    }


def assert_layout(model: Mapping[str, int], prep: Mapping[str, Any], *, prepare_key: str, source: str) -> None:
    """Raise a ValueError naming every size in which the model and the prepared data differ."""
    have = layout(prep)
    diffs = [
        f"{label}: model {int(model[name])}, adata {have[name]}"
        for name, label in LAYOUT
        if int(model[name]) != have[name]
    ]
    if diffs:
        msg = (
            f"{source} does not fit the data prepared in `adata.uns[{prepare_key!r}]['prepare']` ({'; '.join(diffs)}). "
            "Run `aestetik.pp.prepare` with representations and `window_size` of the model's sizes, or use a model "
            "trained on such data."
        )
        raise ValueError(msg)


def model_file_config(
    fit: Mapping[str, Any],
    network: Mapping[str, Any],
    prep: Mapping[str, Any],
    history: Mapping[str, np.ndarray],
    domains: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The configuration :func:`save_weights` stores next to a model's weights (plain values and tensors only).

    ``fit`` holds the plain ``params``, the two modality weights and ``seconds``; ``network`` the network's
    arguments; ``prep`` the ``prepare`` record, whose sizes the network depends on and whose input transforms
    project new sections (kept under ``'prepare'``); ``domains`` the ``cluster`` record whose centres label them.
    """
    import torch

    prepare_params = prep["params"]
    return {
        "kind": MODEL_KIND,
        "fit": {
            "params": fit["params"],
            "transcriptomics_weight": float(fit["transcriptomics_weight"]),
            "morphology_weight": float(fit["morphology_weight"]),
            "history": {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in history.items()},
            "seconds": fit["seconds"],
        },
        "network": dict(network),
        "layout": {
            **layout(prep),
            "channels": ["transcriptomics", "morphology"],  # order of the channel blocks
            "transcriptomics_key": str(prepare_params.get("transcriptomics_key", "")),
            "morphology_key": str(prepare_params.get("morphology_key", "")),
        },
        "prepare": to_file_value({k: prep[k] for k in REFERENCE_FIELDS if k in prep}),
        **({"domains": to_file_value(dict(domains))} if domains is not None else {}),
    }


def model_config(config: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """The fit record (without weights), network kwargs and layout stored by :func:`aestetik.tl.save_model`."""
    if config.get("kind") != MODEL_KIND:
        msg = (
            f"{str(path)!r} holds aestetik weights but no model configuration (expected {MODEL_KIND!r}); "
            "write models with `aestetik.tl.save_model`."
        )
        raise ValueError(msg)
    try:
        fit = dict(config["fit"])
        params = dict(fit["params"])
        network = {k: config["network"][k] for k in NETWORK_PARAMS}
        sizes = {name: int(config["layout"][name]) for name, _ in LAYOUT}
        missing = [name for name in ("morphology_weight", "total_weight", "prepare_key") if name not in params]
        if missing:
            raise KeyError(", ".join(missing))
    except (KeyError, TypeError, ValueError) as e:
        msg = f"{str(path)!r} is an incomplete aestetik model file (missing {e}); write it again with `aestetik.tl.save_model`."
        raise ValueError(msg) from e
    return fit, network, sizes


def check_weights(
    weights: Mapping[str, np.ndarray], network: Mapping[str, Any], sizes: Mapping[str, int], *, problem: str
) -> None:
    """Load the weights into a network of the given configuration (strictly); a ValueError starting with ``problem``."""
    import torch

    from ._network import AestetikNetwork

    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):  # the throw-away initialisation must not move the user's RNG
        net = AestetikNetwork(sizes["n_transcriptomics"] + sizes["n_morphology"], sizes["window_size"], **network)
    try:
        net.load_state_dict(arrays_to_state(weights))
    except RuntimeError as e:
        msg = f"{problem}: {e}"
        raise ValueError(msg) from e

"""Public model persistence: save the trained network to a file, load it onto prepared data, re-embed."""

from __future__ import annotations

import time
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scanpy import logging as logg

from aestetik._docs import doc_params
from aestetik._keys import Key
from aestetik._model._io import load_weights, save_weights
from aestetik._model._weights import calibrate_weights
from aestetik._validation import assert_int, assert_not_view
from aestetik.tl._fit import _network_kwargs, _prepared, restore_module

if TYPE_CHECKING:
    from anndata import AnnData

#: Marks the configuration of a file written by :func:`save_model` (a bare ``save_weights`` file lacks it).
MODEL_KIND = "aestetik-model-v1"
#: Sizes of the prepared input that a model's network depends on, with their names in error messages.
_LAYOUT = (
    ("n_transcriptomics", "transcriptomics channels"),
    ("n_morphology", "morphology channels"),
    ("window_size", "window size"),
)


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays (as an h5ad round trip returns them) turned into Python types."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fit_record(adata: AnnData, key: str) -> Mapping[str, Any]:
    info = adata.uns.get(key, {})
    record = info.get("fit") if isinstance(info, Mapping) else None
    if not isinstance(record, Mapping):
        msg = f"Did not find `adata.uns[{key!r}]['fit']`. Run `aestetik.tl.fit(adata, key_added={key!r})` or `aestetik.tl.load_model` first."
        raise KeyError(msg)
    for field in ("params", "weights", "transcriptomics_weight", "morphology_weight"):
        if field not in record:
            msg = (
                f"`adata.uns[{key!r}]['fit']` has no {field!r}. Run `aestetik.tl.fit(adata, key_added={key!r})` again."
            )
            raise KeyError(msg)
    return record


def _layout(prep: Mapping[str, Any]) -> dict[str, int]:
    return {
        "n_transcriptomics": int(prep["n_transcriptomics"]),
        "n_morphology": int(prep["n_morphology"]),
        "window_size": int(prep["params"]["window_size"]),
    }


def _assert_layout(model: Mapping[str, int], prep: Mapping[str, Any], *, prepare_key: str, source: str) -> None:
    """Raise a ValueError naming every size in which the model and the prepared data differ."""
    have = _layout(prep)
    diffs = [
        f"{label}: model {int(model[name])}, adata {have[name]}"
        for name, label in _LAYOUT
        if int(model[name]) != have[name]
    ]
    if diffs:
        msg = (
            f"{source} does not fit the data prepared in `adata.uns[{prepare_key!r}]['prepare']` ({'; '.join(diffs)}). "
            "Run `aestetik.pp.prepare` with representations and `window_size` of the model's sizes, or use a model "
            "trained on such data."
        )
        raise ValueError(msg)


def _model_config(config: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """The fit record (without weights), network kwargs and layout stored by :func:`save_model`."""
    if config.get("kind") != MODEL_KIND:
        msg = (
            f"{str(path)!r} holds aestetik weights but no model configuration (expected {MODEL_KIND!r}); "
            "write models with `aestetik.tl.save_model`."
        )
        raise ValueError(msg)
    try:
        fit = dict(config["fit"])
        params = dict(fit["params"])
        network = {k: config["network"][k] for k in ("c_hid", "latent_dim", "kernel_size", "n_ensemble", "dropout")}
        layout = {name: int(config["layout"][name]) for name, _ in _LAYOUT}
        missing = [name for name in ("morphology_weight", "total_weight", "prepare_key") if name not in params]
        if missing:
            raise KeyError(", ".join(missing))
    except (KeyError, TypeError, ValueError) as e:
        msg = f"{str(path)!r} is an incomplete aestetik model file (missing {e}); write it again with `aestetik.tl.save_model`."
        raise ValueError(msg) from e
    return fit, network, layout


def _check_weights(
    weights: Mapping[str, np.ndarray], network: Mapping[str, Any], layout: Mapping[str, int], *, problem: str
) -> None:
    """Load the weights into a network of the given configuration (strictly); a ValueError starting with ``problem``."""
    import torch

    from aestetik._model._io import arrays_to_state
    from aestetik._model._network import AestetikNetwork

    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):  # the throw-away initialisation must not move the user's RNG
        net = AestetikNetwork(layout["n_transcriptomics"] + layout["n_morphology"], layout["window_size"], **network)
    try:
        net.load_state_dict(arrays_to_state(weights))
    except RuntimeError as e:
        msg = f"{problem}: {e}"
        raise ValueError(msg) from e


def _to_array(value: Any, dtype: type) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=dtype)


def save_model(adata: AnnData, path: str | PathLike, *, key: str = "aestetik") -> None:
    """Write the trained AESTETIK model of ``adata`` to a file.

    The file holds the weights of the network as tensors and, as plain values, everything needed to rebuild
    it: the resolved parameters of :func:`aestetik.tl.fit`, the calibrated modality weights, the training
    history and the sizes of the prepared input (transcriptomics and morphology channels, in that order,
    and the window size). It is written with :func:`torch.save` and read back by :func:`load_model` with
    ``weights_only=True``, so loading never unpickles objects. An existing file at ``path`` is overwritten
    (as :meth:`anndata.AnnData.write_h5ad` does); the file is first written next to it and then moved into
    place, so a failed write leaves an existing file unchanged. ``adata`` is not modified.

    Parameters
    ----------
    adata
        Annotated data matrix after :func:`aestetik.tl.fit` (or :func:`load_model`).
    path
        File to write, e.g. ``'model.pt'``; its folder must exist.
    key
        The ``key_added`` of :func:`aestetik.tl.fit`; the model is ``adata.uns[key]['fit']``.

    Returns
    -------
    ``None``; writes ``path``.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.synthetic(n_spots=1000)
    >>> ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=4)  # doctest: +SKIP
    >>> ae.tl.fit(adata, max_epochs=20)  # doctest: +SKIP
    >>> ae.tl.save_model(adata, "model.pt")  # doctest: +SKIP
    """
    record = _fit_record(adata, key)
    params = _plain(dict(record["params"]))
    prepare_key = str(params.get("prepare_key", key))
    info = adata.uns.get(prepare_key, {})
    if not isinstance(info, Mapping) or "prepare" not in info:
        msg = f"Did not find `adata.uns[{prepare_key!r}]['prepare']`, which the model's sizes come from. Run `aestetik.pp.prepare(adata, key_added={prepare_key!r})` and `aestetik.tl.fit` again."
        raise KeyError(msg)
    prep = info["prepare"]
    path = Path(path)
    if not path.parent.is_dir():
        msg = f"The folder {str(path.parent)!r} does not exist; create it first."
        raise FileNotFoundError(msg)
    if path.is_dir():
        msg = f"{str(path)!r} is a folder; pass a file name such as {str(path / 'model.pt')!r}."
        raise IsADirectoryError(msg)
    weights = {name: np.asarray(a) for name, a in record["weights"].items()}
    _check_weights(
        weights,
        _network_kwargs(params),
        _layout(prep),
        problem=(
            f"The weights in `adata.uns[{key!r}]['fit']` do not fit the data prepared in "
            f"`adata.uns[{prepare_key!r}]['prepare']` (prepared again after `aestetik.tl.fit`?); run `aestetik.tl.fit` again"
        ),
    )
    import torch

    prepare_params = prep["params"]
    history = {
        name: torch.from_numpy(np.ascontiguousarray(values)) for name, values in record.get("history", {}).items()
    }
    config = {
        "kind": MODEL_KIND,
        "fit": {
            "params": params,
            "transcriptomics_weight": float(record["transcriptomics_weight"]),
            "morphology_weight": float(record["morphology_weight"]),
            "history": history,
            "seconds": _plain(dict(record.get("seconds", {}))),
        },
        "network": _network_kwargs(params),
        "layout": {
            **_layout(prep),
            "channels": ["transcriptomics", "morphology"],  # order of the channel blocks
            "transcriptomics_key": str(prepare_params.get("transcriptomics_key", "")),
            "morphology_key": str(prepare_params.get("morphology_key", "")),
        },
    }
    tmp = path.with_name(f".{path.name}.partial")
    try:
        save_weights(tmp, weights, config)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    logg.info(f"saved the AESTETIK model `adata.uns[{key!r}]['fit']` to {str(path)!r}")


@doc_params
def load_model(
    adata: AnnData,
    path: str | PathLike,
    *,
    key: str = "aestetik",
    prepare_key: str = "aestetik",
    copy: bool = False,
) -> AnnData | None:
    """Install a model written by :func:`save_model` on prepared data, without embedding.

    The file is read with ``weights_only=True``. The model must fit the data prepared by
    :func:`aestetik.pp.prepare`: the same numbers of transcriptomics and morphology channels and the same
    window size (a :class:`ValueError` names every size that differs). The modality weights are
    recalibrated for the new pseudo-labels as :func:`aestetik.tl.fit` would (a modality whose pseudo-labels
    collapsed to one cluster gets weight 0). Run :func:`embed` afterwards to compute the embedding.

    Parameters
    ----------
    {adata}
    path
        File written by :func:`save_model`.
    key
        The model goes to ``adata.uns[key]['fit']``, as if :func:`aestetik.tl.fit` had run with ``key_added=key``.
    {prepare_key}
    {copy}

    Returns
    -------
    {returns_copy} Sets:

    `adata.uns[key]['fit']` : dict
        The stored ``params`` (with ``prepare_key``), ``transcriptomics_weight``, ``morphology_weight``,
        ``history``, ``weights``, ``seconds`` and ``loaded_from`` (the path). Other entries of
        ``adata.uns[key]`` are kept, except a stale ``'embed'`` record.

    A stale embedding ``adata.obsm['X_' + key]`` of an earlier model is removed (with a warning).

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.synthetic(n_spots=1000, random_state=1)
    >>> ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=4)  # doctest: +SKIP
    >>> ae.tl.load_model(adata, "model.pt")  # doctest: +SKIP
    >>> ae.tl.embed(adata)  # doctest: +SKIP
    """
    # --- validate everything before touching adata
    assert_not_view(adata, copy=copy)
    path = Path(path)
    weights, config = load_weights(path)
    fit, network, layout = _model_config(config, path)
    prep = _prepared(adata, prepare_key)
    _assert_layout(layout, prep, prepare_key=prepare_key, source=f"The model in {str(path)!r}")
    _check_weights(
        weights,
        network,
        layout,
        problem=f"The weights in {str(path)!r} do not match the network its configuration describes (corrupted file?)",
    )
    previous = adata.uns.get(key, {})
    if not isinstance(previous, Mapping):
        msg = f"`adata.uns[{key!r}]` holds a {type(previous).__name__}, not a dict of results. Pass another `key` or delete that entry."
        raise TypeError(msg)

    params = dict(fit["params"])
    params["prepare_key"] = prepare_key
    w_t, w_m = calibrate_weights(
        float(params["morphology_weight"]),
        float(params["total_weight"]),
        n_transcriptomics_clusters=int(prep["n_clusters_transcriptomics"]),
        n_morphology_clusters=int(prep["n_clusters_morphology"]),
    )
    history = {
        name: _to_array(v, np.int32 if name == "epoch" else np.float32)
        for name, v in dict(fit.get("history", {})).items()
    }
    record = {
        "params": params,
        "transcriptomics_weight": w_t,
        "morphology_weight": w_m,
        "history": history,
        "weights": weights,
        "seconds": {k: float(v) for k, v in dict(fit.get("seconds", {})).items()},
        "loaded_from": str(path),
    }

    # --- write all keys at once
    adata = adata.copy() if copy else adata
    uns = {k: v for k, v in adata.uns.get(key, {}).items() if k != "embed"}
    uns["fit"] = record
    adata.uns[key] = uns
    stale = Key.embedding(key)
    if stale in adata.obsm:
        del adata.obsm[stale]
        logg.warning(
            f"removed `adata.obsm[{stale!r}]`, computed by another model; run `aestetik.tl.embed(adata, key={key!r})`."
        )
    logg.info(f"loaded the AESTETIK model {str(path)!r}", deep=f"added\n    'uns[{key!r}][\"fit\"]'")
    return adata if copy else None


@doc_params
def embed(
    adata: AnnData,
    *,
    key: str = "aestetik",
    n_mc_samples: int = 1000,
    random_state: int = 0,
    accelerator: str = "auto",
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Embed every spot with the stored model: Monte-Carlo dropout passes of the trained encoder.

    Rebuilds the network from ``adata.uns[key]['fit']`` (written by :func:`aestetik.tl.fit` or
    :func:`load_model`) and computes the embedding exactly as :func:`aestetik.tl.fit` does after training:
    batch-norm with the statistics over all spots, the mean of ``n_mc_samples`` passes with fresh dropout
    masks drawn from ``random_state``. With the ``n_mc_samples`` and ``random_state`` of the fit it reproduces
    the fit's embedding (exactly on CPU). Use it after :func:`load_model`, or to change the number of passes.

    Parameters
    ----------
    {adata}
    key
        Where the model is: ``adata.uns[key]['fit']``.
    n_mc_samples
        Monte-Carlo dropout passes averaged into the embedding (0: one pass without dropout).
    {random_state}
    accelerator
        Lightning accelerator (``'auto'``, ``'cpu'``, ``'gpu'``, ...) resolved as in :func:`aestetik.tl.fit`;
        one device is used.
    key_added
        The embedding goes to ``obsm['X_' + key_added]``, the record to ``uns[key_added]['embed']``;
        default ``key``.
    {copy}

    Returns
    -------
    {returns_copy} Sets:

    `adata.obsm['X_' + key_added]` : ndarray (n, latent_dim), float32
        The embedding.
    `adata.uns[key_added]['embed']` : dict
        ``params`` (``key``, ``n_mc_samples``, ``random_state``, ``device``, ``aestetik_version``) and
        ``seconds``. Other entries of ``adata.uns[key_added]`` are kept.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.synthetic(n_spots=1000)
    >>> ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=4)  # doctest: +SKIP
    >>> ae.tl.fit(adata, max_epochs=20)  # doctest: +SKIP
    >>> ae.tl.embed(adata, n_mc_samples=100, key_added="aestetik_mc100")  # doctest: +SKIP
    """
    import torch

    from aestetik import __version__
    from aestetik._model._allocator import keep_freed_memory
    from aestetik._model._trainer import make_trainer, quiet_lightning

    # --- validate everything before touching adata
    assert_not_view(adata, copy=copy)
    assert_int(minimum=0, n_mc_samples=n_mc_samples)
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        msg = f"`random_state` must be an int seed, got {random_state!r}."
        raise TypeError(msg)
    key_added = key if key_added is None else key_added
    record = _fit_record(adata, key)
    prepare_key = str(record["params"]["prepare_key"])
    prep = _prepared(adata, prepare_key)
    conv = record["weights"].get("encoder.conv.weight")
    if conv is None:
        msg = f"`adata.uns[{key!r}]['fit']['weights']` has no encoder weights. Run `aestetik.tl.fit` again."
        raise KeyError(msg)
    n_channels = int(prep["n_transcriptomics"]) + int(prep["n_morphology"])
    if int(np.shape(conv)[1]) != n_channels:
        msg = (
            f"The model in `adata.uns[{key!r}]['fit']` takes {int(np.shape(conv)[1])} input channels, but "
            f"`adata.uns[{prepare_key!r}]['prepare']` has {n_channels}. Run `aestetik.tl.fit` again, or "
            "`aestetik.tl.load_model` a model of this size."
        )
        raise ValueError(msg)
    previous = adata.uns.get(key_added, {})
    if not isinstance(previous, Mapping):
        msg = f"`adata.uns[{key_added!r}]` holds a {type(previous).__name__}, not a dict of results. Pass another `key_added` or delete that entry."
        raise TypeError(msg)

    start = logg.info(
        f"embedding {adata.n_obs} spots with the model `adata.uns[{key!r}]['fit']` ({n_mc_samples} passes)"
    )
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda), quiet_lightning(), keep_freed_memory():
        device = make_trainer(
            max_epochs=1, accelerator=accelerator, devices=1, show_progress_bar=False, callbacks=[]
        ).strategy.root_device
        try:
            module = restore_module(adata, key)
        except RuntimeError as e:  # state dict of another network size
            msg = f"The weights in `adata.uns[{key!r}]['fit']` do not fit its parameters or the prepared data: {e}"
            raise ValueError(msg) from e
        module.to(device)
        t0 = time.perf_counter()
        embedding = module.embed(int(n_mc_samples), seed=int(random_state))
        seconds = time.perf_counter() - t0
    info = {
        "params": {
            "key": key,
            "n_mc_samples": int(n_mc_samples),
            "random_state": int(random_state),
            "device": str(device.type),
            "aestetik_version": __version__,
        },
        "seconds": float(seconds),
    }

    # --- write all keys at once
    adata = adata.copy() if copy else adata
    adata.obsm[Key.embedding(key_added)] = embedding.astype(np.float32)
    adata.uns[key_added] = {**dict(adata.uns.get(key_added, {})), "embed": info}
    logg.info(
        "    finished",
        time=start,
        deep=f"added\n    'obsm[{Key.embedding(key_added)!r}]', 'uns[{key_added!r}][\"embed\"]'",
    )
    return adata if copy else None

"""Public model persistence: save the trained network to a file, load it onto prepared data, re-embed."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scanpy import logging as logg

from aestetik._docs import doc_params
from aestetik._keys import Key
from aestetik._model._io import (
    assert_layout,
    check_weights,
    layout,
    load_weights,
    model_config,
    model_file_config,
    network_kwargs,
    save_weights,
)
from aestetik._model._train import embed as embed_model
from aestetik._model._weights import calibrate_weights
from aestetik._records import Fitted, Prepared, plain, read_fitted, read_prepared
from aestetik._spatialdata import spatialdata_input
from aestetik._validation import assert_int, assert_not_view, uns_results

if TYPE_CHECKING:
    from anndata import AnnData


def _to_array(value, dtype: type) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=dtype)


@spatialdata_input
def save_model(adata: AnnData, path: str | PathLike, *, key: str = "aestetik") -> None:
    """Write the trained AESTETIK model of ``adata`` to a file.

    The file holds the weights of the network as tensors and, as plain values, everything needed to rebuild
    it: the resolved parameters of :func:`aestetik.tl.fit`, the calibrated modality weights, the training
    history and the sizes of the prepared input (transcriptomics and morphology channels, in that order,
    and the window size); for new sections, the input transforms that :func:`aestetik.pp.prepare` recorded
    (genes, normalisation, PCA mean and loadings, morphology standardisation and PCA, min-max ranges, lattice
    type) and, after :func:`aestetik.tl.cluster`, the domain centres in ``adata.uns[key]['cluster']``, so that
    ``aestetik.pp.prepare(new, reference=path)``, ``embed(new, model=path)`` and
    ``aestetik.tl.cluster(new, model=path)`` need nothing else. It is written with :func:`torch.save` and read back by :func:`~aestetik.tl.load_model` with
    ``weights_only=True``, so loading never unpickles objects. An existing file at ``path`` is overwritten
    (as :meth:`anndata.AnnData.write_h5ad` does); the file is first written next to it and then moved into
    place, so a failed write leaves an existing file unchanged. ``adata`` is not modified.

    Parameters
    ----------
    adata
        Annotated data matrix after :func:`aestetik.tl.fit` (or :func:`~aestetik.tl.load_model`).
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
    fitted = read_fitted(adata, key)
    params = plain(fitted.params)
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
    weights = {name: np.asarray(a) for name, a in fitted.weights.items()}
    check_weights(
        weights,
        network_kwargs(params),
        layout(prep),
        problem=(
            f"The weights in `adata.uns[{key!r}]['fit']` do not fit the data prepared in "
            f"`adata.uns[{prepare_key!r}]['prepare']` (prepared again after `aestetik.tl.fit`?); run `aestetik.tl.fit` again"
        ),
    )
    fit = {
        "params": params,
        "transcriptomics_weight": fitted.transcriptomics_weight,
        "morphology_weight": fitted.morphology_weight,
        "seconds": plain(fitted.seconds),
    }
    clustered = adata.uns.get(key, {}).get("cluster")
    domains = clustered if isinstance(clustered, Mapping) and "centres" in clustered else None
    config = model_file_config(fit, network_kwargs(params), prep, fitted.history, domains)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        save_weights(tmp, weights, config)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    logg.info(f"saved the AESTETIK model `adata.uns[{key!r}]['fit']` to {str(path)!r}")


@spatialdata_input
@doc_params
def load_model(
    adata: AnnData,
    path: str | PathLike,
    *,
    key: str = "aestetik",
    prepare_key: str = "aestetik",
    copy: bool = False,
) -> AnnData | None:
    """Install a model written by :func:`~aestetik.tl.save_model` on prepared data, without embedding.

    The file is read with ``weights_only=True``. The model must fit the data prepared by
    :func:`aestetik.pp.prepare`: the same numbers of transcriptomics and morphology channels and the same
    window size (a :class:`ValueError` names every size that differs). The modality weights are
    recalibrated for the new pseudo-labels as :func:`aestetik.tl.fit` would (a modality whose pseudo-labels
    collapsed to one cluster gets weight 0). Run :func:`~aestetik.tl.embed` afterwards to compute the embedding.

    Parameters
    ----------
    {adata}
    path
        File written by :func:`~aestetik.tl.save_model`.
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
    prepared = read_prepared(adata, prepare_key)
    fitted = _fitted_from_file(path, prepared, prepare_key)
    uns_results(adata, key, name="key")

    # --- write all keys at once
    adata = adata.copy() if copy else adata
    uns = {k: v for k, v in adata.uns.get(key, {}).items() if k != "embed"}
    uns["fit"] = fitted.record()
    adata.uns[key] = uns
    stale = Key.embedding(key)
    if stale in adata.obsm:
        del adata.obsm[stale]
        logg.warning(
            f"removed `adata.obsm[{stale!r}]`, computed by another model; run `aestetik.tl.embed(adata, key={key!r})`."
        )
    logg.info(f"loaded the AESTETIK model {str(path)!r}", deep=f"added\n    'uns[{key!r}][\"fit\"]'")
    return adata if copy else None


def _fitted_from_file(path: Path, prepared: Prepared, prepare_key: str) -> Fitted:
    """The model in ``path`` as a :class:`Fitted` for ``prepared`` (weights recalibrated for its pseudo-labels)."""
    weights, config = load_weights(path)
    fit, network, sizes = model_config(config, path)
    assert_layout(sizes, prepared.record, prepare_key=prepare_key, source=f"The model in {str(path)!r}")
    check_weights(
        weights,
        network,
        sizes,
        problem=f"The weights in {str(path)!r} do not match the network its configuration describes (corrupted file?)",
    )

    params = dict(fit["params"])
    params["prepare_key"] = prepare_key
    n_clusters_t, n_clusters_m = prepared.n_clusters
    w_t, w_m = calibrate_weights(
        float(params["morphology_weight"]),
        float(params["total_weight"]),
        n_transcriptomics_clusters=n_clusters_t,
        n_morphology_clusters=n_clusters_m,
    )
    history = {
        name: _to_array(v, np.int32 if name == "epoch" else np.float32)
        for name, v in dict(fit.get("history", {})).items()
    }
    return Fitted(
        params=params,
        weights=weights,
        transcriptomics_weight=w_t,
        morphology_weight=w_m,
        history=history,
        seconds={k: float(v) for k, v in dict(fit.get("seconds", {})).items()},
        loaded_from=str(path),
    )


def _fitted_from_adata(model: AnnData, key: str, prepared: Prepared, prepare_key: str) -> Fitted:
    """The model trained on the AnnData ``model`` (``uns[key]['fit']``), checked against ``prepared``."""
    fitted = read_fitted(model, key)
    info = model.uns.get(str(fitted.params.get("prepare_key", key)), {})
    prep = info.get("prepare") if isinstance(info, Mapping) else None
    if not isinstance(prep, Mapping):
        msg = (
            f"Did not find the training record `model.uns[{str(fitted.params.get('prepare_key', key))!r}]['prepare']`."
        )
        raise KeyError(msg)
    assert_layout(
        layout(prep), prepared.record, prepare_key=prepare_key, source=f"The model `model.uns[{key!r}]['fit']`"
    )
    return Fitted(
        params={**fitted.params, "prepare_key": prepare_key},
        weights=fitted.weights,
        transcriptomics_weight=fitted.transcriptomics_weight,
        morphology_weight=fitted.morphology_weight,
    )


@spatialdata_input
@doc_params
def embed(
    adata: AnnData,
    *,
    key: str = "aestetik",
    n_mc_samples: int = 100,
    random_state: int = 0,
    accelerator: str = "auto",
    model: AnnData | str | PathLike | None = None,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Embed every spot with the stored model: Monte-Carlo dropout passes of the trained encoder.

    Rebuilds the network from ``adata.uns[key]['fit']`` (written by :func:`aestetik.tl.fit` or
    :func:`~aestetik.tl.load_model`) and computes the embedding exactly as :func:`aestetik.tl.fit` does after training:
    batch-norm with the statistics over all spots, the mean of ``n_mc_samples`` passes with fresh dropout
    masks drawn from ``random_state``. With the ``n_mc_samples`` and ``random_state`` of the fit it reproduces
    the fit's embedding (exactly on CPU). Use it after :func:`~aestetik.tl.load_model`, or to change the number of passes.

    With ``model`` (a trained AnnData or a file of :func:`~aestetik.tl.save_model`) it embeds a new section with that model
    instead: prepare the section with ``aestetik.pp.prepare(adata, reference=model)`` first, so that its inputs
    are projected into the training space, then label it with ``aestetik.tl.cluster(adata, model=model)``.

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
    model
        A trained AnnData (its ``uns[key]['fit']``) or a model file; the data are then the prepared
        ``adata.uns[key]['prepare']`` and nothing of ``adata.uns[key]['fit']`` is read.
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
        ``params`` (``key``, ``n_mc_samples``, ``random_state``, ``device``, ``model`` (the file, ``'AnnData'``
        or ``''``), ``aestetik_version``) and ``seconds``. Other entries of ``adata.uns[key_added]`` are kept.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.synthetic(n_spots=1000)
    >>> ae.pp.prepare(adata, morphology_key="X_morphology", n_clusters=4)  # doctest: +SKIP
    >>> ae.tl.fit(adata, max_epochs=20)  # doctest: +SKIP
    >>> ae.tl.embed(adata, n_mc_samples=100, key_added="aestetik_mc100")  # doctest: +SKIP
    """
    from aestetik._version import __version__

    # --- validate everything before touching adata
    assert_not_view(adata, copy=copy)
    assert_int(minimum=0, n_mc_samples=n_mc_samples)
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        msg = f"`random_state` must be an int seed, got {random_state!r}."
        raise TypeError(msg)
    key_added = key if key_added is None else key_added
    if model is None:
        fitted = read_fitted(adata, key)
        prepare_key = str(fitted.params["prepare_key"])
        prepared = read_prepared(adata, prepare_key)
    else:
        prepare_key = key
        reference = repr(str(model)) if isinstance(model, str | PathLike) else "model"  # the AnnData passed as `model`
        prepared = read_prepared(
            adata, prepare_key, prepare_call=f"aestetik.pp.prepare(adata, reference={reference}, key_added={key!r})"
        )
        if isinstance(model, str | PathLike):
            fitted = _fitted_from_file(Path(model), prepared, prepare_key)
        else:
            fitted = _fitted_from_adata(model, key, prepared, prepare_key)
    conv = fitted.weights.get("encoder.conv.weight")
    if conv is None:
        msg = f"`adata.uns[{key!r}]['fit']['weights']` has no encoder weights. Run `aestetik.tl.fit` again."
        raise KeyError(msg)
    if int(np.shape(conv)[1]) != prepared.n_channels:
        msg = (
            f"The model in `adata.uns[{key!r}]['fit']` takes {int(np.shape(conv)[1])} input channels, but "
            f"`adata.uns[{prepare_key!r}]['prepare']` has {prepared.n_channels}. Run `aestetik.tl.fit` again, or "
            "`aestetik.tl.load_model` a model of this size."
        )
        raise ValueError(msg)
    uns_results(adata, key_added)

    start = logg.info(
        f"embedding {adata.n_obs} spots with the model `adata.uns[{key!r}]['fit']` ({n_mc_samples} passes)"
    )
    embedding, device, seconds = embed_model(
        fitted,
        prepared,
        n_mc_samples=int(n_mc_samples),
        seed=int(random_state),
        accelerator=accelerator,
        where=f"`adata.uns[{key!r}]['fit']`",
    )
    info = {
        "params": {
            "key": key,
            "n_mc_samples": int(n_mc_samples),
            "random_state": int(random_state),
            "device": device,
            "model": "" if model is None else (str(model) if isinstance(model, str | PathLike) else "AnnData"),
            "aestetik_version": __version__,
        },
        "seconds": seconds,
    }

    # --- write all keys at once
    adata = adata.copy() if copy else adata
    adata.obsm[Key.embedding(key_added)] = embedding
    adata.uns[key_added] = {**dict(adata.uns.get(key_added, {})), "embed": info}
    logg.info(
        "    finished",
        time=start,
        deep=f"added\n    'obsm[{Key.embedding(key_added)!r}]', 'uns[{key_added!r}][\"embed\"]'",
    )
    return adata if copy else None

"""The one reader of what :func:`aestetik.pp.prepare` and :func:`aestetik.tl.fit` stored in an AnnData.

It builds the engine's dataclasses (:class:`~aestetik._model._types.Prepared`, :class:`~aestetik._model._types.Fitted`),
which the engine takes instead of the AnnData, after checking that the stored arrays still match the data; every
error names the key and the fix. It also turns values into what an h5ad file can store (:func:`h5ad_value`) and
back into Python types (:func:`plain`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aestetik._keys import Key
from aestetik._model._types import Fitted, Prepared
from aestetik._validation import assert_finite, assert_obs_key, assert_obsm_key

if TYPE_CHECKING:
    from anndata import AnnData

    from aestetik._transfer import DomainModel, Reference


def read_prepared(adata: AnnData, prepare_key: str, *, prepare_call: str | None = None) -> Prepared:
    """What ``prepare`` wrote under ``prepare_key``, after checking that its arrays still match ``adata``.

    ``prepare_call``: the ``aestetik.pp.prepare(...)`` call that the errors name as the fix (default: with
    ``key_added=prepare_key`` only).
    """
    call = prepare_call or f"aestetik.pp.prepare(adata, key_added={prepare_key!r})"
    info = adata.uns.get(prepare_key, {})
    if not isinstance(info, Mapping) or "prepare" not in info:
        msg = f"Did not find `adata.uns[{prepare_key!r}]['prepare']`. Run `{call}` first."
        raise KeyError(msg)
    prep = info["prepare"]
    redo = f"The data changed after `aestetik.pp.prepare`; run it again (key_added={prepare_key!r})."
    if prepare_call is not None:
        redo = f"The data changed after `aestetik.pp.prepare`; run `{prepare_call}` again."
    for key in (Key.input(prepare_key), Key.grid(prepare_key)):
        if key not in adata.obsm:
            msg = f"Did not find `adata.obsm[{key!r}]`. {redo}"
            raise KeyError(msg)
    if int(prep["n_obs"]) != adata.n_obs:
        msg = f"`aestetik.pp.prepare` saw {int(prep['n_obs'])} spots, the AnnData now has {adata.n_obs}. {redo}"
        raise ValueError(msg)
    w = int(prep["params"]["window_size"])
    grid = np.asarray(adata.obsm[Key.grid(prepare_key)])
    features = np.asarray(adata.obsm[Key.input(prepare_key)])
    centre = (w * w) // 2
    if grid.shape != (adata.n_obs, w * w) or not np.array_equal(grid[:, centre], np.arange(adata.n_obs)):
        msg = f"`adata.obsm[{Key.grid(prepare_key)!r}]` no longer matches the spots (subset or reordered?). {redo}"
        raise ValueError(msg)
    n_morphology = int(prep["n_morphology"])
    n_channels = int(prep["n_transcriptomics"]) + n_morphology
    if features.shape != (adata.n_obs, n_channels) or not np.all(np.isfinite(features)):
        msg = f"`adata.obsm[{Key.input(prepare_key)!r}]` has shape {features.shape} or non-finite values. {redo}"
        raise ValueError(msg)
    labelled = bool(prep.get("pseudo_labels", True))  # False: projected onto a reference, nothing to train on
    columns = [Key.transcriptomics_cluster(prepare_key)] + (
        [Key.morphology_cluster(prepare_key)] if n_morphology else []
    )
    for key in columns if labelled else []:
        if key not in adata.obs:
            msg = f"Did not find the pseudo-labels `adata.obs[{key!r}]`. {redo}"
            raise KeyError(msg)
    lattice = adata.obsm.get(Key.lattice(prepare_key))
    batch_key = recorded_batch_key(adata, prepare_key)
    batch = adata.obs[batch_key].to_numpy() if batch_key and batch_key in adata.obs.columns else None
    return Prepared(
        key=prepare_key,
        features=features,
        grid=grid,
        lattice=None if lattice is None else np.asarray(lattice),
        labels_transcriptomics=adata.obs[columns[0]].to_numpy() if labelled else None,
        labels_morphology=adata.obs[columns[1]].to_numpy() if n_morphology and labelled else None,
        record=prep,
        batch=batch,
    )


def read_fitted(adata: AnnData, key: str) -> Fitted:
    """The model ``fit`` (or ``load_model``) recorded in ``adata.uns[key]['fit']``."""
    info = adata.uns.get(key, {})
    record = info.get("fit") if isinstance(info, Mapping) else None
    if not isinstance(record, Mapping):
        msg = f"Did not find `adata.uns[{key!r}]['fit']`. Run `aestetik.tl.fit(adata, key_added={key!r})` or `aestetik.tl.load_model` first."
        raise KeyError(msg)
    for name in ("params", "weights", "transcriptomics_weight", "morphology_weight"):
        if name not in record:
            msg = f"`adata.uns[{key!r}]['fit']` has no {name!r}. Run `aestetik.tl.fit(adata, key_added={key!r})` again."
            raise KeyError(msg)
    memory = record.get("memory_estimate_bytes")
    loaded = record.get("loaded_from")
    return Fitted(
        params=dict(record["params"]),
        weights=dict(record["weights"]),
        transcriptomics_weight=float(record["transcriptomics_weight"]),
        morphology_weight=float(record["morphology_weight"]),
        history=dict(record.get("history", {})),
        seconds=dict(record.get("seconds", {})),
        memory_estimate_bytes=None if memory is None else int(memory),
        loaded_from=None if loaded is None else str(loaded),
    )


def recorded_batch_key(adata: AnnData, prepare_key: str) -> str | None:
    """The ``batch_key`` that ``prepare`` recorded under ``prepare_key``, if any (``None`` when not prepared)."""
    prepared = adata.uns.get(prepare_key, {})
    params = prepared.get("prepare", {}).get("params", {}) if isinstance(prepared, Mapping) else {}
    batch_key = params.get("batch_key") if isinstance(params, Mapping) else None
    return batch_key if isinstance(batch_key, str) and batch_key else None


def refinement_coordinates(adata: AnnData, *, prepare_key: str, spatial_key: str) -> tuple[str, np.ndarray]:
    """Where the refinement votes: the lattice written by ``prepare`` if present, else ``adata.obsm[spatial_key]``.

    Single cells (``prepare(coords='cells')``) vote on their real positions, ``adata.obsm`` at the ``spatial_key``
    that ``prepare`` built their grid from: the grid moves some cells to a free site nearby, the k-NN should not.
    """
    lattice = Key.lattice(prepare_key)
    info = adata.uns.get(prepare_key, {})
    record = info.get("prepare", {}).get("lattice", {}) if isinstance(info, Mapping) else {}
    if isinstance(record, Mapping) and str(record.get("source", "")) == "cells":
        key = str(record.get("spatial_key", spatial_key))
    else:
        key = lattice if lattice in adata.obsm else spatial_key
    coords = assert_obsm_key(
        adata,
        key,
        fix=(
            f"Refinement needs spot coordinates: run `aestetik.pp.prepare(adata)` (writes `adata.obsm[{lattice!r}]`), "
            "pass `spatial_key`, or call with `refine=False`."
        ),
    )
    assert_finite(coords, where=f"`adata.obsm[{key!r}]`")
    return key, coords


def assert_batch_column(adata: AnnData, prepare_key: str, *, fix: str) -> str | None:
    """The recorded ``batch_key`` of ``prepare_key``, refused (with ``fix``) when its column is gone."""
    batch_key = recorded_batch_key(adata, prepare_key)
    if batch_key:
        assert_obs_key(adata, batch_key, fix=fix.format(batch_key=batch_key, prepare_key=prepare_key))
    return batch_key


def plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays (as an h5ad round trip returns them) turned into Python types."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def h5ad_value(value: Any) -> Any:
    """``value`` as it can be recorded in ``uns``: ``None`` dropped (h5ad cannot store it), sequences as arrays."""
    if isinstance(value, Mapping):
        return {str(k): h5ad_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, Sequence | range) and not isinstance(value, str):
        return np.asarray(value)
    return value


def read_reference(source: Any, key: str) -> Reference:
    """The :class:`~aestetik._transfer.Reference` of a trained AnnData (``uns[key]['prepare']``) or a model file."""
    from anndata import AnnData

    from aestetik._transfer import model_file_config, reference_from

    if isinstance(source, AnnData):
        where = f"`reference.uns[{key!r}]['prepare']`"
        info = source.uns.get(key, {})
        record = info.get("prepare") if isinstance(info, Mapping) else None
        if not isinstance(record, Mapping):
            msg = f"Did not find {where}. Pass a section prepared and trained with `key_added={key!r}`, or its model file."
            raise KeyError(msg)
        return reference_from(record, where)
    return reference_from(model_file_config(source).get("prepare"), f"the model file {str(source)!r}")


def read_domain_model(source: Any, key: str) -> DomainModel:
    """The :class:`~aestetik._transfer.DomainModel` of a clustered AnnData (``uns[key]['cluster']``) or a model file."""
    from anndata import AnnData

    from aestetik._transfer import domain_model_from, model_file_config

    if isinstance(source, AnnData):
        info = source.uns.get(key, {})
        record = info.get("cluster") if isinstance(info, Mapping) else None
        return domain_model_from(record, f"`model.uns[{key!r}]['cluster']`", key)
    return domain_model_from(model_file_config(source).get("domains"), f"the model file {str(source)!r}", key)

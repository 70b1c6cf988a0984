from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scanpy import logging as logg

from aestetik._docs import doc_params
from aestetik._keys import Key
from aestetik._model._io import arrays_to_state, state_to_arrays
from aestetik._model._weights import calibrate_weights
from aestetik._validation import assert_choice, assert_int, assert_not_view

if TYPE_CHECKING:
    from anndata import AnnData

DEFAULT_BATCH_SIZE = 8192
DEFAULT_MORPHOLOGY_WEIGHT = 1.5


def _prepared(adata: AnnData, prepare_key: str) -> dict[str, Any]:
    """The ``prepare`` record, after checking that its arrays still match ``adata``."""
    info = adata.uns.get(prepare_key, {})
    if not isinstance(info, dict) or "prepare" not in info:
        msg = f"Did not find `adata.uns[{prepare_key!r}]['prepare']`. Run `aestetik.pp.prepare(adata, key_added={prepare_key!r})` first."
        raise KeyError(msg)
    prep = info["prepare"]
    redo = f"The data changed after `aestetik.pp.prepare`; run it again (key_added={prepare_key!r})."
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
    n_channels = int(prep["n_transcriptomics"]) + int(prep["n_morphology"])
    if features.shape != (adata.n_obs, n_channels) or not np.all(np.isfinite(features)):
        msg = f"`adata.obsm[{Key.input(prepare_key)!r}]` has shape {features.shape} or non-finite values. {redo}"
        raise ValueError(msg)
    for key in [Key.transcriptomics_cluster(prepare_key)] + (
        [Key.morphology_cluster(prepare_key)] if int(prep["n_morphology"]) else []
    ):
        if key not in adata.obs:
            msg = f"Did not find the pseudo-labels `adata.obs[{key!r}]`. {redo}"
            raise KeyError(msg)
    return prep


def _n_channels(prep: dict[str, Any]) -> int:
    return int(prep["n_transcriptomics"]) + int(prep["n_morphology"])


def _check_memory(
    prep: dict[str, Any],
    params: dict[str, Any],
    weights: tuple[float, float],
    *,
    n_obs: int,
    n_channels: int,
    accelerator: str,
    check: bool,
):
    """Estimate the memory of ``fit``; refuse (before anything runs) when it would not fit on the device."""
    import torch

    from aestetik._model._memory import (
        CACHE_BYTES,
        USABLE_SHARE,
        available_memory,
        estimate_fit_memory,
        format_bytes,
        largest_batch,
        n_partners_per_anchor,
    )

    partners = n_partners_per_anchor(
        (int(prep["n_clusters_transcriptomics"]), int(prep["n_clusters_morphology"])),
        weights if params["triplet_alpha"] else (0.0, 0.0),
        multi_triplet=params["multi_triplet"],
        n_repeats=params["n_repeats"],
    )
    sizes = {
        "n_obs": n_obs,
        "n_channels": n_channels,
        "window_size": int(prep["params"]["window_size"]),
        "batch_size": params["batch_size"],
        "n_partners": partners,
        "within_batch": params["partners"] == "batch",
        "n_mc_samples": params["n_mc_samples"],
        "n_ensemble": params["n_ensemble"],
        "c_hid": params["c_hid"],
        "latent_dim": params["latent_dim"],
        "kernel_size": params["kernel_size"],
        "cache_bytes": CACHE_BYTES,
    }
    estimate = estimate_fit_memory(**sizes)
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    device = "cuda" if cuda and torch.cuda.is_available() else "cpu"
    available = available_memory(device) if check else None
    logg.info(f"    estimated peak memory {format_bytes(estimate.total)} on {device}")
    if available is not None and estimate.total > USABLE_SHARE * available:
        largest = largest_batch(available, **sizes)
        advice = (
            f"pass `batch_size={largest}` (now {params['batch_size']})"
            if largest >= 1
            else "the data alone do not fit: subsample the spots or use a device with more memory"
        )
        if params["partners"] == "all" and params["batch_size"] < n_obs:
            advice += ", or `partners='batch'` (partners from the same batch: far fewer spots per step)"
        msg = (
            f"`aestetik.tl.fit` would need about {format_bytes(estimate.total)} on {device} "
            f"(data {format_bytes(estimate.data)}, training step {format_bytes(estimate.step)}, "
            f"embedding {format_bytes(estimate.embed)}) but {format_bytes(available)} are free: {advice}. "
            "Nothing was written. Pass `check_memory=False` to try anyway."
        )
        raise MemoryError(msg)
    return estimate


def _network_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    return {k: params[k] for k in ("c_hid", "latent_dim", "kernel_size", "n_ensemble", "dropout")}


def build_module(adata: AnnData, prepare_key: str, params: dict[str, Any], weights: tuple[float, float]):
    """The training module for the prepared ``adata`` (private; shared by :func:`fit` and model restore)."""
    from aestetik._model._module import AestetikModule

    prep = adata.uns[prepare_key]["prepare"]
    n_m = int(prep["n_morphology"])
    labels_t = adata.obs[Key.transcriptomics_cluster(prepare_key)].to_numpy()
    labels_m = adata.obs[Key.morphology_cluster(prepare_key)].to_numpy() if n_m else np.zeros(adata.n_obs, dtype=int)
    return AestetikModule(
        np.asarray(adata.obsm[Key.input(prepare_key)], dtype=np.float32),
        np.asarray(adata.obsm[Key.grid(prepare_key)], dtype=np.int32),
        labels_t,
        labels_m,
        n_transcriptomics=int(prep["n_transcriptomics"]),
        window_size=int(prep["params"]["window_size"]),
        weights=weights,
        network_kwargs=_network_kwargs(params),
        rec_alpha=params["rec_alpha"],
        triplet_alpha=params["triplet_alpha"],
        lr=params["lr"],
        weight_decay=params["weight_decay"],
        n_repeats=params["n_repeats"],
        multi_triplet=params["multi_triplet"],
        partners=params.get("partners", "all"),
    )


def restore_module(adata: AnnData, key: str = "aestetik"):
    """Rebuild the trained module from ``adata.uns[key]['fit']`` (weights stored as arrays)."""
    if key not in adata.uns or "fit" not in adata.uns[key]:
        msg = f"Did not find `adata.uns[{key!r}]['fit']`. Run `aestetik.tl.fit(adata, key_added={key!r})` first."
        raise KeyError(msg)
    record = adata.uns[key]["fit"]
    params = dict(record["params"])
    _prepared(adata, params["prepare_key"])
    module = build_module(
        adata,
        params["prepare_key"],
        params,
        (float(record["transcriptomics_weight"]), float(record["morphology_weight"])),
    )
    module.network.load_state_dict(arrays_to_state(record["weights"]))
    return module


@doc_params
def fit(
    adata: AnnData,
    *,
    morphology_weight: float | None = None,
    total_weight: float = 3.0,
    max_epochs: int = 100,
    batch_size: int | None = None,
    latent_dim: int = 16,
    c_hid: int = 64,
    kernel_size: int = 3,
    dropout: float = 0.3,
    n_ensemble: int = 3,
    lr: float = 1e-3,
    weight_decay: float = 1e-6,
    rec_alpha: float = 1.0,
    triplet_alpha: float = 1.0,
    n_repeats: int = 1,
    multi_triplet: bool = True,
    partners: Literal["all", "batch"] = "all",
    n_mc_samples: int = 1000,
    random_state: int = 0,
    accelerator: str = "auto",
    devices: int | str = "auto",
    prepare_key: str = "aestetik",
    check_memory: bool = True,
    show_progress_bar: bool = True,
    key_added: str = "aestetik",
    copy: bool = False,
) -> AnnData | None:
    """Train AESTETIK and embed every spot.

    Trains the convolutional autoencoder ensemble on the lattice windows built by
    :func:`aestetik.pp.prepare` with a per-modality L1 reconstruction and multi-triplet loss
    :cite:p:`Nonchev2024`, then writes the Monte-Carlo dropout embedding (mean over ``n_mc_samples``
    stochastic passes). The data live on the training device; triplet partners are drawn with tensor
    ops and each distinct spot of a step is convolved once; anchors, positives and negatives are still
    normalised as separate batch-norm batches and every occurrence gets its own dropout mask, exactly as
    in the reference implementation.

    Parameters
    ----------
    {adata}
    morphology_weight
        Weight ``w_m`` of the morphology terms; ``w_t = total_weight - w_m``. Default: 1.5 when
        ``prepare`` was given a morphology representation, else 0. A modality whose pseudo-labels
        collapsed to one cluster gets weight 0.
    total_weight
        ``w_t + w_m``.
    max_epochs
        Epochs; every spot is an anchor once per epoch.
    batch_size
        Anchors per step; default ``min(8192, n_obs)``.
    latent_dim
        Embedding size.
    c_hid
        Convolution channels.
    kernel_size
        Convolution and max-pool kernel (shrinks to ``w - 1`` when not smaller than the window).
    dropout
        Channel dropout probability (training and Monte-Carlo embedding).
    n_ensemble
        Encoder and decoder units; the embedding is their element-wise median.
    lr
        Adam (amsgrad) learning rate.
    weight_decay
        Adam weight decay.
    rec_alpha
        Coefficient of the reconstruction terms.
    triplet_alpha
        Coefficient of the triplet terms.
    n_repeats
        Triplet partners per other cluster.
    multi_triplet
        One negative from every other cluster (default) or from one random other cluster.
    partners
        Where triplet partners come from: ``'all'`` spots (the published method) or the anchors of the same
        ``'batch'``. Both draw from the same distribution when one batch holds the whole section (up to
        ``batch_size`` spots, e.g. Visium); on larger data ``'batch'`` convolves at most ``batch_size`` spots per step instead of
        up to ``batch_size * (1 + partners per anchor)``, several times less time and memory. Check the
        domains: at 10^6 synthetic spots with batches of 8192, k-means on the ``'batch'`` embedding stopped
        finding the domains within 3 epochs although the embedding still separated them (docs/method.md,
        difference 9); clustered into twice as many domains, each lay within one true domain.
    n_mc_samples
        Monte-Carlo dropout passes averaged into the embedding (0: one pass without dropout).
        Batch-norm normalises with the statistics over all spots (the reference's behaviour for a
        section of up to 8192 spots), so no embedding depends on how spots are batched.
    {random_state}
    accelerator
        Lightning accelerator (``'auto'``, ``'cpu'``, ``'gpu'``, ...).
    devices
        Lightning devices.
    {prepare_key}
    check_memory
        Estimate the memory training and embedding need before starting, and refuse with a
        :class:`MemoryError` that names the estimate and the largest ``batch_size`` that fits when it exceeds
        90% of the free memory of the training device (host memory on CPU). The estimate is stored in the record.
    {show_progress_bar}
    key_added
        The embedding goes to ``obsm['X_' + key_added]``, the record to ``uns[key_added]['fit']``.
    {copy}

    Returns
    -------
    {returns_copy} Sets:

    `adata.obsm['X_' + key_added]` : ndarray (n, latent_dim), float32
        The embedding; use it with ``sc.pp.neighbors(adata, use_rep='X_aestetik')``.
    `adata.uns[key_added]['fit']` : dict
        ``params`` (resolved, with the device), calibrated ``transcriptomics_weight`` and
        ``morphology_weight``, ``history`` (per-step total loss and its four parts, with ``epoch``),
        ``weights`` (the network's state dict as arrays) and ``seconds``.

    Examples
    --------
    >>> import aestetik as ae
    >>> adata = ae.datasets.dlpfc_151676()
    >>> ae.pp.prepare(adata)
    >>> ae.tl.fit(adata)
    >>> adata.obsm["X_aestetik"].shape
    (3460, 16)
    """
    import torch

    from aestetik import __version__
    from aestetik._model._allocator import keep_freed_memory, release_free_memory
    from aestetik._model._module import AnchorBatches
    from aestetik._model._trainer import LossHistory, make_trainer, quiet_lightning, stop_on_interrupt

    assert_not_view(adata, copy=copy)
    prep = _prepared(adata, prepare_key)
    assert_int(
        max_epochs=max_epochs,
        latent_dim=latent_dim,
        c_hid=c_hid,
        kernel_size=kernel_size,
        n_ensemble=n_ensemble,
        n_repeats=n_repeats,
    )
    if batch_size is not None:
        assert_int(batch_size=batch_size)
    assert_int(minimum=0, n_mc_samples=n_mc_samples)
    assert_choice(partners, ("all", "batch"), name="partners")
    if not 0 <= dropout < 1:
        msg = f"`dropout` must be in [0, 1), got {dropout!r}."
        raise ValueError(msg)
    has_morphology = int(prep["n_morphology"]) > 0
    if morphology_weight is None:
        morphology_weight = DEFAULT_MORPHOLOGY_WEIGHT if has_morphology else 0.0
    if morphology_weight > 0 and not has_morphology:
        msg = "`morphology_weight` > 0 needs a morphology representation: run `aestetik.pp.prepare(adata, morphology_key=...)`."
        raise ValueError(msg)
    if not 0 <= morphology_weight <= total_weight:
        msg = f"`morphology_weight` must lie in [0, total_weight={total_weight}], got {morphology_weight}."
        raise ValueError(msg)
    weights = calibrate_weights(
        morphology_weight,
        total_weight,
        n_transcriptomics_clusters=int(prep["n_clusters_transcriptomics"]),
        n_morphology_clusters=int(prep["n_clusters_morphology"]),
    )
    if weights == (0.0, 0.0):
        msg = "Both modality weights are 0 (pseudo-labels collapsed or weights chosen so): nothing to train. Check `aestetik.pp.prepare`'s clusters."
        raise ValueError(msg)
    for name, w, k in (
        ("transcriptomics", weights[0], "n_clusters_transcriptomics"),
        ("morphology", weights[1], "n_clusters_morphology"),
    ):
        if w == 0 and (name == "transcriptomics" or morphology_weight > 0) and int(prep[k]) < 2:
            logg.warning(f"{name} pseudo-labels collapsed to one cluster; its weight is set to 0.")
    n = adata.n_obs
    batch_size = int(batch_size or min(DEFAULT_BATCH_SIZE, n))
    params = {
        "morphology_weight": float(morphology_weight),
        "total_weight": float(total_weight),
        "max_epochs": int(max_epochs),
        "batch_size": batch_size,
        "latent_dim": int(latent_dim),
        "c_hid": int(c_hid),
        "kernel_size": int(kernel_size),
        "dropout": float(dropout),
        "n_ensemble": int(n_ensemble),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "rec_alpha": float(rec_alpha),
        "triplet_alpha": float(triplet_alpha),
        "n_repeats": int(n_repeats),
        "multi_triplet": bool(multi_triplet),
        "partners": str(partners),
        "n_mc_samples": int(n_mc_samples),
        "random_state": int(random_state),
        "prepare_key": prepare_key,
        "aestetik_version": __version__,
    }

    memory = _check_memory(
        prep, params, weights, n_obs=n, accelerator=accelerator, check=check_memory, n_channels=_n_channels(prep)
    )
    start = logg.info(
        f"training AESTETIK on {n} spots for {max_epochs} epochs (w_t={weights[0]:g}, w_m={weights[1]:g})"
    )
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda), quiet_lightning(), keep_freed_memory():
        torch.manual_seed(random_state)
        module = build_module(adata, prepare_key, params, weights)
        history = LossHistory()
        trainer = make_trainer(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            show_progress_bar=show_progress_bar,
            callbacks=[history],
        )
        loader = torch.utils.data.DataLoader(AnchorBatches(n, batch_size, random_state), batch_size=None, num_workers=0)
        t0 = time.perf_counter()
        with stop_on_interrupt(trainer) as state:
            trainer.fit(module, train_dataloaders=loader)
        if state["interrupted"]:
            msg = "Training was interrupted; nothing was written to the AnnData."
            raise KeyboardInterrupt(msg)
        t1 = time.perf_counter()
        release_free_memory()  # what training kept for reuse would add to the embedding's peak
        device = trainer.strategy.root_device
        module.to(device)
        embedding = module.embed(n_mc_samples, seed=random_state)
        t2 = time.perf_counter()
    params["device"] = str(device.type)
    record = {
        "params": params,
        "transcriptomics_weight": float(weights[0]),
        "morphology_weight": float(weights[1]),
        "history": history.history(),
        "weights": state_to_arrays(module.network.state_dict()),
        "seconds": {"train": float(t1 - t0), "embed": float(t2 - t1)},
        "memory_estimate_bytes": int(memory.total),
    }

    adata = adata.copy() if copy else adata
    adata.obsm[Key.embedding(key_added)] = embedding.astype(np.float32)
    uns = dict(adata.uns.get(key_added, {}))
    uns["fit"] = record
    adata.uns[key_added] = uns
    logg.info(
        "    finished",
        time=start,
        deep=f"added\n    'obsm[{Key.embedding(key_added)!r}]', 'uns[{key_added!r}][\"fit\"]'",
    )
    return adata if copy else None

"""Training and embedding on prepared arrays (METHOD §4-6): parameters, memory check, training, Monte-Carlo embedding.

:func:`resolve_params` checks and resolves the arguments of :func:`aestetik.tl.fit` against the prepared data,
:func:`~aestetik._model._checks.check_fit_memory` refuses a run that would not fit on the device, :func:`train` trains
the Lightning module and embeds every spot (:func:`fit_prepared` runs these three), :func:`embed` recomputes the
embedding from stored weights. Everything takes a :class:`~aestetik._model._types.Prepared` (or
:class:`~aestetik._model._types.Fitted`) and returns arrays and records.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from scanpy import logging as logg

from aestetik._validation import assert_choice, assert_int

from ._checks import assert_own_pseudo_labels, check_accelerator, check_fit_memory
from ._ensemble import default_ensemble
from ._io import arrays_to_state, network_kwargs, state_to_arrays
from ._memory import MemoryEstimate
from ._types import Fitted, Prepared
from ._weights import calibrate_weights

if TYPE_CHECKING:
    from ._module import AestetikModule

#: Anchors per step by default (fewer when the data have fewer spots).
DEFAULT_BATCH_SIZE = 8192
#: Default weight of the morphology terms when there is a morphology representation.
DEFAULT_MORPHOLOGY_WEIGHT = 1.5


def resolve_params(
    prepared: Prepared,
    *,
    morphology_weight: float | None,
    total_weight: float,
    max_epochs: int,
    batch_size: int | None,
    latent_dim: int,
    c_hid: int,
    kernel_size: int,
    dropout: float,
    n_ensemble: int | None,
    lr: float,
    weight_decay: float,
    rec_alpha: float,
    triplet_alpha: float,
    n_repeats: int,
    multi_triplet: bool,
    partners: str,
    n_mc_samples: int,
    tol: float,
    random_state: int,
) -> tuple[dict[str, Any], tuple[float, float]]:
    """The resolved, checked parameters of a fit (as recorded) and the calibrated weights ``(w_t, w_m)``."""
    assert_own_pseudo_labels(prepared)
    from aestetik._version import __version__

    if n_ensemble is None:
        n_ensemble = default_ensemble(prepared.n_obs)
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
    if isinstance(tol, bool) or not isinstance(tol, int | float | np.integer | np.floating) or not tol >= 0:
        msg = f"`tol` must be a number >= 0 (0 trains all `max_epochs`), got {tol!r}."
        raise ValueError(msg)
    has_morphology = prepared.n_morphology > 0
    if morphology_weight is None:
        morphology_weight = DEFAULT_MORPHOLOGY_WEIGHT if has_morphology else 0.0
    if morphology_weight > 0 and not has_morphology:
        msg = "`morphology_weight` > 0 needs a morphology representation: run `aestetik.pp.prepare(adata, morphology_key=...)`."
        raise ValueError(msg)
    if not 0 <= morphology_weight <= total_weight:
        msg = f"`morphology_weight` must lie in [0, total_weight={total_weight}], got {morphology_weight}."
        raise ValueError(msg)
    n_clusters_t, n_clusters_m = prepared.n_clusters
    weights = calibrate_weights(
        morphology_weight,
        total_weight,
        n_transcriptomics_clusters=n_clusters_t,
        n_morphology_clusters=n_clusters_m,
    )
    if weights == (0.0, 0.0):
        msg = "Both modality weights are 0 (pseudo-labels collapsed or weights chosen so): nothing to train. Check `aestetik.pp.prepare`'s clusters."
        raise ValueError(msg)
    for name, w, k in (("transcriptomics", weights[0], n_clusters_t), ("morphology", weights[1], n_clusters_m)):
        if w == 0 and (name == "transcriptomics" or morphology_weight > 0) and k < 2:
            logg.warning(f"{name} pseudo-labels collapsed to one cluster; its weight is set to 0.")
    params = {
        "morphology_weight": float(morphology_weight),
        "total_weight": float(total_weight),
        "max_epochs": int(max_epochs),
        "batch_size": int(batch_size or min(DEFAULT_BATCH_SIZE, prepared.n_obs)),
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
        "tol": float(tol),
        "random_state": int(random_state),
        "prepare_key": prepared.key,
        "aestetik_version": __version__,
    }
    return params, weights


def build_module(prepared: Prepared, params: dict[str, Any], weights: tuple[float, float]) -> AestetikModule:
    """The training module for the prepared data (its network freshly initialised from torch's global RNG)."""
    from ._module import AestetikModule

    labels_t, labels_m = prepared.labels_transcriptomics, prepared.labels_morphology
    none = np.zeros(prepared.n_obs, dtype=int)  # no pseudo-labels (a section projected onto a reference): embed only
    if labels_t is None:
        weights = (0.0, 0.0)  # no triplets to draw; the weights do not enter the embedding
    return AestetikModule(
        np.asarray(prepared.features, dtype=np.float32),
        np.asarray(prepared.grid, dtype=np.int32),
        labels_t if labels_t is not None else none,
        labels_m if labels_m is not None else none,
        n_transcriptomics=prepared.n_transcriptomics,
        window_size=prepared.window_size,
        weights=weights,
        network_kwargs=network_kwargs(params),
        rec_alpha=params["rec_alpha"],
        triplet_alpha=params["triplet_alpha"],
        lr=params["lr"],
        weight_decay=params["weight_decay"],
        n_repeats=params["n_repeats"],
        multi_triplet=params["multi_triplet"],
        partners=params.get("partners", "all"),
    )


def restore_module(fitted: Fitted, prepared: Prepared) -> AestetikModule:
    """The trained module: :func:`build_module` with the stored weights loaded (strictly)."""
    module = build_module(prepared, dict(fitted.params), fitted.modality_weights)
    module.network.load_state_dict(arrays_to_state(fitted.weights))
    return module


def train(
    prepared: Prepared,
    params: dict[str, Any],
    weights: tuple[float, float],
    *,
    memory: MemoryEstimate,
    accelerator: str,
    devices: int | str,
    show_progress_bar: bool,
    strategy: Any = "auto",
    num_nodes: int = 1,
    checkpoint_path: str | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
) -> tuple[Fitted, np.ndarray | None]:
    """Train from ``params['random_state']`` and embed every spot; the record of the fit and the embedding.

    Runs inside :func:`torch.random.fork_rng`, so the caller's random state is left as it was. Ctrl+C stops
    training and raises :class:`KeyboardInterrupt` before anything is returned. Several processes and checkpoints:
    :mod:`aestetik._model._distributed` (the embedding is ``None`` on ranks other than 0 of a per-rank launch) and
    :mod:`aestetik._model._checkpoint`.
    """
    import torch

    from ._allocator import keep_freed_memory, release_free_memory
    from ._checkpoint import ResumeState, checkpoint_callback, last_checkpoint
    from ._distributed import EmbedOnRankZero, RankSeeds, describe, ignore_local_buffers, pop_results
    from ._module import AnchorBatches
    from ._stopping import CHECK_EVERY, SettledEmbedding
    from ._trainer import LossHistory, history_arrays, make_trainer, quiet_lightning, stop_on_interrupt

    n, seed = prepared.n_obs, int(params["random_state"])
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda), quiet_lightning(), keep_freed_memory():
        torch.manual_seed(seed)
        module = build_module(prepared, params, weights)
        ignore_local_buffers(module)
        history = LossHistory()
        batches = AnchorBatches(n, params["batch_size"], seed)
        callbacks = [history, RankSeeds(seed), EmbedOnRankZero(params["n_mc_samples"], seed, history)]
        settle = SettledEmbedding(params["tol"], seed, history) if params["tol"] > 0 else None
        if settle is not None:
            callbacks.append(settle)
        ckpt = None
        if checkpoint_path is not None:
            callbacks += [
                ResumeState(batches, params, checkpoint_path),
                checkpoint_callback(checkpoint_path, checkpoint_every),
            ]
            ckpt = last_checkpoint(checkpoint_path) if resume else None
        trainer = make_trainer(
            max_epochs=params["max_epochs"],
            accelerator=accelerator,
            devices=devices,
            show_progress_bar=show_progress_bar,
            callbacks=callbacks,
            strategy=strategy,
            num_nodes=num_nodes,
            default_root_dir=checkpoint_path,
        )
        world = int(trainer.num_devices * trainer.num_nodes)
        where = f", resuming from {ckpt}" if ckpt else (", no checkpoint to resume from yet" if resume else "")
        logg.info(f"    on {describe(trainer)}{where}")
        loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=0)
        t0 = time.perf_counter()
        resume_kw = {"ckpt_path": ckpt, "weights_only": True} if ckpt else {}
        with stop_on_interrupt(trainer) as state:
            trainer.fit(module, train_dataloaders=loader, **resume_kw)
        if state["interrupted"]:
            saved = f" Resume with `resume=True` from `checkpoint_path={checkpoint_path!r}`." if checkpoint_path else ""
            msg = f"Training was interrupted; nothing was written to the AnnData.{saved}"
            raise KeyboardInterrupt(msg)
        t1 = time.perf_counter()
        if settle is not None and settle.stopped and settle.reason == "triplets" and settle.fraction is not None:
            logg.info(
                f"    stopped after {history.epochs[-1] + 1} epochs: the triplet terms fell to {settle.fraction:.1%} of "
                f"their first epoch's, so the pseudo-labels are learned (tol={params['tol']:g})"
            )
        elif settle is not None and settle.stopped and settle.last:  # this process checked (not a spawned one)
            epoch, drift = settle.last
            logg.info(
                f"    stopped after {epoch} epochs: the embedding moved by {drift:.1%} of its spread in the last "
                f"{CHECK_EVERY} (tol={params['tol']:g})"
            )
        device = trainer.strategy.root_device
        hist = history.history()
        if world > 1:  # embedded by rank 0 (EmbedOnRankZero); none on the other ranks of a per-rank launch
            results = pop_results(trainer)
            embedding, embed_seconds = None, 0.0
            if results is not None:
                embedding, embed_seconds, values, epochs = results
                hist = history_arrays(values, epochs)
        else:
            release_free_memory()  # what training kept for reuse would add to the embedding's peak
            module.to(device)
            embedding = module.embed(params["n_mc_samples"], seed=seed)
            embed_seconds = time.perf_counter() - t1
    name = strategy if isinstance(strategy, str) else type(strategy).__name__
    epochs = np.asarray(hist.get("epoch", []))
    trained = int(epochs.max()) + 1 if epochs.size else 0
    run = {
        "device": str(device.type),
        "strategy": name,
        "world_size": world,
        "resumed": bool(ckpt),
        "epochs_trained": trained,
    }
    fitted = Fitted(
        params={**params, **run},
        weights=state_to_arrays(module.network.state_dict()),
        transcriptomics_weight=float(weights[0]),
        morphology_weight=float(weights[1]),
        history=hist,
        seconds={"train": float(t1 - t0), "embed": float(embed_seconds)},
        memory_estimate_bytes=int(memory.total),
    )
    return fitted, None if embedding is None else embedding.astype(np.float32)


def fit_prepared(
    prepared: Prepared,
    *,
    accelerator: str,
    devices: int | str,
    check_memory: bool,
    show_progress_bar: bool,
    strategy: Any = "auto",
    num_nodes: int = 1,
    checkpoint_path: str | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    **kwargs: Any,
) -> tuple[Fitted, np.ndarray | None]:
    """:func:`aestetik.tl.fit` on prepared arrays: the record of the fit and the embedding.

    Resolves the parameters (``kwargs``, see :func:`resolve_params`), checks the memory, trains and embeds. The
    embedding is ``None`` on a rank of a per-rank launch (SLURM, torchrun) other than global rank 0.
    """
    from ._distributed import check_devices

    check_accelerator(accelerator, devices)
    devices_kw = {"strategy": strategy, "num_nodes": num_nodes, "checkpoint_every": checkpoint_every, "resume": resume}
    path = check_devices(checkpoint_path=checkpoint_path, **devices_kw)
    params, weights = resolve_params(prepared, **kwargs)
    memory = check_fit_memory(prepared, params, weights, accelerator=accelerator, check=check_memory)
    start = logg.info(
        f"training AESTETIK on {prepared.n_obs} spots for {params['max_epochs']} epochs "
        f"(w_t={weights[0]:g}, w_m={weights[1]:g})"
    )
    fitted, embedding = train(
        prepared,
        params,
        weights,
        memory=memory,
        accelerator=accelerator,
        devices=devices,
        show_progress_bar=show_progress_bar,
        checkpoint_path=path,
        **devices_kw,
    )
    logg.info("    finished", time=start)
    return fitted, embedding


def embed(
    fitted: Fitted, prepared: Prepared, *, n_mc_samples: int, seed: int, accelerator: str, where: str
) -> tuple[np.ndarray, str, float]:
    """The Monte-Carlo dropout embedding of a stored model on one device: ``(embedding, device type, seconds)``.

    Equal to the embedding of :func:`train` for the same ``n_mc_samples`` and ``seed`` (exactly on CPU). Weights
    that do not fit the network raise a ValueError naming ``where`` they are stored.
    """
    import torch

    from ._allocator import keep_freed_memory
    from ._trainer import make_trainer, quiet_lightning

    check_accelerator(accelerator)
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda), quiet_lightning(), keep_freed_memory():
        device = make_trainer(
            max_epochs=1, accelerator=accelerator, devices=1, show_progress_bar=False, callbacks=[]
        ).strategy.root_device
        try:
            module = restore_module(fitted, prepared)
        except RuntimeError as e:  # state dict of another network size
            msg = f"The weights in {where} do not fit its parameters or the prepared data: {e}"
            raise ValueError(msg) from e
        module.to(device)
        t0 = time.perf_counter()
        embedding = module.embed(int(n_mc_samples), seed=int(seed))
        seconds = time.perf_counter() - t0
    return embedding.astype(np.float32), str(device.type), float(seconds)

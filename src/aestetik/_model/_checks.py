"""Checks before a fit runs: pseudo-labels to train on, the accelerator asked for, and the memory it would need."""

from __future__ import annotations

from typing import Any

import numpy as np
from scanpy import logging as logg

from ._memory import MemoryEstimate
from ._types import Prepared


def assert_own_pseudo_labels(prepared: Prepared) -> None:
    """Raise when ``prepared`` was projected onto a trained model: it has no pseudo-labels to train on."""
    if prepared.labels_transcriptomics is None:
        msg = (
            f"`adata.uns[{prepared.key!r}]['prepare']` was projected onto a trained model (`reference=`), which "
            "computes no pseudo-labels to train on. Embed it with that model: `aestetik.tl.embed(adata, model=...)`; "
            "or train on it after `aestetik.pp.prepare(adata)` without `reference`."
        )
        raise ValueError(msg)


def check_accelerator(accelerator: Any, devices: Any = 1) -> None:
    """Refuse, before anything runs, an ``accelerator`` or ``devices`` that this machine does not have.

    Lightning would refuse them only when the Trainer is built, with a message that does not name the fix. A GPU
    asked for without one (``'gpu'`` or ``'cuda'``; ``'gpu'`` is also Apple's MPS) and, when training would use CUDA,
    more GPUs (an int) or a GPU id (a list) than there are. Strings other than the accelerator name and Lightning
    ``Accelerator`` objects are left to Lightning.
    """
    import torch

    if not isinstance(accelerator, str):
        return
    name, cuda = accelerator.lower(), torch.cuda.is_available()
    if (name == "cuda" and not cuda) or (name == "gpu" and not cuda and not torch.backends.mps.is_available()):
        msg = (
            f"accelerator={accelerator!r} was asked for but no CUDA GPU is available: pass accelerator='auto' "
            "(uses a GPU when there is one) or 'cpu'."
        )
        raise ValueError(msg)
    if not cuda or name not in ("gpu", "cuda", "auto"):
        return
    count = torch.cuda.device_count()
    fix = f"pass devices={count} or devices='auto' (every GPU), or accelerator='cpu'"
    if isinstance(devices, int | np.integer) and not isinstance(devices, bool) and devices > count:
        msg = f"devices={int(devices)} asks for {int(devices)} GPUs but this machine has {count}: {fix}."
        raise ValueError(msg)
    ids = [int(d) for d in devices if isinstance(d, int | np.integer)] if isinstance(devices, list | tuple) else []
    if ids and len(ids) == len(devices) and max(ids) >= count:
        msg = f"devices={ids!r} names GPU {max(ids)} but this machine has GPUs 0 to {count - 1}: {fix}."
        raise ValueError(msg)


def check_fit_memory(
    prepared: Prepared, params: dict[str, Any], weights: tuple[float, float], *, accelerator: str, check: bool
) -> MemoryEstimate:
    """Estimate the memory of a fit; refuse (before anything runs) when it would not fit on the device."""
    import torch

    from ._memory import (
        CACHE_BYTES,
        USABLE_SHARE,
        available_memory,
        estimate_fit_memory,
        format_bytes,
        largest_batch,
        n_partners_per_anchor,
    )

    n_obs = prepared.n_obs
    partners = n_partners_per_anchor(
        prepared.n_clusters,
        weights if params["triplet_alpha"] else (0.0, 0.0),
        multi_triplet=params["multi_triplet"],
        n_repeats=params["n_repeats"],
    )
    sizes = {
        "n_obs": n_obs,
        "n_channels": prepared.n_channels,
        "window_size": prepared.window_size,
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

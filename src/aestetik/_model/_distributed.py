"""Training on several processes (Lightning's DDP): per-rank random streams and one embedding for the caller.

Under DDP every rank holds the whole section (features, window index, pseudo-labels) and trains on its share of
each epoch's anchors (:class:`~aestetik._model._module.AnchorBatches`); Lightning averages the gradients. Batch-norm
statistics stay per rank: each rank normalises its own anchors, positives and negatives, as the reference normalises
each batch of ``batch_size`` anchors by itself, and the final embedding normalises with statistics over all spots,
so it does not depend on how training was sharded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from aestetik._validation import assert_int

#: The key of ``trainer.callback_metrics`` that names rank 0's results file (as bytes) for the calling process.
RESULTS_METRIC = "aestetik_results_file"
#: The buffers every rank builds itself (the data), which DDP must neither broadcast at start nor at every step.
LOCAL_BUFFERS = ("features", "index")


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """The global-generator seed of ``rank`` in ``epoch``: distinct per rank and epoch, reproducible on resume."""
    return ((int(seed) * 1_000_003 + int(epoch)) * 65_537 + int(rank)) % 2**63


class RankSeeds(L.Callback):
    """Under DDP, seed torch's global generator (triplet partners, dropout masks) per rank and epoch.

    The anchor permutation is seeded identically on every rank (so that the shards are disjoint); partners and
    dropout masks come from the global generator, which would otherwise give every rank the same draws. Reseeding
    at the first step of each epoch makes a resumed multi-process fit draw what the uninterrupted one drew without storing each
    rank's generator. A single process is left alone (its stream is the one of :func:`aestetik.tl.fit` before DDP).
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = int(seed)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Seed this rank's stream for this epoch, right before its first step.

        Not at the epoch start: the loader draws its own seed from the global generator before or after the
        epoch-start hooks, depending on whether the fit resumed.
        """
        if trainer.world_size > 1 and batch_idx == 0:
            torch.manual_seed(rank_seed(self.seed, trainer.current_epoch, trainer.global_rank))


class EmbedOnRankZero(L.Callback):
    """Under DDP, embed every spot once, on global rank 0 at the end of training, and hand the results over.

    The embedding, the loss history (of ``history``, a :class:`~aestetik._model._trainer.LossHistory`) and the
    seconds go to a temporary ``.npz`` file whose name goes to ``trainer.callback_metrics``, which Lightning's spawn
    and fork launchers send back to the process that called ``fit`` (through a pipe that holds only small
    objects, as Lightning sends the weights); under a per-rank launch (``strategy='ddp'`` from SLURM or torchrun)
    rank 0 reads it itself and the other ranks have none.
    """

    def __init__(self, n_mc_samples: int, seed: int, history: Any) -> None:
        super().__init__()
        self.n_mc_samples, self.seed, self.history = int(n_mc_samples), int(seed), history

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Embed on rank 0; write the results file."""
        if trainer.world_size <= 1 or not trainer.is_global_zero:
            return
        from ._allocator import release_free_memory

        release_free_memory()
        t0 = time.perf_counter()
        embedding = pl_module.embed(self.n_mc_samples, seed=self.seed)
        seconds = time.perf_counter() - t0
        folder = tempfile.mkdtemp(prefix="aestetik-")
        file = str(Path(folder) / "results.npz")
        np.savez(
            file,
            embedding=embedding,
            history=self.history.values().numpy(),
            epochs=np.asarray(self.history.epochs, dtype=np.int32),
            seconds=np.float64(seconds),
        )
        trainer.callback_metrics[RESULTS_METRIC] = torch.tensor(list(file.encode()), dtype=torch.uint8)


def pop_results(trainer: L.Trainer) -> tuple[np.ndarray, float, np.ndarray, np.ndarray] | None:
    """``(embedding, embed seconds, history values, epochs)`` of :class:`EmbedOnRankZero`; ``None`` on other ranks.

    Removes the temporary file.
    """
    metrics = trainer.callback_metrics
    if RESULTS_METRIC not in metrics:
        return None
    file = bytes(metrics.pop(RESULTS_METRIC).tolist()).decode()
    try:
        with np.load(file, allow_pickle=False) as r:
            return r["embedding"], float(r["seconds"]), r["history"], r["epochs"]
    finally:
        shutil.rmtree(Path(file).parent, ignore_errors=True)


def ignore_local_buffers(module: torch.nn.Module) -> None:
    """Keep DDP from broadcasting the data buffers (every rank builds the same ones from the same arrays)."""
    module._ddp_params_and_buffers_to_ignore = list(LOCAL_BUFFERS)


def describe(trainer: L.Trainer) -> str:
    """``'cpu, 2 processes (DDPStrategy, spawn)'``: the device and the strategy of a Trainer, for the log."""
    strategy = trainer.strategy
    launcher = getattr(strategy, "launcher", None)
    how = getattr(launcher, "_start_method", None) or (type(launcher).__name__.strip("_") if launcher else "")
    n = trainer.num_devices * trainer.num_nodes
    device = strategy.root_device.type
    procs = f"{n} processes" if n > 1 else "1 process"
    return f"{device}, {procs} ({type(strategy).__name__}{', ' + how if how else ''})"


def check_devices(
    *, strategy: Any, num_nodes: int, checkpoint_path: str | None, checkpoint_every: int, resume: bool
) -> str | None:
    """Check the multi-device and checkpoint arguments of :func:`aestetik.tl.fit`; the checkpoint folder as a string."""
    assert_int(num_nodes=num_nodes, checkpoint_every=checkpoint_every)
    if not isinstance(strategy, str) and not hasattr(strategy, "setup_environment"):
        msg = f"`strategy` must be a Lightning strategy name (e.g. 'ddp_spawn', 'ddp') or a Strategy, got {strategy!r}."
        raise TypeError(msg)
    if resume and checkpoint_path is None:
        msg = "`resume=True` needs `checkpoint_path`: the folder the interrupted fit wrote its checkpoints to."
        raise ValueError(msg)
    return None if checkpoint_path is None else os.fspath(checkpoint_path)

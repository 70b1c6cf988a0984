"""A Lightning Trainer that writes no files, a loss-history callback, and quiet, interruptible training."""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

HISTORY_KEYS = (
    "loss",
    "reconstruction_transcriptomics",
    "reconstruction_morphology",
    "triplet_transcriptomics",
    "triplet_morphology",
)


class LossHistory(L.Callback):
    """Collects the total loss and its parts at every step (kept on the device until the end).

    Under DDP each step's values are the mean over the ranks (each rank's loss is over its share of the anchors);
    :class:`~aestetik._model._distributed.EmbedOnRankZero` hands them to the calling process. Its state is saved
    in checkpoints, so a resumed fit has the whole history.
    """

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[torch.Tensor] = []
        self.epochs: list[int] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Record one step."""
        values = torch.stack([outputs[k].detach().float() for k in HISTORY_KEYS])
        if trainer.world_size > 1:
            values = trainer.strategy.reduce(values, reduce_op="mean")
        self.steps.append(values)
        self.epochs.append(trainer.current_epoch)

    def values(self) -> torch.Tensor:
        """(steps, 5) on the CPU."""
        if not self.steps:
            return torch.zeros((0, len(HISTORY_KEYS)), dtype=torch.float32)
        if len({s.device for s in self.steps}) > 1:  # resumed on another device
            return torch.stack([s.cpu() for s in self.steps])
        return torch.stack(self.steps).cpu()

    def state_dict(self) -> dict[str, Any]:
        """The steps so far (written into checkpoints)."""
        return {"steps": self.values(), "epochs": list(self.epochs)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The steps of the interrupted fit."""
        self.steps, self.epochs = list(state_dict["steps"]), [int(e) for e in state_dict["epochs"]]

    def history(self) -> dict[str, np.ndarray]:
        """``{'epoch': ..., 'loss': ..., <four parts>: ...}`` as float32/int32 arrays, one entry per step."""
        return history_arrays(self.values().numpy(), np.asarray(self.epochs))


def history_arrays(values: np.ndarray, epochs: np.ndarray) -> dict[str, np.ndarray]:
    """The history record from (steps, 5) values and (steps,) epochs."""
    hist = {k: values[:, i].astype(np.float32) for i, k in enumerate(HISTORY_KEYS)}
    hist["epoch"] = np.asarray(epochs, dtype=np.int32)
    return hist


class SpotsProgressBar(TQDMProgressBar):
    """Lightning's progress bar with ``Epoch e/E`` and the throughput in anchors (spots) per second, over all ranks."""

    def __init__(self) -> None:
        super().__init__()
        self._start, self._spots = 0.0, 0

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        """Name the epoch out of all; restart the clock."""
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")
        self._start, self._spots = time.perf_counter(), 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Count the step's anchors on every rank."""
        self._spots += int(batch.shape[0]) * trainer.world_size
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, int | str | float | dict]:
        """Lightning's metrics and ``spots/s`` in this epoch."""
        metrics = super().get_metrics(trainer, pl_module)
        seconds = time.perf_counter() - self._start
        if self._spots and seconds > 0:
            metrics["spots/s"] = f"{self._spots / seconds:,.0f}"
        return metrics


#: Lightning's warnings that say nothing to a user of aestetik (messages as regular expressions).
QUIET_WARNINGS = (
    ".*does not have many workers.*",
    ".*GPU available but not used.*",
    ".*`IterableDataset` has `__len__` defined.*",
    ".*isinstance\\(treespec, LeafSpec\\)`? is deprecated.*",
    "Checkpoint directory .* exists and is not empty",  # resuming
)
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


@contextmanager
def quiet_lightning():
    """Silence Lightning's start-up banner and its warning about data-loader workers."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class QuietWorkers(L.Callback):
    """:func:`quiet_lightning` in the processes Lightning spawns or forks (they do not inherit its filters).

    Only in such a child process (whose whole life is this fit); a process launched by SLURM or torchrun runs the
    user's script, whose warning filters are left alone.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Silence this worker."""
        import multiprocessing

        if multiprocessing.parent_process() is None:
            return
        for name in LIGHTNING_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        for message in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)


@contextmanager
def stop_on_interrupt(trainer: L.Trainer):
    """Turn Ctrl+C during training into a clean stop (Lightning itself would call ``sys.exit``).

    Yields a dict whose ``'interrupted'`` entry tells the caller to raise ``KeyboardInterrupt`` after ``fit``.
    """
    import signal
    import threading

    state = {"interrupted": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        state["interrupted"] = True
        trainer.should_stop = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


def make_trainer(
    *,
    max_epochs: int,
    accelerator: str,
    devices: int | str,
    show_progress_bar: bool,
    callbacks: list[L.Callback],
    strategy: Any = "auto",
    num_nodes: int = 1,
    default_root_dir: str | None = None,
) -> L.Trainer:
    """A Trainer that writes no files: no logger, no model summary, and checkpoints only with a ModelCheckpoint callback.

    The anchors are sharded by :class:`~aestetik._model._module.AnchorBatches` itself, so Lightning does not
    wrap the loader in a distributed sampler.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    bar = [SpotsProgressBar()] if show_progress_bar else []
    callbacks = [*callbacks, QuietWorkers()]
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        logger=False,
        enable_checkpointing=checkpointing,
        enable_model_summary=False,
        enable_progress_bar=show_progress_bar,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        default_root_dir=default_root_dir,
        callbacks=[*callbacks, *bar],
    )

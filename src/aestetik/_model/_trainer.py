"""A Lightning Trainer that writes no files, a loss-history callback, and quiet, interruptible training."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Any

import lightning as L
import numpy as np
import torch

HISTORY_KEYS = (
    "loss",
    "reconstruction_transcriptomics",
    "reconstruction_morphology",
    "triplet_transcriptomics",
    "triplet_morphology",
)


class LossHistory(L.Callback):
    """Collects the total loss and its parts at every step (kept on the device until the end)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[torch.Tensor] = []
        self.epochs: list[int] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Record one step."""
        self.steps.append(torch.stack([outputs[k].detach().float() for k in HISTORY_KEYS]))
        self.epochs.append(trainer.current_epoch)

    def history(self) -> dict[str, np.ndarray]:
        """``{'epoch': ..., 'loss': ..., <four parts>: ...}`` as float32/int32 arrays, one entry per step."""
        values = torch.stack(self.steps).cpu().numpy() if self.steps else np.zeros((0, len(HISTORY_KEYS)), np.float32)
        hist = {k: values[:, i].astype(np.float32) for i, k in enumerate(HISTORY_KEYS)}
        hist["epoch"] = np.asarray(self.epochs, dtype=np.int32)
        return hist


@contextmanager
def quiet_lightning():
    """Silence Lightning's start-up banner and its warning about data-loader workers."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
            warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
            warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)`? is deprecated.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


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
    *, max_epochs: int, accelerator: str, devices: int | str, show_progress_bar: bool, callbacks: list[L.Callback]
) -> L.Trainer:
    """A Trainer that writes no files: no logger, no checkpoints, no model summary."""
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=devices,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=show_progress_bar,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )

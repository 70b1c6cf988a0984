"""Checkpoints of a fit that can be resumed bit for bit: Lightning's own format plus the random streams.

A Lightning checkpoint holds the network, the optimiser, the epoch and the callbacks' states; :class:`ResumeState`
adds what the training loop draws from (the anchor permutation's generator and torch's global generators) and the
fit's parameters, so that a resumed run draws the same anchors, partners and dropout masks as an uninterrupted one,
and a checkpoint of another fit is refused. Everything in it is a tensor, a number, a string or a container of
these, so it loads with ``torch.load(..., weights_only=True)`` (torch's default since 2.6, and in 2.13).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

if TYPE_CHECKING:
    from ._module import AnchorBatches

#: The file a fit with ``checkpoint_path`` writes (and overwrites) every ``checkpoint_every`` epochs.
CHECKPOINT_FILE = "last.ckpt"
#: Parameters that may change between an interrupted fit and its resumption.
RESUMABLE = ("max_epochs", "tol")


class ResumeState(L.Callback):
    """Saves and restores the anchor generator of ``batches``, torch's global CPU (and CUDA) generators and the fit's parameters.

    It holds the :class:`~aestetik._model._module.AnchorBatches` rather than its generator, so that both stay one
    object when the Trainer and the loader are pickled into spawned processes.
    """

    def __init__(self, batches: AnchorBatches, params: dict[str, Any], path: str) -> None:
        super().__init__()
        self.batches, self.path = batches, path
        self.params = {k: v for k, v in params.items() if k not in RESUMABLE}

    def state_dict(self) -> dict[str, Any]:
        """Taken when a checkpoint is written (at the end of an epoch)."""
        cuda = list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else []
        return {
            "anchor_generator": self.batches.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": cuda,
            "params": dict(self.params),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the generators (before the first resumed epoch draws anything); refuse another fit's checkpoint."""
        stored = dict(state_dict["params"])
        changed = sorted(k for k in set(stored) | set(self.params) if stored.get(k) != self.params.get(k))
        if changed:
            diff = ", ".join(f"{k}: {stored.get(k)!r} there, {self.params.get(k)!r} now" for k in changed)
            msg = (
                f"The checkpoint in `checkpoint_path={self.path!r}` is of another fit ({diff}). Pass the same "
                "parameters, another `checkpoint_path`, or `resume=False` to start afresh (it is then overwritten)."
            )
            raise ValueError(msg)
        self.batches.generator.set_state(state_dict["anchor_generator"])
        torch.set_rng_state(state_dict["torch_rng"])
        if state_dict["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda_rng"])


class EpochCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that saves only after the last step of an epoch.

    An epoch cut short by Ctrl+C is not saved, so the checkpoint always lies on an epoch boundary, where a resumed
    fit continues exactly.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save when the epoch ran to its end."""
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            super().on_train_epoch_end(trainer, pl_module)


def checkpoint_callback(path: str, every: int) -> ModelCheckpoint:
    """A checkpoint callback that overwrites ``path/last.ckpt`` every ``every`` epochs."""
    return EpochCheckpoint(
        dirpath=path,
        filename=CHECKPOINT_FILE.removesuffix(".ckpt"),
        monitor=None,
        save_top_k=1,
        every_n_epochs=every,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )


def last_checkpoint(path: str) -> str | None:
    """The checkpoint a resumed fit continues from, ``None`` when ``path`` holds none yet."""
    file = Path(path) / CHECKPOINT_FILE
    return str(file) if file.is_file() else None

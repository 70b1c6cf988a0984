"""Training that stops once the embedding has settled (``tl.fit(tol=...)``).

Every :data:`CHECK_EVERY` epochs the embedding of every spot without dropout (one deterministic pass, batch-norm
with the statistics over all spots, as :meth:`~aestetik._model._module.AestetikModule.embed` with
``n_mc_samples=0``) is compared with the one of the previous check: its drift is the Frobenius norm of the change
over the norm of the centred embedding, the fraction of the embedding's spread by which the spots moved in those
epochs. Training stops after the epoch whose drift is below ``tol``. The loss keeps falling slowly long after
that, but the arrangement of the spots, which is what the domains are cut from, no longer changes.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

#: Epochs between two comparisons of the embedding.
CHECK_EVERY = 10


def embedding_drift(current: torch.Tensor, previous: torch.Tensor) -> float:
    """``||current - previous|| / ||current - mean(current)||`` (Frobenius norms) of two (n, d) embeddings."""
    current, previous = current.double(), previous.double()
    spread = torch.linalg.norm(current - current.mean(0))
    return float(torch.linalg.norm(current - previous) / spread.clamp_min(1e-12))


class SettledEmbedding(L.Callback):
    """Stops training when the embedding moved by less than ``tol`` of its spread over :data:`CHECK_EVERY` epochs.

    ``last`` is ``(epoch, drift)`` of the latest comparison. Every rank of a multi-process fit holds the whole
    section and the same weights, so each computes the same embedding; the decision is still reduced over the
    ranks, so that all stop together. The last checked embedding and whether training stopped are kept in
    checkpoints, so a resumed fit stops where the uninterrupted one did.
    """

    def __init__(self, tol: float, seed: int) -> None:
        super().__init__()
        self.tol, self.seed = float(tol), int(seed)
        self.previous: torch.Tensor | None = None
        self.last: tuple[int, float] | None = None
        self.stopped = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A fit resumed from the checkpoint of a stopped one does not train further."""
        if self.stopped:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Compare the embedding every :data:`CHECK_EVERY` epochs."""
        epoch = trainer.current_epoch + 1
        if epoch % CHECK_EVERY or not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        training = pl_module.network.training
        current = torch.from_numpy(pl_module.embed(0, seed=self.seed))
        pl_module.network.train(training)
        settled = False
        if self.previous is not None:
            drift = embedding_drift(current, self.previous)
            self.last = (epoch, drift)
            settled = drift < self.tol
        self.previous = current
        settled = bool(trainer.strategy.reduce_boolean_decision(settled, all=False))
        if settled and epoch < trainer.max_epochs:
            self.stopped = trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        """Written into checkpoints."""
        return {"previous": self.previous, "last": self.last, "stopped": self.stopped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """From the checkpoint of the interrupted fit."""
        self.previous = state_dict["previous"]
        last = state_dict["last"]
        self.last = None if last is None else (int(last[0]), float(last[1]))
        self.stopped = bool(state_dict["stopped"])

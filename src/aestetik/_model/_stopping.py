"""Training that stops once the embedding has settled or the triplets are learned (``tl.fit(tol=...)``).

Every :data:`CHECK_EVERY` epochs the embedding of every spot without dropout (one deterministic pass, batch-norm
with the statistics over all spots, as :meth:`~aestetik._model._module.AestetikModule.embed` with
``n_mc_samples=0``) is compared with the one of the previous check: its drift is the Frobenius norm of the change
over the norm of the centred embedding, the fraction of the embedding's spread by which the spots moved in those
epochs. Training stops after the epoch whose drift is below ``tol``. The loss keeps falling slowly long after
that, but the arrangement of the spots, which is what the domains are cut from, no longer changes.

It also stops at a check whose epoch brought the triplet terms (both modalities) under ``tol`` of their mean in
the first epoch (:func:`triplet_fraction`): the pseudo-labels' contrast is then learned, and what training does
after it is fit the reconstruction alone, which on a few hundred spots spreads the domains apart again.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from ._trainer import HISTORY_KEYS, LossHistory

#: Epochs between two comparisons of the embedding.
CHECK_EVERY = 10


def embedding_drift(current: torch.Tensor, previous: torch.Tensor) -> float:
    """``||current - previous|| / ||current - mean(current)||`` (Frobenius norms) of two (n, d) embeddings."""
    current, previous = current.double(), previous.double()
    spread = torch.linalg.norm(current - current.mean(0))
    return float(torch.linalg.norm(current - previous) / spread.clamp_min(1e-12))


def triplet_fraction(epoch_mean: float, first_mean: float | None) -> float | None:
    """The triplet terms' mean over an epoch as a fraction of their mean over the first (``None``: no triplets)."""
    if first_mean is None or not first_mean > 0:
        return None
    return float(epoch_mean / first_mean)


def epoch_triplets(history: LossHistory, epoch: int) -> float | None:
    """Mean of the triplet terms (both modalities) over the steps of ``epoch`` (0-based) that ``history`` recorded."""
    rows = [i for i, e in enumerate(history.epochs) if e == epoch]
    if not rows:
        return None
    steps = torch.stack([history.steps[i] for i in rows])
    t, m = HISTORY_KEYS.index("triplet_transcriptomics"), HISTORY_KEYS.index("triplet_morphology")
    return float((steps[:, t] + steps[:, m]).mean())


class SettledEmbedding(L.Callback):
    """Stops training once the embedding has settled or the triplets are learned, as ``tol`` decides.

    At every :data:`CHECK_EVERY`-th epoch: when the embedding moved by less than ``tol`` of its spread since the
    last check, or that epoch's triplet terms are under ``tol`` of the first epoch's. The triplet terms are read from
    the fit's loss ``history`` (each step's the mean over the ranks). ``last`` is ``(epoch, drift)`` of the latest
    comparison, ``fraction`` the triplet terms' fraction at the latest check and ``reason`` what stopped training
    (``'drift'``, ``'triplets'`` or ``''``). Every rank of a multi-process fit holds the whole section and the same
    weights, so each computes the same embedding; the decision is still reduced over the ranks, so that all stop
    together. The last checked embedding and whether and why training stopped are kept in checkpoints (the history
    keeps its own), so a resumed fit stops where the uninterrupted one did.
    """

    def __init__(self, tol: float, seed: int, history: LossHistory) -> None:
        super().__init__()
        self.tol, self.seed, self.history = float(tol), int(seed), history
        self.previous: torch.Tensor | None = None
        self.last: tuple[int, float] | None = None
        self.fraction: float | None = None  # of the latest check
        self.stopped, self.reason = False, ""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A fit resumed from the checkpoint of a stopped one does not train further."""
        if self.stopped:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Compare the embedding and the triplet terms every :data:`CHECK_EVERY` epochs."""
        epoch = trainer.current_epoch + 1
        if epoch % CHECK_EVERY or not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        training = pl_module.network.training
        current = torch.from_numpy(pl_module.embed(0, seed=self.seed))
        pl_module.network.train(training)
        reason = ""
        if self.previous is not None:
            drift = embedding_drift(current, self.previous)
            self.last = (epoch, drift)
            reason = "drift" if drift < self.tol else ""
        self.previous = current
        now = epoch_triplets(self.history, epoch - 1)
        if now is not None:
            self.fraction = triplet_fraction(now, epoch_triplets(self.history, 0))
            if not reason and self.fraction is not None and self.fraction < self.tol:
                reason = "triplets"
        settled = bool(trainer.strategy.reduce_boolean_decision(bool(reason), all=False))
        if settled and epoch < trainer.max_epochs:
            self.stopped = trainer.should_stop = True
            self.reason = reason or "drift"  # another rank's decision: the ranks see the same values

    def state_dict(self) -> dict[str, Any]:
        """Written into checkpoints."""
        return {
            "previous": self.previous,
            "last": self.last,
            "stopped": self.stopped,
            "fraction": self.fraction,
            "reason": self.reason,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """From the checkpoint of the interrupted fit."""
        self.previous = state_dict["previous"]
        last = state_dict["last"]
        self.last = None if last is None else (int(last[0]), float(last[1]))
        self.stopped = bool(state_dict["stopped"])
        fraction = state_dict.get("fraction")  # absent from the checkpoints of earlier versions
        self.fraction = None if fraction is None else float(fraction)
        self.reason = str(state_dict.get("reason", "drift" if self.stopped else ""))

"""The AESTETIK loss: per-modality L1 reconstruction and multi-triplet terms, weighted per modality."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

MARGIN = 1.0


@dataclass
class LossOutput:
    """The total loss and its four named parts."""

    loss: torch.Tensor
    reconstruction_transcriptomics: torch.Tensor
    reconstruction_morphology: torch.Tensor
    triplet_transcriptomics: torch.Tensor
    triplet_morphology: torch.Tensor

    def parts(self) -> dict[str, torch.Tensor]:
        """The four parts by name."""
        return {
            "reconstruction_transcriptomics": self.reconstruction_transcriptomics,
            "reconstruction_morphology": self.reconstruction_morphology,
            "triplet_transcriptomics": self.triplet_transcriptomics,
            "triplet_morphology": self.triplet_morphology,
        }


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Mean triplet margin loss (margin 1, Euclidean) of (B, D) anchors against (B, S, D) partners."""
    a = anchor[:, None, :].expand_as(positive)
    return F.triplet_margin_loss(a, positive, negative, margin=MARGIN, p=2.0, eps=1e-6, swap=False, reduction="mean")


def aestetik_loss(
    x: torch.Tensor,
    reconstruction: torch.Tensor,
    anchor: torch.Tensor,
    partners_transcriptomics: tuple[torch.Tensor, torch.Tensor] | None,
    partners_morphology: tuple[torch.Tensor, torch.Tensor] | None,
    *,
    n_transcriptomics: int,
    transcriptomics_weight: float,
    morphology_weight: float,
    rec_alpha: float = 1.0,
    triplet_alpha: float = 1.0,
) -> LossOutput:
    """``w_t (a_r L1_t + a_t Trip_t) + w_m (a_r L1_m + a_t Trip_m)``; a modality of weight 0 contributes 0.

    Parameters
    ----------
    x, reconstruction
        (B, C, w, w) input windows and their reconstruction; the first ``n_transcriptomics`` channels are
        transcriptomics, the rest morphology.
    anchor
        (B, D) anchor embeddings.
    partners_transcriptomics, partners_morphology
        ``(positives, negatives)``, each (B, S, D), drawn with that modality's pseudo-labels (``None`` when
        the modality's weight is 0).
    n_transcriptomics
        Number of transcriptomics channels.
    transcriptomics_weight, morphology_weight
        Calibrated modality weights.
    rec_alpha, triplet_alpha
        Coefficients of the reconstruction and triplet terms.
    """
    zero = anchor.new_zeros(())
    rec_t = rec_m = trip_t = trip_m = zero
    if transcriptomics_weight > 0:
        if rec_alpha:
            rec_t = F.l1_loss(reconstruction[:, :n_transcriptomics], x[:, :n_transcriptomics])
        if triplet_alpha and partners_transcriptomics is not None:
            trip_t = triplet_loss(anchor, *partners_transcriptomics)
    if morphology_weight > 0:
        if rec_alpha:
            rec_m = F.l1_loss(reconstruction[:, n_transcriptomics:], x[:, n_transcriptomics:])
        if triplet_alpha and partners_morphology is not None:
            trip_m = triplet_loss(anchor, *partners_morphology)
    total = transcriptomics_weight * (rec_alpha * rec_t + triplet_alpha * trip_t) + morphology_weight * (
        rec_alpha * rec_m + triplet_alpha * trip_m
    )
    return LossOutput(total, rec_t, rec_m, trip_t, trip_m)

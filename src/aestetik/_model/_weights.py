"""Modality weights of the AESTETIK loss."""

from __future__ import annotations


def calibrate_weights(
    morphology_weight: float, total_weight: float, *, n_transcriptomics_clusters: int, n_morphology_clusters: int
) -> tuple[float, float]:
    """``(w_t, w_m)`` with ``w_t = total - w_m``; a modality whose pseudo-labels collapsed to one cluster gets 0."""
    w_m = float(morphology_weight)
    w_t = float(total_weight) - w_m
    if n_transcriptomics_clusters < 2:
        w_t = 0.0
    if n_morphology_clusters < 2:
        w_m = 0.0
    return w_t, w_m

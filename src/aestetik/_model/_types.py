"""What the engine trains on and what it returns: the prepared arrays and a trained model, as plain dataclasses.

:class:`Prepared` holds the inputs that :func:`aestetik.pp.prepare` computed, :class:`Fitted` a trained model as
:func:`aestetik.tl.fit` records it. The engine takes and returns these (never an AnnData);
:mod:`aestetik._records` builds them from what ``prepare`` and ``fit`` stored, after checking it still matches the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


class PreparedSizes:
    """The sizes a ``prepare`` record holds (its ``record`` attribute): channels per modality and the window."""

    record: Mapping[str, Any]

    @property
    def params(self) -> Mapping[str, Any]:
        return self.record["params"]

    @property
    def n_transcriptomics(self) -> int:
        return int(self.record["n_transcriptomics"])

    @property
    def n_morphology(self) -> int:
        return int(self.record["n_morphology"])

    @property
    def n_channels(self) -> int:
        return self.n_transcriptomics + self.n_morphology

    @property
    def window_size(self) -> int:
        return int(self.params["window_size"])


@dataclass(frozen=True)
class Prepared(PreparedSizes):
    """The inputs :func:`aestetik.pp.prepare` wrote, as arrays.

    Attributes
    ----------
    key
        The ``key_added`` of ``prepare``.
    features
        (n, C) min-max scaled transcriptomics then morphology channels.
    grid
        (n, w * w) window index, ``-1`` where no spot.
    lattice
        (n, 2) lattice position per spot, or ``None`` when it is not stored.
    labels_transcriptomics, labels_morphology
        Pseudo-labels per spot as stored in ``obs`` (``labels_morphology`` is ``None`` without morphology; both are
        ``None`` for a section projected onto a reference, which has none).
    record
        ``adata.uns[key]['prepare']``: ``params`` and the sizes.
    batch
        The ``batch_key`` column per spot (refinement runs per sample), or ``None`` without one.
    """

    key: str
    features: np.ndarray
    grid: np.ndarray
    lattice: np.ndarray | None
    labels_transcriptomics: np.ndarray | None
    labels_morphology: np.ndarray | None
    record: Mapping[str, Any]
    batch: np.ndarray | None = None

    @property
    def n_obs(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_clusters(self) -> tuple[int, int]:
        """Pseudo-label clusters ``(transcriptomics, morphology)`` (0 without morphology)."""
        return int(self.record["n_clusters_transcriptomics"]), int(self.record["n_clusters_morphology"])

    @property
    def batch_key(self) -> str | None:
        """The ``batch_key`` that ``prepare`` recorded, or ``None``."""
        batch_key = self.params.get("batch_key") if isinstance(self.params, Mapping) else None
        return batch_key if isinstance(batch_key, str) and batch_key else None

    def modality(self, name: str) -> Prepared:
        """One modality alone, as :func:`aestetik.pp.prepare` of that representation alone would have written it.

        The min-max scaling is per column, each modality's pseudo-labels were clustered on that modality alone and
        the window index depends on the lattice only, so cutting the prepared arrays gives the same inputs with the
        recorded parameters (smoothing and clustering of the pseudo-labels included), without computing them
        again. The modality takes the transcriptomics slot, so its pseudo-labels drive the triplet loss with the
        whole ``total_weight``.
        """
        n_t, n_m = self.n_transcriptomics, self.n_morphology
        columns = slice(0, n_t) if name == "transcriptomics" else slice(n_t, n_t + n_m)
        labels = self.labels_transcriptomics if name == "transcriptomics" else self.labels_morphology
        params = dict(self.params)
        params["transcriptomics_key"], params["morphology_key"] = str(params[f"{name}_key"]), ""
        record = dict(self.record)
        record.update(
            params=params,
            n_transcriptomics=n_t if name == "transcriptomics" else n_m,
            n_morphology=0,
            n_clusters_transcriptomics=int(self.record[f"n_clusters_{name}"]),
            n_clusters_morphology=0,
            transcriptomics_pca_computed=False,
            morphology_computed=False,
        )
        return replace(
            self,
            key=name,
            features=np.ascontiguousarray(self.features[:, columns]),
            labels_transcriptomics=labels,
            labels_morphology=None,
            record=record,
        )


@dataclass
class Fitted:
    """A trained model as :func:`aestetik.tl.fit` (or :func:`aestetik.tl.load_model`) records it.

    Attributes
    ----------
    params
        The resolved parameters of ``fit`` (with ``prepare_key`` and, after training, ``device``).
    weights
        The network's state dict as ``{name: ndarray}``.
    transcriptomics_weight, morphology_weight
        The calibrated modality weights.
    history
        Per-step loss and its parts, with ``epoch``.
    seconds
        Wall-clock seconds per stage.
    memory_estimate_bytes
        The memory estimate of ``fit`` (``None`` for a loaded model).
    loaded_from
        The file of :func:`aestetik.tl.load_model` (``None`` after ``fit``).
    """

    params: dict[str, Any]
    weights: dict[str, np.ndarray]
    transcriptomics_weight: float
    morphology_weight: float
    history: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    memory_estimate_bytes: int | None = None
    loaded_from: str | None = None

    @property
    def modality_weights(self) -> tuple[float, float]:
        return float(self.transcriptomics_weight), float(self.morphology_weight)

    def record(self) -> dict[str, Any]:
        """The ``adata.uns[key]['fit']`` entry (h5ad-writable)."""
        out = {
            "params": self.params,
            "transcriptomics_weight": float(self.transcriptomics_weight),
            "morphology_weight": float(self.morphology_weight),
            "history": self.history,
            "weights": self.weights,
            "seconds": self.seconds,
        }
        if self.memory_estimate_bytes is not None:
            out["memory_estimate_bytes"] = int(self.memory_estimate_bytes)
        if self.loaded_from is not None:
            out["loaded_from"] = self.loaded_from
        return out

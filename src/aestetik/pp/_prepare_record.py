"""What :func:`aestetik.pp.prepare` writes: its outputs in ``obsm`` and ``obs`` and its record in ``uns``, at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aestetik._keys import Key

from ._morphology import write_morphology

if TYPE_CHECKING:
    from anndata import AnnData

    from aestetik._domains._clustering import ClusterResult
    from aestetik._space._layout import Layout


@dataclass(frozen=True)
class PrepareOutputs:
    """Everything ``prepare`` computed, before any of it is written.

    Attributes
    ----------
    transcriptomics
        The transcriptomics representation used (after any reduction), float32.
    morphology
        The morphology representation used, or ``None``.
    computed_pca
        Whether ``prepare`` computed the transcriptomics PCA (it is then written to ``obsm``).
    computed_morphology
        The morphology that ``prepare`` computed from the image (written like :func:`aestetik.pp.morphology`, also
        when the coherence check left it out), or ``None``.
    morphology_computed
        Whether ``prepare`` computed the morphology from the image (``morphology_key='auto'``).
    features, lattice, index
        The scaled inputs, the lattice positions and the window index.
    transcriptomics_labels, morphology_labels
        The pseudo-labels per modality, ``None`` where there are none (a new section, or no morphology).
    transforms
        What a new section needs to be projected into this one's space.
    coherence
        The spatial coherence of the two modalities' pseudo-labels, when the image's was checked.
    skipped
        Why image morphology was left out, one reason per image or check.
    layout, sample_names
        The lattice layout and the names of the samples.
    """

    transcriptomics: np.ndarray
    morphology: np.ndarray | None
    computed_pca: bool
    computed_morphology: Any | None
    morphology_computed: bool
    features: np.ndarray
    lattice: np.ndarray
    index: np.ndarray
    transcriptomics_labels: ClusterResult | None
    morphology_labels: ClusterResult | None
    transforms: dict
    coherence: dict[str, float]
    skipped: list[str]
    layout: Layout
    sample_names: Any


def _labels(labels: np.ndarray) -> pd.Categorical:
    k = int(labels.max()) + 1 if labels.size else 0
    return pd.Categorical(labels.astype(str), categories=[str(i) for i in range(k)])


def _set_or_drop_labels(adata: AnnData, key: str, result: ClusterResult | None) -> None:
    if result is not None:
        adata.obs[key] = _labels(result.labels)
    elif key in adata.obs:
        del adata.obs[key]


def write_prepared(
    adata: AnnData, prepared: PrepareOutputs, *, params: dict, key_added: str, transcriptomics_key: str
) -> None:
    """Write ``prepared`` and its record ``uns[key_added]['prepare']`` (with ``params``) into ``adata``."""
    p = prepared
    if p.computed_pca:
        adata.obsm[transcriptomics_key] = p.transcriptomics
    if p.computed_morphology is not None:
        write_morphology(adata, p.computed_morphology)
    adata.obsm[Key.input(key_added)] = p.features
    adata.obsm[Key.lattice(key_added)] = p.lattice
    adata.obsm[Key.grid(key_added)] = p.index
    _set_or_drop_labels(adata, Key.transcriptomics_cluster(key_added), p.transcriptomics_labels)
    _set_or_drop_labels(adata, Key.morphology_cluster(key_added), p.morphology_labels)
    labels = {  # per modality with pseudo-labels
        name: res
        for name, res in (("transcriptomics", p.transcriptomics_labels), ("morphology", p.morphology_labels))
        if res is not None
    }
    uns = dict(adata.uns.get(key_added, {}))
    uns["prepare"] = {
        "params": params,
        "n_obs": int(adata.n_obs),
        "n_transcriptomics": int(p.transcriptomics.shape[1]),
        "n_morphology": int(p.morphology.shape[1]) if p.morphology is not None else 0,
        "n_clusters_transcriptomics": _n_clusters(p.transcriptomics_labels),
        "n_clusters_morphology": _n_clusters(p.morphology_labels),
        "pseudo_labels": p.transcriptomics_labels is not None,  # none for a section projected into a reference
        "transcriptomics_pca_computed": bool(p.computed_pca),
        "morphology_computed": bool(p.morphology_computed),
        "morphology_skipped": "; ".join(p.skipped),
        "morphology_coherence": p.coherence,
        "pseudo_label_agreement": {
            name: float(res.agreement) for name, res in labels.items() if res.agreement is not None
        },
        "pseudo_label_method": {name: str(res.method) for name, res in labels.items()},
        "lattice_type": p.layout.kind,
        "lattice": p.layout.record,
        "samples": np.asarray(p.sample_names, dtype=object).astype(str),
        "transforms": p.transforms,
    }
    adata.uns[key_added] = uns


def _n_clusters(result: ClusterResult | None) -> int:
    return int(result.n_clusters) if result is not None else 0

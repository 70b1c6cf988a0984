"""What a trained section recorded for new sections, as plain dataclasses (no AnnData here).

:class:`Reference` holds the input transforms that ``aestetik.pp.prepare(reference=...)`` applies,
:class:`DomainModel` the domain centres that ``aestetik.tl.cluster(model=...)`` labels with. They are read from a
trained AnnData by :func:`aestetik._records.read_reference` / :func:`aestetik._records.read_domain_model`, or from
a model file of :func:`aestetik.tl.save_model` (with ``weights_only=True``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from aestetik._model._types import PreparedSizes


@dataclass(frozen=True)
class Reference(PreparedSizes):
    """What a trained section recorded for projecting new sections (``aestetik.pp.prepare(reference=...)``).

    Attributes
    ----------
    source
        Where it was read, for messages (``adata.uns[...]`` or the model file).
    record
        The training ``prepare`` record: ``params`` (``window_size``, keys), ``n_transcriptomics``,
        ``n_morphology``, ``lattice_type`` and ``transforms``.
    """

    source: str
    record: Mapping[str, Any]

    @property
    def transforms(self) -> Mapping[str, Any]:
        return self.record["transforms"]

    @property
    def lattice_type(self) -> str:
        return str(self.record["lattice_type"])

    @property
    def ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(lo, hi)`` over every training sample: the min-max scaling applied to new sections."""
        lo = np.asarray(self.transforms["minmax_lo"], dtype=np.float64).reshape(-1, self.n_channels)
        hi = np.asarray(self.transforms["minmax_hi"], dtype=np.float64).reshape(-1, self.n_channels)
        return lo.min(axis=0), hi.max(axis=0)

    def transform(self, name: str) -> Mapping[str, Any] | None:
        """The recorded ``'transcriptomics'`` or ``'morphology'`` transform, or ``None`` (representation given)."""
        value = self.transforms.get(name)
        return value if isinstance(value, Mapping) and value else None


def model_file_config(path: Any) -> dict[str, Any]:
    """The configuration stored in a model file of ``save_model`` (read with ``weights_only=True``)."""
    from aestetik._model._io import from_file_value, load_weights

    return from_file_value(load_weights(path)[1])


def reference_from(record: Any, where: str) -> Reference:
    """The :class:`Reference` in a ``prepare`` record (``None`` when absent) found at ``where``."""
    if not isinstance(record, Mapping) or not isinstance(record.get("transforms"), Mapping):
        msg = (
            f"{where} holds no input transforms (prepared or saved by an older aestetik?). Run `aestetik.pp.prepare` "
            "and `aestetik.tl.fit` on the training section again (and `aestetik.tl.save_model` for a file)."
        )
        raise KeyError(msg)
    return Reference(source=where, record=record)


@dataclass(frozen=True)
class DomainModel:
    """The domains of a trained section as ``tl.cluster`` recorded them: one centre per domain in the embedding.

    ``centres`` (k, d) are the mean embedding of each domain; ``domains`` (k,) the domain each centre stands for;
    ``names`` every domain of the training section, in order; ``use_rep`` the clustered representation.
    """

    source: str
    centres: np.ndarray
    domains: np.ndarray
    names: list[str]
    use_rep: str


def domain_model_from(record: Any, where: str, key: str) -> DomainModel:
    """The :class:`DomainModel` in a ``cluster`` record (``None`` when absent) found at ``where``."""
    if not isinstance(record, Mapping) or "centres" not in record:
        msg = (
            f"Did not find the domain centres in {where}. Run `aestetik.tl.cluster(model, key_added={key!r})` on the "
            "training section (then `aestetik.tl.save_model` for a file)."
        )
        raise KeyError(msg)
    params = record.get("params", {})
    return DomainModel(
        source=where,
        centres=np.asarray(record["centres"], dtype=np.float64),
        domains=np.asarray(record["centre_domains"]).astype(str),
        names=[str(i) for i in range(int(record["n_clusters"]))],
        use_rep=str(params.get("use_rep", "")) if isinstance(params, Mapping) else "",
    )

"""``pp.prepare(reference=...)``: project a new section with the input transforms of a trained one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scanpy import logging as logg

from aestetik._model._transforms import MAX_MISSING_GENES, gene_positions, project_expression
from aestetik._validation import assert_finite, assert_obsm_key

from ._morphology import compute_morphology, morphology_keys
from ._tissue_images import has_image, library_key_for

if TYPE_CHECKING:
    from anndata import AnnData

    from aestetik._transfer import Reference

    from ._morphology import MorphologyResult


def check_expression(adata: AnnData, transform: dict[str, Any], *, source: str) -> np.ndarray:
    """Positions of the reference genes in ``adata.var_names``; refuse too many missing genes or other data."""
    from scipy import sparse

    if adata.X is None:
        msg = f"`adata.X` is empty, but the transcriptomics PCs of {source} are computed from expression. Add the counts to `adata.X`."
        raise ValueError(msg)
    if not adata.var_names.is_unique:
        msg = "`adata.var_names` are not unique, so genes cannot be matched to the reference. Run `adata.var_names_make_unique()`."
        raise ValueError(msg)
    genes = np.asarray(transform["genes"]).astype(str)
    positions = gene_positions(np.asarray(adata.var_names), genes)
    hvg = np.asarray(transform["hvg"], dtype=np.int64)
    missing = int((positions[hvg] < 0).sum())
    n_missing_all = int((positions < 0).sum())
    if missing > MAX_MISSING_GENES * hvg.size:
        example = ", ".join(repr(g) for g in genes[hvg][positions[hvg] < 0][:3])
        msg = (
            f"`adata.var_names` lacks {missing} of the {hvg.size} highly variable genes of the transcriptomics PCA of "
            f"{source} (e.g. {example}), more than {MAX_MISSING_GENES:.0%}. Use the reference's gene identifiers "
            "(Ensembl ids vs symbols?) or train a model on the genes both sections share."
        )
        raise ValueError(msg)
    values = adata.X.data if sparse.issparse(adata.X) else np.asarray(adata.X)
    if not np.all(np.isfinite(values)) or (values.size and values.min() < 0):
        msg = "`adata.X` holds negative, NaN or infinite values; pass expression counts as the reference had."
        raise ValueError(msg)
    integer = bool(values.size and np.all(values == np.round(values)))
    if bool(transform["normalize"]) and not integer:
        msg = f"{source} computed its PCs from integer counts, but `adata.X` is not integer. Put the raw counts in `adata.X`."
        raise ValueError(msg)
    if not bool(transform["log1p"]) and "log1p" not in adata.uns:
        msg = f"{source} was log-transformed before `prepare` (`uns['log1p']`); transform `adata.X` the same way (`scanpy.pp.log1p`)."
        raise ValueError(msg)
    if n_missing_all:
        logg.warning(
            f"`adata.var_names` lacks {n_missing_all} of the {genes.size} genes of {source} ({missing} of its {hvg.size} "
            "highly variable genes, filled with the training mean); per-spot normalisation uses the genes present."
        )
    return positions


def _given(adata: AnnData, key: str, n_channels: int, *, source: str, modality: str) -> np.ndarray:
    """The representation ``adata.obsm[key]`` given for a reference trained on a given one, checked against it."""
    x = assert_obsm_key(
        adata,
        key,
        fix=f"{source} was trained on a given {modality} representation; compute it the same way for this section.",
    )
    assert_finite(x, where=f"`adata.obsm[{key!r}]`")
    x = np.asarray(x, dtype=np.float32)
    if x.shape[1] != n_channels:
        msg = (
            f"`adata.obsm[{key!r}]` has {x.shape[1]} columns but {source} has {n_channels} {modality} channels. "
            "Compute it as for the reference."
        )
        raise ValueError(msg)
    return x


def project(
    adata: AnnData,
    reference: Reference,
    *,
    transcriptomics_key: str,
    spatial_key: str,
    batch_key: str | None,
) -> tuple[np.ndarray, np.ndarray | None, MorphologyResult | None, bool]:
    """The transcriptomics and morphology representations of ``adata`` in the reference's space.

    Returns ``(t, m, morphology, computed_pca)``; ``morphology`` when it was computed from the image. Raises,
    before anything is written, when genes, image or representations do not match the reference.
    """
    source = reference.source
    expression = reference.transform("transcriptomics")
    if expression is not None:
        positions = check_expression(adata, expression, source=source)
        t = project_expression(adata.X, positions, expression)
    else:
        reduction = reference.transform("transcriptomics_reduction")
        width = reference.n_transcriptomics if reduction is None else int(reduction["components"].shape[0])
        t = _given(adata, transcriptomics_key, width, source=source, modality="transcriptomics")
        if reduction is not None:
            t = (t - np.asarray(reduction["mean"])) @ np.asarray(reduction["components"])
    t = np.asarray(t, dtype=np.float32)
    if reference.n_morphology == 0:
        return t, None, None, expression is not None
    shape = reference.transform("morphology")
    morphology_key = str(reference.record["params"]["morphology_key"])
    if shape is not None:
        params = shape["params"]
        if not has_image(adata, spatial_key):
            msg = (
                f"{source} has morphology from the tissue image, but `adata.uns[{spatial_key!r}]` holds no image. Add "
                "this section's image (as `scanpy.read_visium` stores it), or use a model trained without morphology."
            )
            raise KeyError(msg)
        libraries = adata.uns[spatial_key]
        image_key = str(params["image_key"]) or None
        morphology = compute_morphology(
            adata,
            library_key=library_key_for(adata, batch_key, spatial_key),
            image_key=image_key if image_key and _all_have(libraries, image_key) else None,
            spot_scale=float(params["spot_scale"]),
            method=str(params["method"]),
            n_components=int(params["n_components"]),
            spatial_key=spatial_key,
            random_state=int(params["random_state"]),
            key_added=morphology_key,
            stacklevel=5,
            transform={k: np.asarray(v) for k, v in shape["transform"].items()},
        )
        return t, morphology.embedding, morphology, expression is not None
    m = _given(adata, morphology_key, reference.n_morphology, source=source, modality="morphology")
    return t, m, None, expression is not None


def _all_have(libraries: Any, image_key: str) -> bool:
    return all(image_key in dict(meta.get("images", {})) for meta in libraries.values())


def check_lattice(reference: Reference, *, kind: str, window_size: int) -> None:
    """Refuse a section whose lattice or window differs from the reference's."""
    if window_size != reference.window_size:
        msg = f"`window_size={window_size}` differs from the {reference.window_size} of {reference.source}; pass `window_size={reference.window_size}`."
        raise ValueError(msg)
    if kind != reference.lattice_type:
        msg = (
            f"The lattice of this section is {kind!r} but {reference.source} was trained on a {reference.lattice_type!r} "
            "lattice, whose windows the network learned; use a model trained on this kind of lattice (check `coords`)."
        )
        raise ValueError(msg)


def input_transforms(
    adata: AnnData,
    ranges: list[tuple[np.ndarray, np.ndarray]],
    pca: dict[str, Any] | None,
    morphology: MorphologyResult | None,
    morphology_key: str | None,
    reduction: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``prepare(reference=...)`` needs to project another section as this one was prepared."""
    out: dict[str, Any] = {
        "minmax_lo": np.concatenate([lo for lo, _ in ranges], axis=1),
        "minmax_hi": np.concatenate([hi for _, hi in ranges], axis=1),
    }
    if pca is not None:
        out["transcriptomics"] = pca
    if reduction is not None:
        out["transcriptomics_reduction"] = reduction
    record = morphology.record if morphology is not None else None
    if record is None and morphology_key is not None:
        stored = adata.uns.get(morphology_keys(morphology_key)[0])
        n_cols = adata.obsm[morphology_key].shape[1]
        if isinstance(stored, dict) and "transform" in stored and int(stored.get("n_components", -1)) == n_cols:
            record = stored
    if record is not None and "transform" in record:
        keep = ("image_key", "spot_scale", "method", "n_components", "random_state")
        out["morphology"] = {
            "params": {k: record["params"][k] for k in keep},
            "transform": dict(record["transform"]),
        }
    return out

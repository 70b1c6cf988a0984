"""``pp.prepare(morphology_key='auto')``: whether to compute the image features, and whether to train with them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scanpy import logging as logg

from aestetik._image._patches import FEW_PIXELS, Library, spot_pixels

from ._morphology import MorphologyResult, compute_morphology
from ._tissue_images import library_key_for, resolve_libraries

if TYPE_CHECKING:
    from anndata import AnnData


def coarse_images(libs: Sequence[Library]) -> list[str]:
    """One line (spot width, image, name) per library whose spots are under ``FEW_PIXELS`` pixels wide."""
    return [
        f"{spot_pixels(lib):.1f} px wide in image {lib.image_key!r} of library {lib.name!r}"
        for lib in libs
        if spot_pixels(lib) < FEW_PIXELS
    ]


def default_morphology(
    adata: AnnData, *, spatial_key: str, batch_key: str | None, random_state: int, key_added: str
) -> tuple[MorphologyResult | None, list[str]]:
    """``pp.morphology`` with its defaults for ``morphology_key='auto'``; errors say how to opt out.

    Also returns the images whose spots are under ``FEW_PIXELS`` wide: then no morphology (``None``), with a
    warning saying why and how to use the image anyway.
    """
    library_key = library_key_for(adata, batch_key, spatial_key)
    try:  # the images are resolved once, for the width check and the features
        libs = resolve_libraries(
            adata, img=None, library_id=None, library_key=library_key, image_key=None, spatial_key=spatial_key
        )
        coarse = coarse_images(libs)
        if coarse:
            logg.warning(
                f"Training without morphology: spots are {', '.join(coarse)}, under {FEW_PIXELS:.0f} px, too few for "
                "the patches to show cells. To use this image anyway, run `aestetik.pp.morphology(adata)` and then "
                f"`aestetik.pp.prepare(adata, morphology_key={key_added!r})`, or add a higher-resolution image."
            )
            return None, coarse
        logg.info(f"    computing `adata.obsm[{key_added!r}]` from the tissue image (`aestetik.pp.morphology`)")
        result = compute_morphology(
            adata,
            library_key=library_key,
            spatial_key=spatial_key,
            random_state=random_state,
            key_added=key_added,
            stacklevel=4,
            libraries=libs,
        )
    except (KeyError, ValueError) as e:
        msg = (
            f"{e.args[0] if e.args else e} (while computing the morphology representation from the tissue image for "
            "`morphology_key='auto'`; fix the image metadata, run `aestetik.pp.morphology` with other options first, "
            "or pass `morphology_key=None` to train without morphology)"
        )
        raise type(e)(msg) from e
    return result, []


def incoherent_image(
    transcriptomics: np.ndarray, morphology: np.ndarray, positions: np.ndarray, samples: np.ndarray
) -> tuple[dict[str, float], str]:
    """The check of ``morphology_key='auto'`` on features it computed: are the image's pseudo-labels coherent enough?

    Returns the spatial coherence of both modalities' pseudo-labels
    (:func:`aestetik._domains._pseudo_labels.spatial_coherence`) and, when the image's is below the transcriptome's,
    why it is left out (logged here), else ``''``.
    """
    from aestetik._domains._pseudo_labels import spatial_coherence

    coherence = {
        "transcriptomics": spatial_coherence(transcriptomics, positions, samples),
        "morphology": spatial_coherence(morphology, positions, samples),
    }
    if coherence["morphology"] >= coherence["transcriptomics"]:
        return coherence, ""
    logg.info(
        "    training without the image: its pseudo-labels agree less with their neighbours than the transcriptome's "
        f"(spatial coherence {coherence['morphology']:.2f} < {coherence['transcriptomics']:.2f}); "
        "morphology_key='X_morphology' uses it anyway"
    )
    reason = (
        "the image's pseudo-labels are less spatially coherent than the transcriptome's "
        f"({coherence['morphology']:.2f} < {coherence['transcriptomics']:.2f})"
    )
    return coherence, reason

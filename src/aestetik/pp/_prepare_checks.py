"""The checks of :func:`aestetik.pp.prepare`'s arguments and which morphology it uses, before anything is computed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scanpy import logging as logg

from aestetik._domains._clustering import CLUSTER_METHODS, GRAPH_METHODS
from aestetik._domains._pseudo_labels import MIXTURE_FALLBACKS
from aestetik._keys import Key
from aestetik._space._layout import Coords, check_coords
from aestetik._validation import (
    assert_choice,
    assert_finite,
    assert_int,
    assert_n_clusters,
    assert_n_jobs,
    assert_obs_key,
    assert_obsm_key,
)

from ._tissue_images import has_image

if TYPE_CHECKING:
    from anndata import AnnData

_AUTO = "auto"
_MORPHOLOGY_KEY = Key.morphology()


def check_options(
    n_obs: int,
    *,
    clustering_method: str,
    window_size: int,
    coords: Coords,
    n_clusters: int | float,
    pseudo_label_smoothing: float | None,
    n_jobs: int | None,
    n_top_genes: int,
    mixture_components: int | None,
    mixture_starts: int,
    mixture_fallback: str | None,
    spatial_pca: bool,
) -> tuple[Coords, int]:
    """Refuse an invalid option of ``prepare`` for ``n_obs`` spots, naming it; the checked ``coords`` and ``n_jobs``."""
    assert_choice(clustering_method, CLUSTER_METHODS, name="clustering_method")
    if (
        isinstance(window_size, bool)
        or not isinstance(window_size, int | np.integer)
        or window_size < 3
        or window_size % 2 == 0
    ):
        msg = f"`window_size` must be an odd integer >= 3 (e.g. 5 or 7), got {window_size!r}."
        raise ValueError(msg)
    coords = check_coords(coords)
    assert_n_clusters(n_clusters, n_obs)
    if pseudo_label_smoothing is not None and (
        isinstance(pseudo_label_smoothing, bool)
        or not isinstance(pseudo_label_smoothing, int | float | np.integer | np.floating)
        or not np.isfinite(pseudo_label_smoothing)
        or pseudo_label_smoothing < 0
    ):
        msg = f"`pseudo_label_smoothing` must be a number >= 0 (spot spacings; 0 turns it off) or None (the default), got {pseudo_label_smoothing!r}."
        raise ValueError(msg)
    n_jobs = assert_n_jobs(n_jobs)
    assert_int(n_top_genes=n_top_genes)
    if mixture_components is not None:
        assert_int(mixture_components=mixture_components)
        if (
            clustering_method != "bgm"
            or not isinstance(n_clusters, int | np.integer)
            or not n_clusters <= mixture_components <= n_obs
        ):
            msg = (
                f"`mixture_components` ({mixture_components}) is for clustering_method='bgm' with an int `n_clusters`, "
                f"and must lie between n_clusters ({n_clusters}) and the number of spots ({n_obs}); pass "
                "`mixture_components=None` otherwise."
            )
            raise ValueError(msg)
    assert_int(mixture_starts=mixture_starts)
    assert_choice(mixture_fallback, (*MIXTURE_FALLBACKS, None), name="mixture_fallback")
    if not isinstance(spatial_pca, bool | np.bool_):
        msg = f"`spatial_pca` must be True (the default) or False, got {spatial_pca!r}."
        raise TypeError(msg)
    if isinstance(n_clusters, float) and clustering_method not in GRAPH_METHODS:
        msg = f"A float `n_clusters` is a resolution, which only 'leiden'/'louvain' take; pass an int for {clustering_method!r}."
        raise ValueError(msg)
    return coords, n_jobs


def check_batch_column(adata: AnnData, batch_key: str | None) -> None:
    """``adata.obs[batch_key]`` must exist and name a sample for every spot."""
    if batch_key is None:
        return
    assert_obs_key(adata, batch_key, fix="Pass the obs column naming the sample of each spot, or `batch_key=None`.")
    column = adata.obs[batch_key]
    if column.isna().any():
        msg = (
            f"`adata.obs[{batch_key!r}]` has {int(column.isna().sum())} missing values; every spot must belong to a "
            f"sample. Fill them (e.g. `adata.obs[{batch_key!r}] = adata.obs[{batch_key!r}].cat.add_categories('x')"
            f".fillna('x')`) or drop those spots."
        )
        raise ValueError(msg)


def resolve_morphology(
    adata: AnnData, morphology_key: str | None, *, spatial_key: str, reference: Any, key_added: str
) -> tuple[str | None, bool, Any, np.ndarray | None]:
    """Which morphology ``prepare`` uses: ``(morphology_key, computed from the image, reference, representation)``.

    ``'auto'`` is ``obsm['X_morphology']`` when present, else the tissue image's default features (computed later;
    the representation is then ``None`` here), else none, logged. A ``reference`` decides for itself: its own
    morphology key, projected later. A key the user named must exist and be finite.
    """
    auto = False
    if morphology_key == _AUTO:
        if _MORPHOLOGY_KEY in adata.obsm:
            morphology_key = _MORPHOLOGY_KEY
        elif has_image(adata, spatial_key):
            morphology_key, auto = _MORPHOLOGY_KEY, True
        else:
            morphology_key = None
            logg.info(
                f"no `adata.obsm[{_MORPHOLOGY_KEY!r}]` and no tissue image in `adata.uns[{spatial_key!r}]`: "
                "training without morphology"
            )
    if reference is not None:
        from aestetik._records import read_reference

        ref = read_reference(reference, key_added)
        return str(ref.record["params"]["morphology_key"]) or None, False, ref, None
    if morphology_key is None or auto:
        return morphology_key, auto, None, None
    m = assert_obsm_key(
        adata, morphology_key, fix="Compute a morphology representation first, or pass `morphology_key=None`."
    )
    assert_finite(m, where=f"`adata.obsm[{morphology_key!r}]`")
    return morphology_key, False, None, m

"""Checks at the public boundary: each error names the key, what was found and the fix."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from anndata import AnnData


def _listing(keys: Iterable[Any]) -> str:
    keys = [str(k) for k in keys]
    return ", ".join(repr(k) for k in keys[:20]) + (" ..." if len(keys) > 20 else "") if keys else "nothing"


def assert_not_view(adata: AnnData, *, copy: bool = False) -> None:
    """Refuse to write into a view (writing would silently turn it into a copy)."""
    if adata.is_view and not copy:
        msg = (
            "The AnnData is a view of another AnnData, so results cannot be written into it. "
            "Pass `adata = adata.copy()` first, or call with `copy=True`."
        )
        raise ValueError(msg)


def assert_obsm_key(adata: AnnData, key: str, *, fix: str) -> np.ndarray:
    """Return ``adata.obsm[key]`` as a 2-D float array or raise a KeyError naming the fix."""
    if key not in adata.obsm:
        msg = f"Did not find `adata.obsm[{key!r}]` (found: {_listing(adata.obsm.keys())}). {fix}"
        raise KeyError(msg)
    x = adata.obsm[key]
    if hasattr(x, "toarray"):
        x = x.toarray()
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != adata.n_obs:
        msg = f"`adata.obsm[{key!r}]` has shape {x.shape}; expected ({adata.n_obs}, d)."
        raise ValueError(msg)
    if not np.issubdtype(x.dtype, np.number):
        msg = f"`adata.obsm[{key!r}]` has dtype {x.dtype}; expected a numeric array."
        raise ValueError(msg)
    return x


def assert_obs_key(adata: AnnData, key: str, *, fix: str) -> None:
    """Raise a KeyError when ``adata.obs`` has no column ``key``."""
    if key not in adata.obs.columns:
        msg = f"Did not find `adata.obs[{key!r}]` (found: {_listing(adata.obs.columns)}). {fix}"
        raise KeyError(msg)


def assert_finite(x: np.ndarray, *, where: str) -> None:
    """Raise when ``x`` holds NaN or infinite values."""
    if not np.all(np.isfinite(x)):
        bad = (
            int((~np.isfinite(x)).any(axis=tuple(range(1, x.ndim))).sum())
            if x.ndim > 1
            else int((~np.isfinite(x)).sum())
        )
        msg = f"{where} contains NaN or infinite values in {bad} row(s). Impute or remove these spots first."
        raise ValueError(msg)


def assert_choice(value: Any, options: Sequence[Any], *, name: str) -> None:
    """Raise when ``value`` is not one of ``options``."""
    if value not in options:
        msg = f"Unknown {name}={value!r}; choose one of {', '.join(repr(o) for o in options)}."
        raise ValueError(msg)


def assert_n_clusters(n_clusters: Any, n_obs: int, *, name: str = "n_clusters") -> None:
    """``n_clusters`` is an int >= 2 no larger than the number of spots, or a positive float resolution."""
    if isinstance(n_clusters, bool):
        msg = f"`{name}` must be an int (number of domains) or a float (resolution), got {n_clusters!r}."
        raise TypeError(msg)
    if isinstance(n_clusters, int | np.integer):
        if n_clusters < 2:
            msg = f"`{name}` must be at least 2, got {n_clusters}."
            raise ValueError(msg)
        if n_clusters > n_obs:
            msg = f"`{name}`={n_clusters} is larger than the number of spots ({n_obs}). Ask for fewer clusters."
            raise ValueError(msg)
    elif isinstance(n_clusters, float | np.floating):
        if not n_clusters > 0:
            msg = f"A resolution `{name}` must be positive, got {n_clusters}."
            raise ValueError(msg)
    else:
        msg = f"`{name}` must be an int (number of domains) or a float (resolution), got {type(n_clusters).__name__}."
        raise TypeError(msg)


def assert_int(*, minimum: int = 1, **values: Any) -> None:
    """Raise a ValueError unless every keyword value is an integer (not a bool) of at least ``minimum``."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            msg = f"`{name}` must be {kind}, got {value!r}."
            raise ValueError(msg)


def checked_kwargs(
    kwargs: Mapping[str, Any] | None,
    accepted: Iterable[str],
    reserved: Sequence[str],
    *,
    name: str,
    caller: str,
    target: str,
) -> dict[str, Any]:
    """``kwargs`` meant for ``aestetik.tl.<target>`` (e.g. ``fit_kwargs``), whose parameters are ``accepted``.

    Refuses the names ``aestetik.tl.<caller>`` sets itself (``reserved``) and names ``target`` does not take.
    """
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        msg = f"`{name}` must be a dict of keyword arguments, got {type(kwargs).__name__}."
        raise TypeError(msg)
    taken = sorted(set(kwargs) & set(reserved))
    if taken:
        msg = (
            f"`{name}` may not set {', '.join(map(repr, taken))}: `aestetik.tl.{caller}` sets these itself "
            "(use its own arguments)."
        )
        raise ValueError(msg)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        msg = f"`{name}` has argument(s) {', '.join(map(repr, unknown))} that `aestetik.tl.{target}` does not take."
        raise TypeError(msg)
    return dict(kwargs)


def uns_results(adata: AnnData, key: str, *, name: str = "key_added") -> Mapping[str, Any]:
    """``adata.uns[key]`` (empty if absent), refused when it is not a dict of results (``name``: the argument)."""
    previous = adata.uns.get(key, {})
    if not isinstance(previous, Mapping):
        msg = (
            f"`adata.uns[{key!r}]` holds a {type(previous).__name__}, not a dict of results. "
            f"Pass another `{name}` or delete that entry."
        )
        raise TypeError(msg)
    return previous


def assert_n_jobs(n_jobs: int | None) -> int:
    """``n_jobs`` as an int (``None``: ``scanpy.settings.n_jobs``); 0 and non-integers are refused."""
    if n_jobs is None:
        import scanpy as sc

        n_jobs = sc.settings.n_jobs
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs == 0:
        msg = f"`n_jobs` must be a non-zero int (processes; -1 uses every core) or None, got {n_jobs!r}."
        raise ValueError(msg)
    return int(n_jobs)


def signature_defaults(func: Callable, reserved: Iterable[str] = ()) -> dict[str, Any]:
    """The keyword defaults of ``func`` (a public function), less ``adata`` and the ``reserved`` names."""
    import inspect

    skip = {"adata", "table_key", *reserved}  # table_key: the SpatialData table, not an option of the call
    return {
        name: p.default
        for name, p in inspect.signature(func).parameters.items()
        if name not in skip and p.default is not inspect.Parameter.empty
    }


#: What h5ad (HDF5) or zarr cannot store as a name in ``obs`` / ``obsm`` / ``uns``: a written key is a path in
#: the file, so '/' nests it (h5ad reads ``uns['a/b']`` back as ``uns['a']['b']``, zarr refuses it), and zarr
#: refuses '\\', '.' and '..'; neither stores an empty name or a NUL, and '_index' is anndata's index column.
_BAD_KEY_CHARS = {"/": "a '/'", "\\": "a '\\'", "\x00": "a NUL character"}
_BAD_KEY_NAMES = {"": "an empty name", ".": "the name '.'", "..": "the name '..'", "_index": "the name '_index'"}


def _key_problem(value: str) -> str | None:
    parts = [value, value.removeprefix("X_")] if value.startswith("X_") and value != "X_" else [value]
    for part in parts:
        bad = _BAD_KEY_NAMES.get(part) or next((what for c, what in _BAD_KEY_CHARS.items() if c in part), None)
        if bad is not None:
            return bad
    return None


def assert_key_name(value: Any, *, name: str) -> None:
    """Refuse a key (argument ``name``) that ``write_h5ad`` or ``write_zarr`` cannot store in obs/obsm/uns."""
    if not isinstance(value, str):
        msg = f"`{name}` must be a string (the name of the keys written), got {type(value).__name__}: {value!r}."
        raise TypeError(msg)
    bad = _key_problem(value)
    if bad is not None:
        fixed = "".join("_" if c in _BAD_KEY_CHARS else c for c in value).strip("._")
        fixed = fixed if fixed and _key_problem(fixed) is None else "aestetik"
        msg = (
            f"`{name}={value!r}` cannot be written: the keys in `obs`/`obsm`/`uns` are paths in an h5ad or zarr "
            f"file, which cannot hold {bad}. Pass another name, e.g. `{name}={fixed!r}`."
        )
        raise ValueError(msg)


def assert_no_checkpoints(fit_kwargs: Mapping[str, Any], *, caller: str) -> None:
    """Refuse checkpoints in the ``fit_kwargs`` of a function that trains several models (one checkpoint each)."""
    asked = [name for name in ("checkpoint_path", "resume") if fit_kwargs.get(name)]
    if asked:
        msg = (
            f"`fit_kwargs` may not set {', '.join(map(repr, asked))}: `aestetik.tl.{caller}` trains several models, "
            "which would all write and resume the same checkpoint. Checkpoint a single run with `aestetik.tl.fit`."
        )
        raise ValueError(msg)

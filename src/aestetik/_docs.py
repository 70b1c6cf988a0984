"""Parameter descriptions shared by several public functions."""

from __future__ import annotations

from collections.abc import Callable
from inspect import cleandoc
from typing import TypeVar

F = TypeVar("F", bound=Callable)

_DOCS = {
    "adata": "adata\n    Annotated data matrix of spots (one sample, or several marked by ``batch_key``).",
    "copy": "copy\n    Return a modified copy instead of writing into ``adata``.",
    "random_state": "random_state\n    Seed for every random step of this call; the same seed gives the same result on CPU.",
    "show_progress_bar": "show_progress_bar\n    Show a progress bar for long steps.",
    "prepare_key": "prepare_key\n    The ``key_added`` of :func:`aestetik.pp.prepare` whose results are used.",
    "n_clusters": ("n_clusters\n    Number of domains (int) or, for ``'leiden'``/``'louvain'``, a resolution (float)."),
    "clustering_method": (
        "clustering_method\n    ``'bgm'`` (Bayesian Gaussian mixture, tied covariance), ``'kmeans'``, ``'leiden'``,\n"
        "    ``'louvain'`` (resolution searched upward from 0.1 until exactly ``n_clusters`` clusters appear, below\n"
        "    0.1 if every one gives more; above 50,000 spots the graph of 50,000 random ones, the others take the\n"
        "    majority of their 15 nearest), ``'spectral'`` (spectral clustering of a 30-nearest-neighbour graph;\n"
        "    above 10,000 spots of 10,000 random ones, the others take the majority of their 15 nearest) or\n"
        "    ``'auto'`` (spectral clustering, or k-means where it cuts a fifth fewer of that graph's edges)."
    ),
    "ax": "ax\n    Axes to draw into; by default a new figure.",
    "show": "show\n    Call :func:`matplotlib.pyplot.show` at the end (only when ``True``).",
    "save": ("save\n    Path to save the figure to (``bbox_inches='tight'``, 150 dpi); nothing is written otherwise."),
    "table_key": (
        "table_key\n    When ``adata`` is a ``spatialdata.SpatialData``: the name of the table in ``adata.tables``\n"
        "    (an AnnData of the spots) that is read and written as ``adata`` would be. With ``copy=True`` the result\n"
        "    is a new SpatialData holding the new table and sharing every other element with the input. Ignored for\n"
        '    an AnnData. Needs ``pip install "aestetik[spatialdata]"``.'
    ),
    "returns_copy": "Returns ``None`` unless ``copy=True``, in which case a new :class:`~anndata.AnnData` is returned.",
}


def doc_params(func: F) -> F:
    """Fill ``{name}`` placeholders in ``func.__doc__`` with the shared descriptions (indented to fit)."""
    if func.__doc__:
        doc = cleandoc(func.__doc__)
        for name, text in _DOCS.items():
            doc = doc.replace("{" + name + "}", text)
        func.__doc__ = doc
    return func

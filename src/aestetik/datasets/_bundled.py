"""Reading the sections that ship with the package (``datasets/_data``)."""

from __future__ import annotations

from importlib.resources import as_file, files

import anndata as ad
from anndata import AnnData


def read_bundled(file: str) -> AnnData:
    """A new AnnData read from the bundled ``_data/<file>`` (no download; every call returns a new object)."""
    with as_file(files(__package__).joinpath("_data", file)) as path:
        return ad.read_h5ad(path)

"""AESTETIK: spatial domains from transcriptomics, morphology and spatial neighbourhood.

The submodules (:mod:`~aestetik.pp`, :mod:`~aestetik.tl`, :mod:`~aestetik.pl`, :mod:`~aestetik.datasets`) are
imported on first access (:pep:`562`, as in the Scientific Python SPEC 1), so ``import aestetik`` does not import
scanpy, and the worker processes that fit the mixture's starts import only what a start needs.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import datasets, pl, pp, tl

try:
    __version__ = version("aestetik")
except PackageNotFoundError:  # pragma: no cover - source checkout without install
    __version__ = "0.0.0"

__all__ = ["datasets", "pl", "pp", "tl"]


def __getattr__(name: str):
    if name in __all__:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module  # later accesses skip this function
        return module
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

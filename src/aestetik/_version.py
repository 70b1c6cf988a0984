"""The installed version of aestetik, recorded with every result (``aestetik_version``)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aestetik")
except PackageNotFoundError:  # pragma: no cover - source checkout without install
    __version__ = "0.0.0"

from __future__ import annotations

from ._morphology import morphology
from ._prepare import prepare

__all__ = ["morphology", "prepare"]

"""What every plot does at the end: save when asked, show when asked."""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def finish(fig: Figure, *, show: bool | None, save: str | PathLike | None) -> None:
    """Save ``fig`` to ``save`` (tight, 150 dpi) when given; call :func:`matplotlib.pyplot.show` when ``show``."""
    import matplotlib.pyplot as plt

    if save is not None:
        fig.savefig(save, bbox_inches="tight", dpi=150)
    if show:
        plt.show()

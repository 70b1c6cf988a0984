from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg")

from _data import make_small


@pytest.fixture
def small():
    return make_small()


@pytest.fixture(autouse=True)
def _one_thread():
    """BLAS/OpenMP threads oversubscribe a busy 2-core machine (10x slower); test problems are tiny."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield

from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg")

from _data import make_small


@pytest.fixture
def small():
    return make_small()


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """BLAS/OpenMP threads oversubscribe a busy 2-core machine (10x slower); test problems are tiny.

    Session-wide, so module-scoped fixtures run with the same thread count as the tests comparing with them
    (a different BLAS thread count changes float results in the last bits).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield

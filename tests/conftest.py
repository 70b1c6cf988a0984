from __future__ import annotations

import os

import matplotlib
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `-n` runs one worker per core: each worker, and every process it starts (notebook kernels, the spawned
    # training processes), keeps to one OpenMP/BLAS thread, so the workers do not oversubscribe the cores
    # (NUMBA_NUM_THREADS is left alone: numba refuses a value that differs from the threads it has launched)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

matplotlib.use("Agg")

from _data import make_small


def pytest_collection_modifyitems(config, items):
    """The `slow` tests first (stable order otherwise): with `-n` (pytest-xdist, `--dist load`) they spread over the
    workers at the start instead of one of them trailing at the end (on 2 cores the suite took 5.5-7 min so, 7.5 min
    with `--dist worksteal` and no sort)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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

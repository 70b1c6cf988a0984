"""Keep freed memory in the process while training on the CPU (glibc's ``malloc``).

A training step allocates and frees the same large tensors (tens to hundreds of MB) every step. glibc serves
allocations above its mmap threshold with fresh ``mmap`` pages and gives them back on ``free``, so every
step faults the same memory in again, page by page, a sizeable share of a training step on few cores.
:func:`keep_freed_memory` asks glibc to serve every allocation from its heap and not to trim it while the block
runs (``mallopt(M_MMAP_MAX, 0)``,
``mallopt(M_TRIM_THRESHOLD, ...)``), so freed memory is reused; afterwards it restores glibc's defaults and
returns the free memory to the system (``malloc_trim``). Peak memory is unchanged; between steps the process
keeps what the previous step used, as PyTorch's CUDA allocator does on the GPU. Elsewhere (macOS, Windows,
musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import platform
import sys
import threading
from contextlib import contextmanager

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_KEEP_TRIM_THRESHOLD = 2**31 - 1
_lock = threading.Lock()
_depth = 0


def _glibc():
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def release_free_memory() -> bool:
    """Return the heap's free memory to the system (``malloc_trim``), e.g. between training and embedding.

    Memory kept for one phase's allocation pattern would otherwise add to the next phase's peak. True when
    glibc gave memory back.
    """
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


@contextmanager
def keep_freed_memory(*, enabled: bool = True):
    """Within the block, glibc keeps freed memory for reuse instead of returning it to the system."""
    global _depth  # nested blocks: only the outermost one sets and restores
    libc = _glibc() if enabled else None
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_TRIM_THRESHOLD)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                release_free_memory()

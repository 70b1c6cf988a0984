"""keep_freed_memory: large allocations come from glibc's heap inside the block, settings restored after it."""

from __future__ import annotations

import ctypes
import platform
import sys

import pytest
import torch

from aestetik._model import _allocator
from aestetik._model._allocator import keep_freed_memory, release_free_memory


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _mallinfo2():
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL("libc.so.6")
    if not hasattr(libc, "mallinfo2"):  # glibc < 2.33
        return None
    libc.mallinfo2.restype = _Mallinfo2
    return libc.mallinfo2


mallinfo2 = _mallinfo2()
glibc = pytest.mark.skipif(mallinfo2 is None, reason="glibc >= 2.33 only")
MB64 = 64 << 20


def _mmapped_while_alive() -> int:
    """Bytes glibc serves with mmap (returned to the system on free) for a live 64 MB tensor."""
    before = mallinfo2().hblkhd
    t = torch.ones(MB64 // 4)
    during = mallinfo2().hblkhd
    del t
    return during - before


_IN_A_FRESH_PROCESS = """
import test_allocator as t
from aestetik._model._allocator import keep_freed_memory
outside = t._mmapped_while_alive()
with keep_freed_memory():
    inside = t._mmapped_while_alive()
print(outside, inside, t._mmapped_while_alive())
"""


@glibc
def test_large_allocations_come_from_the_heap_inside_the_block():
    # in a fresh process: in one that has run other tests, a free heap chunk of 64 MB can serve the tensor anyway
    import subprocess
    from pathlib import Path

    out = subprocess.run(
        [sys.executable, "-c", _IN_A_FRESH_PROCESS],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    ).stdout
    outside, inside, after = map(int, out.split())
    assert outside >= MB64  # 64 MB is above glibc's largest mmap threshold
    assert inside == 0  # from the heap: kept for reuse when freed
    assert after >= MB64  # defaults restored


@glibc
def test_release_returns_kept_memory():
    with keep_freed_memory():
        t = torch.ones(MB64 // 4)
        del t  # freed into the heap, kept
        assert release_free_memory()  # glibc gave memory back


def test_nesting_and_disabled():
    with keep_freed_memory(), keep_freed_memory():
        assert _allocator._depth in (0, 2)  # 0 where there is no glibc
    assert _allocator._depth == 0
    with keep_freed_memory(enabled=False):
        assert _allocator._depth == 0

"""keep_freed_memory: freed memory is reused inside the block (glibc), settings restored after it."""

from __future__ import annotations

import platform
import resource
import sys

import pytest
import torch

from aestetik import _allocator
from aestetik._allocator import keep_freed_memory, release_free_memory

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only"
)


def _faults_of_repeated_allocations(n: int = 5, mb: int = 64) -> int:
    torch.ones(mb << 18)  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        torch.ones(mb << 18)  # 64 MB, freed at once
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc
def test_freed_memory_is_reused_inside_the_block():
    pages = 5 * (64 << 20) // 4096
    outside = _faults_of_repeated_allocations()  # 64 MB is above glibc's largest mmap threshold
    with keep_freed_memory():
        _faults_of_repeated_allocations()  # the heap grows once
        inside = _faults_of_repeated_allocations()
    assert outside > pages // 2  # every allocation faults its pages in again
    # the block reuses the freed memory (one allocation may still land in a fresh arena of another thread's)
    assert inside <= pages // 4


def test_nesting_and_disabled():
    with keep_freed_memory(), keep_freed_memory():
        assert _allocator._depth in (0, 2)  # 0 where there is no glibc
    assert _allocator._depth == 0
    with keep_freed_memory(enabled=False):
        assert _allocator._depth == 0


@glibc
def test_release_returns_kept_memory():
    """After release_free_memory the kept memory is gone: allocating again faults its pages in."""
    pages = (64 << 20) // 4096
    with keep_freed_memory():
        _faults_of_repeated_allocations(n=4)  # the heap grows once
        kept = _faults_of_repeated_allocations(n=4)
        release_free_memory()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(64 << 18)
        released = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert kept <= pages  # at most one of the four allocations faulted
    assert released > pages // 2

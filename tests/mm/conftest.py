"""Builders for the mm tests: small allocators with easy addresses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bootmem.mm import PAGE_SIZE, PageAllocator

BASE = 0x8000_0000


def page(n: int) -> int:
    """The address of page ``n`` of the test RAM."""
    return BASE + n * PAGE_SIZE


def pfn(n: int) -> int:
    """The pfn of page ``n`` of the test RAM."""
    return BASE // PAGE_SIZE + n


@pytest.fixture
def pa() -> Iterator[PageAllocator]:
    """64 pages at 0x8000_0000, max_order 3 (8-page blocks), poison 0xcc."""
    allocator = PageAllocator(base=BASE, size=64 * PAGE_SIZE, max_order=3)
    yield allocator
    allocator.check_invariants()

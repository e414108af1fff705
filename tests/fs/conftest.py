"""Builders for tmpfs tests: a small machine's page allocator and a tmpfs on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bootmem.fs.tmpfs import Tmpfs
from bootmem.mm import PAGE_SIZE, PageAllocator

RAM_BASE = 0x8000_0000
RAM_PAGES = 1024  # 4 MiB


@pytest.fixture
def pa() -> Iterator[PageAllocator]:
    with PageAllocator(base=RAM_BASE, size=RAM_PAGES * PAGE_SIZE) as allocator:
        yield allocator


@pytest.fixture
def fs(pa: PageAllocator) -> Tmpfs:
    return Tmpfs(pa)


def rootfs_pages(pa: PageAllocator) -> int:
    """Pages the allocator has handed to the tmpfs (owner ``rootfs``)."""
    return pa.pages_by_owner().get("rootfs", 0)

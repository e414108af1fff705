"""PageAllocator: alloc, free, reserve, accounting, events, fault injection."""

from __future__ import annotations

import itertools

import pytest

from bootmem.errors import (
    DoubleFreeError,
    InvalidFreeError,
    InvalidRangeError,
    InvariantError,
    OutOfMemoryError,
    ReservedConflictError,
    UsageError,
)
from bootmem.mm import PAGE_SIZE, AllocatorEvent, PageAllocator

from .conftest import BASE, page, pfn


def test_fresh_allocator(pa: PageAllocator) -> None:
    assert (pa.base, pa.size, pa.end, pa.total_pages) == (BASE, 64 * PAGE_SIZE, BASE + 64 * PAGE_SIZE, 64)
    assert pa.stats() == {"total": 64, "free": 64, "allocated": 0, "reserved": 0}
    assert pa.pages_by_owner() == {"free": 64}
    assert pa.memory.base == BASE


def test_alloc_is_aligned_and_inside_ram(pa: PageAllocator) -> None:
    for order in (3, 2, 1, 0):
        got = pa.alloc(order)
        assert got % (1 << order) == 0
        assert pfn(0) <= got < pfn(64)
    assert pa.stats()["allocated"] == 15


def test_alloc_until_oom_then_free_all(pa: PageAllocator) -> None:
    got = [pa.alloc() for _ in range(64)]
    assert sorted(got) == [pfn(i) for i in range(64)]
    with pytest.raises(OutOfMemoryError) as info:
        pa.alloc()
    assert isinstance(info.value, MemoryError)
    for p in got:
        pa.free(p)
    pa.check_invariants()
    assert pa.alloc(3) % 8 == 0  # coalesced back into 8-page blocks


def test_order_zero_cache_does_not_starve_larger_orders(pa: PageAllocator) -> None:
    pa.free(pa.alloc(0))  # leaves pages in the order-0 cache
    assert [pa.alloc(3) for _ in range(8)]
    assert pa.stats()["free"] == 0


def test_oom_changes_nothing(pa: PageAllocator) -> None:
    pa.reserve(page(0), page(60), "big")
    with pytest.raises(OutOfMemoryError, match="order-3"):
        pa.alloc(3)
    assert pa.stats()["free"] == 4
    assert pa.alloc(2) == pfn(60)


def test_invalid_order(pa: PageAllocator) -> None:
    with pytest.raises(UsageError, match="order 4"):
        pa.alloc(4)
    with pytest.raises(UsageError):
        pa.alloc(-1)


def test_free_errors(pa: PageAllocator) -> None:
    block = pa.alloc(1)
    single = pa.alloc(0)
    pa.reserve(page(40), page(41), "dtb")
    before = pa.stats()
    with pytest.raises(InvalidFreeError, match=r"outside RAM \[0x80000000, 0x80040000\)"):
        pa.free(pfn(64))
    with pytest.raises(InvalidFreeError, match="not aligned"):
        pa.free(block + 1, 1)
    with pytest.raises(InvalidFreeError, match="allocated at order 1"):
        pa.free(block, 0)
    with pytest.raises(InvalidFreeError, match="inside block"):
        pa.free(block + 1, 0)
    with pytest.raises(InvalidFreeError, match="reserved by 'dtb'"):
        pa.free(pfn(40))
    with pytest.raises(InvalidFreeError, match="invalid order"):
        pa.free(block, 9)
    pa.free(single)
    with pytest.raises(DoubleFreeError, match=f"{single << 12:#x}"):
        pa.free(single)
    assert pa.stats()["allocated"] == before["allocated"] - 1
    pa.free(block, 1)
    with pytest.raises(DoubleFreeError):
        pa.free(block, 1)


def test_reserve_byte_granular(pa: PageAllocator) -> None:
    pa.reserve(page(1) + 0x800, page(2) + 0x100, "initrd")
    assert pa.stats()["reserved"] == 2
    assert pa.reserved_regions() == [("initrd", page(1) + 0x800, page(2) + 0x100)]
    got = {pa.alloc() for _ in range(62)}
    assert pfn(1) not in got and pfn(2) not in got


def test_reserve_overlapping_names(pa: PageAllocator) -> None:
    pa.reserve(page(4), page(6) + 0x10, "initrd")
    pa.reserve(page(6), page(7), "dtb")
    assert pa.reserved_regions() == [("initrd", page(4), page(6) + 0x10), ("dtb", page(6) + 0x10, page(7))]
    assert pa.stats()["reserved"] == 3
    assert pa.pages_by_owner() == {"initrd": 3, "free": 61}


def test_reserve_conflict_changes_nothing(pa: PageAllocator) -> None:
    got = pa.alloc(0, owner="rootfs")
    before = pa.stats()
    low = min(got, pfn(0))
    with pytest.raises(ReservedConflictError, match=rf"{got << 12:#x}.*'rootfs'"):
        pa.reserve(low << 12, pa.end, "initrd")
    assert pa.stats() == before
    assert pa.reserved_regions() == []


@pytest.mark.parametrize(("start", "end"), [(page(1), page(1)), (page(2), page(1)), (BASE - 1, page(1))])
def test_reserve_bad_range(pa: PageAllocator, start: int, end: int) -> None:
    with pytest.raises(InvalidRangeError, match="0x"):
        pa.reserve(start, end, "x")
    assert pa.stats()["reserved"] == 0


def test_reserve_beyond_ram(pa: PageAllocator) -> None:
    with pytest.raises(InvalidRangeError, match=r"outside RAM \[0x80000000, 0x80040000\)"):
        pa.reserve(page(60), page(65), "x")


def test_pages_by_owner(pa: PageAllocator) -> None:
    pa.alloc(2, owner="rootfs")
    pa.alloc(0, owner="rootfs")
    pa.alloc(0, owner="kernel")
    pa.reserve(page(48), page(56), "initrd")
    counts = pa.pages_by_owner()
    assert counts == {"rootfs": 5, "kernel": 1, "initrd": 8, "free": 50}
    assert sum(counts.values()) == pa.total_pages


def test_page_view(pa: PageAllocator) -> None:
    block = pa.alloc(1)
    view = pa.page_view(block, 2)
    view[:5] = b"hello"
    assert pa.memory.read(block * PAGE_SIZE, 5) == b"hello"
    view.release()
    with pytest.raises(InvalidRangeError, match="not allocated"):
        pa.page_view(block, 3)
    a, b = pa.alloc(0), pa.alloc(0)
    if b == a + 1:
        pa.page_view(a, 2).release()


def test_events(pa: PageAllocator) -> None:
    seen: list[AllocatorEvent] = []
    unsubscribe = pa.subscribe(seen.append)
    pa.reserve(page(8), page(10), "initrd")
    got = pa.alloc(1, owner="rootfs")
    pa.free(got, 1)
    pa.release_reserved(page(8), page(10))
    unsubscribe()
    pa.alloc()
    assert [(e.op, e.pfn, e.pages, e.owner) for e in seen] == [
        ("reserve", pfn(8), 2, "initrd"),
        ("alloc", got, 2, "rootfs"),
        ("free", got, 2, "rootfs"),
        ("release", pfn(8), 2, "initrd"),
    ]
    assert all(a.time <= b.time for a, b in itertools.pairwise(seen))


def test_callback_may_query_allocator(pa: PageAllocator) -> None:
    frees: list[int] = []
    pa.subscribe(lambda event: frees.append(pa.stats()["free"]))
    pa.alloc()
    assert frees == [63]


def test_fail_nth_alloc(pa: PageAllocator) -> None:
    pa.fail_nth_alloc(3)
    pa.alloc()
    pa.alloc()
    with pytest.raises(OutOfMemoryError, match="injected"):
        pa.alloc()
    pa.alloc()  # only once
    assert pa.stats()["allocated"] == 3
    pa.fail_nth_alloc(1)
    pa.fail_nth_alloc(None)
    pa.alloc()


def test_check_invariants_detects_corruption(pa: PageAllocator) -> None:
    got = pa.alloc(1)
    pa.check_invariants()
    pa._buddy.free_lists[0][got] = None  # corrupt: a page both allocated and free
    pa._buddy.nr_free += 1
    with pytest.raises(InvariantError, match="overlaps"):
        pa.check_invariants()
    del pa._buddy.free_lists[0][got]
    pa._buddy.nr_free -= 1
    pa._nr_allocated += 1
    with pytest.raises(InvariantError, match="counter"):
        pa.check_invariants()
    pa._nr_allocated -= 1
    del pa._allocated[got]
    pa._nr_allocated -= 2
    with pytest.raises(InvariantError, match="neither free, allocated nor reserved"):
        pa.check_invariants()
    pa._allocated[got] = (1, "anonymous")
    pa._nr_allocated += 2


def test_bad_construction() -> None:
    with pytest.raises(InvalidRangeError):
        PageAllocator(base=0x1000, size=0x1800)
    with pytest.raises(UsageError):
        PageAllocator(base=0, size=PAGE_SIZE, poison=256)
    with pytest.raises(UsageError):
        PageAllocator(base=0, size=PAGE_SIZE, max_order=31)


def test_unaligned_base_blocks_are_naturally_aligned() -> None:
    pa = PageAllocator(base=3 * PAGE_SIZE, size=13 * PAGE_SIZE, max_order=3)
    assert sorted(pa._buddy.blocks()) == [(3, 0), (4, 2), (8, 3)]
    pa.check_invariants()

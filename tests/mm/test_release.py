"""release_reserved: the initrd's frames go back to the page allocator."""

from __future__ import annotations

import pytest

from bootmem.errors import InvalidRangeError, NotReservedError, UsageError
from bootmem.mm import PAGE_SIZE, PageAllocator

from .conftest import BASE, page, pfn


def test_originating_scenario(pa: PageAllocator) -> None:
    """Reserve, release, allocate until none are left: every formerly reserved frame is served."""
    start, end = page(10), page(30) + 0x123  # an initrd of 20 pages and a bit
    pa.reserve(start, end, "initrd")
    reserved_frames = set(range(pfn(10), pfn(31)))
    before_release = set()
    while True:
        try:
            before_release.add(pa.alloc())
        except MemoryError:
            break
    assert not before_release & reserved_frames
    assert pa.release_reserved(start, end) == 21
    after_release = set()
    while True:
        try:
            after_release.add(pa.alloc(owner="rootfs"))
        except MemoryError:
            break
    assert after_release == reserved_frames
    assert pa.stats() == {"total": 64, "free": 0, "allocated": 64, "reserved": 0}


def test_release_returns_largest_blocks(pa: PageAllocator) -> None:
    pa.reserve(page(8), page(24), "initrd")
    assert pa.release_reserved(page(8), page(24)) == 16
    pa.check_invariants()
    assert sorted(pa._buddy.blocks()) == [(pfn(i), 3) for i in range(0, 64, 8)]


def test_unaligned_start_and_end(pa: PageAllocator) -> None:
    """Pages touched by an unaligned range are all freed when nothing else holds them."""
    pa.reserve(page(4) + 0x10, page(9) - 0x10, "initrd")
    assert pa.stats()["reserved"] == 5
    assert pa.release_reserved(page(4) + 0x10, page(9) - 0x10) == 5
    assert pa.reserved_regions() == []


def test_one_byte_into_the_last_page(pa: PageAllocator) -> None:
    """``[page 4, page 9 + 1)``: the last byte lies in page 9, so six pages are reserved, then freed."""
    pa.reserve(page(4), page(9) + 1, "initrd")
    assert pa.stats()["reserved"] == 6
    assert pa.release_reserved(page(4), page(9) + 1) == 6
    assert pa.stats() == {"total": 64, "free": 64, "allocated": 0, "reserved": 0}


def test_unaligned_linux_generic_keeps_partial_pages(pa: PageAllocator) -> None:
    """Linux's free_reserved_area(PAGE_ALIGN(start), end & PAGE_MASK) never frees edge pages."""
    pa.reserve(page(4) + 0x10, page(9) - 0x10, "initrd")
    assert pa.release_reserved(page(4) + 0x10, page(9) - 0x10, policy="linux-generic") == 3
    assert pa.reserved_regions() == [
        ("initrd (partial page)", page(4) + 0x10, page(5)),
        ("initrd (partial page)", page(8), page(9) - 0x10),
    ]
    assert pa.stats()["reserved"] == 2
    assert pa.pages_by_owner()["initrd (partial page)"] == 2
    # the remnants can be released later, by the exact policy
    assert pa.release_reserved(page(4) + 0x10, page(5)) == 1
    assert pa.release_reserved(page(8), page(9) - 0x10, policy="linux-generic") == 0
    assert pa.release_reserved(page(8), page(9) - 0x10) == 1


def test_linux_generic_within_one_page(pa: PageAllocator) -> None:
    pa.reserve(page(2) + 0x100, page(2) + 0x200, "tiny")
    assert pa.release_reserved(page(2) + 0x100, page(2) + 0x200, policy="linux-generic") == 0
    assert pa.reserved_regions() == [("tiny (partial page)", page(2) + 0x100, page(2) + 0x200)]


def test_aligned_policies_agree(pa: PageAllocator) -> None:
    pa.reserve(page(4), page(12), "initrd")
    assert pa.release_reserved(page(4), page(12), policy="linux-generic") == 8
    assert pa.stats()["reserved"] == 0


def test_shared_page_stays_reserved_until_both_released(pa: PageAllocator) -> None:
    """The device tree in the initrd's last page keeps that page reserved::

    page   4    5    6    7    8
           |  initrd      |dtb|
           +--------------+---+
                     shared page 7
    """
    pa.reserve(page(4), page(7) + 0x800, "initrd")
    pa.reserve(page(7) + 0x800, page(8), "dtb")
    assert pa.release_reserved(page(4), page(7) + 0x800) == 3
    assert pa.reserved_regions() == [("dtb", page(7) + 0x800, page(8))]
    assert pa.stats()["reserved"] == 1
    assert pa.release_reserved(page(7) + 0x800, page(8)) == 1
    assert pa.stats()["reserved"] == 0


def test_release_part_of_a_reservation(pa: PageAllocator) -> None:
    pa.reserve(page(0), page(16), "initrd")
    assert pa.release_reserved(page(4), page(8)) == 4
    assert pa.reserved_regions() == [("initrd", page(0), page(4)), ("initrd", page(8), page(16))]


def test_release_across_two_reservations(pa: PageAllocator) -> None:
    pa.reserve(page(0), page(2), "a")
    pa.reserve(page(2), page(4), "b")
    assert pa.release_reserved(page(1), page(3)) == 2
    assert pa.reserved_regions() == [("a", page(0), page(1)), ("b", page(3), page(4))]


def test_release_twice(pa: PageAllocator) -> None:
    pa.reserve(page(4), page(8), "initrd")
    assert pa.release_reserved(page(4), page(8)) == 4
    before = pa.stats()
    with pytest.raises(NotReservedError, match=r"\[0x80004000, 0x80008000\) is not reserved \(free\)"):
        pa.release_reserved(page(4), page(8))
    assert pa.stats() == before


def test_release_partly_allocated(pa: PageAllocator) -> None:
    pa.reserve(page(0), page(60), "big")
    got = pa.alloc(owner="rootfs")
    assert got >= pfn(60)
    before = (pa.stats(), pa.reserved_regions())
    with pytest.raises(NotReservedError, match=rf"{got << 12:#x}.*allocated to 'rootfs'"):
        pa.release_reserved(page(0), (got + 1) << 12)
    assert (pa.stats(), pa.reserved_regions()) == before


def test_release_partly_free(pa: PageAllocator) -> None:
    pa.reserve(page(4), page(8), "initrd")
    with pytest.raises(NotReservedError, match=r"\[0x80008000, 0x80009000\)"):
        pa.release_reserved(page(4), page(9))
    assert pa.stats()["reserved"] == 4


@pytest.mark.parametrize(
    ("start", "end"),
    [(BASE - PAGE_SIZE, BASE + PAGE_SIZE), (page(63), page(65)), (page(5), page(5)), (page(6), page(5))],
)
def test_release_bad_range(pa: PageAllocator, start: int, end: int) -> None:
    pa.reserve(page(0), page(64), "all")
    with pytest.raises(InvalidRangeError, match=f"{start:#x}"):
        pa.release_reserved(start, end)
    assert pa.stats()["reserved"] == 64


def test_unknown_policy(pa: PageAllocator) -> None:
    pa.reserve(page(0), page(1), "x")
    with pytest.raises(UsageError, match="'linux'"):
        pa.release_reserved(page(0), page(1), policy="linux")


def test_poison_visible_after_release(pa: PageAllocator) -> None:
    pa.reserve(page(4), page(6), "initrd")
    with pa.lease(page(4), page(6), owner="unpack") as lease:
        lease.view[:] = b"\x07" * (2 * PAGE_SIZE)
    assert pa.memory.read(page(4), 4) == b"\x07" * 4
    pa.release_reserved(page(4), page(6))
    assert pa.memory.read(page(4), 2 * PAGE_SIZE) == b"\xcc" * (2 * PAGE_SIZE)
    got = pa.alloc(1)
    while got != pfn(4):
        got = pa.alloc(1)
    view = pa.page_view(got, 2)
    assert bytes(view[-3:]) == b"\xcc\xcc\xcc"
    view.release()


def test_poison_only_on_freed_pages(pa: PageAllocator) -> None:
    """Bytes on a page that stays reserved are left as they were."""
    pa.reserve(page(4), page(5) + 0x800, "initrd")
    pa.reserve(page(5) + 0x800, page(6), "dtb")
    pa.memory.write(page(5) + 0x7FF, b"ab")
    assert pa.release_reserved(page(4), page(5) + 0x800) == 1
    assert pa.memory.read(page(4), 1) == b"\xcc"
    assert pa.memory.read(page(5) + 0x7FF, 2) == b"ab"


def test_poison_off() -> None:
    pa = PageAllocator(base=BASE, size=16 * PAGE_SIZE, poison=None)
    pa.reserve(page(0), page(4), "initrd")
    pa.memory.write(page(1), b"kept")
    pa.release_reserved(page(0), page(4))
    assert pa.memory.read(page(1), 4) == b"kept"
    pa.check_invariants()


def test_custom_poison() -> None:
    pa = PageAllocator(base=BASE, size=16 * PAGE_SIZE, poison=0x6B)
    pa.reserve(page(0), page(1), "initrd")
    pa.release_reserved(page(0), page(1))
    assert pa.memory.read(page(0), 2) == b"kk"


def test_release_coalesces_with_free_neighbours(pa: PageAllocator) -> None:
    pa.reserve(page(3), page(5), "a")
    pa.release_reserved(page(3), page(5))
    pa.check_invariants()
    assert pa.alloc(3) is not None

"""check_invariants finds what is wrong: each test breaks one rule of the books and expects the
message naming it.  The rest of the suite trusts this checker, so it must not pass a broken state.

The allocator is 64 pages at 0x8000_0000 (see conftest), blocks of up to 8 pages.
"""

from __future__ import annotations

import pytest

from bootmem.errors import InvariantError
from bootmem.mm import PageAllocator

from .conftest import page, pfn


def test_a_clean_allocator_passes(pa: PageAllocator) -> None:
    pa.reserve(page(4), page(9) + 1, "initrd")
    block = pa.alloc(2, owner="rootfs")
    pa.check_invariants()
    pa.free(block, 2)
    pa.check_invariants()


def test_misaligned_allocated_block(pa: PageAllocator) -> None:
    block = pa.alloc(2, owner="rootfs")
    pa._allocated[block + 1] = pa._allocated.pop(block)
    message = rf"allocated block pfn {block + 1:#x} is not aligned to its order 2"
    with pytest.raises(InvariantError, match=message):
        pa.check_invariants()
    pa._allocated[block] = pa._allocated.pop(block + 1)


def test_allocated_counter_disagrees(pa: PageAllocator) -> None:
    pa.alloc(1, owner="rootfs")
    pa._nr_allocated += 1
    with pytest.raises(InvariantError, match="allocated blocks hold 2 pages, counter says 3"):
        pa.check_invariants()
    pa._nr_allocated -= 1


def test_peak_below_the_use_now(pa: PageAllocator) -> None:
    pa.alloc(3, owner="rootfs")
    pa._peak_used = 7
    with pytest.raises(InvariantError, match="peak use 7 pages is below the use now"):
        pa.check_invariants()
    pa._peak_used = 8


def test_page_that_is_nobodys(pa: PageAllocator) -> None:
    block = pa.alloc(0, owner="rootfs")
    entry = pa._allocated.pop(block)
    pa._nr_allocated -= 1
    lost = block * 4096
    message = rf"pages \[{lost:#x}, {lost + 4096:#x}\) are neither free, allocated nor reserved"
    with pytest.raises(InvariantError, match=message):
        pa.check_invariants()
    pa._allocated[block] = entry
    pa._nr_allocated += 1


def test_allocated_block_overlapping_a_free_one(pa: PageAllocator) -> None:
    block = pa.alloc(0, owner="rootfs")
    other = block ^ 1  # its buddy, still free
    pa._allocated[other] = (0, "ghost")
    pa._nr_allocated += 1
    pa._peak_used += 1
    with pytest.raises(InvariantError, match=r"overlaps"):
        pa.check_invariants()
    del pa._allocated[other]
    pa._nr_allocated -= 1


def test_block_outside_ram(pa: PageAllocator) -> None:
    pa._allocated[pfn(64)] = (0, "ghost")
    pa._nr_allocated += 1
    pa._peak_used += 1
    with pytest.raises(InvariantError, match=r"block pfn 0x80040 order 0 of 'ghost' lies outside RAM"):
        pa.check_invariants()
    del pa._allocated[pfn(64)]
    pa._nr_allocated -= 1


def test_reserved_counter_disagrees(pa: PageAllocator) -> None:
    pa.reserve(page(8), page(16), "initrd")
    pa._nr_reserved += 1
    pa._peak_used += 1
    with pytest.raises(InvariantError, match="reserved regions touch 8 pages, counters say 8 and 9"):
        pa.check_invariants()
    pa._nr_reserved -= 1
    pa._peak_used -= 1

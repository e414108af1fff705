"""Buddy free lists: exact blocks for exact inputs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootmem.errors import InvariantError, OutOfMemoryError
from bootmem.mm import BuddyAllocator
from bootmem.mm.buddy import block_order


def blocks(b: BuddyAllocator) -> list[tuple[int, int]]:
    return sorted(b.blocks())


def test_add_free_range_largest_aligned_blocks() -> None:
    b = BuddyAllocator(max_order=10)
    assert b.add_free_range(0, 5) == 2
    assert blocks(b) == [(0, 2), (4, 0)]
    assert b.nr_free == 5


def test_add_free_range_unaligned_edges() -> None:
    b = BuddyAllocator(max_order=3)
    b.add_free_range(3, 21)
    assert blocks(b) == [(3, 0), (4, 2), (8, 3), (16, 2), (20, 0)]


def test_add_free_range_runs_of_max_blocks() -> None:
    b = BuddyAllocator(max_order=2)
    assert b.add_free_range(4, 20) == 4
    assert blocks(b) == [(4, 2), (8, 2), (12, 2), (16, 2)]


def test_add_free_range_coalesces_with_neighbours() -> None:
    b = BuddyAllocator(max_order=3)
    b.add_free_range(0, 1)
    b.add_free_range(1, 8)
    assert blocks(b) == [(0, 3)]
    b.check()


def test_alloc_splits_and_returns_lower_half() -> None:
    b = BuddyAllocator(max_order=3)
    b.add_free_range(8, 16)
    assert b.alloc_block(0) == 8
    assert blocks(b) == [(9, 0), (10, 1), (12, 2)]
    assert b.alloc_block(1) == 10
    assert b.alloc_block(0) == 9
    assert blocks(b) == [(12, 2)]


def test_free_merges_up_to_max_order() -> None:
    b = BuddyAllocator(max_order=2)
    for pfn in range(8):
        b.free_block(pfn, 0)
    assert blocks(b) == [(0, 2), (4, 2)]


def test_out_of_memory() -> None:
    b = BuddyAllocator(max_order=3)
    b.add_free_range(0, 3)
    with pytest.raises(OutOfMemoryError, match="order 2"):
        b.alloc_block(2)
    assert b.nr_free == 3


def test_remove_range_splits_straddling_blocks() -> None:
    b = BuddyAllocator(max_order=3)
    b.add_free_range(0, 16)
    b.remove_range(3, 9)
    assert blocks(b) == [(0, 1), (2, 0), (9, 0), (10, 1), (12, 2)]
    assert b.nr_free == 10
    assert b.first_not_free(0, 16) == 3
    assert b.first_not_free(9, 16) is None


def test_find() -> None:
    b = BuddyAllocator(max_order=3)
    b.add_free_range(8, 16)
    assert b.find(13) == (8, 3)
    assert b.find(7) is None


def test_block_order() -> None:
    assert block_order(4, 12, 10) == 2
    assert block_order(0, 1 << 20, 10) == 10
    assert block_order(6, 1, 10) == 0


def test_check_finds_uncoalesced_buddies() -> None:
    b = BuddyAllocator(max_order=3)
    b.free_lists[0].update({0: None, 1: None})
    b.nr_free = 2
    with pytest.raises(InvariantError, match="not merged"):
        b.check()


def test_check_finds_misaligned_and_nested_blocks() -> None:
    b = BuddyAllocator(max_order=3)
    b.free_lists[1][3] = None
    b.nr_free = 2
    with pytest.raises(InvariantError, match="not aligned"):
        b.check()
    b = BuddyAllocator(max_order=3)
    b.free_lists[0][5] = None
    b.free_lists[2][4] = None
    b.nr_free = 5
    with pytest.raises(InvariantError, match="inside"):
        b.check()


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 40)), max_size=8))
def test_disjoint_ranges_always_coalesce_fully(ranges: list[tuple[int, int]]) -> None:
    """However disjoint ranges are added, the lists equal a single greedy decomposition."""
    pages: set[int] = set()
    b = BuddyAllocator(max_order=4)
    for lo, n in ranges:
        new = set(range(lo, lo + n)) - pages
        for page in sorted(new):
            b.add_free_range(page, page + 1)
        pages |= new
    b.check()
    reference = BuddyAllocator(max_order=4)
    for page in sorted(pages):
        reference.free_block(page, 0)
    assert blocks(b) == blocks(reference)
    assert b.nr_free == len(pages)

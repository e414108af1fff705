"""alloc_bulk: many order-0 pages in one call, handed out as runs, freed one page at a time."""

from __future__ import annotations

import contextlib
import random
import threading

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bootmem.errors import OutOfMemoryError, UsageError
from bootmem.mm import PAGE_SIZE, AllocatorEvent, BuddyAllocator, PageAllocator
from tests.mm.conftest import page, pfn

# --- the buddy lists -----------------------------------------------------------------------


def test_buddy_alloc_pages_splits_one_block() -> None:
    # [0 ......... 8)  one free block of order 3
    # [0 . . 4)[4)      taken: order 2 then order 0; 5 (order 0) and 6-7 (order 1) stay free
    b = BuddyAllocator(max_order=3)
    b.add_free_range(0, 8)
    assert b.alloc_pages(5) == [(0, 2), (4, 0)]
    assert sorted(b.blocks()) == [(5, 0), (6, 1)]
    assert b.nr_free == 3


def test_buddy_alloc_pages_takes_smaller_blocks_when_no_large_one() -> None:
    # free: [0)  [2 3)  [8 ... 12)   - no block of order 3
    b = BuddyAllocator(max_order=3)
    for lo, hi in ((0, 1), (2, 4), (8, 12)):
        b.add_free_range(lo, hi)
    assert b.alloc_pages(7) == [(8, 2), (2, 1), (0, 0)]
    assert b.nr_free == 0 and list(b.blocks()) == []


def test_buddy_alloc_pages_runs_out() -> None:
    b = BuddyAllocator(max_order=3)
    b.add_free_range(0, 5)
    assert b.alloc_pages(9) == [(0, 2), (4, 0)]
    assert b.alloc_pages(1) == [] and b.nr_free == 0


def test_buddy_alloc_pages_zero() -> None:
    b = BuddyAllocator(max_order=3)
    b.add_free_range(0, 8)
    assert b.alloc_pages(0) == []
    assert b.nr_free == 8


# --- the allocator -----------------------------------------------------------------------


def pages_of(runs: list[tuple[int, int]]) -> list[int]:
    return [p for first, n in runs for p in range(first, first + n)]


def test_bulk_is_one_run_from_one_block(pa: PageAllocator) -> None:
    runs = pa.alloc_bulk(5, owner="rootfs")
    assert len(runs) == 1 and runs[0][1] == 5
    assert pa.stats()["allocated"] == 5
    assert pa.pages_by_owner()["rootfs"] == 5
    with pa.page_view(runs[0][0], 5) as view:
        assert len(view) == 5 * PAGE_SIZE


def test_bulk_zero_pages(pa: PageAllocator) -> None:
    assert pa.alloc_bulk(0) == []
    assert pa.stats()["allocated"] == 0


@pytest.mark.parametrize("count", [-1, 1.5, "3"])
def test_bulk_bad_count(pa: PageAllocator, count: object) -> None:
    with pytest.raises(UsageError):
        pa.alloc_bulk(count)  # type: ignore[arg-type]


def test_bulk_pages_free_one_by_one(pa: PageAllocator) -> None:
    before = sorted(pa._buddy.blocks())
    pages = pages_of(pa.alloc_bulk(37, owner="rootfs"))
    assert len(set(pages)) == 37
    random.Random(3).shuffle(pages)
    for done, p in enumerate(pages, 1):
        pa.free(p, 0)
        assert pa.stats()["allocated"] == 37 - done
    pa.check_invariants()  # drains the hot cache: every block coalesced again
    assert sorted(pa._buddy.blocks()) == before


def test_bulk_page_cannot_be_freed_as_a_block(pa: PageAllocator) -> None:
    (first, _n), *_ = pa.alloc_bulk(8)
    with pytest.raises(Exception, match="allocated at order 0"):
        pa.free(first, 3)


def test_bulk_takes_the_hot_cache_first(pa: PageAllocator) -> None:
    singles = [pa.alloc() for _ in range(4)]
    for p in singles:
        pa.free(p)
    got = pages_of(pa.alloc_bulk(6))
    assert set(singles) <= set(got)
    assert got[:4] == singles[::-1]  # the last freed first, as alloc(0) takes them


def test_bulk_uses_every_page(pa: PageAllocator) -> None:
    pa.reserve(page(3), page(4), "hole")  # no block above order 1 at the bottom
    pages = pages_of(pa.alloc_bulk(63))
    assert sorted(pages) == [pfn(n) for n in range(64) if n != 3]
    assert pa.stats()["free"] == 0


def test_bulk_out_of_memory_keeps_what_it_took(pa: PageAllocator) -> None:
    hog = pa.alloc_bulk(60, owner="hog")
    with pytest.raises(OutOfMemoryError, match="got 4") as info:
        pa.alloc_bulk(10, owner="rootfs")
    assert sum(n for _, n in info.value.runs) == 4
    assert pa.pages_by_owner()["rootfs"] == 4 and pa.stats()["free"] == 0
    for p in pages_of(info.value.runs) + pages_of(hog):
        pa.free(p)
    assert pa.stats()["free"] == 64


@pytest.mark.parametrize("k", range(1, 8))
def test_fail_nth_alloc_inside_a_bulk(pa: PageAllocator, k: int) -> None:
    pa.fail_nth_alloc(k)
    if k <= 5:
        with pytest.raises(OutOfMemoryError, match=f"injected failure of page {k}") as info:
            pa.alloc_bulk(5)
        assert sum(n for _, n in info.value.runs) == k - 1 == pa.stats()["allocated"]
        pa.alloc()  # disarmed
    else:
        pa.alloc_bulk(5)  # the failure lies beyond: the countdown went on
        for _ in range(k - 6):
            pa.alloc()
        with pytest.raises(OutOfMemoryError, match="injected"):
            pa.alloc()
    pa.alloc()


@pytest.mark.parametrize("k", range(1, 12))
def test_fail_nth_alloc_counts_pages_as_single_allocations(k: int) -> None:
    # The k-th page fails whether the pages are asked for one by one or in bulks of 3.
    singles = PageAllocator(base=0, size=64 * PAGE_SIZE, max_order=3)
    singles.fail_nth_alloc(k)
    got_singles = 0
    with pytest.raises(OutOfMemoryError):
        for _ in range(12):
            singles.alloc()
            got_singles += 1
    bulks = PageAllocator(base=0, size=64 * PAGE_SIZE, max_order=3)
    bulks.fail_nth_alloc(k)
    got_bulks = 0
    with pytest.raises(OutOfMemoryError) as info:
        for _ in range(4):
            got_bulks += sum(n for _, n in bulks.alloc_bulk(3))
    got_bulks += sum(n for _, n in info.value.runs)
    assert got_bulks == got_singles == k - 1


def test_countdown_after_a_real_shortage() -> None:
    pa = PageAllocator(base=0, size=8 * PAGE_SIZE, max_order=3)
    pa.alloc_bulk(6)
    pa.fail_nth_alloc(10)
    with pytest.raises(OutOfMemoryError, match="out of memory") as info:
        pa.alloc_bulk(5)
    # Pages 1 and 2 were had and the 3rd failed for want of memory: three counted, as three
    # calls of alloc() would have been, so the 10th is the 7th allocation from here.
    assert sum(n for _, n in info.value.runs) == 2
    for p in pages_of(info.value.runs):
        pa.free(p)
    for _ in range(6):
        pa.free(pa.alloc())
    with pytest.raises(OutOfMemoryError, match="injected"):
        pa.alloc()


def test_one_event_per_run(pa: PageAllocator) -> None:
    seen: list[AllocatorEvent] = []
    pa.subscribe(seen.append)
    runs = pa.alloc_bulk(13, owner="rootfs")
    assert [(e.op, e.pfn, e.pages, e.owner) for e in seen] == [("alloc", p, n, "rootfs") for p, n in runs]
    for p in pages_of(runs):
        pa.free(p)
    assert sum(e.pages for e in seen if e.op == "free") == 13


def test_peak_used(pa: PageAllocator) -> None:
    assert pa.peak_used == 0
    pa.reserve(page(0), page(2), "kernel")
    assert pa.peak_used == 2
    runs = pa.alloc_bulk(10)
    single = pa.alloc(1)
    assert pa.peak_used == 14
    for p in pages_of(runs):
        pa.free(p)
    pa.free(single, 1)
    pa.release_reserved(page(0), page(2))
    assert pa.peak_used == 14 and pa.stats()["free"] == 64
    pa.alloc_bulk(3)
    assert pa.peak_used == 14


# --- against a model made of sets ---------------------------------------------------------

PAGES = 48
FIRST = 0x10_0000


class BulkMachine(RuleBasedStateMachine):
    """Bulk and single allocations, page-by-page frees and injected failures, against sets."""

    def __init__(self) -> None:
        super().__init__()
        self.pa = PageAllocator(base=FIRST * PAGE_SIZE, size=PAGES * PAGE_SIZE, max_order=3)
        self.free: set[int] = set(range(FIRST, FIRST + PAGES))
        self.held: list[int] = []  # order-0 pages handed out
        self.peak = 0

    def take(self, pages: list[int]) -> None:
        assert len(set(pages)) == len(pages)
        assert set(pages) <= self.free, "a page handed out twice"
        self.free -= set(pages)
        self.held += pages
        self.peak = max(self.peak, PAGES - len(self.free))

    @rule(count=st.integers(0, 20), fail=st.none() | st.integers(1, 25))
    def bulk(self, count: int, fail: int | None) -> None:
        self.pa.fail_nth_alloc(fail)
        expect = min(count, len(self.free), fail - 1 if fail else count)
        try:
            runs = self.pa.alloc_bulk(count, owner="bulk")
        except OutOfMemoryError as exc:
            runs = exc.runs
            assert expect < count
        else:
            assert expect == count
        assert all(n > 0 for _, n in runs)
        pages = pages_of(runs)
        assert len(pages) == expect
        self.take(pages)
        self.pa.fail_nth_alloc(None)

    @rule()
    def single(self) -> None:
        try:
            got = self.pa.alloc(0, owner="single")
        except OutOfMemoryError:
            assert not self.free
        else:
            self.take([got])

    @rule(data=st.data())
    def free_some(self, data: st.DataObject) -> None:
        if not self.held:
            return
        n = data.draw(st.integers(1, len(self.held)))
        for _ in range(n):
            index = data.draw(st.integers(0, len(self.held) - 1))
            p = self.held.pop(index)
            self.pa.free(p, 0)
            self.free.add(p)

    @invariant()
    def counts_agree(self) -> None:
        stats = self.pa.stats()
        assert stats["free"] == len(self.free)
        assert stats["allocated"] == len(self.held)
        assert self.pa.peak_used == self.peak
        self.pa.check_invariants()

    def teardown(self) -> None:
        self.pa.close()


TestBulkMachine = BulkMachine.TestCase
TestBulkMachine.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- threads ------------------------------------------------------------------------------


def test_bulk_from_threads_never_hands_a_page_twice() -> None:
    pa = PageAllocator(base=FIRST * PAGE_SIZE, size=2048 * PAGE_SIZE, max_order=6)
    held: dict[int, int] = {}
    held_lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(index: int) -> None:
        rng = random.Random(index)
        mine: list[int] = []
        try:
            start.wait()
            for _ in range(400):
                try:
                    got = pages_of(pa.alloc_bulk(rng.randint(1, 40), owner=f"w{index}"))
                except OutOfMemoryError as exc:
                    got = pages_of(exc.runs)
                if rng.random() < 0.3:
                    with contextlib.suppress(OutOfMemoryError):
                        got.append(pa.alloc())
                with held_lock:
                    for p in got:
                        assert p not in held, f"pfn {p:#x} handed to {index} while {held[p]} holds it"
                        held[p] = index
                mine += got
                rng.shuffle(mine)
                while len(mine) > 300:
                    p = mine.pop()
                    with held_lock:
                        del held[p]
                    pa.free(p)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            for p in mine:
                with held_lock:
                    held.pop(p, None)
                pa.free(p)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    pa.check_invariants()
    assert pa.stats()["free"] == 2048
    assert pa.peak_used <= 2048
    pa.close()

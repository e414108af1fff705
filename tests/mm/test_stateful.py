"""Random reserve / alloc / free / release sequences against a plain model made of sets.

The model knows nothing of blocks or free lists: RAM is a set of pages, reserved memory a set
of 1 KiB units.  After every step the allocator's invariants hold and its counts agree with
the model's.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bootmem.errors import DoubleFreeError, InvalidFreeError, NotReservedError, ReservedConflictError
from bootmem.mm import PAGE_SIZE, PageAllocator

BASE = 0x4000_0000
PAGES = 32
MAX_ORDER = 3
UNIT = 0x400
UNITS_PER_PAGE = PAGE_SIZE // UNIT
FIRST = BASE // PAGE_SIZE


def pages_of_units(lo: int, hi: int) -> set[int]:
    """Pages (0-based) touched by units ``[lo, hi)``."""
    return set(range(lo // UNITS_PER_PAGE, (hi + UNITS_PER_PAGE - 1) // UNITS_PER_PAGE))


class AllocatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pa = PageAllocator(base=BASE, size=PAGES * PAGE_SIZE, max_order=MAX_ORDER)
        self.free: set[int] = set(range(PAGES))
        self.allocated: dict[int, int] = {}  # first page -> order
        self.reserved_units: set[int] = set()

    def reserved_pages(self) -> set[int]:
        return {unit // UNITS_PER_PAGE for unit in self.reserved_units}

    def allocated_pages(self) -> set[int]:
        return {p for head, order in self.allocated.items() for p in range(head, head + (1 << order))}

    @rule(lo=st.integers(0, PAGES * UNITS_PER_PAGE - 1), n=st.integers(1, 24), name=st.sampled_from("ab"))
    def reserve(self, lo: int, n: int, name: str) -> None:
        hi = min(lo + n, PAGES * UNITS_PER_PAGE)
        touched = pages_of_units(lo, hi)
        if touched & self.allocated_pages():
            with pytest.raises(ReservedConflictError):
                self.pa.reserve(BASE + lo * UNIT, BASE + hi * UNIT, name)
            return
        self.pa.reserve(BASE + lo * UNIT, BASE + hi * UNIT, name)
        self.reserved_units |= set(range(lo, hi))
        self.free -= touched

    @rule(order=st.integers(0, MAX_ORDER))
    def alloc(self, order: int) -> None:
        size = 1 << order
        fits = any(all(p in self.free for p in range(head, head + size)) for head in range(0, PAGES, size))
        if not fits:
            with pytest.raises(MemoryError):
                self.pa.alloc(order)
            return
        pfn = self.pa.alloc(order, owner="model")
        head = pfn - FIRST
        assert head % size == 0
        pages = set(range(head, head + size))
        assert pages <= self.free, "handed out a page that is not free"
        self.free -= pages
        self.allocated[head] = order

    @precondition(lambda self: bool(self.allocated))
    @rule(data=st.data())
    def free_block(self, data: st.DataObject) -> None:
        head = data.draw(st.sampled_from(sorted(self.allocated)))
        order = self.allocated.pop(head)
        self.pa.free(FIRST + head, order)
        self.free |= set(range(head, head + (1 << order)))

    @rule(page=st.integers(0, PAGES - 1))
    def bad_free(self, page: int) -> None:
        if page in self.allocated and self.allocated[page] == 0:
            return
        expected: type[Exception] = DoubleFreeError if page in self.free else InvalidFreeError
        with pytest.raises(expected):
            self.pa.free(FIRST + page, 0)

    @rule(
        lo=st.integers(0, PAGES * UNITS_PER_PAGE - 1),
        n=st.integers(1, 24),
        policy=st.sampled_from(["exact", "linux-generic"]),
    )
    def release(self, lo: int, n: int, policy: str) -> None:
        hi = min(lo + n, PAGES * UNITS_PER_PAGE)
        start, end = BASE + lo * UNIT, BASE + hi * UNIT
        units = set(range(lo, hi))
        if not units <= self.reserved_units:
            with pytest.raises(NotReservedError):
                self.pa.release_reserved(start, end, policy=policy)
            return
        freed = self.pa.release_reserved(start, end, policy=policy)
        remaining = self.reserved_units - units
        if policy == "linux-generic":
            inner = set(range(-(-lo // UNITS_PER_PAGE), hi // UNITS_PER_PAGE))
            remaining |= {u for u in units if u // UNITS_PER_PAGE not in inner}
        self.reserved_units = remaining
        now_free = pages_of_units(lo, hi) - self.reserved_pages()
        assert freed == len(now_free)
        self.free |= now_free

    @invariant()
    def books_agree(self) -> None:
        self.pa.check_invariants()
        reserved = self.reserved_pages()
        assert self.pa.stats() == {
            "total": PAGES,
            "free": len(self.free),
            "allocated": len(self.allocated_pages()),
            "reserved": len(reserved),
        }
        assert not self.free & reserved
        covered = sum(end - start for _, start, end in self.pa.reserved_regions())
        assert covered == len(self.reserved_units) * UNIT


AllocatorMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestAllocatorMachine = AllocatorMachine.TestCase

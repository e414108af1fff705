"""The kernel-facing page allocator: reserve, release_reserved, alloc, free, stats.

:class:`PageAllocator` models one bank of RAM ``[base, base + size)``.  Every page frame is
exactly one of:

* **free** - on the buddy free lists, or in the order-0 hot cache (Linux's per-CPU page lists);
* **allocated** - handed out by :meth:`PageAllocator.alloc` as a block ``(pfn, order)`` with an
  owner tag;
* **reserved** - touched by at least one byte of a reserved region (memblock's ``reserved``
  list: byte granular, named, sorted and merged).

Metadata is per block and per region, never per page: a 1 TiB machine costs a few tens of
megabytes of host memory.  Every method is thread-safe; on any error nothing changes.

>>> pa = PageAllocator(base=0x8000_0000, size=256 << 20)
>>> pa.reserve(0x8800_0000, 0x8900_0000, name="initrd")
>>> pa.stats()["reserved"]
4096
>>> pa.release_reserved(0x8800_0000, 0x8900_0000)
4096
>>> pa.stats() == {"total": 65536, "free": 65536, "allocated": 0, "reserved": 0}
True
"""

from __future__ import annotations

from typing import Final

from bootmem.errors import (
    DoubleFreeError,
    InvalidFreeError,
    InvalidRangeError,
    InvariantError,
    NotReservedError,
    OutOfMemoryError,
    ReservedConflictError,
    UsageError,
)
from bootmem.mm.base import AllocatorBase
from bootmem.mm.buddy import BuddyAllocator
from bootmem.mm.lease import Lease
from bootmem.mm.memblock import Memblock, Region
from bootmem.units import PAGE_SHIFT, PAGE_SIZE, align_down, align_up

POLICIES: Final = ("exact", "linux-generic")
PARTIAL_SUFFIX: Final = " (partial page)"
POISON_FREE_INITMEM: Final = 0xCC  # include/linux/poison.h

# Order-0 hot cache: refill/flush this many pages at a time, keep at most PCP_HIGH.
PCP_BATCH: Final = 63
PCP_HIGH: Final = 512


def _page_runs(regions: list[Region[str]], lo: int, hi: int) -> list[tuple[int, int]]:
    """The pages of ``[lo, hi)`` touched by ``regions`` (sorted), as merged ``[first, last + 1)`` runs."""
    runs: list[tuple[int, int]] = []
    for region in regions:
        first = max(lo, region.start >> PAGE_SHIFT)
        stop = min(hi, (region.end + PAGE_SIZE - 1) >> PAGE_SHIFT)
        if first >= stop:
            continue
        if runs and first <= runs[-1][1]:
            runs[-1] = (runs[-1][0], max(runs[-1][1], stop))
        else:
            runs.append((first, stop))
    return runs


class PageAllocator(AllocatorBase):
    """A buddy page allocator over RAM ``[base, base + size)``, with reserved ranges and leases.

    ``base`` and ``size`` are multiples of :data:`PAGE_SIZE`; blocks go up to ``2**max_order``
    pages (default 10: 4 MiB) and are naturally aligned in absolute page frame numbers
    (``pfn = address // PAGE_SIZE``).  ``poison`` is the byte released reserved memory reads as
    (Linux's ``POISON_FREE_INITMEM``, 0xcc); ``None`` leaves released bytes as they were.
    Every page starts free.
    """

    def __init__(
        self,
        base: int,
        size: int,
        *,
        max_order: int = 10,
        poison: int | None = POISON_FREE_INITMEM,
    ) -> None:
        if poison is not None and not 0 <= poison <= 0xFF:
            raise UsageError(f"poison byte {poison:#x} is not in 0..0xff")
        if not 0 <= max_order <= 30:
            raise UsageError(f"max_order {max_order} is not in 0..30")
        super().__init__(base, size)
        self.max_order = max_order
        self.poison = poison
        self.memblock = Memblock()
        self.memblock.add_memory(base, self.end)
        self._first_pfn = base >> PAGE_SHIFT
        self._end_pfn = self.end >> PAGE_SHIFT
        self._buddy = BuddyAllocator(max_order)
        self._buddy.add_free_range(self._first_pfn, self._end_pfn)
        self._pcp: list[int] = []
        self._allocated: dict[int, tuple[int, str]] = {}  # head pfn -> (order, owner)
        self._nr_allocated = 0
        self._nr_reserved = 0
        self._fail_countdown = 0

    def __repr__(self) -> str:
        return f"PageAllocator([{self.base:#x}, {self.end:#x}), max_order={self.max_order})"

    @property
    def total_pages(self) -> int:
        return self._end_pfn - self._first_pfn

    # --- checks shared by the operations ----------------------------------------------------

    def _check_range(self, start: int, end: int, what: str) -> None:
        if end <= start:
            raise InvalidRangeError(f"{what} of empty range [{start:#x}, {end:#x})")
        if start < self.base or end > self.end:
            raise InvalidRangeError(
                f"{what} of [{start:#x}, {end:#x}) outside RAM [{self.base:#x}, {self.end:#x})"
            )

    def _allocated_block(self, pfn: int) -> tuple[int, int, str] | None:
        """The allocated block ``(head, order, owner)`` containing page ``pfn``, or ``None``."""
        for order in range(self.max_order + 1):
            head = pfn >> order << order
            entry = self._allocated.get(head)
            if entry is not None and entry[0] >= order:
                return head, entry[0], entry[1]
        return None

    def _reserved_owner(self, pfn: int) -> str | None:
        """The name of a reserved region touching page ``pfn``, or ``None``."""
        regions = self.memblock.reserved.overlapping(pfn << PAGE_SHIFT, (pfn + 1) << PAGE_SHIFT)
        return regions[0].name if regions else None

    def _drain_pcp(self) -> None:
        """Return every page of the order-0 hot cache to the buddy lists (Linux: ``drain_all_pages``)."""
        free_block = self._buddy.free_block
        for pfn in self._pcp:
            free_block(pfn, 0)
        self._pcp.clear()

    # --- reserve and release -----------------------------------------------------------------

    def reserve(self, start: int, end: int, name: str = "reserved") -> None:
        """Reserve the bytes ``[start, end)`` under ``name``; every page they touch leaves the free lists.

        Reservations may overlap (already reserved bytes keep their first name) and are merged
        with touching ranges of the same name.  Raises :class:`InvalidRangeError` for a range that
        is empty or not inside RAM and :class:`ReservedConflictError` if any touched page is
        allocated.  Example: ``reserve(0x1800, 0x2100)`` on a fresh allocator with base 0
        reserves pages 1 and 2.
        """
        with self._lock:
            self._check_range(start, end, "reserve")
            lo = start >> PAGE_SHIFT
            hi = (end + PAGE_SIZE - 1) >> PAGE_SHIFT
            already = _page_runs(
                self.memblock.reserved.overlapping(lo << PAGE_SHIFT, hi << PAGE_SHIFT), lo, hi
            )
            needed: list[tuple[int, int]] = []
            cursor = lo
            for first, stop in already:
                if first > cursor:
                    needed.append((cursor, first))
                cursor = stop
            if cursor < hi:
                needed.append((cursor, hi))
            if needed:
                self._drain_pcp()
            for first, stop in needed:
                busy = self._buddy.first_not_free(first, stop)
                if busy is not None:
                    block = self._allocated_block(busy)
                    holder = (
                        f" (block pfn {block[0]:#x} order {block[1]}, owner {block[2]!r})" if block else ""
                    )
                    raise ReservedConflictError(
                        f"reserve {name!r} [{start:#x}, {end:#x}): page {busy << PAGE_SHIFT:#x} "
                        f"is allocated{holder}"
                    )
            for first, stop in needed:
                self._buddy.remove_range(first, stop)
            self.memblock.reserve(start, end, name)
            taken = sum(stop - first for first, stop in needed)
            self._nr_reserved += taken
            self._peak_used = max(self._peak_used, self._nr_allocated + self._nr_reserved)
            if self._subscribers:
                self._emit("reserve", lo, taken, name)

    def release_reserved(self, start: int, end: int, *, policy: str = "exact") -> int:
        """Give the reserved bytes ``[start, end)`` back; returns the number of pages freed.

        ``policy="exact"`` frees the pages that intersected ``[start, end)`` and now intersect no
        reserved range (a page shared with another reservation stays reserved until that one is
        released too).  ``policy="linux-generic"`` behaves as Linux's
        ``free_reserved_area(PAGE_ALIGN(start), end & PAGE_MASK)``: partial edge pages are never
        freed and their bytes stay reserved as ``"<name> (partial page)"``.

        Freed pages enter the free lists in the largest aligned blocks, coalescing with free
        neighbours, and read as the poison byte (written lazily).  Leases intersecting the range
        are closed.  Raises :class:`InvalidRangeError` (empty or outside RAM),
        :class:`NotReservedError` (not wholly reserved), :class:`RegionBusyError` (a lease's view
        is alive); on any error nothing changes.

        Example, base 0: after ``reserve(0x1000, 0x3800, "initrd")`` and ``reserve(0x3800, 0x4000,
        "dtb")``, ``release_reserved(0x1000, 0x3800)`` returns 2 (pages 1 and 2; page 3 stays
        with "dtb"); with ``policy="linux-generic"`` it also returns 2 and keeps
        ``[0x3000, 0x3800)`` reserved as ``"initrd (partial page)"``.
        """
        with self._lock:
            self._check_range(start, end, "release")
            if policy not in POLICIES:
                raise UsageError(f"unknown release policy {policy!r} (choose from {', '.join(POLICIES)})")
            reserved = self.memblock.reserved
            gaps = reserved.gaps(start, end)
            if gaps:
                first, stop = gaps[0]
                raise NotReservedError(
                    f"release of [{start:#x}, {end:#x}): [{first:#x}, {stop:#x}) is not reserved"
                    f"{self._describe_pages(first, stop)}"
                )
            leases = [lease for lease in self._leases if lease.start < end and start < lease.end]
            for lease in leases:
                try:
                    lease.unmap()
                except BufferError:
                    raise lease.busy_error(start, end) from None
            # Nothing can fail from here on.
            removed = self.memblock.free(start, end)
            if policy == "linux-generic":
                self._keep_partial_pages(start, end, removed)
            lo = start >> PAGE_SHIFT
            hi = (end + PAGE_SIZE - 1) >> PAGE_SHIFT
            if reserved.intersects(lo << PAGE_SHIFT, (lo + 1) << PAGE_SHIFT):
                lo += 1
            if lo < hi and reserved.intersects((hi - 1) << PAGE_SHIFT, hi << PAGE_SHIFT):
                hi -= 1
            freed = max(0, hi - lo)
            self._nr_reserved -= freed
            if freed:
                self._buddy.add_free_range(lo, hi)
                if self.poison is not None:
                    self.memory.discard(lo << PAGE_SHIFT, freed << PAGE_SHIFT, self.poison)
            for lease in leases:
                lease.revoke()
                self._leases.remove(lease)
            if self._subscribers:
                names = ", ".join(dict.fromkeys(piece.name for piece in removed))
                self._emit("release", lo, freed, names)
            return freed

    def _keep_partial_pages(self, start: int, end: int, removed: list[Region[str]]) -> None:
        """Re-reserve the bytes of ``removed`` lying on pages not wholly inside ``[start, end)``."""
        edges = []
        if start % PAGE_SIZE:
            edges.append((start, min(end, align_up(start, PAGE_SIZE))))
        if end % PAGE_SIZE:
            edges.append((max(start, align_down(end, PAGE_SIZE)), end))
        for edge_start, edge_end in edges:
            for piece in removed:
                first, stop = max(piece.start, edge_start), min(piece.end, edge_end)
                if first < stop:
                    name = piece.name if piece.name.endswith(PARTIAL_SUFFIX) else piece.name + PARTIAL_SUFFIX
                    self.memblock.reserve(first, stop, name)

    def _describe_pages(self, start: int, end: int) -> str:
        """`` (allocated to 'x')`` or `` (free)`` for the first page of an unreserved byte range."""
        pfn = start >> PAGE_SHIFT
        block = self._allocated_block(pfn)
        if block is not None:
            return f" (allocated to {block[2]!r})"
        if self._buddy.find(pfn) is not None or pfn in self._pcp:
            return " (free)"
        return ""

    def reserved_regions(self) -> list[tuple[str, int, int]]:
        """Every reserved region as a :class:`~bootmem.mm.memblock.Region` ``(name, start, end)``, by
        address."""
        with self._lock:
            return list(self.memblock.reserved)

    # --- leases ---------------------------------------------------------------------------

    def lease(self, start: int, end: int, owner: str = "lease") -> Lease:
        """A lease on the wholly reserved bytes ``[start, end)`` (see :mod:`bootmem.mm.lease`).

        Raises :class:`InvalidRangeError` or :class:`NotReservedError`.
        """
        with self._lock:
            self._check_range(start, end, "lease")
            gaps = self.memblock.reserved.gaps(start, end)
            if gaps:
                raise NotReservedError(
                    f"lease {owner!r} of [{start:#x}, {end:#x}): [{gaps[0][0]:#x}, {gaps[0][1]:#x}) "
                    "is not reserved"
                )
            return self._open_lease(start, end, owner)

    # --- alloc and free -------------------------------------------------------------------

    def alloc(self, order: int = 0, owner: str = "anonymous") -> int:
        """Allocate a block of ``2**order`` pages; returns its first pfn (aligned to the block size).

        Raises :class:`OutOfMemoryError` (a ``MemoryError``) when no block of ``order`` is free,
        or once when armed by :meth:`fail_nth_alloc`.  The bytes are not cleared.  ``owner``
        tags the pages in :meth:`pages_by_owner`.
        """
        with self._lock:
            if self._fail_countdown:
                self._fail_countdown -= 1
                if not self._fail_countdown:
                    raise OutOfMemoryError(f"injected failure of order-{order} allocation for {owner!r}")
            pfn = self._pcp.pop() if order == 0 and self._pcp else self._alloc_slow(order, owner)
            self._allocated[pfn] = (order, owner)
            self._nr_allocated += 1 << order
            used = self._nr_allocated + self._nr_reserved
            if used > self._peak_used:
                self._peak_used = used
            if self._subscribers:
                self._emit("alloc", pfn, 1 << order, owner)
            return pfn

    def _alloc_slow(self, order: int, owner: str) -> int:
        if not isinstance(order, int) or not 0 <= order <= self.max_order:
            raise UsageError(f"order {order!r} is not in 0..{self.max_order}")
        buddy = self._buddy
        if order == 0:
            refill = min(PCP_BATCH, buddy.nr_free)
            if refill:
                pcp = self._pcp
                alloc_block = buddy.alloc_block
                for _ in range(refill):
                    pcp.append(alloc_block(0))
                pcp.reverse()  # the first page taken is handed out first
                return pcp.pop()
        else:
            try:
                return buddy.alloc_block(order)
            except OutOfMemoryError:
                self._drain_pcp()
                try:
                    return buddy.alloc_block(order)
                except OutOfMemoryError:
                    pass
        raise OutOfMemoryError(
            f"out of memory: order-{order} allocation for {owner!r} failed, "
            f"{buddy.nr_free + len(self._pcp)} pages free"
        )

    def alloc_bulk(self, count: int, owner: str = "anonymous") -> list[tuple[int, int]]:
        """Allocate ``count`` order-0 pages at once (Linux's ``alloc_pages_bulk``); returns them as
        runs of consecutive frames ``(pfn, npages)``, in the order they were taken.

        Each page is an order-0 allocation of its own, as if by ``alloc(0, owner)``: ``free(pfn,
        0)`` gives back any one of them, and an armed :meth:`fail_nth_alloc` fails the same page it
        would fail in ``count`` calls of :meth:`alloc`.  Pages come from the largest free blocks
        that fit once the order-0 hot cache is used up, so a run is as long as the free lists
        allow.  Subscribers see one ``alloc`` event per run.

        When the pages run out (or the injected failure hits) part way, the pages already taken
        stay allocated and :class:`OutOfMemoryError` is raised with them in its ``runs``
        attribute: the caller owns them.  ``count`` 0 returns ``[]``.

        >>> pa = PageAllocator(base=0, size=8 * PAGE_SIZE, max_order=3)
        >>> pa.alloc_bulk(5), pa.alloc_bulk(3)
        ([(0, 5)], [(6, 2), (5, 1)])
        """
        if not isinstance(count, int) or count < 0:
            raise UsageError(f"alloc_bulk of {count!r} pages")
        with self._lock:
            countdown = self._fail_countdown
            want = count
            if countdown:
                want = min(count, countdown - 1)
                self._fail_countdown = countdown - count if countdown > count else 0
            # The hot cache first, as alloc(0) would, then whole blocks from the buddy lists.
            pcp = self._pcp
            if pcp:
                taken = [(pcp.pop(), 0) for _ in range(min(want, len(pcp)))]
                taken += self._buddy.alloc_pages(want - len(taken))
            else:
                taken = self._buddy.alloc_pages(want)
            runs: list[tuple[int, int]] = []
            got = 0
            for pfn, order in taken:
                npages = 1 << order
                if runs and runs[-1][0] + runs[-1][1] == pfn:
                    runs[-1] = (runs[-1][0], runs[-1][1] + npages)
                else:
                    runs.append((pfn, npages))
                got += npages
            allocated = self._allocated
            entry = (0, owner)
            for pfn, npages in runs:
                allocated.update(dict.fromkeys(range(pfn, pfn + npages), entry))
            self._nr_allocated += got
            used = self._nr_allocated + self._nr_reserved
            if used > self._peak_used:
                self._peak_used = used
            if self._subscribers:
                for pfn, npages in runs:
                    self._emit("alloc", pfn, npages, owner)
            if got < count:
                if countdown and got == want:
                    message = f"injected failure of page {got + 1} of a bulk allocation for {owner!r}"
                else:
                    if countdown:
                        # As count calls of alloc(): the one that failed counts, no later one.
                        self._fail_countdown = countdown - got - 1
                    message = (
                        f"out of memory: bulk allocation of {count} pages for {owner!r} got {got}, "
                        f"{self._buddy.nr_free + len(pcp)} pages free"
                    )
                error = OutOfMemoryError(message)
                error.runs = runs
                raise error
            return runs

    def free(self, pfn: int, order: int = 0) -> None:
        """Give back the block ``(pfn, order)`` that :meth:`alloc` returned.

        Raises :class:`DoubleFreeError` for a page that is already free and
        :class:`InvalidFreeError` for a pfn outside RAM, misaligned, reserved, never allocated or
        allocated at another order.
        """
        with self._lock:
            entry = self._allocated.get(pfn)
            if entry is None or entry[0] != order:
                raise self._free_error(pfn, order, entry)
            del self._allocated[pfn]
            self._nr_allocated -= 1 << order
            if order == 0:
                pcp = self._pcp
                pcp.append(pfn)
                if len(pcp) > PCP_HIGH:
                    free_block = self._buddy.free_block
                    for cold in pcp[:PCP_BATCH]:
                        free_block(cold, 0)
                    del pcp[:PCP_BATCH]
            else:
                self._buddy.free_block(pfn, order)
            if self._subscribers:
                self._emit("free", pfn, 1 << order, entry[1])

    def _free_error(self, pfn: int, order: int, entry: tuple[int, str] | None) -> InvalidFreeError:
        """The specific error for a ``free(pfn, order)`` that does not match an allocation."""
        if not isinstance(pfn, int) or not isinstance(order, int) or not 0 <= order <= self.max_order:
            return InvalidFreeError(f"free of pfn {pfn!r} with invalid order {order!r}")
        addr = pfn << PAGE_SHIFT
        what = f"free of pfn {pfn:#x} (address {addr:#x}) order {order}"
        if not self._first_pfn <= pfn < self._end_pfn:
            return InvalidFreeError(f"{what}: outside RAM [{self.base:#x}, {self.end:#x})")
        if pfn & ((1 << order) - 1):
            return InvalidFreeError(f"{what}: not aligned to {PAGE_SIZE << order:#x}")
        if entry is not None:
            return InvalidFreeError(f"{what}: block was allocated at order {entry[0]}")
        block = self._allocated_block(pfn)
        if block is not None:
            return InvalidFreeError(
                f"{what}: inside block pfn {block[0]:#x} order {block[1]} allocated to {block[2]!r}"
            )
        owner = self._reserved_owner(pfn)
        if owner is not None:
            return InvalidFreeError(f"{what}: page is reserved by {owner!r}")
        if self._buddy.find(pfn) is not None or pfn in self._pcp:
            return DoubleFreeError(f"{what}: page is already free")
        return InvalidFreeError(f"{what}: was never allocated")  # pragma: no cover - pages are one of three

    def fail_nth_alloc(self, k: int | None) -> None:
        """Make the ``k``-th :meth:`alloc` from now (1-based) raise :class:`OutOfMemoryError`, once.

        Linux's ``fail_page_alloc`` in miniature; ``None`` or 0 disarms.
        """
        if k is not None and k < 0:
            raise UsageError(f"fail_nth_alloc({k}): k must be positive")
        with self._lock:
            self._fail_countdown = k or 0

    # --- pages ----------------------------------------------------------------------------

    def page_view(self, pfn: int, npages: int = 1) -> memoryview:
        """A writable zero-copy window onto the allocated pages ``[pfn, pfn + npages)``.

        Every page must be allocated (any blocks, any owners), else :class:`InvalidRangeError`.
        The caller releases the view when done.
        """
        with self._lock:
            if npages < 1:
                raise InvalidRangeError(f"page_view of {npages} pages at pfn {pfn:#x}")
            allocated = self._allocated
            entry = allocated.get(pfn)
            if (entry is None or (1 << entry[0]) < npages) and not all(
                map(allocated.__contains__, range(pfn, pfn + npages))
            ):
                page = pfn
                while page < pfn + npages:
                    block = self._allocated_block(page)
                    if block is None:
                        raise InvalidRangeError(
                            f"page_view of pfn {pfn:#x} (+{npages}): page {page << PAGE_SHIFT:#x} "
                            "is not allocated"
                        )
                    page = block[0] + (1 << block[1])
            return self.memory.view(pfn << PAGE_SHIFT, npages << PAGE_SHIFT)

    # --- accounting ---------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Page counts ``{"total", "free", "allocated", "reserved"}``; total is the sum of the others."""
        with self._lock:
            free = self._buddy.nr_free + len(self._pcp)
            total = self.total_pages
            return {
                "total": total,
                "free": free,
                "allocated": self._nr_allocated,
                "reserved": total - free - self._nr_allocated,
            }

    def _reserved_pages_by_name(self) -> dict[str, int]:
        """Reserved pages per region name; a page touched by several regions counts for the lowest."""
        counts: dict[str, int] = {}
        counted_to = -1  # pages below this (exclusive of it) are counted
        for region in self.memblock.reserved:
            first = max(region.start >> PAGE_SHIFT, counted_to)
            stop = (region.end + PAGE_SIZE - 1) >> PAGE_SHIFT
            if stop > first:
                counts[region.name] = counts.get(region.name, 0) + stop - first
                counted_to = stop
        return counts

    def pages_by_owner(self) -> dict[str, int]:
        """Allocated pages per owner tag, reserved pages per reservation name, and ``"free"``.

        A tag used both as an owner and as a reservation name sums both.  The values add up to
        ``total_pages``.
        """
        with self._lock:
            counts: dict[str, int] = {}
            for order, owner in self._allocated.values():
                counts[owner] = counts.get(owner, 0) + (1 << order)
            for name, pages in self._reserved_pages_by_name().items():
                counts[name] = counts.get(name, 0) + pages
            counts["free"] = counts.get("free", 0) + self._buddy.nr_free + len(self._pcp)
            return counts

    def check_invariants(self) -> None:
        """Raise :class:`InvariantError` naming the first violation found.

        Checks: reserved regions sorted, disjoint, merged and inside RAM; free blocks aligned,
        disjoint and maximally coalesced; allocated blocks aligned; every page inside RAM exactly
        one of free, allocated, reserved; the counters agree.  Drains the order-0 hot cache.
        """
        with self._lock:
            self._drain_pcp()
            reserved = self.memblock.reserved
            problem = reserved.check()
            if problem is not None:
                raise InvariantError(f"reserved list: {problem}")
            self._buddy.check()
            spans: list[tuple[int, int, str]] = []
            for pfn, order in self._buddy.blocks():
                spans.append((pfn, pfn + (1 << order), f"free block pfn {pfn:#x} order {order}"))
            allocated = 0
            for pfn, (order, owner) in self._allocated.items():
                if pfn & ((1 << order) - 1):
                    raise InvariantError(f"allocated block pfn {pfn:#x} is not aligned to its order {order}")
                spans.append((pfn, pfn + (1 << order), f"block pfn {pfn:#x} order {order} of {owner!r}"))
                allocated += 1 << order
            if allocated != self._nr_allocated:
                raise InvariantError(
                    f"allocated blocks hold {allocated} pages, counter says {self._nr_allocated}"
                )
            if self._peak_used < allocated + self._nr_reserved:
                raise InvariantError(f"peak use {self._peak_used} pages is below the use now")
            # One page of slack either side, so that a region outside RAM shows up below.
            for first, stop in _page_runs(list(reserved), self._first_pfn - 1, self._end_pfn + 1):
                spans.append(
                    (first, stop, f"reserved pages [{first << PAGE_SHIFT:#x}, {stop << PAGE_SHIFT:#x})")
                )
            spans.sort()
            covered = 0
            previous_end, previous_what = self._first_pfn, "start of RAM"
            for first, stop, what in spans:
                if first < self._first_pfn or stop > self._end_pfn:
                    raise InvariantError(f"{what} lies outside RAM [{self.base:#x}, {self.end:#x})")
                if first < previous_end:
                    raise InvariantError(f"{what} overlaps {previous_what}")
                if first > previous_end:
                    raise InvariantError(
                        f"pages [{previous_end << PAGE_SHIFT:#x}, {first << PAGE_SHIFT:#x}) are neither "
                        "free, allocated nor reserved"
                    )
                covered += stop - first
                previous_end, previous_what = stop, what
            if previous_end != self._end_pfn:
                raise InvariantError(
                    f"pages [{previous_end << PAGE_SHIFT:#x}, {self.end:#x}) are neither free, "
                    "allocated nor reserved"
                )
            stats = self.stats()
            reserved_pages = covered - allocated - self._buddy.nr_free
            if stats["reserved"] != reserved_pages or self._nr_reserved != reserved_pages:
                raise InvariantError(
                    f"reserved regions touch {reserved_pages} pages, counters say {stats['reserved']} "
                    f"and {self._nr_reserved}"
                )
            for lease in self._leases:
                if lease.closed or not reserved.covers(lease.start, lease.end):
                    raise InvariantError(f"{lease!r} is registered but its range is not wholly reserved")

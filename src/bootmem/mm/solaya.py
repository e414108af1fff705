"""Solaya's page allocator (``MetadataPageAllocator``, crates/mm/src/page_allocator.rs), with the
``release_reserved`` Solaya plans to add.

Solaya's heap runs from the end of the kernel image (``__start_heap``) to the end of RAM.  Its
first ``heap_pages = heap_size // (PAGE_SIZE + 1)`` bytes are the metadata, one status byte per
page - :data:`FREE`, :data:`USED` or :data:`LAST` (the last page of an allocation) - and page ``i``
of the heap lies at ``pages_start + i * PAGE_SIZE``, ``pages_start`` being the first page
boundary after the metadata.  Bytes between the metadata and ``pages_start``, and the tail of
RAM past the last heap page, are used by nothing.

* ``alloc_pages(n)`` is first fit: the lowest index with ``n`` consecutive free pages; the pages
  are zeroed and marked ``USED .. USED, LAST``.
* ``dealloc(pfn)`` frees from that page up to and including the next ``LAST``; a page that is
  already free is Solaya's "Double-free detected" assertion, here :class:`DoubleFreeError`.
* ``reserve`` marks the pages a byte range touches ``USED .. LAST`` without zeroing, after
  asserting they are all free ("Reserved area should be free"): two reservations sharing a page
  raise :class:`ReservedConflictError`, as Solaya panics at boot.
* ``release_reserved`` is the planned API: under the allocator's lock, it refuses while a lease's
  view of the range is alive (:class:`RegionBusyError`) and marks the reservation's pages free.

Solaya keeps nothing but the status bytes.  The model also remembers, for reports and checks,
each allocation's owner tag and each reservation's name and byte range; the status bytes alone
decide every allocation.  The metadata itself lives in host memory (a ``bytearray``), not in the
modelled RAM: its bytes ``[heap_start, pages_start)`` are shown as the reservation
``"page metadata"``.

>>> sa = SolayaAllocator(base=0x8000_0000, size=0x42000, heap_start=0x8000_1000)
>>> sa.heap_pages, hex(sa.pages_start)
(64, '0x80002000')
>>> sa.reserve(0x8000_3800, 0x8000_5100, name="initrd")  # touches heap pages 1, 2 and 3
>>> pfn = sa.alloc_pages(2)  # first fit: page 0 is free, but not pages 0 and 1
>>> hex(pfn << 12), sa.status(pfn), sa.status(pfn + 1)
('0x80006000', 'used', 'last')
>>> sa.release_reserved(0x8000_3800, 0x8000_5100)
3
>>> hex(sa.alloc_pages(3) << 12)  # the hole the initrd left is the first fit now
'0x80002000'
"""

from __future__ import annotations

import time
from typing import Final

import numpy as np

from bootmem.errors import (
    AllocatorError,
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
from bootmem.mm.events import AllocatorEvent, Subscriber
from bootmem.mm.lease import Lease
from bootmem.units import PAGE_SHIFT, PAGE_SIZE, align_up

# enum PageStatus { Free, Used, Last } is #[repr(u8)]: these are its bytes.
FREE: Final = 0
USED: Final = 1
LAST: Final = 2
_NAMES: Final = ("free", "used", "last")

#: The names of the parts of RAM the allocator does not hand out, in :meth:`reserved_regions`.
METADATA: Final = "page metadata"
UNUSED_TAIL: Final = "(past the last heap page)"


class SolayaAllocator(AllocatorBase):
    """Solaya's first-fit page allocator over RAM ``[base, base + size)``, heap from ``heap_start``.

    ``base``, ``size`` and ``heap_start`` are page aligned and ``base <= heap_start < base + size``
    (Solaya's heap ends where RAM ends).  RAM below ``heap_start`` is reserved as
    ``below_heap`` (Solaya: the kernel image).  ``poison`` is the byte released reserved
    memory reads as; Solaya writes nothing (``None``) and zeroes pages when it allocates them.
    Thread-safe, one lock (Solaya's ``Spinlock<MetadataPageAllocator>``).
    """

    def __init__(
        self,
        base: int,
        size: int,
        *,
        heap_start: int | None = None,
        below_heap: str = "Kernel image",
        poison: int | None = None,
    ) -> None:
        heap_start = base if heap_start is None else heap_start
        if base % PAGE_SIZE or size % PAGE_SIZE or size <= 0 or heap_start % PAGE_SIZE:
            raise UsageError(f"RAM {base:#x}+{size:#x} and heap start {heap_start:#x} must be whole pages")
        if not base <= heap_start < base + size:
            raise UsageError(f"heap start {heap_start:#x} is not inside RAM [{base:#x}, {base + size:#x})")
        if poison is not None and not 0 <= poison <= 0xFF:
            raise UsageError(f"poison byte {poison:#x} is not in 0..0xff")
        super().__init__(base, size)
        self.poison = poison
        self.heap_start = heap_start
        heap_size = self.end - heap_start
        # MetadataPageAllocator::init: one byte per page, then the page-aligned pages.
        self.heap_pages = heap_size // (PAGE_SIZE + 1)
        self.pages_start = align_up(heap_start + self.heap_pages, PAGE_SIZE)
        if self.pages_start + self.heap_pages * PAGE_SIZE > self.end:
            # Solaya: assert!(metadata.len() <= heap.len())
            raise AllocatorError(
                f"heap [{heap_start:#x}, {self.end:#x}): {self.heap_pages} pages of metadata leave "
                f"fewer than {self.heap_pages} pages after {self.pages_start:#x}"
            )
        self.pages_end = self.pages_start + self.heap_pages * PAGE_SIZE
        self._first_pfn = self.pages_start >> PAGE_SHIFT
        self._status = bytearray(self.heap_pages)
        self._array = np.frombuffer(self._status, dtype=np.uint8)
        self._hint = 0  # every page below this index is in use: where first fit starts looking
        # The model's bookkeeping, by heap index of the first page: Solaya has only the bytes.
        self._allocs: dict[int, tuple[int, str]] = {}  # index -> (pages, owner)
        self._reserved: dict[int, tuple[int, str, int, int]] = {}  # index -> (pages, name, start, end)
        self._fixed: list[tuple[str, int, int]] = []  # RAM that is never heap pages
        if heap_start > base:
            self._fixed.append((below_heap, base, heap_start))
        if self.pages_start > heap_start:
            self._fixed.append((METADATA, heap_start, self.pages_start))
        if self.pages_end < self.end:
            self._fixed.append((UNUSED_TAIL, self.pages_end, self.end))
        self._fixed_pages = self.total_pages - self.heap_pages
        self._nr_allocated = 0
        self._nr_reserved = 0
        self._peak_used = self._fixed_pages

    def __repr__(self) -> str:
        return (
            f"SolayaAllocator([{self.base:#x}, {self.end:#x}), heap {self.heap_pages} pages "
            f"from {self.pages_start:#x})"
        )

    # --- figures ----------------------------------------------------------------------------

    @property
    def total_pages(self) -> int:
        """Pages of RAM, heap or not (Solaya's ``total_heap_pages()`` is :attr:`heap_pages`)."""
        return self.size >> PAGE_SHIFT

    def used_heap_pages(self) -> int:
        """Solaya's ``used_heap_pages()``: heap pages whose status is not free."""
        with self._lock:
            return self.heap_pages - self._status.count(FREE)

    def free_pages_in(self, start: int, end: int) -> int:
        """Free heap pages whose first byte lies in ``[start, end)``."""
        lo = max(0, -(-(start - self.pages_start) // PAGE_SIZE))
        hi = min(self.heap_pages, max(0, -(-(end - self.pages_start) // PAGE_SIZE)))
        with self._lock:
            return self._status.count(FREE, lo, hi) if lo < hi else 0

    def largest_free_run(self) -> int:
        """The most consecutive free heap pages: the largest ``alloc_pages(n)`` that can succeed."""
        with self._lock:
            free = np.concatenate(([0], (self._array == FREE).view(np.int8), [0]))
            edges = np.flatnonzero(np.diff(free))
            return int((edges[1::2] - edges[::2]).max()) if edges.size else 0

    def status(self, pfn: int) -> str:
        """``"free"``, ``"used"`` or ``"last"``: the status byte of heap page ``pfn``."""
        return _NAMES[self._status[self._index(pfn, "status")]]

    def _index(self, pfn: int, what: str) -> int:
        index = pfn - self._first_pfn
        if not isinstance(pfn, int) or not 0 <= index < self.heap_pages:
            # Solaya: page_pointer_to_page_idx asserts the pointer lies in the heap's pages.
            shown = f"{pfn:#x}" if isinstance(pfn, int) else repr(pfn)
            raise InvalidFreeError(
                f"{what} of pfn {shown}: not a heap page [{self.pages_start:#x}, {self.pages_end:#x})"
            )
        return index

    # --- events -----------------------------------------------------------------------------

    def _greet(self, callback: Subscriber) -> None:
        """One ``reserve`` event per part of RAM that is never heap pages (below the heap, the
        metadata, the tail), so that a new subscriber's counts start from the truth."""
        for name, start, end in self._fixed:
            pages = (align_up(end, PAGE_SIZE) - start) >> PAGE_SHIFT
            callback(AllocatorEvent(time.perf_counter(), "reserve", start >> PAGE_SHIFT, pages, name))

    def _note_use(self) -> None:
        used = self._fixed_pages + self._nr_allocated + self._nr_reserved
        if used > self._peak_used:
            self._peak_used = used

    # --- reserve and release ------------------------------------------------------------------

    def _page_span(self, start: int, end: int, what: str) -> tuple[int, int]:
        """Heap indices ``[lo, hi)`` of the pages ``[start, end)`` touches (Solaya's
        ``range_to_start_aligned_and_number_of_pages``); :class:`InvalidRangeError` outside them."""
        if end <= start:
            raise InvalidRangeError(f"{what} of empty range [{start:#x}, {end:#x})")
        if start < self.pages_start or end > self.pages_end:
            raise InvalidRangeError(
                f"{what} of [{start:#x}, {end:#x}) outside the heap's pages "
                f"[{self.pages_start:#x}, {self.pages_end:#x})"
            )
        lo = (start >> PAGE_SHIFT) - self._first_pfn
        hi = ((end + PAGE_SIZE - 1) >> PAGE_SHIFT) - self._first_pfn
        return lo, hi

    def _holder(self, index: int) -> str:
        """Who holds heap page ``index``: `` (reserved by 'x')`` or `` (allocated to 'x')``, or ``""``."""
        for table, word in ((self._reserved, "reserved by"), (self._allocs, "allocated to")):
            for head, entry in table.items():
                if head <= index < head + entry[0]:
                    return f" ({word} {entry[1]!r})"
        return ""

    def reserve(self, start: int, end: int, name: str = "reserved") -> None:
        """Mark the pages ``[start, end)`` touches ``USED .. LAST`` under ``name``, without zeroing.

        Solaya's ``mark_pointer_range_as_used_without_initialize``: every page must be free, so a
        reservation sharing a page with another, or with an allocation, raises
        :class:`ReservedConflictError`.  A range outside the heap's pages raises
        :class:`InvalidRangeError` (Solaya: an assertion in ``page_pointer_to_page_idx``).
        """
        with self._lock:
            lo, hi = self._page_span(start, end, f"reserve {name!r}")
            window = self._array[lo:hi]
            busy = np.flatnonzero(window)
            if busy.size:
                index = lo + int(busy[0])
                raise ReservedConflictError(
                    f"reserve {name!r} [{start:#x}, {end:#x}): page "
                    f"{self.pages_start + index * PAGE_SIZE:#x} is not free{self._holder(index)} "
                    '(Solaya: "Reserved area should be free")'
                )
            self._mark(lo, hi - lo)
            self._reserved[lo] = (hi - lo, name, start, end)
            self._nr_reserved += hi - lo
            self._note_use()
            if self._subscribers:
                self._emit("reserve", self._first_pfn + lo, hi - lo, name)

    def _mark(self, index: int, pages: int) -> None:
        """Solaya's ``mark_range_as_used``: ``USED .. USED, LAST``."""
        status = self._status
        status[index : index + pages - 1] = bytes([USED]) * (pages - 1)
        status[index + pages - 1] = LAST
        if index <= self._hint:
            self._hint = index + pages

    def release_reserved(self, start: int, end: int) -> int:
        """Give back the reservation whose pages ``[start, end)`` touches; returns the pages freed.

        The planned ``release_reserved(range)``: the range must touch exactly the pages of one
        reservation (:class:`NotReservedError` otherwise, naming what holds them).  Leases on the
        range are closed first; while a view of one is alive :class:`RegionBusyError` is raised
        and nothing changes.  The pages become ``FREE`` and are the first fit of the next
        allocation that fits in them.
        """
        with self._lock:
            lo, hi = self._page_span(start, end, "release")
            entry = self._reserved.get(lo)
            if entry is None or entry[0] != hi - lo:
                status = self._status[lo]
                holder = self._holder(lo) or f" ({_NAMES[status]})"
                raise NotReservedError(
                    f"release of [{start:#x}, {end:#x}): pages [{self.pages_start + lo * PAGE_SIZE:#x}, "
                    f"{self.pages_start + hi * PAGE_SIZE:#x}) are not one reservation{holder}"
                )
            pages, name, r_start, r_end = entry
            leases = [lease for lease in self._leases if lease.start < r_end and r_start < lease.end]
            for lease in leases:
                try:
                    lease.unmap()
                except BufferError:
                    raise lease.busy_error(start, end) from None
            # Nothing can fail from here on.
            self._status[lo:hi] = bytes(pages)
            del self._reserved[lo]
            self._nr_reserved -= pages
            self._hint = min(self._hint, lo)
            if self.poison is not None:
                self.memory.discard(self.pages_start + lo * PAGE_SIZE, pages * PAGE_SIZE, self.poison)
            for lease in leases:
                lease.revoke()
                self._leases.remove(lease)
            if self._subscribers:
                self._emit("release", self._first_pfn + lo, pages, name)
            return pages

    def reserved_regions(self) -> list[tuple[str, int, int]]:
        """Every reserved byte range as ``(name, start, end)``, by address, the RAM that is never
        heap pages included (``below_heap``, :data:`METADATA`, :data:`UNUSED_TAIL`)."""
        with self._lock:
            regions = list(self._fixed)
            regions += [(name, start, end) for _pages, name, start, end in self._reserved.values()]
            return sorted(regions, key=lambda r: r[1])

    # --- leases -------------------------------------------------------------------------------

    def lease(self, start: int, end: int, owner: str = "lease") -> Lease:
        """A lease on ``[start, end)``, which must lie inside one reservation's bytes.

        Raises :class:`InvalidRangeError` or :class:`NotReservedError`.
        """
        with self._lock:
            lo, _hi = self._page_span(start, end, f"lease {owner!r}")
            reserved = self._reserved.values()
            inside = any(r_start <= start and end <= r_end for _p, _n, r_start, r_end in reserved)
            if not inside:
                raise NotReservedError(
                    f"lease {owner!r} of [{start:#x}, {end:#x}): not inside one reservation{self._holder(lo)}"
                )
            return self._open_lease(start, end, owner)

    # --- alloc and free ---------------------------------------------------------------------

    def _first_fit(self, pages: int) -> int | None:
        """The lowest heap index with ``pages`` consecutive free pages (Solaya's ``alloc`` search)."""
        status = self._status
        index = status.find(FREE if pages == 1 else bytes(pages), self._hint)
        return None if index < 0 else index

    def alloc_pages(self, pages: int, owner: str = "anonymous") -> int:
        """Solaya's ``alloc(n)``: the first fit of ``pages`` pages, zeroed; returns its first pfn.

        Raises :class:`UsageError` for ``pages < 1`` (Solaya: "Cannot allocate zero pages") and
        :class:`OutOfMemoryError` when no run of that many free pages exists.
        """
        if not isinstance(pages, int) or pages < 1:
            raise UsageError(f'allocation of {pages!r} pages (Solaya: "Cannot allocate zero pages")')
        with self._lock:
            index = self._first_fit(pages) if pages <= self.heap_pages else None
            if index is None:
                raise OutOfMemoryError(
                    f"out of memory: no run of {pages} free pages for {owner!r}, "
                    f"{self._status.count(FREE)} pages free"
                )
            self._mark(index, pages)
            self.memory.discard(self.pages_start + index * PAGE_SIZE, pages * PAGE_SIZE, 0)
            self._allocs[index] = (pages, owner)
            self._nr_allocated += pages
            self._note_use()
            pfn = self._first_pfn + index
            if self._subscribers:
                self._emit("alloc", pfn, pages, owner)
            return pfn

    def alloc(self, order: int = 0, owner: str = "anonymous") -> int:
        """``alloc_pages(2**order)``: Solaya's blocks are not aligned to their size."""
        if not isinstance(order, int) or not 0 <= order <= 30:
            raise UsageError(f"order {order!r} is not in 0..30")
        return self.alloc_pages(1 << order, owner)

    def alloc_bulk(self, count: int, owner: str = "anonymous") -> list[tuple[int, int]]:
        """``count`` single-page allocations, as ``count`` calls of ``alloc_pages(1)`` make them:
        the lowest ``count`` free pages, each its own allocation (status ``LAST``); returned as
        runs of consecutive frames ``(pfn, npages)``.

        When the pages run out, those taken stay allocated and :class:`OutOfMemoryError` carries
        them in ``runs``.
        """
        if not isinstance(count, int) or count < 0:
            raise UsageError(f"alloc_bulk of {count!r} pages")
        with self._lock:
            status, array = self._status, self._array
            runs: list[tuple[int, int]] = []
            got = 0
            index = self._hint
            while got < count:
                index = status.find(FREE, index)
                if index < 0:
                    break
                window = array[index : index + count - got]
                busy = np.flatnonzero(window)
                length = int(busy[0]) if busy.size else len(window)
                status[index : index + length] = bytes([LAST]) * length
                self.memory.discard(self.pages_start + index * PAGE_SIZE, length * PAGE_SIZE, 0)
                self._allocs.update(dict.fromkeys(range(index, index + length), (1, owner)))
                runs.append((self._first_pfn + index, length))
                got += length
                if index <= self._hint:
                    self._hint = index + length
                index += length
            self._nr_allocated += got
            self._note_use()
            if self._subscribers:
                for pfn, npages in runs:
                    self._emit("alloc", pfn, npages, owner)
            if got < count:
                error = OutOfMemoryError(
                    f"out of memory: bulk allocation of {count} pages for {owner!r} got {got}, 0 pages free"
                )
                error.runs = runs
                raise error
            return runs

    def dealloc(self, pfn: int) -> int:
        """Solaya's ``dealloc``: free from page ``pfn`` up to and including the next ``LAST``;
        returns the number of pages freed.

        As in Solaya, nothing checks that ``pfn`` starts an allocation: from the middle of one it
        frees the tail, and on a reservation it frees the reservation.  A free page raises
        :class:`DoubleFreeError` (Solaya: "Double-free detected").
        """
        with self._lock:
            index = self._index(pfn, "dealloc")
            status = self._status
            if status[index] == FREE:
                raise DoubleFreeError(
                    f"dealloc of pfn {pfn:#x} (address {pfn << PAGE_SHIFT:#x}): page is already free "
                    '(Solaya: "Double-free detected")'
                )
            last = status.find(LAST, index)
            if last < 0:  # a run whose tail a dealloc from its middle took, at the top of the heap
                raise InvalidFreeError(
                    f"dealloc of pfn {pfn:#x}: no LAST page after it (Solaya: index out of bounds)"
                )
            pages = last + 1 - index
            owner = self._forget(index, last + 1)
            status[index : last + 1] = bytes(pages)
            self._hint = min(self._hint, index)
            if self._subscribers:
                self._emit("free", pfn, pages, owner)
            return pages

    def _forget(self, lo: int, hi: int) -> str:
        """Drop the bookkeeping of heap pages ``[lo, hi)`` about to become free; the first owner."""
        owner = ""
        entry = self._allocs.get(lo)
        if entry is not None and entry[0] == hi - lo:  # the usual case: one whole allocation
            del self._allocs[lo]
            self._nr_allocated -= hi - lo
            return entry[1]
        for table in (self._allocs, self._reserved):
            for head in [h for h, e in table.items() if h < hi and lo < h + e[0]]:
                pages = table[head][0]
                kept = max(0, lo - head)
                freed = min(hi, head + pages) - max(lo, head)
                name = table[head][1]
                owner = owner or name
                if table is self._allocs:
                    self._nr_allocated -= freed
                    allocation = self._allocs.pop(head)
                    if kept:
                        self._allocs[head] = (kept, allocation[1])
                else:
                    self._nr_reserved -= freed
                    _pages, name_, r_start, _r_end = self._reserved.pop(head)
                    if kept:
                        self._reserved[head] = (kept, name_, r_start, self.pages_start + lo * PAGE_SIZE)
        return owner or "anonymous"

    def free(self, pfn: int, order: int = 0) -> None:
        """Give back the allocation ``alloc(order)`` returned at ``pfn``, checked first.

        Stricter than :meth:`dealloc`: :class:`InvalidFreeError` unless ``pfn`` starts an
        allocation of ``2**order`` pages (never a reservation), :class:`DoubleFreeError` for a
        free page.
        """
        with self._lock:
            index = self._index(pfn, "free")
            entry = self._allocs.get(index)
            if entry is None or entry[0] != 1 << order:
                what = f"free of pfn {pfn:#x} order {order}"
                if self._status[index] == FREE:
                    raise DoubleFreeError(f"{what}: page is already free")
                holder = self._holder(index)
                raise InvalidFreeError(f"{what}: not the start of a {1 << order}-page allocation{holder}")
            self.dealloc(pfn)

    # --- pages ----------------------------------------------------------------------------

    def page_view(self, pfn: int, npages: int = 1) -> memoryview:
        """A writable window onto the heap pages ``[pfn, pfn + npages)``, which must all be
        allocated (not free, not reserved), else :class:`InvalidRangeError`."""
        with self._lock:
            index = pfn - self._first_pfn
            if npages < 1 or index < 0 or index + npages > self.heap_pages:
                raise InvalidRangeError(f"page_view of pfn {pfn:#x} (+{npages}): not heap pages")
            if not self._array[index : index + npages].all() or any(
                head < index + npages and index < head + entry[0] for head, entry in self._reserved.items()
            ):
                raise InvalidRangeError(f"page_view of pfn {pfn:#x} (+{npages}): a page is not allocated")
            return self.memory.view(pfn << PAGE_SHIFT, npages << PAGE_SHIFT)

    # --- accounting ---------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Page counts of RAM ``{"total", "free", "allocated", "reserved"}``; ``reserved`` counts
        the RAM outside the heap's pages too."""
        with self._lock:
            free = self._status.count(FREE)
            return {
                "total": self.total_pages,
                "free": free,
                "allocated": self._nr_allocated,
                "reserved": self.total_pages - free - self._nr_allocated,
            }

    def pages_by_owner(self) -> dict[str, int]:
        """Allocated pages per owner tag, reserved pages per name, and ``"free"``; sums to
        :attr:`total_pages`."""
        with self._lock:
            counts: dict[str, int] = {}
            for pages, owner in self._allocs.values():
                counts[owner] = counts.get(owner, 0) + pages
            for pages, name, _start, _end in self._reserved.values():
                counts[name] = counts.get(name, 0) + pages
            for name, start, end in self._fixed:
                pages = (align_up(end, PAGE_SIZE) - start) >> PAGE_SHIFT
                counts[name] = counts.get(name, 0) + pages
            counts["free"] = counts.get("free", 0) + self._status.count(FREE)
            return counts

    def check_invariants(self) -> None:
        """Raise :class:`InvariantError` naming the first violation found.

        Checks: each allocation and reservation is a run ``USED .. USED, LAST`` of its length
        (or ``USED .. USED`` once a :meth:`dealloc` from its middle took its tail, as in Solaya),
        they do not overlap, every non-free page is in one of them, the counters agree, every
        page below the first-fit hint is in use, and every lease lies in a reservation.
        """
        with self._lock:
            status = self._status
            covered = np.zeros(self.heap_pages, dtype=np.uint8)
            allocated = reserved = 0
            for table, what in ((self._allocs, "allocation"), (self._reserved, "reservation")):
                for head, entry in table.items():
                    pages = entry[0]
                    run = status[head : head + pages]
                    if len(run) != pages or run[:-1].count(USED) != pages - 1 or run[-1] == FREE:
                        raise InvariantError(f"{what} {entry[1]!r} at heap page {head} is not USED..LAST")
                    if covered[head : head + pages].any():
                        raise InvariantError(f"{what} {entry[1]!r} at heap page {head} overlaps another")
                    covered[head : head + pages] = 1
                    if table is self._allocs:
                        allocated += pages
                    else:
                        reserved += pages
            stray = np.flatnonzero((self._array != FREE) != covered.astype(bool))
            if stray.size:
                index = int(stray[0])
                raise InvariantError(
                    f"heap page {index} is {_NAMES[status[index]]} but "
                    f"{'in' if covered[index] else 'in no'} allocation or reservation"
                )
            if allocated != self._nr_allocated or reserved != self._nr_reserved:
                raise InvariantError(
                    f"runs hold {allocated} allocated and {reserved} reserved pages, counters say "
                    f"{self._nr_allocated} and {self._nr_reserved}"
                )
            if status.find(FREE, 0, self._hint) >= 0:
                raise InvariantError(f"a free page lies below the first-fit hint {self._hint}")
            if self._peak_used < self._fixed_pages + allocated + reserved:
                raise InvariantError(f"peak use {self._peak_used} pages is below the use now")
            for lease in self._leases:
                inside = any(s <= lease.start and lease.end <= e for _p, _n, s, e in self._reserved.values())
                if lease.closed or not inside:
                    raise InvariantError(f"{lease!r} is registered but does not lie in a reservation")

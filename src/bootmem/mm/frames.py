"""The frame-allocator protocol: what boot, the tmpfs and the reports need from a page allocator.

Two allocators implement it: :class:`~bootmem.mm.allocator.PageAllocator` (Linux's buddy
allocator with memblock reservations) and :class:`~bootmem.mm.solaya.SolayaAllocator` (Solaya's
first-fit allocator with one status byte per page).  Code typed against :class:`FrameAllocator`
runs on either.

Contract common to both:

* addresses are byte addresses, ranges half-open ``[start, end)``; a page frame number is
  ``address // PAGE_SIZE`` (absolute, not relative to RAM);
* every page of RAM ``[base, end)`` is exactly one of free, allocated, reserved, and
  ``stats()`` counts them (``total`` is the sum of the other three);
* ``reserve`` takes the pages a byte range touches out of use; ``release_reserved`` gives them
  back and returns how many reached the free state, refusing (:class:`RegionBusyError`) while a
  lease's view of the range is alive - the provenance rule of :mod:`bootmem.mm.lease`;
* ``alloc(order)`` returns the first pfn of ``2**order`` consecutive pages, ``free(pfn, order)``
  takes exactly such an allocation back; ``alloc_bulk(count)`` is ``count`` order-0
  allocations returned as runs ``(pfn, npages)``;
* every change is reported to subscribers as an :class:`~bootmem.mm.events.AllocatorEvent`;
* on any error nothing changes, and the error is one of :mod:`bootmem.errors`'
  :class:`~bootmem.errors.AllocatorError` family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from bootmem.mm.events import Subscriber
from bootmem.mm.lease import Lease
from bootmem.mm.ram import PhysicalMemory


@runtime_checkable
class FrameAllocator(Protocol):
    """A page-frame allocator over one bank of RAM ``[base, end)`` (see the module docstring)."""

    base: int
    end: int
    memory: PhysicalMemory

    @property
    def total_pages(self) -> int:
        """Pages of RAM ``[base, end)``, whatever their state."""
        ...

    @property
    def peak_used(self) -> int:
        """The most pages ever not free at once."""
        ...

    def subscribe(self, callback: Subscriber) -> Callable[[], None]: ...

    def reserve(self, start: int, end: int, name: str = "reserved") -> None: ...

    def release_reserved(self, start: int, end: int) -> int: ...

    def reserved_regions(self) -> list[tuple[str, int, int]]: ...

    def lease(self, start: int, end: int, owner: str = "lease") -> Lease: ...

    def leases(self) -> list[Lease]: ...

    def alloc(self, order: int = 0, owner: str = "anonymous") -> int: ...

    def alloc_bulk(self, count: int, owner: str = "anonymous") -> list[tuple[int, int]]: ...

    def free(self, pfn: int, order: int = 0) -> None: ...

    def page_view(self, pfn: int, npages: int = 1) -> memoryview: ...

    def stats(self) -> dict[str, int]: ...

    def pages_by_owner(self) -> dict[str, int]: ...

    def check_invariants(self) -> None: ...

    def close(self) -> None: ...

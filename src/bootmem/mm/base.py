"""What every page allocator model keeps besides its own books.

Linux's buddy allocator (:class:`~bootmem.mm.allocator.PageAllocator`) and Solaya's first-fit
allocator (:class:`~bootmem.mm.solaya.SolayaAllocator`) decide differently which pages to hand
out, but both own one bank of RAM behind one lock, tell subscribers of every change
(:mod:`bootmem.mm.events`), hand out leases on reserved bytes (:mod:`bootmem.mm.lease`) and remember
their peak use.  :class:`AllocatorBase` holds that part once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Self

from bootmem.mm.events import AllocatorEvent, Operation, Subscriber
from bootmem.mm.lease import Lease
from bootmem.mm.ram import PhysicalMemory


class AllocatorBase:
    """RAM ``[base, base + size)``, one re-entrant lock, the event subscribers and the open leases.

    A subclass checks its arguments, calls ``super().__init__(base, size)``, takes :attr:`_lock`
    around every change, calls :meth:`_emit` after it (when :attr:`_subscribers` is not empty),
    keeps :attr:`_peak_used` up to date, and opens leases with :meth:`_open_lease` once it has
    checked the range is reserved.
    """

    def __init__(self, base: int, size: int) -> None:
        self.memory = PhysicalMemory(base, size)
        self.base = base
        self.size = size
        self.end = base + size
        self._peak_used = 0  # most pages ever not free at once
        self._leases: list[Lease] = []
        self._subscribers: tuple[Subscriber, ...] = ()
        self._lock = threading.RLock()

    @property
    def peak_used(self) -> int:
        """The most pages that were ever not free at once (allocated plus reserved), from creation on."""
        return self._peak_used

    # --- events -----------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every change from now on; returns the unsubscribe function."""
        with self._lock:
            self._subscribers = (*self._subscribers, callback)
            self._greet(callback)

        def unsubscribe() -> None:
            with self._lock:
                subscribers = list(self._subscribers)
                if callback in subscribers:
                    subscribers.remove(callback)
                self._subscribers = tuple(subscribers)

        return unsubscribe

    def _greet(self, callback: Subscriber) -> None:
        """The events a new subscriber receives first, so that its counts start from the truth."""

    def _emit(self, op: Operation, pfn: int, pages: int, owner: str) -> None:
        event = AllocatorEvent(time.perf_counter(), op, pfn, pages, owner)
        for callback in self._subscribers:
            callback(event)

    # --- leases -----------------------------------------------------------------------------

    def _open_lease(self, start: int, end: int, owner: str) -> Lease:
        """A lease on ``[start, end)``, which the caller has checked is reserved (lock held)."""
        lease = Lease(self.memory, start, end, owner, self._forget_lease)
        self._leases.append(lease)
        return lease

    def _forget_lease(self, lease: Lease) -> None:
        with self._lock:
            if lease in self._leases:
                self._leases.remove(lease)

    def leases(self) -> list[Lease]:
        """The open leases, oldest first."""
        with self._lock:
            return list(self._leases)

    # --- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the RAM's host resources; views and leases must have been dropped."""
        self.memory.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

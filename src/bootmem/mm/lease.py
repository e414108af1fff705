"""Leases: the only way to read or write reserved memory (DESIGN.md, "the provenance rule").

A :class:`Lease` covers a reserved byte range ``[start, end)``.  Its :attr:`Lease.view` is a
``memoryview`` window onto a dedicated ``mmap`` of RAM.  Python refuses to close an mmap while
any memoryview of it, or slice of one, is alive, and the page allocator closes the windows of
every lease on a range before releasing it; so a release while someone still holds the bytes
fails (:class:`~bootmem.errors.RegionBusyError`) instead of handing those frames out again.

>>> from bootmem.mm import PageAllocator
>>> pa = PageAllocator(base=0, size=1 << 20)
>>> pa.reserve(0x1000, 0x3000, name="initrd")
>>> with pa.lease(0x1000, 0x3000, owner="unpack") as lease:
...     lease.view[:4] = b"0707"
...     bytes(lease.view[:2])
b'07'
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Callable

from bootmem.errors import LeaseClosedError, RegionBusyError
from bootmem.mm.ram import PhysicalMemory
from bootmem.units import align_down, align_up


class Lease:
    """Read/write access to the reserved bytes ``[start, end)`` on behalf of ``owner``.

    Each access to :attr:`view` returns a fresh window; drop it (or ``release()`` it) when done.
    :meth:`close` ends the lease and raises :class:`RegionBusyError` while a window is alive.
    Obtain leases from :meth:`PageAllocator.lease`, not by calling this class.
    """

    def __init__(
        self,
        memory: PhysicalMemory,
        start: int,
        end: int,
        owner: str,
        on_close: Callable[[Lease], None] | None = None,
    ) -> None:
        self.memory = memory
        self.start = start
        self.end = end
        self.owner = owner
        self._on_close = on_close
        self._map: mmap.mmap | None = None
        self._delta = 0
        self._closed = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"Lease({self.owner!r}, [{self.start:#x}, {self.end:#x}), {state})"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def view(self) -> memoryview:
        """A writable window onto ``[start, end)``: index 0 is byte ``start``."""
        with self._lock:
            if self._closed:
                raise LeaseClosedError(f"lease {self.owner!r} on [{self.start:#x}, {self.end:#x}) is closed")
            if self._map is None:
                self._map, self._delta = self.memory.map_window(self.start, self.size)
            return memoryview(self._map)[self._delta : self._delta + self.size]

    def drop_pages(self, start: int, end: int) -> None:
        """Take the host pages that hold bytes of ``[start, end)`` (offsets into :attr:`view`)
        out of this process's mapping, so its resident memory shrinks; nothing else changes.

        The mapping is a shared one of the memory file (``madvise(MADV_DONTNEED)`` on it only
        removes page-table entries): the bytes stay in RAM, and a view or slice alive, or taken
        later, reads them unchanged, the pages faulting in again.  A no-op before the first
        :attr:`view` and on hosts without ``madvise``.
        """
        with self._lock:
            if self._map is None or not hasattr(self._map, "madvise"):
                return
            lo = align_down(self._delta + max(start, 0), mmap.PAGESIZE)
            hi = align_up(self._delta + min(end, self.size), mmap.PAGESIZE)
            if hi > lo:
                self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def busy_error(self, start: int, end: int) -> RegionBusyError:
        """The error for a release of ``[start, end)`` refused because of this lease."""
        return RegionBusyError(
            f"range [{start:#x}, {end:#x}) is busy: lease {self.owner!r} on "
            f"[{self.start:#x}, {self.end:#x}) still has a view or a slice of one alive"
        )

    def unmap(self) -> None:
        """Close the window's mapping; ``BufferError`` while a view or slice of it is alive.

        Harmless to an open lease: the next :attr:`view` maps the range again.
        """
        with self._lock:
            if self._map is not None:
                self._map.close()
                self._map = None

    def revoke(self) -> None:
        """Mark the lease closed without notifying its allocator (which is revoking it)."""
        with self._lock:
            self._closed = True

    def close(self) -> None:
        """End the lease; :class:`RegionBusyError` (and the lease stays open) while a view is alive."""
        if self._closed:
            return
        try:
            self.unmap()
        except BufferError:
            raise self.busy_error(self.start, self.end) from None
        self.revoke()
        if self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

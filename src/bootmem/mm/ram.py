"""The machine's RAM: one sparse shared-memory object.

:class:`PhysicalMemory` backs the byte range ``[base, base + size)`` with an anonymous memory
file (``memfd_create`` + ``ftruncate``), so modelling 1 TiB costs the host only the pages
actually touched.  Reads and writes take physical addresses; views are ``memoryview`` windows
onto ``mmap`` mappings of the file, so data is never copied on its way in or out.

Discarding (:meth:`PhysicalMemory.discard`) gives a range's host memory back (a hole is punched
in the file) and records that the range now reads as a fill byte.  The fill is written lazily,
the next time a read or a view of those bytes is taken; a write simply overrides it.  This is how
the page allocator poisons a gigabyte of released memory in microseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import threading
import weakref
from collections.abc import Callable

from bootmem.errors import InvalidRangeError
from bootmem.mm.memblock import RegionList
from bootmem.units import PAGE_SIZE, align_down, align_up, format_size

# fallocate(2) mode bits, from <linux/falloc.h>.
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

#: The largest RAM bootmem models: 1 TiB.  The memory file is sparse, but the buddy free lists
#: hold one entry per maximal block (4 MiB), about 25 MB of the host's memory per TiB.
MAX_RAM_SIZE = 1 << 40

#: Views are slices of mappings of this many bytes of the memory file, each made when first
#: needed (Linux's sparsemem section on x86-64, SECTION_SIZE_BITS 27): a machine of 1 TiB costs
#: the host address space for the sections it touches, not for all of its RAM.
SECTION_SIZE = 128 << 20

_HOST_PAGE = mmap.ALLOCATIONGRANULARITY
_FILL_CHUNK = 1 << 20

_fallocate: Callable[[int, int, int, int], int] | None
try:
    _fallocate = ctypes.CDLL(None, use_errno=True).fallocate
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _fallocate.restype = ctypes.c_int
except (OSError, AttributeError):  # pragma: no cover - non-glibc hosts
    _fallocate = None


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Deallocate ``[offset, offset + length)`` of file ``fd``, keeping its size; the bytes read as 0.

    Returns whether the host supported it (``fallocate(fd, PUNCH_HOLE | KEEP_SIZE, ...)``).
    """
    if _fallocate is None or length <= 0:
        return False
    return _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) == 0


def _close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


class PhysicalMemory:
    """RAM for the physical byte range ``[base, base + size)``; every byte starts as 0.

    ``base`` and ``size`` must be multiples of :data:`PAGE_SIZE`, ``size`` at most
    :data:`MAX_RAM_SIZE` and the range below 2^64 (else :class:`InvalidRangeError`).  Every method
    takes physical addresses and raises :class:`InvalidRangeError` (with hex addresses) for a range
    not inside RAM.  Thread-safe.

    >>> ram = PhysicalMemory(0x8000_0000, 1 << 20)
    >>> ram.write(0x8000_0010, b"bootmem")
    >>> ram.read(0x8000_0010, 4)
    b'boot'
    >>> ram.discard(0x8000_0000, 4096, fill=0xCC)
    >>> ram.read(0x8000_0010, 2)
    b'\\xcc\\xcc'
    """

    def __init__(self, base: int, size: int, *, name: str = "bootmem-ram") -> None:
        if base < 0 or size <= 0 or base % PAGE_SIZE or size % PAGE_SIZE:
            raise InvalidRangeError(
                f"RAM [{base:#x}, {base + size:#x}) must be non-empty and aligned to {PAGE_SIZE:#x}"
            )
        if size > MAX_RAM_SIZE or base + size > 1 << 64:
            raise InvalidRangeError(
                f"RAM [{base:#x}, {base + size:#x}) of {format_size(size)} cannot be modelled: "
                f"bootmem models at most {format_size(MAX_RAM_SIZE)} of RAM below 2^64"
            )
        self.base = base
        self.size = size
        self.end = base + size
        self._fd = os.memfd_create(name, os.MFD_CLOEXEC)
        self._finalizer = weakref.finalize(self, _close_fd, self._fd)
        os.ftruncate(self._fd, size)
        self._sections: dict[int, mmap.mmap] = {}  # file offset // SECTION_SIZE -> its mapping
        self._pending: RegionList[int] = RegionList()  # bytes that read as a fill not yet written
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PhysicalMemory([{self.base:#x}, {self.end:#x}))"

    @property
    def fd(self) -> int:
        """The memory file's descriptor (owned by this object)."""
        return self._fd

    def close(self) -> None:
        """Drop the mappings and the memory file; views handed out must be released first."""
        with self._lock:
            sections = list(self._sections.values())
            self._sections.clear()
        for section in sections:
            section.close()
        self._finalizer()

    def __enter__(self) -> PhysicalMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- addressing ---------------------------------------------------------------------

    def _offset(self, addr: int, n: int) -> int:
        """The file offset of ``addr``, after checking that ``[addr, addr + n)`` lies in RAM."""
        if n < 0 or addr < self.base or addr + n > self.end:
            raise InvalidRangeError(
                f"range [{addr:#x}, {addr + n:#x}) is not inside RAM [{self.base:#x}, {self.end:#x})"
            )
        return addr - self.base

    # --- lazy fills ---------------------------------------------------------------------

    def _materialise(self, offset: int, n: int) -> None:
        """Write the pending fills that overlap file range ``[offset, offset + n)``."""
        if not self._pending or n == 0:
            return
        with self._lock:
            for piece in self._pending.remove(offset, offset + n):
                self._pwrite_fill(piece.start, piece.size, piece.name)

    def _pwrite_fill(self, offset: int, n: int, byte: int) -> None:
        chunk = bytes([byte]) * min(n, _FILL_CHUNK)
        while n > 0:
            step = min(n, len(chunk))
            self._pwrite_all(offset, memoryview(chunk)[:step])
            offset += step
            n -= step

    def _pwrite_all(self, offset: int, data: memoryview) -> None:
        while len(data):
            written = os.pwrite(self._fd, data, offset)
            data = data[written:]
            offset += written

    def pending_fills(self) -> list[tuple[int, int, int]]:
        """``(start, end, byte)`` for every range that reads as a fill not yet written, by address."""
        with self._lock:
            return [(r.start + self.base, r.end + self.base, r.name) for r in self._pending]

    # --- bytes ----------------------------------------------------------------------------

    def read(self, addr: int, n: int) -> bytes:
        """A copy of the ``n`` bytes at ``addr``."""
        offset = self._offset(addr, n)
        self._materialise(offset, n)
        chunks: list[bytes] = []
        while n > 0:
            chunk = os.pread(self._fd, n, offset)
            if not chunk:  # pragma: no cover - the file is never shorter than RAM
                raise InvalidRangeError(f"short read at {self.base + offset:#x}")
            chunks.append(chunk)
            n -= len(chunk)
            offset += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` at ``addr``; it overrides any pending fill of those bytes."""
        view = memoryview(data).cast("B")
        offset = self._offset(addr, len(view))
        if not len(view):
            return
        if self._pending:
            with self._lock:
                self._pending.remove(offset, offset + len(view))
        self._pwrite_all(offset, view)

    def fill(self, addr: int, n: int, byte: int) -> None:
        """Set the ``n`` bytes at ``addr`` to ``byte`` now (``memset``)."""
        offset = self._offset(addr, n)
        if n == 0:
            return
        with self._lock:
            if self._pending:
                self._pending.remove(offset, offset + n)
            self._pwrite_fill(offset, n, byte)

    def discard(self, addr: int, n: int, fill: int = 0) -> None:
        """Give the host memory of ``[addr, addr + n)`` back; the bytes read as ``fill`` from now on.

        Cost does not grow with ``n``: whole host pages are punched out of the memory file and the
        fill is recorded, to be written when a read or view of those bytes is next taken.
        """
        offset = self._offset(addr, n)
        if n == 0:
            return
        if not 0 <= fill <= 0xFF:
            raise ValueError(f"fill byte {fill:#x} is not in 0..0xff")
        with self._lock:
            hole_start = align_up(offset, _HOST_PAGE)
            punch_hole(self._fd, hole_start, align_down(offset + n, _HOST_PAGE) - hole_start)
            self._pending.remove(offset, offset + n)
            self._pending.add(offset, offset + n, fill)

    # --- views ----------------------------------------------------------------------------

    def view(self, addr: int, n: int) -> memoryview:
        """A writable zero-copy window onto the ``n`` bytes at ``addr``.

        A window inside one :data:`SECTION_SIZE` section of the memory file is a slice of that
        section's mapping; one across sections has a mapping of its own, unmapped when its last
        view goes.  Release views (``view.release()`` or drop every reference) before
        :meth:`close`.
        """
        offset = self._offset(addr, n)
        self._materialise(offset, n)
        if n == 0:
            return memoryview(bytearray())
        index = offset // SECTION_SIZE
        if (offset + n - 1) // SECTION_SIZE != index:
            window, delta = self.map_window(addr, n)
            return memoryview(window)[delta : delta + n]
        section = self._sections.get(index)
        if section is None:
            with self._lock:
                section = self._sections.get(index)
                if section is None:
                    start = index * SECTION_SIZE
                    section = mmap.mmap(self._fd, min(SECTION_SIZE, self.size - start), offset=start)
                    self._sections[index] = section
        start = offset - index * SECTION_SIZE
        return memoryview(section)[start : start + n]

    def map_window(self, addr: int, n: int) -> tuple[mmap.mmap, int]:
        """A dedicated mapping covering ``[addr, addr + n)`` and the offset of ``addr`` inside it.

        The mapping starts at a host-page-aligned file offset.  Its owner closes it; ``close()``
        raises ``BufferError`` while any memoryview of it, or slice of one, is alive.
        """
        offset = self._offset(addr, n)
        if n == 0:
            raise InvalidRangeError(f"empty window at {addr:#x}")
        self._materialise(offset, n)
        start = align_down(offset, _HOST_PAGE)
        length = align_up(offset + n, _HOST_PAGE) - start
        return mmap.mmap(self._fd, length, offset=start), offset - start

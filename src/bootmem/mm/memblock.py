"""Boot-time region lists, in the manner of Linux's ``mm/memblock.c``.

A :class:`RegionList` holds byte ranges ``[start, end)``, each with a label (a reservation's
name, or any other value), kept sorted, disjoint and merged after every change: two regions
that touch and carry equal labels become one.  :class:`Memblock` pairs two of them, ``memory``
and ``reserved``, as the kernel does before its page allocator exists.

Overlap rule: bytes belong to at most one region.  Adding a range that overlaps existing
regions labels only the bytes not yet covered; covered bytes keep their first label.  So::

    >>> rl: RegionList[str] = RegionList()
    >>> rl.add(0x1000, 0x3000, "initrd")
    8192
    >>> rl.add(0x2000, 0x4000, "dtb")      # only [0x3000, 0x4000) is new
    4096
    >>> [(r.name, hex(r.start), hex(r.end)) for r in rl]
    [('initrd', '0x1000', '0x3000'), ('dtb', '0x3000', '0x4000')]

Callers pass validated ranges (``start < end``); the lists do no bounds checking of their own.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from operator import attrgetter
from typing import Any, Generic, NamedTuple, TypeVar

T = TypeVar("T")

_start = attrgetter("start")
_end = attrgetter("end")


class Region(NamedTuple, Generic[T]):
    """Bytes ``[start, end)`` carrying ``name``: bootmem's one named range.

    The memblock lists, the allocator's ``reserved_regions()`` and the boot report all use it,
    in the order the device tree's reserved regions and Linux's messages give:
    name, then range.

    >>> Region("initrd", 0x1000, 0x3000).size
    8192
    """

    name: T
    start: int
    end: int

    @property
    def size(self) -> int:
        """Bytes in the range."""
        return self.end - self.start

    def to_json(self) -> dict[str, Any]:
        """``{"name", "start", "end", "size"}``."""
        return {"name": self.name, "start": self.start, "end": self.end, "size": self.size}


class RegionList(Generic[T]):
    """Sorted, disjoint, merged labelled byte ranges.

    Every method takes a half-open range ``[start, end)`` with ``start < end``.
    """

    __slots__ = ("_regions",)

    def __init__(self) -> None:
        self._regions: list[Region[T]] = []

    def __iter__(self) -> Iterator[Region[T]]:
        return iter(list(self._regions))

    def __len__(self) -> int:
        return len(self._regions)

    def __bool__(self) -> bool:
        return bool(self._regions)

    def __repr__(self) -> str:
        inner = ", ".join(f"{r.name!r} [{r.start:#x}, {r.end:#x})" for r in self._regions)
        return f"RegionList({inner})"

    @property
    def total_size(self) -> int:
        """Bytes covered by all regions."""
        return sum(r.end - r.start for r in self._regions)

    def _touching(self, start: int, end: int) -> tuple[int, int]:
        """Indices ``[i, j)`` of the regions that overlap or touch ``[start, end]``."""
        i = bisect_left(self._regions, start, key=_end)  # first region with end >= start
        j = bisect_right(self._regions, end, key=_start)  # regions with start <= end lie below j
        return i, j

    def _overlapping(self, start: int, end: int) -> tuple[int, int]:
        """Indices ``[i, j)`` of the regions that share at least one byte with ``[start, end)``."""
        i = bisect_right(self._regions, start, key=_end)  # first region with end > start
        j = bisect_left(self._regions, end, key=_start)  # regions with start < end lie below j
        return i, j

    def add(self, start: int, end: int, name: T) -> int:
        """Cover ``[start, end)``; returns the number of bytes newly covered.

        Uncovered bytes of the range get ``name``; bytes already covered keep their label.
        Neighbours that touch and carry an equal label are merged (``twice`` adds nothing).
        """
        i, j = self._touching(start, end)
        pieces: list[Region[T]] = []
        added = 0
        cursor = start
        for region in self._regions[i:j]:
            if region.start > cursor:
                pieces.append(Region(name, cursor, region.start))
                added += region.start - cursor
            pieces.append(region)
            cursor = max(cursor, region.end)
        if cursor < end:
            pieces.append(Region(name, cursor, end))
            added += end - cursor
        merged: list[Region[T]] = []
        for piece in pieces:
            if merged and merged[-1].end == piece.start and merged[-1].name == piece.name:
                merged[-1] = Region(piece.name, merged[-1].start, piece.end)
            else:
                merged.append(piece)
        self._regions[i:j] = merged
        return added

    def remove(self, start: int, end: int) -> list[Region[T]]:
        """Uncover ``[start, end)``; returns the pieces removed, with their labels, in order.

        Bytes of the range that were not covered are ignored (``absent`` removes nothing).
        """
        i, j = self._overlapping(start, end)
        kept: list[Region[T]] = []
        removed: list[Region[T]] = []
        for region in self._regions[i:j]:
            if region.start < start:
                kept.append(Region(region.name, region.start, start))
            removed.append(Region(region.name, max(region.start, start), min(region.end, end)))
            if region.end > end:
                kept.append(Region(region.name, end, region.end))
        self._regions[i:j] = kept
        return removed

    def overlapping(self, start: int, end: int) -> list[Region[T]]:
        """The regions sharing at least one byte with ``[start, end)``, whole, in order."""
        i, j = self._overlapping(start, end)
        return self._regions[i:j]

    def intersects(self, start: int, end: int) -> bool:
        """Whether any byte of ``[start, end)`` is covered."""
        i = bisect_right(self._regions, start, key=_end)
        return i < len(self._regions) and self._regions[i].start < end

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The uncovered pieces of ``[start, end)``, in order."""
        holes: list[tuple[int, int]] = []
        cursor = start
        for region in self.overlapping(start, end):
            if region.start > cursor:
                holes.append((cursor, region.start))
            cursor = max(cursor, region.end)
        if cursor < end:
            holes.append((cursor, end))
        return holes

    def covers(self, start: int, end: int) -> bool:
        """Whether every byte of ``[start, end)`` is covered."""
        return not self.gaps(start, end)

    def check(self) -> str | None:
        """A description of the first broken list invariant, or ``None`` when sorted, disjoint, merged."""
        previous: Region[T] | None = None
        for region in self._regions:
            if region.start >= region.end:
                return f"empty region {region.name!r} [{region.start:#x}, {region.end:#x})"
            if previous is not None:
                if region.start < previous.end:
                    return (
                        f"regions {previous.name!r} [{previous.start:#x}, {previous.end:#x}) and "
                        f"{region.name!r} [{region.start:#x}, {region.end:#x}) overlap or are unsorted"
                    )
                if region.start == previous.end and region.name == previous.name:
                    return f"regions {region.name!r} touching at {region.start:#x} are not merged"
            previous = region
        return None


class Memblock:
    """The two boot-time lists: ``memory`` (RAM banks) and ``reserved`` (named reservations).

    >>> mb = Memblock()
    >>> mb.add_memory(0x8000_0000, 0x9000_0000)
    >>> mb.reserve(0x8800_0000, 0x8820_0000, "initrd")
    2097152
    >>> mb.reserved.total_size
    2097152
    """

    __slots__ = ("memory", "reserved")

    def __init__(self) -> None:
        self.memory: RegionList[str] = RegionList()
        self.reserved: RegionList[str] = RegionList()

    def add_memory(self, start: int, end: int, name: str = "System RAM") -> None:
        """Add the RAM bank ``[start, end)`` (Linux: ``memblock_add``)."""
        self.memory.add(start, end, name)

    def reserve(self, start: int, end: int, name: str) -> int:
        """Reserve ``[start, end)`` under ``name``; returns bytes newly reserved (``memblock_reserve``)."""
        return self.reserved.add(start, end, name)

    def free(self, start: int, end: int) -> list[Region[str]]:
        """Drop ``[start, end)`` from ``reserved``; returns the pieces dropped (``memblock_phys_free``)."""
        return self.reserved.remove(start, end)

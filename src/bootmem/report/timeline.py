"""Pages by owner at every allocator event of a boot, with the boot's phases.

:class:`TimelineRecorder` is a boot observer: it keeps the pages each owner holds up to date
from the events alone (every ``reserve``, ``release``, ``alloc`` and ``free`` carries its page
count and owner), so recording costs the same for every event however much memory the machine
has.  :func:`record_boot` boots an image with one attached and returns the report and the
:class:`Timeline`, whose samples each add up to the machine's RAM pages.

A run of events of the same kind and owner (the thousands of ``alloc rootfs`` of an unpack)
is kept as its first and last sample: the counts between change by one block at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bootmem.kernel.boot import BootReport, boot
from bootmem.mm import PAGE_SIZE, AllocatorEvent, FrameAllocator, PageAllocator
from bootmem.report.memmap import DEFAULT_CELLS, MemoryMap
from bootmem.report.owners import OWNERS, Owner, allocation_owner, reservation_owner

_INDEX: dict[Owner, int] = {owner: i for i, owner in enumerate(OWNERS)}
_FREE = _INDEX["free"]


@dataclass(frozen=True, slots=True)
class Sample:
    """The pages each owner holds right after one event.

    ``time`` is in seconds since the boot started; ``event`` names the event
    (``"alloc rootfs"``, ``"release initrd"``); ``pages`` follows :data:`OWNERS`.
    """

    time: float
    event: str
    pages: tuple[int, ...]

    def by_owner(self) -> dict[Owner, int]:
        return dict(zip(OWNERS, self.pages, strict=True))

    @property
    def used(self) -> int:
        """Pages not free."""
        return sum(self.pages) - self.pages[_FREE]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Physical memory at one moment.

    RAM ranges ``(start, end)``, reserved regions ``(name, start, end)``, allocated blocks
    ``(pfn, pages, owner)``.
    """

    title: str
    ram: list[tuple[int, int]]
    reserved: list[tuple[str, int, int]]
    blocks: list[tuple[int, int, Owner]]


@dataclass(slots=True)
class Timeline:
    """A boot's samples, its phases ``(name, seconds since boot)`` and its memory maps.

    ``total_pages`` is the machine's RAM in pages (holes between ``/memory`` ranges left out);
    every sample's pages add up to it.  ``snapshots`` hold what :meth:`maps` draws: the memory
    when unpacking ended and, when the initrd was released, after it.
    """

    total_pages: int
    samples: list[Sample]
    phases: list[tuple[str, float]]
    snapshots: list[Snapshot] = field(default_factory=list)

    def maps(self, cells: int = DEFAULT_CELLS) -> list[MemoryMap]:
        """The memory maps of the snapshots, ``cells`` cells each."""
        return [MemoryMap.build(s.title, s.ram, s.reserved, s.blocks, cells=cells) for s in self.snapshots]

    def peak(self) -> Sample:
        """The first sample with the most pages in use."""
        return max(self.samples, key=lambda s: s.used)

    def final(self) -> dict[Owner, int]:
        return self.samples[-1].by_owner()

    def to_json(self) -> dict[str, Any]:
        """The timeline as JSON-ready data (schema in docs/json.md)."""
        return {
            "page_size": PAGE_SIZE,
            "total_pages": self.total_pages,
            "owners": list(OWNERS),
            "phases": [{"name": name, "time": t} for name, t in self.phases],
            "peak": {"time": self.peak().time, "used_pages": self.peak().used},
            "samples": [{"time": s.time, "event": s.event, "pages": s.by_owner()} for s in self.samples],
        }


class TimelineRecorder:
    """Counts pages by owner from allocator events; use as ``boot(observer=..., allocator_hook=...)``.

    Call the instance with every event from the first reservation on (``boot``'s ``observer``)
    and :meth:`attach` with the allocator once the boot's reservations are made (``boot``'s
    ``allocator_hook``); then :meth:`timeline` with the report.  Events arrive under the
    allocator's lock, so the counts need no lock of their own.
    """

    def __init__(self) -> None:
        self._counts = [0] * len(OWNERS)  # changes since the allocator came up: free goes negative
        self._hole = 0
        self._raw: list[tuple[float, str, tuple[int, ...], int]] = []
        self._blocks: dict[int, tuple[int, Owner]] = {}  # allocated block head pfn -> (pages, owner)
        self._allocator: FrameAllocator | None = None
        self._reserved_at_attach: list[tuple[str, int, int]] = []
        self._before_release: tuple[list[tuple[str, int, int]], list[tuple[int, int, Owner]]] | None = None

    def __call__(self, event: AllocatorEvent) -> None:
        op, pages = event.op, event.pages
        if op in ("alloc", "free"):
            owner: Owner | None = allocation_owner(event.owner)
        else:
            # A release may remove pieces of several regions; boot releases only the initrd.
            owner = reservation_owner(event.owner.split(", ")[0])
        if op == "release" and self._before_release is None and self._allocator is not None:
            self._before_release = (self._reserved_at_attach, self._block_list())
        sign = 1 if op in ("reserve", "alloc") else -1
        if owner is None:
            self._hole += sign * pages
        else:
            self._counts[_INDEX[owner]] += sign * pages
        self._counts[_FREE] -= sign * pages
        if op == "alloc":
            self._blocks[event.pfn] = (pages, owner or "other")
        elif op == "free":
            self._forget(event.pfn, pages)
        key = f"{op} {owner or 'no RAM'}"
        sample = (event.time, key, tuple(self._counts), self._hole)
        raw = self._raw
        if len(raw) >= 2 and raw[-1][1] == key and raw[-2][1] == key:
            raw[-1] = sample
        else:
            raw.append(sample)

    def _forget(self, pfn: int, pages: int) -> None:
        """Drop pages ``[pfn, pfn + pages)`` from the allocated runs.

        ``alloc_bulk`` reports a run of pages as one event but each page is freed on its own,
        so a free may take the middle of a run: what is left on either side stays.
        """
        if self._blocks.get(pfn, (0,))[0] == pages:
            del self._blocks[pfn]
            return
        for head, (length, owner) in self._blocks.items():  # rare: a rewrite or truncate in boot
            if head <= pfn and pfn + pages <= head + length:
                del self._blocks[head]
                if pfn > head:
                    self._blocks[head] = (pfn - head, owner)
                if pfn + pages < head + length:
                    self._blocks[pfn + pages] = (head + length - pfn - pages, owner)
                return

    def attach(self, allocator: FrameAllocator) -> None:
        """Remember ``allocator`` and its reserved regions (the map before the release)."""
        self._allocator = allocator
        self._reserved_at_attach = allocator.reserved_regions()

    def _block_list(self) -> list[tuple[int, int, Owner]]:
        return [(pfn, pages, owner) for pfn, (pages, owner) in self._blocks.items()]

    def timeline(self, report: BootReport) -> Timeline:
        """The recorded timeline of the boot ``report`` describes, with its memory maps."""
        allocator = report.allocator
        if allocator is None:
            raise ValueError("the report has no allocator to count pages against")
        hole_final = self._hole
        ram_pages = allocator.total_pages - hole_final
        origin = report.clock_origin
        samples = [Sample(0.0, "boot", tuple(ram_pages if i == _FREE else 0 for i in range(len(OWNERS))))]
        for when, key, counts, hole in self._raw:
            pages = list(counts)
            # Hole pages were never RAM: put back what their reservations took from "free".
            pages[_FREE] += ram_pages + hole
            samples.append(Sample(max(0.0, when - origin), key, tuple(pages)))
        timeline = Timeline(total_pages=ram_pages, samples=samples, phases=list(report.phases))
        if self._allocator is not None:
            ram = [(r.start, r.end) for r in report.ram]
            if self._before_release is not None:
                regions, blocks = self._before_release
                timeline.snapshots.append(Snapshot("before the release", ram, regions, blocks))
                after = "after the release"
            else:
                after = "initrd retained" if report.initrd is not None else "after unpacking"
            timeline.snapshots.append(Snapshot(after, ram, allocator.reserved_regions(), self._block_list()))
        return timeline


def record_boot(
    initrd: bytes | memoryview | None,
    *,
    observer: Callable[[AllocatorEvent], None] | None = None,
    **kwargs: Any,
) -> tuple[BootReport, Timeline]:
    """:func:`~bootmem.kernel.boot.boot` with a :class:`TimelineRecorder` attached.

    Takes ``boot``'s keyword arguments; ``observer``, when given, sees every event too.
    """
    recorder = TimelineRecorder()
    hook: Callable[[PageAllocator], None] | None = kwargs.pop("allocator_hook", None)

    def attach(allocator: PageAllocator) -> None:
        recorder.attach(allocator)
        if hook is not None:
            hook(allocator)

    def observe(event: AllocatorEvent) -> None:
        recorder(event)
        if observer is not None:
            observer(event)

    report = boot(initrd, observer=observe, allocator_hook=attach, **kwargs)
    return report, recorder.timeline(report)

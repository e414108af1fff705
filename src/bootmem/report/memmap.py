"""Physical memory as a bar of cells coloured by owner.

A map covers RAM ``[start, end)`` in ``len(cells)`` equal cells.  Reserved regions count for
their owner (:func:`~bootmem.report.owners.reservation_owner`), allocated blocks for theirs,
the rest of a cell is free.  A cell at least half used shows the owner holding most of its
pages, else it shows free; cells wholly outside the ``/memory`` ranges are holes (``None``).
An owner that would win no cell (a one-page device tree in 1 GiB) still gets the cell where it
holds the most pages, so every owner present is visible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bootmem.mm import PAGE_SHIFT, PAGE_SIZE
from bootmem.report.owners import OWNERS, Owner, reservation_owner
from bootmem.units import align_up

#: Cells in a map unless asked otherwise: 4 terminal rows of 64.
DEFAULT_CELLS = 256


@dataclass(frozen=True, slots=True)
class MemoryMap:
    """Cells over ``[start, end)``, ``cell_bytes`` each; ``pages`` counts every owner's pages in RAM."""

    title: str
    start: int
    end: int
    cell_bytes: int
    cells: tuple[Owner | None, ...]
    pages: dict[Owner, int]
    regions: tuple[tuple[str, int, int], ...]  # reserved regions (name, start, end) for labels

    @classmethod
    def build(
        cls,
        title: str,
        ram: Sequence[tuple[int, int]],
        reserved: Iterable[tuple[str, int, int]],
        blocks: Iterable[tuple[int, int, Owner]],
        *,
        cells: int = DEFAULT_CELLS,
    ) -> MemoryMap:
        """A map of the RAM ranges ``ram`` holding ``reserved`` ``(name, start, end)`` regions and
        allocated ``blocks`` ``(pfn, pages, owner)``.

        Cells are a whole number of pages; the last one may reach past the end of RAM.
        """
        start = min(s for s, _e in ram)
        end = max(e for _s, e in ram)
        npages = (end - start) >> PAGE_SHIFT
        cell_pages = max(1, -(-npages // cells))
        ncells = -(-npages // cell_pages)
        first_pfn = start >> PAGE_SHIFT
        held: list[dict[Owner, int]] = [{} for _ in range(ncells)]
        ram_pages = [0] * ncells

        def add(first: int, stop: int, owner: Owner | None, into: list[dict[Owner, int]] | None) -> None:
            # Spread pages [first, stop) (absolute pfns) over the cells they fall in.
            lo, hi = max(first, first_pfn), min(stop, first_pfn + npages)
            while lo < hi:
                index = (lo - first_pfn) // cell_pages
                cell_stop = min(hi, first_pfn + (index + 1) * cell_pages)
                if into is None:
                    ram_pages[index] += cell_stop - lo
                elif owner is not None:
                    into[index][owner] = into[index].get(owner, 0) + cell_stop - lo
                lo = cell_stop

        for s, e in ram:
            add(s >> PAGE_SHIFT, align_up(e, PAGE_SIZE) >> PAGE_SHIFT, None, None)
        regions = tuple(reserved)
        for name, s, e in regions:
            add(s >> PAGE_SHIFT, align_up(e, PAGE_SIZE) >> PAGE_SHIFT, reservation_owner(name), held)
        for pfn, pages, owner in blocks:
            add(pfn, pfn + pages, owner, held)

        totals: dict[Owner, int] = dict.fromkeys(OWNERS, 0)
        colours: list[Owner | None] = []
        for counts, in_ram in zip(held, ram_pages, strict=True):
            for owner, n in counts.items():
                totals[owner] += n
            free = max(0, in_ram - sum(counts.values()))
            totals["free"] += free
            used = in_ram - free
            if not in_ram:
                colours.append(None)
            elif used * 2 < in_ram:
                colours.append("free")
            else:
                colours.append(max(counts.items(), key=lambda item: item[1])[0])
        # Every owner present wins at least one cell: the one where it holds most among those
        # whose current owner would keep another cell.
        forced: set[int] = set()
        for owner in OWNERS:
            if owner == "free" or not totals[owner] or owner in colours:
                continue
            ranked = sorted(range(ncells), key=lambda i: -held[i].get(owner, 0))
            for i in ranked:
                current = colours[i]
                if not held[i].get(owner):
                    break
                if i not in forced and (current == "free" or colours.count(current) > 1):
                    colours[i] = owner
                    forced.add(i)
                    break
        return cls(
            title=title,
            start=start,
            end=end,
            cell_bytes=cell_pages * PAGE_SIZE,
            cells=tuple(colours),
            pages=totals,
            regions=tuple(r for r in regions if reservation_owner(r[0]) is not None),
        )

    def cell_start(self, index: int) -> int:
        """The address of cell ``index``."""
        return self.start + index * self.cell_bytes

    def owners_present(self) -> list[Owner]:
        """Owners holding any page, in :data:`OWNERS` order (``free`` included when any page is free)."""
        return [owner for owner in OWNERS if self.pages[owner]]

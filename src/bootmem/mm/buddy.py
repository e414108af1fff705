"""Buddy free lists: one per order, blocks of ``2**order`` pages, naturally aligned.

A block is named by its first page frame number (pfn) and its order; its buddy is
``pfn ^ (1 << order)``.  Each free list is a ``dict`` used as an insertion-ordered set, so an
allocation takes the block freed most recently (as Linux takes the head of its list) and
metadata costs one entry per free *block*, never one per page.

Contracts:

* :meth:`BuddyAllocator.add_free_range` inserts ``[lo, hi)`` as the largest naturally aligned
  blocks, each coalescing with free buddies: ``add_free_range(0, 5)`` inserts pfn 0 order 2 and
  pfn 4 order 0.  The caller guarantees the pages are not already free.
* :meth:`BuddyAllocator.alloc_block` splits the smallest fitting block, returns its lower half
  and keeps the upper halves free (Linux's ``expand``).
* :meth:`BuddyAllocator.free_block` takes a block the caller owns and merges it upwards.

The buddy lists know nothing of RAM bounds: a buddy outside RAM is simply never free.

>>> b = BuddyAllocator(max_order=3)
>>> b.add_free_range(0, 5)
2
>>> sorted(b.blocks())
[(0, 2), (4, 0)]
>>> b.alloc_block(0), b.alloc_block(0)
(4, 0)
>>> sorted(b.blocks())
[(1, 0), (2, 1)]
"""

from __future__ import annotations

from collections.abc import Iterator

from bootmem.errors import InvariantError, OutOfMemoryError


def block_order(pfn: int, npages: int, max_order: int) -> int:
    """The order of the largest naturally aligned block starting at ``pfn`` within ``npages`` pages.

    >>> block_order(4, 12, 10), block_order(0, 5, 10), block_order(0, 1 << 20, 10)
    (2, 2, 10)
    """
    order = min(max_order, (pfn & -pfn).bit_length() - 1) if pfn else max_order
    limit = npages.bit_length() - 1
    return min(order, limit)


class BuddyAllocator:
    """Free blocks per order, ``0 <= order <= max_order``; ``nr_free`` counts free pages."""

    __slots__ = ("free_lists", "max_order", "nr_free")

    def __init__(self, max_order: int = 10) -> None:
        if not 0 <= max_order <= 30:
            raise ValueError(f"max_order {max_order} is not in 0..30")
        self.max_order = max_order
        self.free_lists: list[dict[int, None]] = [{} for _ in range(max_order + 1)]
        self.nr_free = 0

    def __repr__(self) -> str:
        counts = ", ".join(str(len(fl)) for fl in self.free_lists)
        return f"BuddyAllocator(max_order={self.max_order}, nr_free={self.nr_free}, blocks=[{counts}])"

    def blocks(self) -> Iterator[tuple[int, int]]:
        """Every free block as ``(pfn, order)``, by order then age."""
        for order, free_list in enumerate(self.free_lists):
            for pfn in free_list:
                yield pfn, order

    def free_block(self, pfn: int, order: int) -> None:
        """Put the block ``(pfn, order)`` on the free lists, merging it with free buddies."""
        self.nr_free += 1 << order
        free_lists = self.free_lists
        max_order = self.max_order
        while order < max_order:
            buddy = pfn ^ (1 << order)
            free_list = free_lists[order]
            if buddy not in free_list:
                break
            del free_list[buddy]
            pfn &= buddy
            order += 1
        free_lists[order][pfn] = None

    def add_free_range(self, lo: int, hi: int) -> int:
        """Free the pages ``[lo, hi)`` as the largest aligned blocks; returns the blocks inserted.

        Cost grows with the number of blocks (about ``(hi - lo) >> max_order`` plus twice the
        order), not the number of pages.
        """
        inserted = 0
        max_order = self.max_order
        pfn = lo
        while pfn < hi:
            order = block_order(pfn, hi - pfn, max_order)
            if order == max_order:
                # A run of maximal blocks: nothing above max_order to merge with.
                step = 1 << max_order
                run_end = pfn + ((hi - pfn) >> max_order << max_order)
                self.free_lists[max_order].update(dict.fromkeys(range(pfn, run_end, step)))
                count = (run_end - pfn) >> max_order
                self.nr_free += run_end - pfn
                inserted += count
                pfn = run_end
                continue
            self.free_block(pfn, order)
            inserted += 1
            pfn += 1 << order
        return inserted

    def alloc_block(self, order: int) -> int:
        """Take a free block of ``order``; returns its pfn or raises :class:`OutOfMemoryError`."""
        free_lists = self.free_lists
        for current in range(order, self.max_order + 1):
            free_list = free_lists[current]
            if free_list:
                pfn, _ = free_list.popitem()
                while current > order:
                    current -= 1
                    free_lists[current][pfn + (1 << current)] = None
                self.nr_free -= 1 << order
                return pfn
        raise OutOfMemoryError(
            f"no free block of order {order} ({self.nr_free} pages free in smaller blocks)"
        )

    def alloc_pages(self, count: int) -> list[tuple[int, int]]:
        """Take up to ``count`` pages in as few blocks as the lists allow; returns ``(pfn, order)``.

        Each step takes the largest order that still fits in what is left to take: the smallest
        free block of that order or above is split (as :meth:`alloc_block`), or, when there is
        none, the largest smaller block is taken whole.  So a request served from one free block
        comes out as consecutive frames: ``alloc_pages(5)`` from a free block pfn 0 order 3
        gives ``[(0, 2), (4, 0)]`` and leaves pfn 5 order 0 and pfn 6 order 1 free.  Fewer
        pages than ``count`` only when the lists run out.

        >>> b = BuddyAllocator(max_order=3)
        >>> b.add_free_range(0, 8)
        1
        >>> b.alloc_pages(5), sorted(b.blocks())
        ([(0, 2), (4, 0)], [(5, 0), (6, 1)])
        """
        blocks: list[tuple[int, int]] = []
        free_lists = self.free_lists
        top = self.max_order
        while count > 0 and self.nr_free:
            order = min(top, count.bit_length() - 1)
            current = order
            while current <= top and not free_lists[current]:
                current += 1
            if current > top:
                # Nothing at this order or above, now or later in this call: take smaller blocks.
                top = order - 1
                continue
            pfn, _ = free_lists[current].popitem()
            while current > order:
                current -= 1
                free_lists[current][pfn + (1 << current)] = None
            self.nr_free -= 1 << order
            blocks.append((pfn, order))
            count -= 1 << order
        return blocks

    def find(self, pfn: int) -> tuple[int, int] | None:
        """The free block ``(head, order)`` containing page ``pfn``, or ``None`` if it is not free."""
        for order, free_list in enumerate(self.free_lists):
            head = pfn >> order << order
            if head in free_list:
                return head, order
        return None

    def first_not_free(self, lo: int, hi: int) -> int | None:
        """The lowest page of ``[lo, hi)`` that is not free, or ``None``; changes nothing."""
        pfn = lo
        while pfn < hi:
            found = self.find(pfn)
            if found is None:
                return pfn
            pfn = found[0] + (1 << found[1])
        return None

    def remove_range(self, lo: int, hi: int) -> None:
        """Take the pages ``[lo, hi)`` off the free lists; every one of them must be free.

        Blocks straddling the range edges are split and their outside parts stay free.
        """
        pfn = lo
        while pfn < hi:
            found = self.find(pfn)
            if found is None:
                raise ValueError(f"pfn {pfn:#x} is not free")
            head, order = found
            del self.free_lists[order][head]
            self.nr_free -= 1 << order
            tail = head + (1 << order)
            if head < lo:
                self.add_free_range(head, lo)
            if tail > hi:
                self.add_free_range(hi, tail)
            pfn = tail

    def check(self) -> None:
        """Raise :class:`InvariantError` unless blocks are aligned, disjoint, coalesced and counted."""
        counted = 0
        for order, free_list in enumerate(self.free_lists):
            size = 1 << order
            for pfn in free_list:
                if pfn & (size - 1):
                    raise InvariantError(f"free block pfn {pfn:#x} is not aligned to its order {order}")
                if order < self.max_order and (pfn ^ size) in free_list:
                    raise InvariantError(
                        f"free block pfn {pfn:#x} order {order} and its buddy {pfn ^ size:#x} are not merged"
                    )
                for above in range(order + 1, self.max_order + 1):
                    head = pfn >> above << above
                    if head in self.free_lists[above]:
                        raise InvariantError(
                            f"free block pfn {pfn:#x} order {order} lies inside free block "
                            f"pfn {head:#x} order {above}"
                        )
                counted += size
        if counted != self.nr_free:
            raise InvariantError(f"free lists hold {counted} pages but nr_free says {self.nr_free}")

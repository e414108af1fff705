"""Who holds a page: the allocator's owner tags and reservation names, grouped for people.

The page allocator tags allocations (the tmpfs allocates as ``"rootfs"``) and names
reservations (``"Kernel image"``, ``"Device tree"``, ``"initrd"``, the device tree's
``memreserve`` and ``/reserved-memory`` nodes).  Reports group them into :data:`OWNERS`, in the
order they are stacked and listed; pages in holes between ``/memory`` ranges are no RAM and
belong to none.
"""

from __future__ import annotations

from typing import Final, Literal

from bootmem.mm import PageAllocator

Owner = Literal["kernel", "device tree", "firmware", "initrd", "rootfs", "other", "free"]

#: Every owner, bottom of a stacked chart first; ``free`` last.
OWNERS: Final[tuple[Owner, ...]] = ("kernel", "device tree", "firmware", "initrd", "rootfs", "other", "free")

#: What each owner is, for legends.
DESCRIPTIONS: Final[dict[Owner, str]] = {
    "kernel": "kernel image",
    "device tree": "device tree blob",
    "firmware": "firmware reservations (memreserve, /reserved-memory)",
    "initrd": "initrd image, reserved until released",
    "rootfs": "rootfs (tmpfs file data)",
    "other": "other allocations",
    "free": "free pages",
}

#: One colour per owner, for terminals and pictures alike (colour-blind safe where it matters:
#: initrd orange against rootfs green differ in lightness too).
COLOURS: Final[dict[Owner, str]] = {
    "kernel": "#4c72b0",
    "device tree": "#8172b3",
    "firmware": "#937860",
    "initrd": "#dd8452",
    "rootfs": "#55a868",
    "other": "#c44e52",
    "free": "#d9d9d9",
}

#: The name boot gives the holes between ``/memory`` ranges: not RAM, owned by nobody.
HOLE: Final = "(no RAM)"

_RESERVED: Final[dict[str, Owner]] = {
    "Kernel image": "kernel",
    # What the kernel allocates from memblock as it grows with RAM (bootmem.kernel.arch).
    "struct pages": "kernel",
    "SMP alternatives": "kernel",
    "Dentry cache hash table": "kernel",
    "Inode-cache hash table": "kernel",
    "Device tree": "device tree",
    "initrd": "initrd",
}
_ALLOCATED: Final[dict[str, Owner]] = {"rootfs": "rootfs", "free": "free"}


def reservation_owner(name: str) -> Owner | None:
    """The owner of pages reserved under ``name``; ``None`` for a hole.

    >>> reservation_owner("initrd (partial page)"), reservation_owner("memreserve")
    ('initrd', 'firmware')
    """
    if name == HOLE:
        return None
    base = name.removesuffix(" (partial page)")
    return _RESERVED.get(base, "firmware")


def allocation_owner(tag: str) -> Owner:
    """The owner of pages allocated with owner tag ``tag``: ``rootfs`` or ``other``."""
    return _ALLOCATED.get(tag, "other")


def owner_pages(allocator: PageAllocator) -> dict[Owner, int]:
    """``allocator.pages_by_owner()`` grouped into :data:`OWNERS` (holes left out), every owner present.

    A tag that names a reservation counts as that reservation's owner.
    """
    reserved_names = {name for name, _start, _end in allocator.reserved_regions()}
    counts: dict[Owner, int] = dict.fromkeys(OWNERS, 0)
    for tag, pages in allocator.pages_by_owner().items():
        owner = reservation_owner(tag) if tag in reserved_names else allocation_owner(tag)
        if owner is not None:
            counts[owner] += pages
    return counts

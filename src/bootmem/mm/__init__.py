"""Memory management: the machine's RAM, memblock region lists, the buddy allocator, leases.

``PageAllocator`` is the face the rest of bootmem uses; see :mod:`bootmem.mm.allocator`.
"""

from __future__ import annotations

from bootmem.mm.allocator import POISON_FREE_INITMEM, POLICIES, PageAllocator
from bootmem.mm.buddy import BuddyAllocator
from bootmem.mm.events import AllocatorEvent
from bootmem.mm.lease import Lease
from bootmem.mm.memblock import Memblock, Region, RegionList
from bootmem.mm.ram import PhysicalMemory
from bootmem.units import PAGE_SHIFT, PAGE_SIZE

__all__ = [
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "POISON_FREE_INITMEM",
    "POLICIES",
    "AllocatorEvent",
    "BuddyAllocator",
    "Lease",
    "Memblock",
    "PageAllocator",
    "PhysicalMemory",
    "Region",
    "RegionList",
]

"""Memory management: the machine's RAM, memblock region lists, the buddy allocator, leases.

``FrameAllocator`` (:mod:`bootmem.mm.frames`) is the protocol the rest of bootmem types against;
``PageAllocator`` (:mod:`bootmem.mm.allocator`, Linux's buddy allocator) and ``SolayaAllocator``
(:mod:`bootmem.mm.solaya`, Solaya's first-fit byte-per-page allocator) implement it.
"""

from __future__ import annotations

from bootmem.mm.allocator import POISON_FREE_INITMEM, POLICIES, PageAllocator
from bootmem.mm.buddy import BuddyAllocator
from bootmem.mm.events import AllocatorEvent
from bootmem.mm.frames import FrameAllocator
from bootmem.mm.lease import Lease
from bootmem.mm.memblock import Memblock, Region, RegionList
from bootmem.mm.ram import PhysicalMemory
from bootmem.mm.solaya import SolayaAllocator
from bootmem.units import PAGE_SHIFT, PAGE_SIZE

__all__ = [
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "POISON_FREE_INITMEM",
    "POLICIES",
    "AllocatorEvent",
    "BuddyAllocator",
    "FrameAllocator",
    "Lease",
    "Memblock",
    "PageAllocator",
    "PhysicalMemory",
    "Region",
    "RegionList",
    "SolayaAllocator",
]

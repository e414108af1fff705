"""Architecture profiles: the memory a kernel holds before its page allocator comes up.

Linux's ``Memory: A/T available (... R reserved ...)`` line has a part that does not depend on
RAM - the kernel image, its bss, the first MiB on x86, early page tables, per-CPU areas - and a
part that grows with RAM, allocated from memblock before ``memblock_free_all``:

- the ``struct page`` array (``sizeof(struct page)`` = 64 bytes per 4 KiB page); with
  ``CONFIG_SPARSEMEM_VMEMMAP`` it is allocated a whole memory section (128 MiB on x86_64) at a
  time (``sparse_init_nid``), so it grows in steps of 2 MiB;
- the dentry and inode hash tables (``vfs_caches_init_early`` -> ``alloc_large_system_hash``:
  one 8-byte bucket per ``2**scale`` bytes of ``nr_kernel_pages``, rounded up to a power of two;
  ``dhash_entries`` scale 13, ``ihash_entries`` scale 14);
- and holes that are not RAM at all (page 0, the legacy ``[0x9f000, 0x100000)`` and what the
  firmware keeps at the top; x86's ``trim_bios_range`` and e820), which ``T`` leaves out.

After ``mem_init`` prints that line the kernel goes on allocating - slab caches, vmalloc areas,
kernel stacks, per-CPU chunks, the rootfs's own inodes and dentries, hash tables sized from RAM -
and gives some back (``Freeing unused kernel image (initmem) memory``).  What it holds when init
starts is its *runtime* footprint, measured from a real boot by the probe's ``/proc/meminfo``
(:meth:`ArchProfile.runtime_bytes`).  While the initramfs unpacks, the initrd, the decompressor's
buffers and most of that runtime footprint are held at once, and the page allocator refuses
ordinary allocations below the zones' ``min`` watermarks (:meth:`ArchProfile.watermark_bytes`):
a kernel whose free pages would go below them runs out of memory ("System is deadlocked on
memory") before init.

An :class:`ArchProfile` states those rules for one architecture and carries the fixed part,
calibrated against a real kernel's logs (``tests/kernel/data/``).  :func:`fit_fixed` calibrates
the fixed part from one ``Memory:`` line; :func:`fit_two` fits the fixed part and the size of a
``struct page`` from two lines at different RAM sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from bootmem.errors import UsageError
from bootmem.mm import PAGE_SIZE
from bootmem.units import align_up, format_k

#: Bytes of one hash bucket (``struct hlist_bl_head`` / ``struct hlist_head``: one pointer).
HASH_BUCKET = 8


@dataclass(frozen=True, slots=True)
class ArchProfile:
    """How one architecture's kernel reserves memory at boot, as a function of RAM.

    ``fixed`` is reserved whatever the RAM size (the model reserves it as the kernel image);
    ``struct_page`` bytes per page of RAM, allocated ``section`` bytes of RAM at a time;
    ``hash_scales`` the ``scale`` of each large system hash allocated before the allocator
    comes up; ``low_holes`` byte ranges, as offsets from the RAM base, and ``top_hole`` bytes
    at the top of RAM that are not RAM (they are absent from the ``Memory:`` line's total);
    ``kernel_offset`` where the kernel image is loaded, from the RAM base; ``freed_early`` the
    parts of the kernel image (inside ``fixed``) given back before rootfs is mounted, so that
    tmpfs's limit counts them (x86 on one CPU: ``alternative_instructions`` frees the SMP
    alternatives, ``Freeing SMP alternatives memory: 36K``).

    The kernel after ``mem_init`` (all 0 where the profile does not model it, as ``flat``):
    ``runtime`` bytes it holds when init starts, beyond what the model reserves, plus
    ``runtime_growth`` bytes per byte of RAM (hash tables sized from RAM after ``mem_init``);
    ``after_unpack`` the part of it allocated after the initramfs is unpacked, so not held at
    the unpack's peak; ``freed_late`` what ``free_initmem`` and friends give back before init
    (``Freeing unused ... memory``); ``dma_zone`` the bytes of RAM in ZONE_DMA, whose pages
    ordinary allocations leave a ``lowmem_reserve`` of; ``watermarks`` whether the page
    allocator keeps ``min_free_kbytes`` back.
    """

    name: str
    fixed: int
    struct_page: int = 64
    section: int = 128 << 20
    hash_scales: tuple[tuple[str, int], ...] = (("Dentry cache", 13), ("Inode-cache", 14))
    low_holes: tuple[tuple[int, int], ...] = ()
    top_hole: int = 0
    kernel_offset: int = 0
    freed_early: tuple[tuple[str, int], ...] = ()
    runtime: int = 0
    runtime_growth: float = 0.0
    after_unpack: int = 0
    freed_late: int = 0
    dma_zone: int = 0
    watermarks: bool = False

    @property
    def hole_bytes(self) -> int:
        """Bytes of the machine's RAM size that are not RAM."""
        return sum(end - start for start, end in self.low_holes) + self.top_hole

    def memmap_bytes(self, ram_size: int) -> int:
        """The ``struct page`` array for ``ram_size`` bytes of RAM: whole sections of it."""
        sections = -(-ram_size // self.section)
        return align_up(sections * (self.section // PAGE_SIZE) * self.struct_page, PAGE_SIZE)

    def hash_tables(self, ram_size: int) -> list[tuple[str, int]]:
        """Each early hash table's (name, bytes) for ``ram_size`` bytes of RAM.

        ``alloc_large_system_hash`` sizes from ``nr_kernel_pages``: the pages present less the
        ``struct page`` array, rounded up to a MiB, then one bucket per ``2**scale`` bytes,
        rounded up to a power of two, at least a page.
        """
        present = (ram_size - self.hole_bytes - self.memmap_bytes(ram_size)) // PAGE_SIZE
        per_mib = (1 << 20) // PAGE_SIZE
        kernel_pages = -(-present // per_mib) * per_mib
        tables = []
        for name, scale in self.hash_scales:
            entries = max(1, (kernel_pages * PAGE_SIZE) >> scale)
            entries = 1 << (entries - 1).bit_length()
            tables.append((name, max(PAGE_SIZE, entries * HASH_BUCKET)))
        return tables

    def growing(self, ram_size: int) -> int:
        """Bytes reserved at boot that depend on ``ram_size``: the struct pages and hash tables."""
        return self.memmap_bytes(ram_size) + sum(n for _name, n in self.hash_tables(ram_size))

    def reserved(self, ram_size: int) -> int:
        """Bytes the ``Memory:`` line calls reserved with no initrd: fixed plus growing."""
        return self.fixed + self.growing(ram_size)

    def runtime_bytes(self, ram_size: int) -> int:
        """Bytes the kernel holds when init starts that the model's reservations leave out.

        Counted against the pages the ``Memory:`` line made available, so that the pages free
        when init starts are the model's free pages plus :attr:`freed_late` less these.
        """
        return align_up(self.runtime + round(self.runtime_growth * ram_size), PAGE_SIZE)

    def unpack_runtime_bytes(self, ram_size: int) -> int:
        """Bytes of :meth:`runtime_bytes` the kernel already holds while the initramfs unpacks."""
        return max(0, self.runtime_bytes(ram_size) - self.after_unpack)

    def watermark_bytes(self, managed: int) -> int:
        """Free memory an ordinary allocation cannot take, with ``managed`` bytes in the allocator.

        ``min_free_kbytes = int_sqrt(lowmem_kbytes * 16)``, clamped to [128, 262144]
        (``mm/page_alloc.c``: ``init_per_zone_wmark_min``), split over the zones as their ``min``
        watermarks; plus ZONE_DMA's ``lowmem_reserve`` against allocations that may use the zone
        above it: that zone's managed pages / 256 (``sysctl_lowmem_reserve_ratio``).  0 when the
        profile keeps no watermarks.
        """
        if not self.watermarks:
            return 0
        kbytes = max(0, managed) >> 10
        min_free_k = min(max(math.isqrt(kbytes * 16), 128), 262144)
        above_dma = max(0, managed - self.dma_zone) // PAGE_SIZE
        return (min_free_k << 10) + above_dma // 256 * PAGE_SIZE


#: Flat: only the kernel image is reserved, nothing grows with RAM (bootmem's own virt machine).
FLAT = ArchProfile(name="flat", fixed=16 << 20, struct_page=0, hash_scales=())

#: Debian's 6.1 amd64 kernel under QEMU's ``pc`` machine (SeaBIOS), calibrated from its logs at
#: 128M to 2G: 54436K fixed (54432K kernel plus the model's device-tree page); page 0, the
#: ``[0x9f000, 0x100000)`` hole and SeaBIOS's top 128 KiB are not RAM; the model loads the kernel above
#: the first MiB.  After ``mem_init`` (``tests/kernel/data/debian-6.1-amd64/probe-*.log``, Debian's
#: MODULES=dep lz4 image): the probe's /proc/meminfo shows the kernel holding 24828K at 119808K of
#: RAM, 25228K at 160768K and 27348K at 512M beyond the Memory: line's reservations (0.623% of RAM
#: grows with it); its out-of-memory report at 118784K, in the unpack, shows 2858K of that allocated
#: after the unpack; 8008K of init sections are freed before init.
X86_64 = ArchProfile(
    name="x86_64",
    fixed=54432 << 10,
    low_holes=((0, PAGE_SIZE), (0x9F000, 0x100000)),
    top_hole=128 << 10,
    kernel_offset=1 << 20,
    freed_early=(("SMP alternatives", 36 << 10),),
    runtime=24082 << 10,
    runtime_growth=0.00623,
    after_unpack=2858 << 10,
    freed_late=8008 << 10,
    dma_zone=16 << 20,
    watermarks=True,
)

PROFILES: dict[str, ArchProfile] = {p.name: p for p in (FLAT, X86_64)}


def profile(name: str) -> ArchProfile:
    """The profile called ``name``; :class:`UsageError` naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise UsageError(f"unknown architecture profile {name!r} (known: {known})") from None


@dataclass(frozen=True, slots=True)
class MemoryLine:
    """The figures of one ``Memory:`` line: total RAM, and reserved less the initrd, in bytes."""

    total: int
    reserved: int
    initrd: int

    @property
    def held(self) -> int:
        """What the kernel held for itself: ``reserved`` less the initrd."""
        return self.reserved - self.initrd


def ram_size_of(arch: ArchProfile, total: int) -> int:
    """The machine's RAM size (QEMU's ``-m``) whose ``Memory:`` line says ``total`` bytes."""
    return total + arch.hole_bytes


def fit_fixed(arch: ArchProfile, line: MemoryLine, *, dtb_bytes: int = PAGE_SIZE) -> ArchProfile:
    """``arch`` with its fixed part calibrated from one ``Memory:`` line.

    The growing part stays the profile's, so a log taken at 512M predicts 344M.  ``dtb_bytes``
    is what the model reserves for its device tree, taken off the fixed part.  Raises
    :class:`UsageError` when the line leaves nothing for the kernel.
    """
    fixed = line.held - arch.growing(ram_size_of(arch, line.total)) - dtb_bytes
    if fixed <= 0:
        raise UsageError(
            f"the Memory: line's {format_k(line.reserved)} reserved leave no room for a kernel "
            f"once the {format_k(line.initrd)} initrd and the {arch.name} profile's growing part "
            "are taken off"
        )
    return replace(arch, fixed=align_up(fixed, PAGE_SIZE))


def fit_two(arch: ArchProfile, a: MemoryLine, b: MemoryLine, *, dtb_bytes: int = PAGE_SIZE) -> ArchProfile:
    """``arch`` with its fixed part and ``struct_page`` size fitted to two ``Memory:`` lines.

    The two lines must come from machines whose struct page arrays differ (RAM sizes at least a
    section apart); otherwise :class:`UsageError`.
    """
    ram_a, ram_b = ram_size_of(arch, a.total), ram_size_of(arch, b.total)
    pages_a = -(-ram_a // arch.section) * (arch.section // PAGE_SIZE)
    pages_b = -(-ram_b // arch.section) * (arch.section // PAGE_SIZE)
    if pages_a == pages_b:
        raise UsageError(
            f"logs at {format_k(a.total)} and {format_k(b.total)} have the same struct page array: "
            f"give two logs at least {arch.section >> 20}M apart"
        )
    hashes_a = sum(n for _name, n in arch.hash_tables(ram_a))
    hashes_b = sum(n for _name, n in arch.hash_tables(ram_b))
    slope = ((b.held - hashes_b) - (a.held - hashes_a)) / (pages_b - pages_a)
    struct_page = round(slope)
    if struct_page <= 0:
        raise UsageError(
            f"the logs at {format_k(a.total)} and {format_k(b.total)} reserve less with more RAM: "
            "are they from the same kernel?"
        )
    fitted = replace(arch, struct_page=struct_page)
    return fit_fixed(fitted, a, dtb_bytes=dtb_bytes)

"""The boot sequence: bootloader placement, the device-tree handoff, unpacking, releasing the initrd.

What happens, in Linux's order and with Linux's messages:

1. The bootloader loads the kernel image low, the initrd high (page aligned) and the device tree
   at the top of RAM, and writes the initrd's range into ``/chosen`` - or a given device tree says
   where the initrd is, and the image is loaded exactly there.
2. Early boot reads ``/memory`` and ``/chosen`` from the blob in RAM, reserves the kernel, and
   checks the initrd (``reserve_initrd_mem`` in init/initramfs.c, which riscv's
   ``setup_bootmem`` calls, and arm64's ``arm64_memblock_init`` reserves it at the same point):
   its page-rounded range must be inside one memory region and must not overlap what is
   reserved so far, or it is disabled.  Only then are the blob, the memreserve block and
   ``/reserved-memory`` reserved (``early_init_fdt_scan_reserved_mem``), so an initrd over
   them is kept - and freed whole later.  The model's own machine hands the initrd over as x86
   does: ``RAMDISK: [mem ...]`` with the end page-rounded (``reserve_initrd``).
3. The page allocator is built from the region lists (``memblock_free_all``): the
   ``Memory: ...K/...K available`` line.
4. rootfs is mounted - tmpfs, or ramfs when the command line names a ``root=`` - then
   ``populate_rootfs``: the built-in initramfs is unpacked, then the initrd - through a lease,
   in a thread when ``initramfs_async`` (Linux's default) while the rest of boot allocates -
   and the initrd's frames are released whether unpacking succeeded or not, unless
   ``retain_initrd``: ``Freeing initrd memory: ...K`` (no line when no page is freed), by the
   architecture's ``free_initrd_mem``: x86's ``PAGE_ALIGN(end)`` on the model's own machine
   (``exact``), generic ``free_reserved_area`` rounding inward with a device tree
   (``linux-generic``).
5. ``wait_for_initramfs``, then init runs.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bootmem.errors import BootError
from bootmem.fdt import DeviceTree
from bootmem.fs.tmpfs import Tmpfs, shmem_limits
from bootmem.kernel.arch import FLAT, ArchProfile
from bootmem.kernel.log import BootLog
from bootmem.kernel.unpack import UnpackResult, default_builtin, unpack_builtin, unpack_initrd
from bootmem.mm import PAGE_SIZE, AllocatorEvent, FrameAllocator, PageAllocator
from bootmem.mm.memblock import Region as MemblockRegion
from bootmem.report.owners import HOLE
from bootmem.units import align_down, align_up, format_k

FreePolicy = Literal["exact", "linux-generic"]
Load = Callable[[PageAllocator, threading.Event], None]

DEFAULT_RAM_BASE = 0x4000_0000
DEFAULT_KERNEL_SIZE = 16 << 20
# The kernel image is placed at a 2 MiB boundary, as arm64 and riscv require.
KERNEL_ALIGN = 2 << 20


@dataclass(frozen=True, slots=True)
class Machine:
    """A modelled machine: RAM ``[ram_base, ram_base + ram_size)`` and the kernel image's size.

    ``arch`` says what else the kernel holds before its allocator comes up (struct pages and
    hash tables that grow with RAM, holes that are not RAM; :mod:`bootmem.kernel.arch`); the
    default, ``FLAT``, holds only the kernel image.  Used when no device tree is given; with
    one, RAM comes from its ``/memory`` nodes and only ``kernel_size``, ``max_order`` and the
    growing part of ``arch`` are taken from here.
    """

    ram_size: int = 256 << 20
    ram_base: int = DEFAULT_RAM_BASE
    kernel_size: int = DEFAULT_KERNEL_SIZE
    max_order: int = 10
    arch: ArchProfile = FLAT
    #: ``CONFIG_BLK_DEV_RAM``: ``"y"`` keeps an image that is not an initramfs as
    #: ``/initrd.image``; ``"m"`` (Debian) and ``"y"`` print "Trying to unpack rootfs image as
    #: initramfs...", ``"n"`` "Unpacking initramfs..." (init/initramfs.c ``do_populate_rootfs``).
    blk_dev_ram: str = "m"

    @classmethod
    def for_arch(cls, arch: ArchProfile, ram_size: int, **kwargs: Any) -> Machine:
        """A machine of ``ram_size`` bytes whose kernel holds what ``arch`` says (``arch.fixed``)."""
        return cls(ram_size=ram_size, kernel_size=arch.fixed, arch=arch, **kwargs)

    def __post_init__(self) -> None:
        if self.blk_dev_ram not in ("y", "m", "n"):
            raise BootError(f"blk_dev_ram {self.blk_dev_ram!r} must be 'y', 'm' or 'n'")
        if self.ram_base % PAGE_SIZE or self.ram_size % PAGE_SIZE or self.ram_size <= 0:
            raise BootError(
                f"RAM {self.ram_base:#x}+{self.ram_size:#x} must be a non-empty whole number of "
                f"{PAGE_SIZE}-byte pages"
            )


@dataclass(frozen=True, slots=True)
class CommandLine:
    """What the model reads from the kernel command line, as Linux 6.1 parses it.

    Words are split as ``next_arg`` splits them (``"`` quotes spaces, a quoted value loses its
    quotes, ``--`` ends the kernel's words) and matched as ``obsolete_checksetup`` matches a
    ``__setup``: the word must start with the setup's string, ``-`` and ``_`` alike, and the rest
    goes to the setup function, which may refuse it; a refused or unknown word is ignored.

    - ``__setup("retain_initrd", ...)`` takes no value: ``retain_initrd`` keeps the initrd,
      ``retain_initrd=1`` is refused (``if (*str) return 0``), so it does not.
    - ``__setup("initramfs_async=", ...)``: ``kstrtobool`` of the value; a bare
      ``initramfs_async`` does not match, and a value ``kstrtobool`` refuses changes nothing.
    - ``root=`` and ``rootfstype=`` decide what rootfs is (init/do_mounts.c ``init_rootfs``):
      tmpfs only with no ``root=`` (or an empty one) and no ``rootfstype=`` or one that
      contains ``tmpfs``; ramfs otherwise.
    """

    text: str = ""
    retain_initrd: bool = False
    initramfs_async: bool = True  # Linux's default since 5.13
    root: str = ""  # saved_root_name
    rootfstype: str | None = None  # root_fs_names

    @property
    def rootfs_is_tmpfs(self) -> bool:
        """``init_rootfs``: ``!saved_root_name[0] && (!root_fs_names || strstr(root_fs_names,
        "tmpfs"))`` (with ``CONFIG_TMPFS``, as every distribution kernel has it)."""
        return not self.root and (self.rootfstype is None or "tmpfs" in self.rootfstype)

    @classmethod
    def parse(cls, text: str) -> CommandLine:
        retain = False
        asynchronous = True
        root = ""
        fstype: str | None = None
        for word in kernel_words(text):
            if (rest := _setup_rest(word, "retain_initrd")) is not None:
                if not rest:
                    retain = True
            elif (rest := _setup_rest(word, "initramfs_async=")) is not None:
                value = _kstrtobool(rest)
                if value is not None:
                    asynchronous = value
            elif (rest := _setup_rest(word, "root=")) is not None:
                root = rest
            elif (rest := _setup_rest(word, "rootfstype=")) is not None:
                fstype = rest
        return cls(
            text=text, retain_initrd=retain, initramfs_async=asynchronous, root=root, rootfstype=fstype
        )


def kernel_words(text: str) -> list[str]:
    """The words of a command line that are the kernel's, as ``parse_args`` / ``next_arg``
    (kernel/params.c) read them and ``unknown_bootoption`` hands them on: ``param=value``,
    quotes taken off the value (or off a word quoted whole), up to a bare ``--``.

    >>> kernel_words('a  b="c d" "e=f g" -- h')
    ['a', 'b=c d', 'e=f g']
    """
    words: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return words
        quoted = text[i] == '"'
        if quoted:
            i += 1
        start, equals, in_quote = i, -1, quoted
        while i < n and (in_quote or not text[i].isspace()):
            if equals < 0 and text[i] == "=" and i > start:
                equals = i
            if text[i] == '"':
                in_quote = not in_quote
            i += 1
        end = i
        param, value = (text[start:end], None) if equals < 0 else (text[start:equals], text[equals + 1 : end])
        if value is not None and value.startswith('"'):
            value = value[1:]
            if text[end - 1] == '"':
                value = value[:-1]
        elif quoted and end > start and text[end - 1] == '"':
            if value is None:
                param = param[:-1]
            else:
                value = value[:-1]
        if value is None and param == "--":
            return words
        words.append(param if value is None else f"{param}={value}")


def _setup_rest(word: str, setup: str) -> str | None:
    """``parameqn(word, setup, strlen(setup))``: what follows ``setup`` in ``word``, or None."""
    n = len(setup)
    if len(word) < n or word[:n].replace("-", "_") != setup.replace("-", "_"):
        return None
    return word[n:]


def _kstrtobool(value: str) -> bool | None:
    """lib/kstrtox.c ``kstrtobool``: the first character decides (``y t 1`` / ``n f 0``), ``o``
    needs a second (``on`` / ``of``); None where it returns ``-EINVAL``."""
    v = value[:2].lower()
    if v[:1] in ("y", "t", "1"):
        return True
    if v[:1] in ("n", "f", "0"):
        return False
    if v in ("on", "of"):
        return v == "on"
    return None


#: A named byte range ``[start, end)`` in the report: RAM, a reservation, the initrd.
Region = MemblockRegion[str]


@dataclass(slots=True)
class BootReport:
    """Every figure of one modelled boot.  Page counts are in ``PAGE_SIZE`` pages."""

    ram: list[Region]
    total_pages: int
    reservations: list[Region]
    initrd: Region | None
    initrd_disabled: str | None
    cmdline: CommandLine
    free_policy: FreePolicy
    available_pages: int  # free when the allocator came up: the "Memory:" line
    reserved_pages_at_init: int
    rootfs_limit_pages: int | None = 0  # tmpfs's size limit (shmem_limits at mount); None: ramfs
    rootfs_limit_inodes: int | None = None  # tmpfs's nr_inodes; None: ramfs
    rootfs_fs: str = "tmpfs"  # "ramfs" when the command line names a root= (init_rootfs)
    rootfs_pages: int = 0
    rootfs_bytes: int = 0
    rootfs_files: int = 0
    unpack_error: str | None = None  # Linux's message, as the log prints it
    unpack_detail: str | None = None  # bootmem's message, with the offset at fault
    looks_like_initrd: bool = False
    freed_pages: int = 0
    free_pages_before_release: int = 0
    free_pages_end: int = 0
    peak_used_pages: int = 0
    # What Linux has at the unpack's peak beyond the model's pages (bootmem.kernel.arch): the
    # decompressors' buffers, the bytes free once the kernel's own needs are taken off, and the
    # page allocator's watermarks; below them the boot panics (``panic``).
    unpack_workspace: int = 0
    unpack_peak_free: int = 0
    watermark_bytes: int = 0
    panic: str | None = None  # "Kernel panic - not syncing: <panic>" after the unpack
    init: str | None = None
    unpack_seconds: float = 0.0
    release_seconds: float = 0.0
    boot_seconds: float = 0.0
    phases: list[tuple[str, float]] = field(default_factory=list)
    log: BootLog = field(default_factory=BootLog)
    allocator: FrameAllocator | None = None
    rootfs: Tmpfs | None = None
    clock_origin: float = 0.0

    @property
    def ram_size(self) -> int:
        """The machine's RAM size: its ranges summed, the architecture's holes inside them included."""
        return sum(region.size for region in self.ram)

    @property
    def ok(self) -> bool:
        return self.unpack_error is None and self.initrd_disabled is None and self.panic is None

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (schema in docs/json.md)."""
        return {
            "ok": self.ok,
            "page_size": PAGE_SIZE,
            "ram": [r.to_json() for r in self.ram],
            "total_pages": self.total_pages,
            "reservations": [r.to_json() for r in self.reservations],
            "initrd": self.initrd.to_json() if self.initrd else None,
            "initrd_disabled": self.initrd_disabled,
            "cmdline": self.cmdline.text,
            "retain_initrd": self.cmdline.retain_initrd,
            "initramfs_async": self.cmdline.initramfs_async,
            "free_policy": self.free_policy,
            "available_pages": self.available_pages,
            "reserved_pages_at_init": self.reserved_pages_at_init,
            "rootfs": {
                "pages": self.rootfs_pages,
                "bytes": self.rootfs_bytes,
                "files": self.rootfs_files,
                "limit_pages": self.rootfs_limit_pages,
                "fs": self.rootfs_fs,
                "limit_inodes": self.rootfs_limit_inodes,
            },
            "unpack_error": self.unpack_error,
            "unpack_detail": self.unpack_detail,
            "looks_like_initrd": self.looks_like_initrd,
            "freed_pages": self.freed_pages,
            "free_pages_before_release": self.free_pages_before_release,
            "free_pages_end": self.free_pages_end,
            "peak_used_pages": self.peak_used_pages,
            "unpack_workspace_bytes": self.unpack_workspace,
            "unpack_peak_free_bytes": self.unpack_peak_free,
            "watermark_bytes": self.watermark_bytes,
            "panic": self.panic,
            "init": self.init,
            "seconds": {
                "unpack": self.unpack_seconds,
                "release": self.release_seconds,
                "boot": self.boot_seconds,
            },
            "phases": [{"name": n, "time": t} for n, t in self.phases],
            "log": [str(line) for line in self.log.lines],
        }


def boot(
    initrd: bytes | memoryview | None,
    *,
    machine: Machine | None = None,
    dtb: bytes | None = None,
    cmdline: str = "",
    free_policy: FreePolicy | None = None,
    rootfs_size: int | None = None,
    rootfs_share: float | None = None,
    builtin: bytes | None = None,
    no_builtin: bool = False,
    poison: int | None = 0xCC,
    load: Load | None = None,
    observer: Callable[[AllocatorEvent], None] | None = None,
    allocator_hook: Callable[[PageAllocator], None] | None = None,
    max_decompressed: int | None = None,
) -> BootReport:
    """Boot ``initrd`` on ``machine`` (or on the machine ``dtb`` describes) and report.

    ``free_policy`` is how the initrd's frames are freed; by default the architecture's: with
    ``dtb``, generic Linux's (riscv, arm64: ``linux-generic``), else x86's (``exact``).

    The rootfs's size limit follows Linux (:func:`~bootmem.fs.tmpfs.shmem_limits`): half of the
    pages the allocator manages when rootfs is mounted, or ``rootfs_size`` bytes, or
    ``rootfs_share`` of those pages (tmpfs's ``size=N%``).  ``load`` runs in the boot thread
    while an asynchronous unpack is in flight and must return once the event is set.
    ``observer`` sees every allocator event from the first reservation on; ``allocator_hook``
    is called once the allocator exists (fault injection in tests).  ``builtin`` is the
    built-in initramfs unpacked first (default: Linux's default list, ``/dev``,
    ``/dev/console``, ``/root``); ``no_builtin=True`` boots without one.

    Raises :class:`BootError` for a machine that cannot boot at all (an image that does not
    fit, a device tree without memory); a bad initrd is not an exception but a logged
    failure, as in Linux.
    """
    machine = machine or Machine()
    if free_policy is None:
        free_policy = "linux-generic" if dtb is not None else "exact"
    if free_policy not in ("exact", "linux-generic"):
        raise BootError(f"unknown free policy {free_policy!r} (exact or linux-generic)")
    if rootfs_size is not None and rootfs_share is not None:
        raise BootError("give the rootfs limit as a size or as a share, not both")
    t_start = time.perf_counter()
    log = BootLog()
    phases: list[tuple[str, float]] = []

    def phase(name: str) -> None:
        phases.append((name, log.now()))

    # A zero-length initrd is no initrd: x86's reserve_initrd returns when ramdisk_size is 0, and
    # the device tree's reserve_initrd_mem when phys_initrd_size is 0.
    image = memoryview(initrd) if initrd else None
    layout = bootloader_place(machine, image, dtb, cmdline)
    args = CommandLine.parse(layout.tree.bootargs if layout.tree.bootargs is not None else cmdline)
    _log_handoff(layout, args, log)
    phase("handoff")

    pa = PageAllocator(
        base=layout.ram[0].start,
        size=max(r.end for r in layout.ram) - layout.ram[0].start,
        max_order=machine.max_order,
        poison=poison,
    )
    if observer is not None:
        pa.subscribe(observer)
    reservations = memblock_reserve(pa, layout, image)
    initrd_region, disabled = reserve_initrd_mem(pa, layout, log)
    reservations += reserve_after_initrd(pa, layout)
    phase("reserve")

    memory = mem_init(pa, layout, log)
    if allocator_hook is not None:
        allocator_hook(pa)
    free_init_sections(pa, layout, log)

    rootfs = init_rootfs(pa, size=rootfs_size, share=rootfs_share, tmpfs=args.rootfs_is_tmpfs)
    report = BootReport(
        ram=layout.ram,
        total_pages=memory.total,
        reservations=reservations,
        initrd=initrd_region,
        initrd_disabled=disabled,
        cmdline=args,
        free_policy=free_policy,
        available_pages=memory.available,
        reserved_pages_at_init=memory.reserved,
        rootfs_limit_pages=rootfs.limit_pages,
        rootfs_limit_inodes=rootfs.limit_inodes,
        rootfs_fs="ramfs" if rootfs.ramfs else "tmpfs",
        log=log,
        allocator=pa,
        rootfs=rootfs,
        clock_origin=t_start,
    )
    populate_rootfs(
        report,
        builtin=None if no_builtin else (builtin if builtin is not None else default_builtin()),
        load=load,
        phase=phase,
        blk_dev_ram=machine.blk_dev_ram,
        max_decompressed=max_decompressed,
        arch=machine.arch,
    )
    kernel_init(report, memory.holes, phase)
    report.phases = phases
    report.boot_seconds = time.perf_counter() - t_start
    return report


# --- the phases, in Linux's order ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemoryFigures:
    """The ``Memory:`` line's figures, in pages: RAM, free when the allocator came up, reserved.

    ``holes`` are pages inside the allocator's span that are not RAM; ``total`` leaves them out.
    """

    total: int
    available: int
    holes: int

    @property
    def reserved(self) -> int:
        return self.total - self.available


def _log_handoff(layout: Layout, args: CommandLine, log: BootLog) -> None:
    log.printk(f"Machine model: {layout.model}")
    for r in layout.ram:
        log.printk(f"  node   0: [mem {r.start:#018x}-{r.end - 1:#018x}]")
    log.printk(f"Kernel command line: {args.text}")


def memblock_reserve(pa: PageAllocator, layout: Layout, image: memoryview | None) -> list[Region]:
    """Early boot's memblock reservations, before the initrd is looked at.

    Holes between ``/memory`` ranges (and the architecture's holes) are reserved as not RAM;
    the kernel image is reserved by name (riscv's ``setup_bootmem`` and arm64's
    ``arm64_memblock_init`` reserve it before the initrd).  The device tree's ``totalsize``
    bytes and the initrd's bytes are written where the bootloader put them.  Returns the named
    reservations, by the order they were made.
    """
    ram = layout.ram
    for prev, nxt in itertools.pairwise(ram):
        if nxt.start > prev.end:
            pa.reserve(prev.end, nxt.start, name=HOLE)
    for hole in layout.holes:
        pa.reserve(hole.start, hole.end, name=HOLE)
    pa.memory.write(layout.kernel.start, b"\x7fbootmem kernel image\0")
    reservations: list[Region] = []
    kernel = layout.kernel
    if layout.init_sections:
        kernel = Region(kernel.name, kernel.start, layout.init_sections[0].start)
    for region in [kernel, *layout.init_sections]:
        _check_in_ram(region, ram)
        pa.reserve(region.start, region.end, name=region.name)
        reservations.append(region)
    for region in [*layout.growing, layout.fdt, *layout.firmware]:
        _check_in_ram(region, ram)
    pa.memory.write(layout.fdt.start, layout.dtb[: layout.fdt.size])
    if image is not None and layout.initrd is not None:
        # A /chosen range outside the modelled RAM holds nothing: reserve_initrd_mem disables it.
        at = layout.initrd.start
        if ram[0].start <= at and at + len(image) <= max(r.end for r in ram):
            _load(pa, at, image)
    return reservations


_LOAD_CHUNK = 64 << 20


def _load(pa: PageAllocator, at: int, image: memoryview) -> None:
    """Copy the initrd into RAM at ``at``, as the bootloader does.

    An image mapped from a file (``mmap``) has the pages of each piece dropped from the mapping
    once copied, so the host holds the image once (in modelled RAM), not twice: they stay in
    the page cache, to be read again if something looks at the image.
    """
    # Only a read-only mapping of the whole image: a private one may hold changes, and a view
    # into a larger mapping (a UKI's section) starts elsewhere in it.
    source = image.obj if isinstance(image.obj, mmap.mmap) else None
    if source is not None and not (image.readonly and len(source) == image.nbytes):
        source = None
    for start in range(0, len(image), _LOAD_CHUNK):
        piece = image[start : start + _LOAD_CHUNK]
        pa.memory.write(at + start, piece)
        if source is not None:
            with contextlib.suppress(OSError, ValueError):
                source.madvise(mmap.MADV_DONTNEED, start, len(piece))


def reserve_after_initrd(pa: PageAllocator, layout: Layout) -> list[Region]:
    """The reservations made after the initrd's: the device tree (riscv's ``setup_bootmem``),
    its memreserve block and ``/reserved-memory`` (``early_init_fdt_scan_reserved_mem``), and
    what memblock allocates later (struct pages, hash tables).  Bytes the initrd already holds
    stay the initrd's, and are freed with it, as ``free_reserved_area`` frees them in Linux."""
    regions = [*layout.growing, layout.fdt, *layout.firmware]
    for region in regions:
        pa.reserve(region.start, region.end, name=region.name)
    return regions


def reserve_initrd_mem(pa: PageAllocator, layout: Layout, log: BootLog) -> tuple[Region | None, str | None]:
    """init/initramfs.c ``reserve_initrd_mem``: check the page-rounded range, then reserve it.

    The check sees only what is reserved before it: the holes and the kernel image (see
    :func:`memblock_reserve`).  On the model's own machine the handoff is x86's, whose
    ``reserve_initrd`` prints ``RAMDISK: [mem start-end]`` with ``end`` the last byte of the
    initrd's last page (``PAGE_ALIGN``); riscv and arm64 print no such line.  Returns the
    reserved initrd, or ``None`` and Linux's message when it is disabled.
    """
    placed = layout.initrd
    if placed is None:
        return None, None
    start = align_down(placed.start, PAGE_SIZE)
    size = align_up(placed.end - start, PAGE_SIZE)
    where = f"INITRD: 0x{start:08x}+0x{size:08x}"
    if not any(r.start <= start and start + size <= r.end for r in layout.ram):
        message = f"{where} is not a memory region - disabling initrd"
        log.printk(message, level="err")
        return None, message
    if any(s < start + size and start < e for _name, s, e in pa.reserved_regions()):
        log.printk(f"{where} overlaps in-use memory region", level="err")
        log.printk(" - disabling initrd", level="err")
        return None, f"{where} overlaps in-use memory region - disabling initrd"
    pa.reserve(placed.start, placed.end, name="initrd")
    if not layout.given_dtb:
        log.printk(f"RAMDISK: [mem {placed.start:#010x}-{align_up(placed.end, PAGE_SIZE) - 1:#010x}]")
    return placed, None


def mem_init(pa: PageAllocator, layout: Layout, log: BootLog) -> MemoryFigures:
    """``memblock_free_all`` has handed the free pages to the allocator: the ``Memory:`` line.

    As ``mem_init_print_info``: available is what is free, the total leaves out what is not
    RAM, reserved is the rest (the kernel, struct pages, hash tables, device tree, initrd).
    """
    stats = pa.stats()
    holes = pa.pages_by_owner().get(HOLE, 0)
    figures = MemoryFigures(total=stats["total"] - holes, available=stats["free"], holes=holes)
    log.printk(
        f"Memory: {format_k(figures.available * PAGE_SIZE)}/{format_k(figures.total * PAGE_SIZE)} available "
        f"({format_k(layout.kernel.size)} kernel code, {format_k(figures.reserved * PAGE_SIZE)} reserved, "
        "0K cma-reserved)"
    )
    return figures


def free_init_sections(pa: PageAllocator, layout: Layout, log: BootLog) -> None:
    """Parts of the kernel image freed before rootfs is mounted (``free_init_pages``), as the
    architecture says: x86's ``alternative_instructions`` on one CPU frees the SMP alternatives."""
    for section in layout.init_sections:
        freed = pa.release_reserved(section.start, section.end)
        log.printk(f"Freeing {section.name} memory: {format_k(freed * PAGE_SIZE)}")


def init_rootfs(
    pa: PageAllocator, *, size: int | None = None, share: float | None = None, tmpfs: bool = True
) -> Tmpfs:
    """Mount rootfs (``init_mount_tree``, from ``vfs_caches_init`` after ``mm_init``).

    With ``tmpfs`` (:attr:`CommandLine.rootfs_is_tmpfs`) its limits are
    :func:`~bootmem.fs.tmpfs.shmem_limits` of ``totalram_pages()`` at that moment: the pages the
    allocator manages (free or allocated), not those memblock kept; ``size`` or ``share``
    override the blocks.  Without, rootfs is ramfs (``rootfs_init_fs_context``): no limit but
    RAM, and ``size`` and ``share`` do not apply.
    """
    if not tmpfs:
        return Tmpfs(pa, ramfs=True)
    stats = pa.stats()
    blocks, _inodes = shmem_limits(stats["free"] + stats["allocated"], size=size, share=share)
    return Tmpfs(pa, size_limit=blocks * PAGE_SIZE)


def populate_rootfs(
    report: BootReport,
    *,
    builtin: bytes | None,
    load: Load | None,
    phase: Callable[[str], None],
    blk_dev_ram: str = "m",
    max_decompressed: int | None = None,
    arch: ArchProfile = FLAT,
) -> None:
    """init/initramfs.c ``populate_rootfs`` and ``do_populate_rootfs``, then ``wait_for_initramfs``.

    ``blk_dev_ram`` is :attr:`Machine.blk_dev_ram`; ``max_decompressed`` is :func:`boot`'s;
    ``arch`` says what the kernel holds beyond the model's pages (:func:`out_of_memory`).

    The built-in initramfs first (an error there is a panic: :class:`BootError`), then the
    initrd through a lease, then ``free_initrd_mem`` unless ``retain_initrd`` - in a thread
    when ``initramfs_async``, while ``load`` allocates in the boot thread.
    """
    pa, rootfs, log = _buddy(report), report.rootfs, report.log
    assert pa is not None and rootfs is not None
    if builtin is not None:
        err = unpack_builtin(builtin, rootfs)
        if err is not None:
            raise BootError(f"Kernel panic - not syncing: {err.message}")
    initrd = report.initrd
    retain = report.cmdline.retain_initrd

    def do_populate_rootfs() -> None:
        phase("unpack start")
        t0 = time.perf_counter()
        if initrd is not None:
            if blk_dev_ram in ("y", "m"):  # IS_ENABLED(CONFIG_BLK_DEV_RAM)
                log.printk("Trying to unpack rootfs image as initramfs...")
            else:
                log.printk("Unpacking initramfs...")
            result = unpack_initrd(
                pa,
                initrd.start,
                initrd.end,
                rootfs,
                blk_dev_ram=blk_dev_ram == "y",
                builtin=builtin,
                max_decompressed=max_decompressed,
            )
            if not out_of_memory(report, arch, result.workspace):
                _log_unpack(result, report, log)
        report.unpack_seconds = time.perf_counter() - t0
        phase("unpack end")
        if report.panic is None and initrd is not None and not retain:
            free_initrd_mem(report, initrd)
            phase("release")

    if not report.cmdline.initramfs_async:
        do_populate_rootfs()
        if load is not None:
            finished = threading.Event()
            finished.set()
            load(pa, finished)
        return
    worker_error: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            do_populate_rootfs()
        except BaseException as exc:  # handed to the boot thread below
            worker_error.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=run, name="initramfs")
    worker.start()
    if load is not None:
        load(pa, done)
    worker.join()  # wait_for_initramfs()
    if worker_error:
        raise worker_error[0]


def _buddy(report: BootReport) -> PageAllocator:
    """The report's allocator: a Linux boot builds the buddy :class:`PageAllocator`."""
    assert isinstance(report.allocator, PageAllocator)
    return report.allocator


#: mm/oom_kill.c ``out_of_memory``'s panic when it finds no process to kill.
DEADLOCK = "System is deadlocked on memory"


def out_of_memory(report: BootReport, arch: ArchProfile, workspace: int) -> bool:
    """Whether the unpack left the kernel deadlocked on memory, said as Linux says it.

    At the unpack's peak the initrd and everything written to the rootfs are held, and besides
    the model's pages the kernel holds most of its runtime footprint
    (:meth:`~bootmem.kernel.arch.ArchProfile.unpack_runtime_bytes`) and the decompressors'
    ``workspace``.  When what is left is below the page allocator's watermarks
    (:meth:`~bootmem.kernel.arch.ArchProfile.watermark_bytes`), ordinary allocations fail, the
    out-of-memory killer finds no process to kill (init has not started), and ``out_of_memory``
    panics.  Linux then never reports how the unpack ended.  A profile that models none of this
    (``flat``) never runs out here: the model's own pages are the limit.
    """
    pa = _buddy(report)
    if not (arch.runtime or arch.watermarks):
        workspace = 0
    report.unpack_workspace = workspace
    runtime = arch.unpack_runtime_bytes(report.ram_size)
    report.unpack_peak_free = pa.stats()["free"] * PAGE_SIZE - runtime - workspace
    report.watermark_bytes = arch.watermark_bytes(report.available_pages * PAGE_SIZE)
    if report.unpack_peak_free >= report.watermark_bytes:
        return False
    report.panic = DEADLOCK
    report.log.printk("Out of memory and no killable processes...", level="warning")
    report.log.printk(f"Kernel panic - not syncing: {report.panic}", level="emerg")
    return True


def free_initrd_mem(report: BootReport, initrd: Region) -> None:
    """Give the initrd's frames back (``free_initrd_mem``): ``Freeing initrd memory: ...K``."""
    pa = _buddy(report)
    report.free_pages_before_release = pa.stats()["free"]
    t1 = time.perf_counter()
    freed = pa.release_reserved(initrd.start, initrd.end, policy=report.free_policy)
    report.release_seconds = time.perf_counter() - t1
    report.freed_pages = freed
    if freed:  # free_reserved_area prints only when it freed pages
        report.log.printk(f"Freeing initrd memory: {format_k(freed * PAGE_SIZE)}")


def kernel_init(report: BootReport, hole_pages: int, phase: Callable[[str], None]) -> None:
    """init/main.c ``kernel_init``: the rootfs's figures, then ``/init`` or a fallback, or a panic."""
    pa, rootfs = _buddy(report), report.rootfs
    assert pa is not None and rootfs is not None
    report.rootfs_pages = rootfs.used_pages
    report.rootfs_bytes = rootfs.used_bytes
    report.rootfs_files = sum(1 for _ in rootfs.walk())
    report.free_pages_end = pa.stats()["free"]
    # The allocator's high-water mark counts the holes, which are not RAM.
    report.peak_used_pages = pa.peak_used - hole_pages
    if report.panic is not None:
        return
    report.init = _find_init(rootfs)
    phase("init")
    if report.init is not None:
        report.log.printk(f"Run {report.init} as init process")
    else:
        report.log.printk("Kernel panic - not syncing: No working init found.", level="emerg")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the bootloader put everything, and the device tree it hands over.

    ``ram`` is the RAM the tree declares; ``holes`` the architecture's ranges inside it that are
    not RAM; ``growing`` the reservations whose size follows RAM (struct pages, hash tables),
    placed after the kernel image; ``init_sections`` the top of the kernel image that is freed
    before rootfs is mounted; ``fdt`` covers the blob's ``totalsize`` bytes.
    """

    tree: DeviceTree
    dtb: bytes
    model: str
    ram: list[Region]
    holes: list[Region]
    kernel: Region
    init_sections: list[Region]
    growing: list[Region]
    fdt: Region
    firmware: list[Region]
    initrd: Region | None
    given_dtb: bool = False  # a device tree was given (riscv, arm64); else the model's own machine


def bootloader_place(machine: Machine, image: memoryview | None, dtb: bytes | None, cmdline: str) -> Layout:
    """Where the bootloader puts the kernel, the device tree and the initrd.

    Without ``dtb``: the kernel at the architecture's offset (2 MiB aligned), the initrd page
    aligned just below the device tree, and the tree at the top of RAM below the
    architecture's top hole.  With one: RAM, reservations and the initrd's place come from the
    tree.  Raises :class:`BootError` when something does not fit.
    """
    if dtb is not None:
        return _place_with_dtb(machine, image, dtb)
    arch = machine.arch
    ram_start, ram_end = machine.ram_base, machine.ram_base + machine.ram_size
    holes = [Region(HOLE, ram_start + a, ram_start + b) for a, b in arch.low_holes]
    if arch.top_hole:
        holes.append(Region(HOLE, ram_end - arch.top_hole, ram_end))
    top = ram_end - arch.top_hole
    kernel, sections, growing = _place_kernel(
        machine, align_up(ram_start + arch.kernel_offset, KERNEL_ALIGN), []
    )
    low_end = growing[-1].end if growing else kernel.end
    size = len(image) if image is not None else 0
    # The blob's size does not depend on the addresses in it (fixed cell widths), so a first
    # build with the final shape tells where the top of RAM leaves room for it.
    probe = DeviceTree.build(
        memory=[(ram_start, ram_end)],
        initrd=(ram_start, ram_start + size) if image else None,
        bootargs=cmdline,
    )
    fdt_start = align_down(top - len(probe), PAGE_SIZE)
    initrd: Region | None = None
    if image is not None:
        start = align_down(fdt_start - size, PAGE_SIZE)
        if start < low_end:
            raise BootError(
                f"initrd of {size} bytes does not fit in RAM {ram_start:#x}-{ram_end:#x} "
                f"above a {machine.kernel_size:#x}-byte kernel"
            )
        initrd = Region("initrd", start, start + size)
    if low_end > fdt_start:
        raise BootError(
            f"kernel of {machine.kernel_size:#x} bytes does not fit in RAM {ram_start:#x}-{ram_end:#x}"
        )
    blob = DeviceTree.build(
        memory=[(ram_start, ram_end)],
        initrd=(initrd.start, initrd.end) if initrd else None,
        bootargs=cmdline,
    )
    assert len(blob) == len(probe)
    tree = DeviceTree.from_bytes(blob)
    return Layout(
        tree=tree,
        dtb=blob,
        model="bootmem,virt",
        ram=[Region("System RAM", ram_start, ram_end)],
        holes=holes,
        kernel=kernel,
        init_sections=sections,
        growing=growing,
        fdt=Region("Device tree", fdt_start, fdt_start + len(blob)),
        firmware=[],
        initrd=initrd,
    )


def _place_kernel(
    machine: Machine, start: int, firmware: list[Region], initrd: Region | None = None
) -> tuple[Region, list[Region], list[Region]]:
    """The kernel image at ``start`` or the next 2 MiB boundary clear of ``firmware``, then the
    reservations that grow with RAM right above it, or above ``initrd`` when they would overlap
    it (memblock allocates them after the initrd is reserved, so never over it; where they lie
    does not change any figure)."""
    ram_size = machine.ram_size
    sizes = [("struct pages", machine.arch.memmap_bytes(ram_size))]
    sizes += [(f"{name} hash table", n) for name, n in machine.arch.hash_tables(ram_size)]
    sizes = [(name, n) for name, n in sizes if n]
    footprint = machine.kernel_size + sum(n for _name, n in sizes)
    while any(_overlaps(start, start + footprint, f) for f in firmware):
        start += KERNEL_ALIGN
    kernel = Region("Kernel image", start, start + machine.kernel_size)
    sections: list[Region] = []
    top = kernel.end
    for name, n in reversed(machine.arch.freed_early):
        sections.insert(0, Region(name, top - n, top))
        top -= n
    growing: list[Region] = []
    at = align_up(kernel.end, PAGE_SIZE)
    grown = sum(n for _name, n in sizes)
    if initrd is not None and grown and _overlaps(at, at + grown, initrd):
        at = align_up(initrd.end, PAGE_SIZE)
    for name, n in sizes:
        growing.append(Region(name, at, at + n))
        at += n
    return kernel, sections, growing


def _place_with_dtb(machine: Machine, image: memoryview | None, dtb: bytes) -> Layout:
    tree = DeviceTree.from_bytes(dtb)
    memory = tree.memory
    if not memory:
        raise BootError("device tree declares no memory (no /memory node with a reg)")
    ram = [Region("System RAM", r.start, r.end) for r in memory]
    firmware = [Region(r.name, r.start, r.end) for r in [*tree.memreserve, *tree.reserved_memory]]
    top = max(r.end for r in memory)
    # A bootloader copies the blob's totalsize bytes; a file may be padded past them (QEMU's
    # -machine dumpdtb writes a 1 MiB buffer).
    fdt_start = align_down(top - tree.totalsize, PAGE_SIZE)
    fdt = Region("Device tree", fdt_start, fdt_start + tree.totalsize)
    chosen = tree.initrd
    initrd: Region | None = None
    if chosen is not None and chosen.size:
        if image is None:
            raise BootError(
                f"device tree places an initrd at {chosen.start:#x}-{chosen.end:#x}: "
                "give the image with --initrd"
            )
        if len(image) > chosen.size:
            raise BootError(
                f"initrd of {len(image)} bytes does not fit the {chosen.size} bytes /chosen gives it "
                f"({chosen.start:#x}-{chosen.end:#x})"
            )
        initrd = Region("initrd", chosen.start, chosen.end)
    kernel, sections, growing = _place_kernel(
        machine, align_up(memory[0].start, KERNEL_ALIGN), firmware, initrd
    )
    if initrd is None and image is not None:
        start = align_down(fdt_start - len(image), PAGE_SIZE)
        initrd = Region("initrd", start, start + len(image))
    return Layout(
        tree=tree,
        dtb=dtb,
        model="bootmem,dtb",
        ram=ram,
        holes=[],
        kernel=kernel,
        init_sections=sections,
        growing=growing,
        fdt=fdt,
        firmware=firmware,
        initrd=initrd,
        given_dtb=True,
    )


def _overlaps(start: int, end: int, region: Region) -> bool:
    return start < region.end and region.start < end


def _check_in_ram(region: Region, ram: list[Region]) -> None:
    if not any(r.start <= region.start and region.end <= r.end for r in ram):
        raise BootError(f"{region.name} {region.start:#x}-{region.end:#x} is not inside RAM")


def _log_unpack(result: UnpackResult, report: BootReport, log: BootLog) -> None:
    if result.error is None:
        return
    report.unpack_error = result.error.message
    report.unpack_detail = result.error.detail
    report.looks_like_initrd = result.looks_like_initrd
    if result.looks_like_initrd:
        log.printk(f"rootfs image is not initramfs ({result.error.message}); looks like an initrd")
    else:
        log.printk(f"Initramfs unpacking failed: {result.error.message}", level="emerg")


def _find_init(rootfs: Tmpfs) -> str | None:
    """init/main.c ``kernel_init``: ``/init`` when it exists, then the usual fallbacks."""
    for path in ("/init", "/sbin/init", "/etc/init", "/bin/init", "/bin/sh"):
        if rootfs.exists(path):
            return path
    return None

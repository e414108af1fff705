"""The boot sequence: bootloader placement, the device-tree handoff, unpacking, releasing the initrd.

What happens, in Linux's order and with Linux's messages:

1. The bootloader loads the kernel image low, the initrd high (page aligned) and the device tree
   at the top of RAM, and writes the initrd's range into ``/chosen`` - or a given device tree says
   where the initrd is, and the image is loaded exactly there.
2. Early boot reads ``/memory``, the memreserve block, ``/reserved-memory`` and ``/chosen`` from
   the blob in RAM, reserves the kernel, the blob and those regions, and checks the initrd
   (``reserve_initrd_mem`` in init/initramfs.c): its page-rounded range must be inside one
   memory region and must not overlap a reservation, or it is disabled.
3. The page allocator is built from the region lists (``memblock_free_all``): the
   ``Memory: ...K/...K available`` line.
4. ``populate_rootfs``: the built-in initramfs is unpacked, then the initrd - through a lease,
   in a thread when ``initramfs_async`` (Linux's default) while the rest of boot allocates -
   and the initrd's frames are released whether unpacking succeeded or not, unless
   ``retain_initrd``: ``Freeing initrd memory: ...K``.
5. ``wait_for_initramfs``, then init runs.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bootmem.errors import BootError
from bootmem.fdt import DeviceTree, ReservedRegion
from bootmem.fs.tmpfs import Tmpfs
from bootmem.kernel.log import BootLog
from bootmem.kernel.unpack import UnpackResult, default_builtin, unpack_builtin, unpack_initrd
from bootmem.mm import PAGE_SIZE, AllocatorEvent, PageAllocator
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

    Used when no device tree is given; with one, RAM comes from its ``/memory`` nodes and only
    ``kernel_size`` and ``max_order`` are taken from here.
    """

    ram_size: int = 256 << 20
    ram_base: int = DEFAULT_RAM_BASE
    kernel_size: int = DEFAULT_KERNEL_SIZE
    max_order: int = 10

    def __post_init__(self) -> None:
        if self.ram_base % PAGE_SIZE or self.ram_size % PAGE_SIZE or self.ram_size <= 0:
            raise BootError(
                f"RAM {self.ram_base:#x}+{self.ram_size:#x} must be a non-empty whole number of "
                f"{PAGE_SIZE}-byte pages"
            )


@dataclass(frozen=True, slots=True)
class CommandLine:
    """What the model reads from the kernel command line, as Linux parses it."""

    text: str = ""
    retain_initrd: bool = False
    initramfs_async: bool = True  # Linux's default since 5.13

    @classmethod
    def parse(cls, text: str) -> CommandLine:
        retain = False
        asynchronous = True
        for word in text.split():
            key, _, value = word.partition("=")
            if key == "retain_initrd":
                retain = True
            elif key == "initramfs_async":
                asynchronous = _kstrtobool(value, word)
        return cls(text=text, retain_initrd=retain, initramfs_async=asynchronous)


def _kstrtobool(value: str, word: str) -> bool:
    # lib/kstrtox.c kstrtobool: the first character decides; "on"/"off" need the second.
    v = value.lower()
    if v[:1] in ("y", "1", "t") or v == "on":
        return True
    if v[:1] in ("n", "0", "f") or v == "off":
        return False
    raise BootError(f"bad value in {word!r}: expected 0/1, y/n, on/off")


@dataclass(frozen=True, slots=True, repr=False)
class Region(ReservedRegion):
    """A named byte range ``[start, end)`` in the report: RAM, a reservation, the initrd."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "start": self.start, "end": self.end, "size": self.size}


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
    init: str | None = None
    unpack_seconds: float = 0.0
    release_seconds: float = 0.0
    boot_seconds: float = 0.0
    phases: list[tuple[str, float]] = field(default_factory=list)
    log: BootLog = field(default_factory=BootLog)
    allocator: PageAllocator | None = None
    rootfs: Tmpfs | None = None
    clock_origin: float = 0.0

    @property
    def ok(self) -> bool:
        return self.unpack_error is None and self.initrd_disabled is None

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
            "rootfs": {"pages": self.rootfs_pages, "bytes": self.rootfs_bytes, "files": self.rootfs_files},
            "unpack_error": self.unpack_error,
            "unpack_detail": self.unpack_detail,
            "looks_like_initrd": self.looks_like_initrd,
            "freed_pages": self.freed_pages,
            "free_pages_before_release": self.free_pages_before_release,
            "free_pages_end": self.free_pages_end,
            "peak_used_pages": self.peak_used_pages,
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
    free_policy: FreePolicy = "exact",
    rootfs_size: int | None = None,
    builtin: bytes | None = None,
    no_builtin: bool = False,
    poison: int | None = 0xCC,
    load: Load | None = None,
    observer: Callable[[AllocatorEvent], None] | None = None,
    allocator_hook: Callable[[PageAllocator], None] | None = None,
) -> BootReport:
    """Boot ``initrd`` on ``machine`` (or on the machine ``dtb`` describes) and report.

    ``rootfs_size`` is the tmpfs limit in bytes (default: half the pages the allocator manages,
    as Linux).  ``load`` runs in the boot thread while an asynchronous unpack is in flight and
    must return once the event is set.  ``observer`` sees every allocator event from the first reservation on;
    ``allocator_hook`` is called once the allocator exists (fault injection in tests).
    ``builtin`` is the built-in initramfs unpacked first (default: Linux's default list,
    ``/dev``, ``/dev/console``, ``/root``); ``no_builtin=True`` boots without one.

    Raises :class:`BootError` for a machine that cannot boot at all (an image that does not
    fit, a device tree without memory); a bad initrd is not an exception but a logged
    failure, as in Linux.
    """
    machine = machine or Machine()
    if free_policy not in ("exact", "linux-generic"):
        raise BootError(f"unknown free policy {free_policy!r} (exact or linux-generic)")
    t_start = time.perf_counter()
    log = BootLog()
    phases: list[tuple[str, float]] = []

    def phase(name: str) -> None:
        phases.append((name, log.now()))

    image = memoryview(initrd) if initrd is not None else None
    layout = _place(machine, image, dtb, cmdline)
    tree = layout.tree
    ram = [Region("System RAM", r.start, r.end) for r in tree.memory]
    if not ram:
        raise BootError("device tree declares no memory (no /memory node with a reg)")
    args = CommandLine.parse(tree.bootargs if tree.bootargs is not None else cmdline)

    log.printk(f"Machine model: {layout.model}")
    for r in ram:
        log.printk(f"  node   0: [mem {r.start:#018x}-{r.end - 1:#018x}]")
    log.printk(f"Kernel command line: {args.text}")
    phase("handoff")

    lo, hi = ram[0].start, max(r.end for r in ram)
    pa = PageAllocator(base=lo, size=hi - lo, max_order=machine.max_order, poison=poison)
    if observer is not None:
        pa.subscribe(observer)
    pa.memory.write(layout.kernel.start, b"\x7fbootmem kernel image\0")
    reservations: list[Region] = []
    # Holes between /memory ranges are not RAM: keep them out of the allocator.
    for prev, nxt in itertools.pairwise(ram):
        if nxt.start > prev.end:
            pa.reserve(prev.end, nxt.start, name="(no RAM)")
    for region in [layout.kernel, layout.fdt, *layout.firmware]:
        _check_in_ram(region, ram)
        pa.reserve(region.start, region.end, name=region.name)
        reservations.append(region)
    pa.memory.write(layout.fdt.start, layout.dtb)
    if image is not None and layout.initrd is not None:
        # A /chosen range outside the modelled RAM holds nothing: the check below disables it.
        at = layout.initrd.start
        if lo <= at and at + len(image) <= hi:
            pa.memory.write(at, image)

    initrd_region, disabled = _reserve_initrd(pa, tree, ram, log, layout.initrd)
    phase("reserve")
    if initrd_region is not None:
        log.printk(f"RAMDISK: [mem {initrd_region.start:#010x}-{initrd_region.end - 1:#010x}]")

    stats = pa.stats()
    hole_pages = pa.pages_by_owner().get("(no RAM)", 0)
    total = stats["total"] - hole_pages
    available = stats["free"]
    reserved_now = total - available
    kernel_k = format_k(layout.kernel.size)
    log.printk(
        f"Memory: {format_k(available * PAGE_SIZE)}/{format_k(total * PAGE_SIZE)} available "
        f"({kernel_k} kernel code, {format_k(reserved_now * PAGE_SIZE)} reserved, 0K cma-reserved)"
    )
    if allocator_hook is not None:
        allocator_hook(pa)

    # shmem_default_max_blocks(): half of totalram_pages() when rootfs is mounted, which
    # counts the pages the allocator manages, not those memblock kept (kernel, initrd).
    limit = rootfs_size if rootfs_size is not None else available * PAGE_SIZE // 2
    rootfs = Tmpfs(pa, size_limit=limit)
    report = BootReport(
        ram=ram,
        total_pages=total,
        reservations=reservations,
        initrd=initrd_region,
        initrd_disabled=disabled,
        cmdline=args,
        free_policy=free_policy,
        available_pages=available,
        reserved_pages_at_init=reserved_now,
        log=log,
        allocator=pa,
        rootfs=rootfs,
        clock_origin=t_start,
    )
    # populate_rootfs: the built-in initramfs first (its errors panic in Linux).
    if not no_builtin:
        err = unpack_builtin(builtin if builtin is not None else default_builtin(), rootfs)
        if err is not None:
            raise BootError(f"Kernel panic - not syncing: {err.message}")

    def populate() -> None:
        phase("unpack start")
        t0 = time.perf_counter()
        if initrd_region is not None:
            log.printk("Trying to unpack rootfs image as initramfs...")
            result = unpack_initrd(pa, initrd_region.start, initrd_region.end, rootfs)
            _log_unpack(result, report, log)
        report.unpack_seconds = time.perf_counter() - t0
        phase("unpack end")
        if initrd_region is not None and not args.retain_initrd:
            report.free_pages_before_release = pa.stats()["free"]
            t1 = time.perf_counter()
            freed = pa.release_reserved(initrd_region.start, initrd_region.end, policy=free_policy)
            report.release_seconds = time.perf_counter() - t1
            report.freed_pages = freed
            phase("release")
            log.printk(f"Freeing initrd memory: {format_k(freed * PAGE_SIZE)}")

    if args.initramfs_async:
        worker_error: list[BaseException] = []

        done = threading.Event()

        def run() -> None:
            try:
                populate()
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
    else:
        populate()
        if load is not None:
            finished = threading.Event()
            finished.set()
            load(pa, finished)

    report.rootfs_pages = rootfs.used_pages
    report.rootfs_bytes = rootfs.used_bytes
    report.rootfs_files = sum(1 for _ in rootfs.walk())
    report.free_pages_end = pa.stats()["free"]
    # The allocator's high-water mark counts the holes between /memory ranges, which are not RAM.
    report.peak_used_pages = pa.peak_used - hole_pages
    report.init = _find_init(rootfs)
    phase("init")
    if report.init is not None:
        log.printk(f"Run {report.init} as init process")
    else:
        log.printk("Kernel panic - not syncing: No working init found.", level="emerg")
    report.phases = phases
    report.boot_seconds = time.perf_counter() - t_start
    return report


@dataclass(frozen=True, slots=True)
class _Layout:
    tree: DeviceTree
    dtb: bytes
    model: str
    kernel: Region
    fdt: Region
    firmware: list[Region]
    initrd: Region | None


def _place(machine: Machine, image: memoryview | None, dtb: bytes | None, cmdline: str) -> _Layout:
    """Where the bootloader puts the kernel, the device tree and the initrd."""
    if dtb is not None:
        return _place_with_dtb(machine, image, dtb, cmdline)
    ram_start, ram_end = machine.ram_base, machine.ram_base + machine.ram_size
    kernel = Region("Kernel image", align_up(ram_start, KERNEL_ALIGN), 0)
    kernel = Region(kernel.name, kernel.start, kernel.start + machine.kernel_size)
    size = len(image) if image is not None else 0
    # The blob's size does not depend on the addresses in it (fixed cell widths), so a first
    # build with the final shape tells where the top of RAM leaves room for it.
    probe = DeviceTree.build(
        memory=[(ram_start, ram_end)],
        initrd=(ram_start, ram_start + size) if image else None,
        bootargs=cmdline,
    )
    fdt_start = align_down(ram_end - len(probe), PAGE_SIZE)
    initrd: Region | None = None
    if image is not None:
        start = align_down(fdt_start - size, PAGE_SIZE)
        if start < kernel.end:
            raise BootError(
                f"initrd of {size} bytes does not fit in RAM {ram_start:#x}-{ram_end:#x} "
                f"above a {machine.kernel_size:#x}-byte kernel"
            )
        initrd = Region("initrd", start, start + size)
    if kernel.end > fdt_start:
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
    return _Layout(
        tree,
        blob,
        "bootmem,virt",
        kernel,
        Region("Device tree", fdt_start, fdt_start + len(blob)),
        [],
        initrd,
    )


def _place_with_dtb(machine: Machine, image: memoryview | None, dtb: bytes, cmdline: str) -> _Layout:
    tree = DeviceTree.from_bytes(dtb)
    memory = tree.memory
    if not memory:
        raise BootError("device tree declares no memory (no /memory node with a reg)")
    firmware = [Region(r.name, r.start, r.end) for r in [*tree.memreserve, *tree.reserved_memory]]
    first = memory[0]
    kernel_start = align_up(first.start, KERNEL_ALIGN)
    while any(_overlaps(kernel_start, kernel_start + machine.kernel_size, f) for f in firmware):
        kernel_start += KERNEL_ALIGN
    kernel = Region("Kernel image", kernel_start, kernel_start + machine.kernel_size)
    top = max(r.end for r in memory)
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
    elif image is not None:
        start = align_down(fdt_start - len(image), PAGE_SIZE)
        initrd = Region("initrd", start, start + len(image))
    model = "bootmem,dtb"
    return _Layout(tree, dtb, model, kernel, fdt, firmware, initrd)


def _overlaps(start: int, end: int, region: Region) -> bool:
    return start < region.end and region.start < end


def _check_in_ram(region: Region, ram: list[Region]) -> None:
    if not any(r.start <= region.start and region.end <= r.end for r in ram):
        raise BootError(f"{region.name} {region.start:#x}-{region.end:#x} is not inside RAM")


def _reserve_initrd(
    pa: PageAllocator, tree: DeviceTree, ram: list[Region], log: BootLog, placed: Region | None
) -> tuple[Region | None, str | None]:
    """init/initramfs.c ``reserve_initrd_mem``: check the page-rounded range, then reserve it."""
    if placed is None:
        return None, None
    start = align_down(placed.start, PAGE_SIZE)
    size = align_up(placed.end - start, PAGE_SIZE)
    where = f"INITRD: 0x{start:08x}+0x{size:08x}"
    if not any(r.start <= start and start + size <= r.end for r in ram):
        message = f"{where} is not a memory region - disabling initrd"
        log.printk(message, level="err")
        return None, message
    if any(s < start + size and start < e for _name, s, e in pa.reserved_regions()):
        log.printk(f"{where} overlaps in-use memory region", level="err")
        log.printk(" - disabling initrd", level="err")
        return None, f"{where} overlaps in-use memory region - disabling initrd"
    pa.reserve(placed.start, placed.end, name="initrd")
    return placed, None


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

"""Solaya's boot, as its source reads: the initrd handoff, ``init_page_allocator``, ``extract()``,
and the ``release_reserved`` Solaya plans to call after it.

Solaya (github.com/sysheap/solaya, a RISC-V kernel in Rust) boots on QEMU's riscv ``virt``
machine.  What this module follows, file by file:

* crates/kernel/src/initramfs/mod.rs - ``find_initrd_range()`` reads ``/chosen``
  ``linux,initrd-start`` and ``-end`` as big-endian integers of exactly 4 or 8 bytes (any other
  length reads as "no initrd"; before commit 3cdc2f8 only 8 bytes were accepted:
  ``chosen_widths=(8,)``), and ``extract()`` walks one newc archive into the tmpfs root;
* crates/kernel/src/initramfs/cpio.rs - the newc reader: magic ``070701`` only, a 110-byte
  header, NUL-terminated UTF-8 name, data padded to 4 bytes, iteration ending at
  ``TRAILER!!!`` (whatever follows it is never read);
* crates/kernel/src/lib.rs and memory/mod.rs - the device tree and the initrd are the reserved
  areas of ``init_page_allocator``; the heap runs from the end of the kernel image to the end
  of the first ``/memory`` range; ``fs::init()`` then ``initramfs::extract()``;
* crates/mm/src/page_allocator.rs - :class:`~bootmem.mm.solaya.SolayaAllocator`.

Placement follows QEMU's hw/riscv/boot.c: OpenSBI at the bottom of RAM, the kernel at
``RAM + 2 MiB``, the initrd at ``kernel + min(RAM / 2, 512 MiB)``
(``riscv_load_initrd``) and the device tree at the top of RAM aligned down to 2 MiB
(``riscv_compute_fdt_addr`` for RV64).

Where Solaya and Linux treat an image differently, :func:`boot` says so per path
(:class:`Difference`), from Solaya's own rules and from comparing the rootfs Solaya builds with
the one Linux's unpacker (:mod:`bootmem.kernel.unpack`) builds from the same bytes.
"""

from __future__ import annotations

import errno
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import libfdt

from bootmem.errors import BootError, BootmemError, TmpfsError
from bootmem.fdt import DeviceTree
from bootmem.fs.tmpfs import Tmpfs
from bootmem.kernel.boot import BootReport, CommandLine, Region
from bootmem.kernel.log import BootLog
from bootmem.kernel.unpack import unpack_to_rootfs
from bootmem.mm import PAGE_SIZE, AllocatorEvent, FrameAllocator, PageAllocator, SolayaAllocator
from bootmem.units import align_down, align_up, format_size

QEMU_VIRT_DRAM: Final = 0x8000_0000  # hw/riscv/virt.c: VIRT_DRAM
FIRMWARE_SIZE: Final = 2 << 20  # OpenSBI fw_dynamic; the kernel starts at the next 2 MiB
DEFAULT_RAM_SIZE: Final = 512 << 20  # Solaya's qemu_wrapper.sh: -m 512M
DEFAULT_KERNEL_SIZE: Final = 8 << 20
FDT_ALIGN: Final = 2 << 20

_HEADER_SIZE: Final = 110
_MAGIC: Final = b"070701"
_TRAILER: Final = "TRAILER!!!"
_SKIPPED_TYPES: Final = {
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}
_MODULE: Final = "kernel::initramfs"


# --- the newc reader (cpio.rs) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SolayaEntry:
    """One record as cpio.rs's ``Entry`` has it (``ino``, ``mode``, ``nlink``, ``name``, ``data``),
    with its header's ``offset`` and the fields Solaya does not read (for the comparison)."""

    offset: int
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    name: str
    data: memoryview


class SolayaCpioError(BootmemError):
    """cpio.rs's ``CpioError``: ``kind`` is ``Truncated``, ``BadMagic``, ``BadHex`` or
    ``InvalidName``; ``offset`` the header's offset in the archive."""

    def __init__(self, kind: str, offset: int) -> None:
        super().__init__(f"Cpio({kind}) at offset {offset:#x}")
        self.kind = kind
        self.offset = offset


def _hex(field_bytes: bytes, offset: int) -> int:
    # cpio.rs parse_hex: exactly 8 ASCII hex digits of either case, nothing else.
    try:
        text = field_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise SolayaCpioError("BadHex", offset) from None
    if len(text) != 8 or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise SolayaCpioError("BadHex", offset)
    return int(text, 16)


def read_newc(archive: memoryview) -> Iterator[SolayaEntry]:
    """The entries of ``archive`` up to its ``TRAILER!!!`` (not included), as cpio.rs reads them.

    Raises :class:`SolayaCpioError` at the first malformed record, after yielding the ones
    before it.  Bytes after the trailer are never looked at.
    """
    pos = 0
    size = len(archive)
    while pos < size:
        header = bytes(archive[pos : pos + _HEADER_SIZE])
        if len(header) < _HEADER_SIZE:
            raise SolayaCpioError("Truncated", pos)
        if header[:6] != _MAGIC:
            raise SolayaCpioError("BadMagic", pos)
        ino = _hex(header[6:14], pos)
        mode = _hex(header[14:22], pos)
        uid = _hex(header[22:30], pos)
        gid = _hex(header[30:38], pos)
        nlink = _hex(header[38:46], pos)
        mtime = _hex(header[46:54], pos)
        filesize = _hex(header[54:62], pos)
        namesize = _hex(header[94:102], pos)
        name_start = pos + _HEADER_SIZE
        name_end = name_start + namesize
        if name_end > size:
            raise SolayaCpioError("Truncated", pos)
        raw_name = bytes(archive[name_start:name_end])
        if namesize == 0 or raw_name[-1] != 0:
            raise SolayaCpioError("InvalidName", pos)
        try:
            name = raw_name[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise SolayaCpioError("InvalidName", pos) from None
        data_start = (name_end + 3) & ~3
        data_end = data_start + filesize
        if data_end > size:
            raise SolayaCpioError("Truncated", pos)
        if name == _TRAILER:
            return
        yield SolayaEntry(pos, ino, mode, uid, gid, nlink, mtime, name, archive[data_start:data_end])
        pos = (data_end + 3) & ~3


def trailer_end(archive: memoryview) -> int:
    """The offset just past the first ``TRAILER!!!`` record's padding, or ``len(archive)``."""
    pos = 0
    size = len(archive)
    while pos + _HEADER_SIZE <= size and bytes(archive[pos : pos + 6]) == _MAGIC:
        header = bytes(archive[pos : pos + _HEADER_SIZE])
        try:
            filesize = _hex(header[54:62], pos)
            namesize = _hex(header[94:102], pos)
        except SolayaCpioError:
            break
        name_end = pos + _HEADER_SIZE + namesize
        end = (((name_end + 3) & ~3) + filesize + 3) & ~3
        if bytes(archive[name_end - 11 : name_end - 1]) == _TRAILER.encode():
            return min(end, size)
        pos = end
    return size


# --- extract() (initramfs/mod.rs) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Difference:
    """One path Solaya treats differently from Linux, and how."""

    path: str
    what: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "what": self.what}


@dataclass(slots=True)
class Extraction:
    """What ``extract_into`` did: ``entries`` is the count it logs, ``error`` its ``Debug`` form
    (``Cpio(BadMagic)``, ``Vfs(EEXIST)``, ``InvalidSymlinkTarget``), ``stopped_at`` the offset of
    the record it failed on, ``differences`` the entries it skipped or failed on."""

    entries: int = 0
    error: str | None = None
    stopped_at: int | None = None
    differences: list[Difference] = field(default_factory=list)
    ownerships_ignored: int = 0  # entries whose uid/gid are not 0 (Solaya never reads them)


def normalize(name: str) -> str:
    """Solaya's ``normalize``: leading ``/`` dropped, then one ``./``; ``.`` is the empty name."""
    s = name.lstrip("/")
    s = s.removeprefix("./")
    return "" if s == "." else s


def extract_into(archive: memoryview, fs: Tmpfs) -> Extraction:
    """Solaya's ``extract_into(archive, root)`` over ``fs``; never raises for bad input.

    Devices, fifos and sockets are skipped; a regular file with ``nlink > 1`` and no data is
    linked to the inode first seen with that ``c_ino``; a symlink's target must be UTF-8; names
    are normalised; missing parents are made; the mode is applied.  Anything already at a name
    is ``EEXIST`` and ends the extraction (Solaya's tmpfs ``create`` refuses, it never replaces).
    """
    result = Extraction()
    by_ino: dict[int, str] = {}
    entries = read_newc(archive)
    while True:
        try:
            entry = next(entries)
        except StopIteration:
            return result
        except SolayaCpioError as exc:
            result.error, result.stopped_at = f"Cpio({exc.kind})", exc.offset
            return result
        path = normalize(entry.name)
        if not path:
            continue
        if entry.uid or entry.gid:
            result.ownerships_ignored += 1
        kind = stat.S_IFMT(entry.mode)
        if kind in _SKIPPED_TYPES:
            result.differences.append(Difference("/" + path, f"{_SKIPPED_TYPES[kind]} skipped"))
            continue
        try:
            made = _apply(fs, entry, path, kind, by_ino)
        except _ExtractStop as stop:
            result.error, result.stopped_at = stop.debug, entry.offset
            result.differences.append(Difference("/" + path, f"extraction stops here: {stop.debug}"))
            return result
        result.entries += made


class _ExtractStop(Exception):
    def __init__(self, debug: str) -> None:
        super().__init__(debug)
        self.debug = debug


def _vfs(exc: TmpfsError) -> _ExtractStop:
    return _ExtractStop(f"Vfs({errno.errorcode.get(exc.errno or 0, 'EIO')})")


def _ensure_dir(fs: Tmpfs, parent: str) -> None:
    # ensure_dir: look each component up without following anything; create what is missing.
    # A component that exists and is not a directory cannot have children: ENOTDIR.
    cur = ""
    for component in parent.split("/"):
        if not component:
            continue
        cur = f"{cur}/{component}"
        inode = fs.find(cur, follow_symlinks=False)
        if inode is None:
            try:
                fs.mkdir(cur, 0o755)
            except TmpfsError as exc:
                raise _vfs(exc) from None
        elif not inode.is_dir:
            raise _ExtractStop("Vfs(ENOTDIR)")


def _apply(fs: Tmpfs, entry: SolayaEntry, path: str, kind: int, by_ino: dict[int, str]) -> bool:
    """One entry of ``extract_into``'s loop; whether it counts (an unknown type does not)."""
    full = "/" + path
    parent = full.rsplit("/", 1)[0]
    try:
        if entry.nlink > 1 and kind == stat.S_IFREG and not entry.data and entry.ino in by_ino:
            _ensure_dir(fs, parent)
            fs.link(by_ino[entry.ino], full)
            return True
        _ensure_dir(fs, parent)
        existing = fs.find(full, follow_symlinks=False)
        if kind == stat.S_IFDIR:
            if existing is None or not existing.is_dir:
                if existing is not None:
                    raise _ExtractStop("Vfs(EEXIST)")
                fs.mkdir(full, entry.mode)
            fs.chmod(full, entry.mode)
        elif kind == stat.S_IFLNK:
            try:
                target = bytes(entry.data).decode("utf-8")
            except UnicodeDecodeError:
                raise _ExtractStop("InvalidSymlinkTarget") from None
            if existing is not None:
                raise _ExtractStop("Vfs(EEXIST)")
            fs.symlink(target, full)
        elif kind == stat.S_IFREG:
            if existing is not None:
                raise _ExtractStop("Vfs(EEXIST)")
            with fs.create(full, entry.mode) as f:
                if entry.data:
                    f.write(entry.data)
            fs.chmod(full, entry.mode)
        else:
            return False  # `_ => continue`: an unknown type is neither made nor counted
    except TmpfsError as exc:
        raise _vfs(exc) from None
    if entry.nlink > 1 and kind == stat.S_IFREG:
        by_ino[entry.ino] = full
    return True


# --- the handoff (find_initrd_range) and the machine ---------------------------------------------


def find_initrd_range(dtb: bytes, widths: tuple[int, ...] = (4, 8)) -> tuple[int, int] | None:
    """Solaya's ``find_initrd_range``: ``/chosen`` ``linux,initrd-start`` and ``-end`` as
    big-endian integers whose length is one of ``widths``; ``None`` when either is absent or
    of another length, or when the end is not above the start."""
    fdt = libfdt.Fdt(dtb)
    chosen = fdt.path_offset("/chosen", libfdt.QUIET_NOTFOUND)
    if chosen < 0:
        return None
    values = []
    for name in ("linux,initrd-start", "linux,initrd-end"):
        prop = fdt.getprop(chosen, name, libfdt.QUIET_NOTFOUND)
        if isinstance(prop, int) or len(prop) not in widths:
            return None
        values.append(int.from_bytes(bytes(prop), "big"))
    start, end = values
    return (start, end) if end > start else None


def _chosen_widths(dtb: bytes) -> tuple[int, int] | None:
    fdt = libfdt.Fdt(dtb)
    chosen = fdt.path_offset("/chosen", libfdt.QUIET_NOTFOUND)
    if chosen < 0:
        return None
    names = ("linux,initrd-start", "linux,initrd-end")
    props = [fdt.getprop(chosen, n, libfdt.QUIET_NOTFOUND) for n in names]
    if any(isinstance(p, int) for p in props):
        return None
    return len(props[0]), len(props[1])


@dataclass(frozen=True, slots=True)
class SolayaMachine:
    """QEMU riscv ``virt`` as Solaya runs on it: RAM at 0x8000_0000 (``-m``, default 512M),
    OpenSBI below the kernel, the kernel image of ``kernel_size`` bytes at RAM + 2 MiB, the heap
    after it.  ``initrd_cells`` is how QEMU writes ``/chosen`` (2 cells from QEMU 9.0, 1 before);
    ``chosen_widths`` the property lengths Solaya accepts."""

    ram_size: int = DEFAULT_RAM_SIZE
    kernel_size: int = DEFAULT_KERNEL_SIZE
    initrd_cells: int = 2
    chosen_widths: tuple[int, ...] = (4, 8)
    ram_base: int = QEMU_VIRT_DRAM

    def __post_init__(self) -> None:
        if self.ram_size % PAGE_SIZE or self.ram_size <= 0:
            raise BootError(f"RAM size {self.ram_size:#x} is not a non-empty whole number of pages")
        if self.ram_size <= FIRMWARE_SIZE + self.kernel_size:
            raise BootError(
                f"RAM of {format_size(self.ram_size)} leaves no heap after OpenSBI and a "
                f"{format_size(self.kernel_size)} kernel"
            )

    @property
    def kernel_start(self) -> int:
        return self.ram_base + FIRMWARE_SIZE

    @property
    def heap_start(self) -> int:
        """``__start_heap``: the first page after the kernel image."""
        return align_up(self.kernel_start + self.kernel_size, PAGE_SIZE)


@dataclass(slots=True)
class SolayaReport(BootReport):
    """A :class:`BootReport` of a Solaya boot, with what is Solaya's own.

    ``freed_pages`` is what the planned ``release_reserved`` gives back; ``held_forever_pages``
    what today's Solaya keeps reserved for its lifetime instead; ``extracted_entries`` the
    count Solaya logs; ``differences`` every path Solaya treats differently from Linux.
    """

    extracted_entries: int = 0
    held_forever_pages: int = 0
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    first_fit_hole: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = super(SolayaReport, self).to_json()  # slots dataclasses need the explicit form
        data["kernel"] = "solaya"
        data["solaya"] = {
            "extracted_entries": self.extracted_entries,
            "held_forever_pages": self.held_forever_pages,
            "released_pages": self.freed_pages,
            "differences": [d.to_json() for d in self.differences],
            "notes": self.notes,
            "first_fit_hole": self.first_fit_hole,
        }
        return data


class SolayaLog(BootLog):
    """Solaya's console: ``[CPU 0][info][module] message`` lines, no timestamps."""

    def line(self, message: str, level: str = "info", module: str = _MODULE) -> None:
        self.printk(f"[CPU 0][{level}][{module}] {message}", level="warning" if level == "warn" else "info")

    def __str__(self) -> str:
        return "\n".join(self.messages())


def place(machine: SolayaMachine, image_size: int | None) -> tuple[bytes, int, tuple[int, int] | None]:
    """What QEMU does before Solaya runs: the device tree (bytes), its address, and the initrd's
    ``[start, end)`` (``None`` without an image)."""
    ram_end = machine.ram_base + machine.ram_size
    initrd: tuple[int, int] | None = None
    if image_size is not None:
        # riscv_load_initrd: image_low_addr + MIN(mem_size / 2, 512 MiB)
        start = machine.kernel_start + min(machine.ram_size // 2, 512 << 20)
        initrd = (start, start + image_size)
    blob = DeviceTree.build(
        memory=[(machine.ram_base, ram_end)],
        initrd=initrd,
        reserved_memory=[("mmode_resv0", machine.ram_base, machine.ram_base + FIRMWARE_SIZE)],
        initrd_cells=machine.initrd_cells,
        model="riscv-virtio,qemu",
    )
    # riscv_compute_fdt_addr, RV64: the end of DRAM less the blob, aligned down to 2 MiB.
    fdt_addr = align_down(ram_end - len(blob), FDT_ALIGN)
    if initrd is not None and initrd[1] > fdt_addr:
        raise BootError(
            f"initrd of {image_size} bytes at {initrd[0]:#x} runs into the device tree at {fdt_addr:#x} "
            f'(QEMU: "could not load ramdisk"); give more RAM'
        )
    return blob, fdt_addr, initrd


def boot(
    initrd: bytes | memoryview | None,
    *,
    machine: SolayaMachine | None = None,
    dtb: bytes | None = None,
    release: bool = True,
    observer: Callable[[AllocatorEvent], None] | None = None,
    allocator_hook: Callable[[FrameAllocator], None] | None = None,
    compare: bool = True,
) -> SolayaReport:
    """Boot ``initrd`` as Solaya does on ``machine`` and report, with the planned release.

    ``dtb`` replaces QEMU's device tree (its ``/chosen`` decides where the image is; RAM is
    still ``machine``'s).  ``release=False`` is today's Solaya: the initrd stays reserved.
    ``compare`` unpacks the image by Linux's rules too and lists the paths that differ.

    Raises :class:`BootError` where Solaya panics (an initrd outside the heap, a reservation
    overlapping another).
    """
    machine = machine or SolayaMachine()
    t_start = time.perf_counter()
    log = SolayaLog()
    phases: list[tuple[str, float]] = []
    image = memoryview(initrd) if initrd is not None else None
    blob, fdt_addr, placed = place(machine, len(image) if image is not None else None)
    if dtb is not None:
        blob = dtb
    ram_end = machine.ram_base + machine.ram_size
    ram = [Region("System RAM", machine.ram_base, ram_end)]
    sa = SolayaAllocator(
        base=machine.ram_base, size=machine.ram_size, heap_start=machine.heap_start, below_heap="Kernel image"
    )
    if observer is not None:
        sa.subscribe(observer)
    sa.memory.write(machine.kernel_start, b"\x7fELF solaya kernel image\0")
    sa.memory.write(fdt_addr, blob)
    notes: list[str] = []
    differences: list[Difference] = []

    log.line(f"Initialize device tree at {fdt_addr:#x}", module="kernel::device_tree")
    chosen = find_initrd_range(blob, machine.chosen_widths)
    widths = _chosen_widths(blob)
    if chosen is None and widths is not None and not set(widths) <= set(machine.chosen_widths):
        differences.append(
            Difference(
                "/chosen",
                f"linux,initrd-start/-end are {widths[0]} and {widths[1]} bytes: Solaya reads no initrd "
                f"(it accepts {' or '.join(map(str, machine.chosen_widths))}), Linux reads them",
            )
        )
    if image is not None and chosen is not None:
        # The bootloader loaded the image where /chosen says (a given blob may say elsewhere).
        at = chosen[0] if dtb is not None else (placed or chosen)[0]
        if machine.ram_base <= at and at + len(image) <= ram_end:
            sa.memory.write(at, image)

    # init_page_allocator(&[device_tree_range, initrd])
    heap_size = ram_end - machine.heap_start
    log.line("Initializing page allocator", module="kernel::memory")
    log.line(
        f"Heap Start: {machine.heap_start:#x}-{ram_end:#x} "
        f"(size: {heap_size:#x} -> {format_size(heap_size)})",
        module="kernel::memory",
    )
    dt_region = Region("Device tree", fdt_addr, fdt_addr + len(blob))
    reservations = [Region("Kernel image", machine.ram_base, machine.heap_start), dt_region]
    initrd_region = Region("initrd", chosen[0], chosen[1]) if chosen is not None else None
    for region in [dt_region, initrd_region]:
        if region is None:
            continue
        try:
            sa.reserve(region.start, region.end, name=region.name)
        except BootmemError as exc:
            sa.close()
            raise BootError(f"Solaya panics in init_page_allocator: {exc}") from None
    if initrd_region is not None:
        reservations.append(initrd_region)
    phases.append(("reserve", log.now()))
    if allocator_hook is not None:
        allocator_hook(sa)
    stats = sa.stats()
    available = stats["free"]

    rootfs = Tmpfs(sa, size_limit=sa.heap_pages * PAGE_SIZE)  # Solaya's tmpfs has no size limit
    report = SolayaReport(
        ram=ram,
        total_pages=stats["total"],
        reservations=reservations,
        initrd=initrd_region,
        initrd_disabled=None,
        cmdline=CommandLine(),
        free_policy="exact",
        available_pages=available,
        reserved_pages_at_init=stats["total"] - available,
        log=log,
        allocator=sa,
        rootfs=rootfs,
        clock_origin=t_start,
    )

    # initramfs::extract(), after fs::init()
    phases.append(("unpack start", log.now()))
    t0 = time.perf_counter()
    if initrd_region is None:
        log.line("initramfs: no initrd in DTB /chosen; skipping extraction")
    elif not (machine.ram_base <= initrd_region.start and initrd_region.end <= ram_end):
        sa.close()
        raise BootError(
            f"Solaya panics in find_initrd: initrd range {initrd_region.start:#x}..{initrd_region.end:#x} "
            "from DTB /chosen is not contained in any /memory node"
        )
    else:
        size = initrd_region.size
        log.line(f"initramfs: extracting {size} bytes from /chosen")
        with sa.lease(initrd_region.start, initrd_region.end, owner="initramfs::extract") as lease:
            archive = lease.view
            try:
                extraction = extract_into(archive, rootfs)
                end = trailer_end(archive)
            finally:
                archive.release()
        report.extracted_entries = extraction.entries
        differences += extraction.differences
        if extraction.error is None:
            log.line(f"initramfs: extracted {extraction.entries} entries into /")
        else:
            log.line(f"initramfs: extraction failed: {extraction.error}", level="warn")
            report.unpack_error = extraction.error
            report.unpack_detail = f"{extraction.error} at offset {extraction.stopped_at:#x} of the initrd"
        if extraction.ownerships_ignored:
            notes.append(
                f"{extraction.ownerships_ignored} entries have a uid or gid other than 0: Solaya never "
                "reads c_uid/c_gid (everything is root's), nor c_mtime"
            )
        if image is not None:
            differences += _ignored_segments(image, end if extraction.error is None else None)
            if compare:
                differences += _compare_with_linux(image, rootfs, differences)
    report.unpack_seconds = time.perf_counter() - t0
    phases.append(("unpack end", log.now()))

    if initrd_region is not None:
        first = align_down(initrd_region.start, PAGE_SIZE)
        report.held_forever_pages = (align_up(initrd_region.end, PAGE_SIZE) - first) // PAGE_SIZE
        report.free_pages_before_release = sa.stats()["free"]
        largest_held = sa.largest_free_run()
        if release:
            t1 = time.perf_counter()
            report.freed_pages = sa.release_reserved(initrd_region.start, initrd_region.end)
            report.release_seconds = time.perf_counter() - t1
            phases.append(("release", log.now()))
            log.line(
                f"release_reserved: {report.freed_pages} pages of the initrd "
                f"[{initrd_region.start:#x}, {initrd_region.end:#x}) back to the page allocator",
                module="kernel::memory",
            )
            report.first_fit_hole = _first_fit_hole(sa, initrd_region, largest_held)
    report.differences = differences
    report.notes = notes
    report.rootfs_pages = rootfs.used_pages
    report.rootfs_bytes = rootfs.used_bytes
    report.rootfs_files = sum(1 for _ in rootfs.walk())
    report.free_pages_end = sa.stats()["free"]
    report.peak_used_pages = sa.peak_used
    report.init = _load_init(rootfs, log, differences)
    phases.append(("init", log.now()))
    report.phases = phases
    report.boot_seconds = time.perf_counter() - t_start
    return report


#: process_table.rs load_init_bytes(): PID 1 comes from the first of these that resolves.
INIT_PATHS: Final = ("/sbin/init", "/init")


def _load_init(rootfs: Tmpfs, log: SolayaLog, differences: list[Difference]) -> str | None:
    """Solaya's ``load_init_bytes``: the first of :data:`INIT_PATHS` that is a file, logged; a
    ``/sbin/init`` chosen while ``/init`` exists is a difference (Linux runs ``/init`` first)."""
    for path in INIT_PATHS:
        inode = rootfs.find(path)
        if inode is not None and inode.is_file:
            log.line(f"init: loaded PID 1 from {path} ({inode.size} bytes)", module="kernel::processes")
            if path != "/init" and rootfs.exists("/init"):
                differences.append(Difference(path, "Solaya runs it as PID 1; Linux runs /init"))
            return path
    log.line("init: no /sbin/init or /init in the root filesystem", level="panic", module="kernel::processes")
    return None


def _first_fit_hole(sa: SolayaAllocator, initrd: Region, largest_held: int) -> str:
    """What first fit makes of the hole the initrd leaves: what is served before it, and how the
    largest contiguous run grows."""
    hole_start = align_down(initrd.start, PAGE_SIZE)
    below = sa.free_pages_in(sa.pages_start, hole_start)
    pages = (align_up(initrd.end, PAGE_SIZE) - hole_start) // PAGE_SIZE
    largest = sa.largest_free_run()
    return (
        f"the initrd's {pages} pages at {hole_start:#x} are served only after the {below} free pages "
        f"below them ({format_size(below * PAGE_SIZE)}); the largest free run grows from {largest_held} "
        f"pages ({format_size(largest_held * PAGE_SIZE)}) to {largest} ({format_size(largest * PAGE_SIZE)})"
    )


def _ignored_segments(image: memoryview, end: int | None) -> list[Difference]:
    """Segments of ``image`` Solaya never reads - compressed ones, and raw ones after the first
    trailer when extraction got that far - then every path in them."""
    import bootmem.initramfs

    out: list[Difference] = []
    try:
        with bootmem.initramfs.open(image, strict=False) as img:
            reasons: dict[int, str] = {}
            for seg in img.segments:
                if seg.compression != "none":
                    reasons[seg.index] = (
                        f"in {seg.compression}-compressed segment {seg.index}, which Solaya never reads "
                        "(it takes one raw newc archive)"
                    )
                elif end is not None and seg.offset >= end:
                    reasons[seg.index] = (
                        f"in segment {seg.index}, after the first TRAILER!!!, where Solaya stops"
                    )
                else:
                    continue
                summary = f"{reasons[seg.index]}: {seg.entries} entries at offset {seg.offset:#x}"
                out.append(Difference(f"segment {seg.index}", summary))
            if reasons:
                for entry in img:
                    reason = reasons.get(entry.segment)
                    if reason is not None and normalize(entry.name):
                        out.append(Difference("/" + normalize(entry.name), reason))
    except BootmemError:
        pass  # a malformed image: what Solaya made of it is in the extraction's own differences
    return out


def _compare_with_linux(image: memoryview, solaya: Tmpfs, known: list[Difference]) -> list[Difference]:
    """Paths whose type, mode, size, links or data differ between Solaya's rootfs and Linux's."""
    explained = {d.path for d in known}
    size = align_up(max(64 << 20, 4 * len(image)), PAGE_SIZE)
    with PageAllocator(base=0, size=size) as pa:
        linux = Tmpfs(pa, size_limit=size)
        unpack_to_rootfs(image, linux)
        theirs = _shape(linux)
    ours = _shape(solaya)
    out: list[Difference] = []
    for path in sorted(theirs.keys() | ours.keys()):
        if path in explained or path == "/":
            continue
        a, b = ours.get(path), theirs.get(path)
        if a == b:
            continue
        if a is None:
            out.append(Difference(path, "not extracted by Solaya"))
        elif b is None:
            out.append(Difference(path, "in Solaya's rootfs only"))
        else:
            fields = ("type", "mode", "size", "nlink", "data")
            changed = [f"{n} {x} (Linux {y})" for n, x, y in zip(fields, a, b, strict=True) if x != y]
            out.append(Difference(path, "differs: " + ", ".join(changed)))
    return out


def _shape(fs: Tmpfs) -> dict[str, tuple[str, ...]]:
    """path -> (type, mode, size, nlink, data) from ``fs.tree()``; uid, gid, mtime and rdev are left
    out, and a directory's size (its entry count, which only echoes its children's differences)."""
    shapes: dict[str, tuple[str, ...]] = {}
    for line in fs.tree():
        path, kind, mode, _uid, _gid, size, nlink, _mtime, _rdev, data = line.split("\t", 9)
        shapes[path] = (kind, mode, "-" if kind == "d" else size, nlink, data[:12] if kind == "f" else data)
    return shapes

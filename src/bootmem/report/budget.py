"""How much RAM an image needs to boot, found with the model itself.

:func:`find_budget` boots the image on machines of different RAM sizes and bisects for the
smallest that boots, once with the initrd released after unpacking (Linux's default) and once
with ``retain_initrd``.  Every boot is :func:`~bootmem.kernel.boot.boot` on a
:class:`~bootmem.kernel.boot.Machine` of the architecture profile given, so ``bootmem boot``
with the answer boots and one step less does not.  A machine *boots* (:func:`memory_limit`) when
unpacking succeeds, an init is found, and the kernel has the memory it needs beyond the model's
pages: the boot itself panics when, at the unpack's peak, its runtime footprint and the
decompressors' buffers leave less than the page allocator's watermarks free
(:func:`~bootmem.kernel.boot.out_of_memory`), and the budget asks besides that at least
``init_free`` bytes be free when init starts (both as the architecture profile says: nothing
beyond the model for ``flat``).  Booting is assumed monotonic in RAM (more
RAM never hurts), which holds for the model: RAM adds free pages and raises tmpfs's limit faster
than it adds struct pages, hash tables and watermarks.

The search starts from a lower bound computed from the image's decompressed file sizes (read
once), doubles a gap above it until a size boots, then bisects to ``step`` bytes (64 KiB by
default): the answer ``min_ram`` boots and ``min_ram - step`` does not.

:func:`parse_dmesg` reads a real kernel's boot log to calibrate the kernel's own footprint.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from bootmem import initramfs
from bootmem.errors import BootError, UsageError
from bootmem.fs.tmpfs import shmem_limits
from bootmem.initramfs.cpio import Entry
from bootmem.kernel.arch import FLAT, ArchProfile, MemoryLine, fit_fixed, fit_two, ram_size_of
from bootmem.kernel.boot import DEFAULT_RAM_BASE, BootReport, Machine, boot
from bootmem.mm import PAGE_SIZE
from bootmem.report.owners import Owner
from bootmem.report.timeline import record_boot
from bootmem.units import align_down, align_up, format_k, format_size

DEFAULT_STEP = 64 << 10
DEFAULT_INIT_FREE = 4 << 20
# No search goes past this much RAM.
MAX_RAM = 1 << 40

Limit = Literal["tmpfs", "pages", "kernel", "init", "placement"]

#: What each limit means, for people.
LIMITS: dict[Limit, str] = {
    "tmpfs": "tmpfs size limit",
    "pages": "physical pages",
    "kernel": "memory the kernel needs while unpacking",
    "init": "free memory left for init",
    "placement": "room to load the kernel, initrd and device tree",
}

Progress = Callable[[str, int, int | None], None]  # (what, boots so far, boots expected or None)


# --- calibration from a real boot log ------------------------------------------------------------

_MEMORY_RE = re.compile(r"Memory: (\d+)K/(\d+)K available \(([^)]*)\)")
_RESERVED_RE = re.compile(r"(\d+)K reserved")
_CODE_RE = re.compile(r"(\d+)K kernel code")
_RAMDISK_RE = re.compile(r"RAMDISK: \[mem (0x[0-9a-fA-F]+)-(0x[0-9a-fA-F]+)\]")
_FREED_RE = re.compile(r"Freeing initrd memory: (\d+)K")
_LATE_FREE_RE = re.compile(r"Freeing unused [^:\n]* memory: (\d+)K")
_MEMINFO_RE = re.compile(r"^M\t([A-Za-z0-9_()]+):\s+(\d+) kB$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Calibration:
    """What a real kernel's boot log says, and the model's ``kernel_size`` that reproduces it.

    ``ram_bytes``, ``available_bytes`` and ``reserved_bytes`` come from the ``Memory:`` line
    (``reserved`` counts everything the kernel held when its page allocator came up, the initrd
    included); ``initrd_bytes`` from ``RAMDISK: [mem ...]`` (page-rounded) or else from
    ``Freeing initrd memory:``.  ``kernel_size`` is the reserved memory less the initrd and one
    page of device tree: the kernel's whole footprint at that RAM size, what the ``flat``
    profile reserves.  ``arch`` is the profile the log's kernel matches (``x86_64`` when it
    has an e820 map), or ``None``; :func:`calibrate` fits a profile's fixed part to the log.

    When the log holds the ``bootmem verify`` probe's ``/proc/meminfo`` as init started
    (``M<TAB>MemFree: ... kB`` lines), ``runtime_bytes`` is what the kernel then held beyond the
    ``Memory:`` line's reservations: ``MemTotal - MemFree - Shmem - AnonPages - PageTables``
    (``MemTotal`` counts the pages freed after ``mem_init``, the initrd's included; ``Shmem`` is
    the rootfs; the rest is init's own).  ``freed_late_bytes`` sums the log's ``Freeing unused
    ... memory`` lines, or is ``None``.
    """

    ram_bytes: int
    available_bytes: int
    reserved_bytes: int
    kernel_code_bytes: int | None
    initrd_bytes: int
    initrd_start: int | None
    freed_bytes: int | None
    kernel_size: int
    arch: str | None = None
    runtime_bytes: int | None = None
    freed_late_bytes: int | None = None

    @property
    def memory_line(self) -> MemoryLine:
        """The ``Memory:`` line's total and reserved, and the initrd inside reserved."""
        return MemoryLine(self.ram_bytes, self.reserved_bytes, self.initrd_bytes)

    def to_json(self) -> dict[str, Any]:
        return {
            "ram_bytes": self.ram_bytes,
            "available_bytes": self.available_bytes,
            "reserved_bytes": self.reserved_bytes,
            "kernel_code_bytes": self.kernel_code_bytes,
            "initrd_bytes": self.initrd_bytes,
            "initrd_start": self.initrd_start,
            "freed_bytes": self.freed_bytes,
            "kernel_size": self.kernel_size,
            "arch": self.arch,
            "runtime_bytes": self.runtime_bytes,
            "freed_late_bytes": self.freed_late_bytes,
        }


def parse_dmesg(text: str, *, where: str = "boot log") -> Calibration:
    """The :class:`Calibration` from a kernel boot log (``dmesg`` output, timestamps or not).

    Raises :class:`UsageError` when the log has no ``Memory: ...K/...K available`` line.

    >>> log = '''[    0.000000] RAMDISK: [mem 0x7d1a2000-0x7fffefff]
    ... [    0.041219] Memory: 1884664K/2096632K available (16384K kernel code, 4418K rwdata,
    ... 8812K rodata, 4208K init, 4864K bss, 211712K reserved, 0K cma-reserved)
    ... [    1.234567] Freeing initrd memory: 47476K'''
    >>> c = parse_dmesg(log)
    >>> c.reserved_bytes >> 10, c.initrd_bytes >> 10, c.kernel_size >> 10
    (211712, 47476, 164232)
    """
    flat = re.sub(r"\s*\n\s*(?:\[[\s\d.]+\]\s*)?", " ", text) if "available (" in text else text
    memory = _MEMORY_RE.search(flat)
    if memory is None:
        raise UsageError(f"no 'Memory: ...K/...K available (...)' line in {where}")
    available = int(memory.group(1)) << 10
    total = int(memory.group(2)) << 10
    details = memory.group(3)
    reserved_match = _RESERVED_RE.search(details)
    reserved = int(reserved_match.group(1)) << 10 if reserved_match else total - available
    code_match = _CODE_RE.search(details)
    freed_match = _FREED_RE.search(flat)
    freed = int(freed_match.group(1)) << 10 if freed_match else None
    ramdisk = _RAMDISK_RE.search(flat)
    start: int | None = None
    if ramdisk is not None:
        start, last = int(ramdisk.group(1), 16), int(ramdisk.group(2), 16)
        initrd = align_up(last + 1, PAGE_SIZE) - align_down(start, PAGE_SIZE)
    else:
        initrd = freed or 0
    kernel = align_up(max(PAGE_SIZE, reserved - initrd - PAGE_SIZE), PAGE_SIZE)
    meminfo = {name: int(kib) << 10 for name, kib in _MEMINFO_RE.findall(text)}
    runtime: int | None = None
    if {"MemTotal", "MemFree", "Shmem"} <= meminfo.keys():
        runtime = meminfo["MemTotal"] - meminfo["MemFree"] - meminfo["Shmem"]
        runtime -= meminfo.get("AnonPages", 0) + meminfo.get("PageTables", 0)
    late = [int(k) << 10 for k in _LATE_FREE_RE.findall(text)]
    return Calibration(
        ram_bytes=total,
        available_bytes=available,
        reserved_bytes=reserved,
        kernel_code_bytes=int(code_match.group(1)) << 10 if code_match else None,
        initrd_bytes=initrd,
        initrd_start=start,
        freed_bytes=freed,
        kernel_size=kernel,
        arch="x86_64" if "BIOS-e820:" in text else None,
        runtime_bytes=runtime,
        freed_late_bytes=sum(late) if late else None,
    )


def calibrate(arch: ArchProfile, logs: list[Calibration]) -> ArchProfile:
    """``arch`` calibrated by one or two real boot logs (:func:`parse_dmesg`).

    One log sets the fixed part only; the part that grows with RAM stays the profile's, so a
    log taken at 512M predicts 344M.  Two logs at RAM sizes a memory section apart or more fit
    the fixed part and the ``struct page`` size.  The ``flat`` profile takes the first log's
    whole footprint.  A log with the probe's ``/proc/meminfo`` (:attr:`Calibration.runtime_bytes`)
    sets the profile's runtime footprint at that RAM size (its growth with RAM stays the
    profile's), and its ``Freeing unused ... memory`` lines what is freed before init.  Raises
    :class:`UsageError` for no log, more than two, or two that cannot be fitted.
    """
    if not logs or len(logs) > 2:
        raise UsageError(f"give one or two boot logs to calibrate from, not {len(logs)}")
    if arch.name == FLAT.name:
        return ArchProfile(name=FLAT.name, fixed=logs[0].kernel_size, struct_page=0, hash_scales=())
    if len(logs) == 1:
        fitted = fit_fixed(arch, logs[0].memory_line)
    else:
        fitted = fit_two(arch, logs[0].memory_line, logs[1].memory_line)
    for log in logs:
        if log.runtime_bytes is not None:
            ram = ram_size_of(fitted, log.ram_bytes)
            runtime = log.runtime_bytes - round(fitted.runtime_growth * ram)
            fitted = replace(fitted, runtime=max(0, runtime))
            if log.freed_late_bytes is not None:
                fitted = replace(fitted, freed_late=log.freed_late_bytes)
            break
    return fitted


# --- the image's own figures ---------------------------------------------------------------------


def file_data_bytes(image: bytes, *, max_decompressed: int | None = None) -> int:
    """Bytes of file data the kernel's unpack leaves in tmpfs, each file rounded up to whole pages.

    Later entries replace earlier ones of the same path, as the kernel's unpack does; a newc
    hardlink's data is counted once (it comes with the last link).  ``max_decompressed`` caps
    the bytes decompressed (see :func:`bootmem.initramfs.open`).
    """
    sizes: dict[str, int] = {}
    with initramfs.open(image, max_decompressed=max_decompressed) as img:
        for entry in img:
            sizes[_path(entry)] = align_up(entry.c_filesize, PAGE_SIZE) if entry.isreg() else 0
    return sum(sizes.values())


def _path(entry: Entry) -> str:
    return entry.name.lstrip("/")


# --- what the kernel needs beyond the model's pages ------------------------------------------------


def free_at_init(report: BootReport, arch: ArchProfile) -> int:
    """Bytes Linux has free when init starts: the model's, plus what is freed late, less the runtime."""
    return report.free_pages_end * PAGE_SIZE + arch.freed_late - arch.runtime_bytes(report.ram_size)


def memory_limit(report: BootReport, arch: ArchProfile, init_free: int) -> Limit | None:
    """The memory limit a boot runs into, or ``None`` when Linux has enough.

    ``"kernel"`` when the boot itself panicked at the unpack's peak
    (:func:`~bootmem.kernel.boot.out_of_memory`: "System is deadlocked on memory"); ``"init"``
    when fewer than ``init_free`` bytes are free when init starts (:func:`free_at_init`).
    """
    if report.panic is not None:
        return "kernel"
    if free_at_init(report, arch) < init_free:
        return "init"
    return None


# --- the search -------------------------------------------------------------------------------------


@dataclass(slots=True)
class SearchResult:
    """The smallest RAM that boots, and what fails one ``step`` below it."""

    min_ram: int
    step: int
    boots: int  # how many boots the search ran
    limit: Limit  # what fails at min_ram - step
    reason: str  # one sentence: why the answer is what it is
    failure: str  # what happened at min_ram - step
    rootfs_bytes: int
    free_at_init: int
    peak_free: int  # what Linux has free at the unpack's peak, at min_ram

    def to_json(self) -> dict[str, Any]:
        return {
            "min_ram_bytes": self.min_ram,
            "step_bytes": self.step,
            "boots": self.boots,
            "limit": self.limit,
            "reason": self.reason,
            "failure_below": self.failure,
            "rootfs_bytes": self.rootfs_bytes,
            "free_at_init_bytes": self.free_at_init,
            "unpack_peak_free_bytes": self.peak_free,
        }


@dataclass(slots=True)
class Budget:
    """Every figure of ``bootmem budget``; sizes in bytes, ``peak`` in bytes by owner."""

    image_bytes: int
    data_bytes: int
    kernel_size: int
    arch: ArchProfile
    rootfs_share: float | None
    rootfs_size: int | None
    init_free: int
    cmdline: str
    released: SearchResult
    retained: SearchResult
    peak: dict[Owner, int]
    peak_used: int
    freed: int  # what releasing the initrd gave back, at released.min_ram
    workspace: int = 0  # the decompressor's buffers at the unpack's peak
    calibrations: tuple[Calibration, ...] = ()

    @property
    def release_wins(self) -> int:
        """How much less RAM the image needs because the initrd is released."""
        return self.retained.min_ram - self.released.min_ram

    def to_json(self) -> dict[str, Any]:
        """The budget as JSON-ready data (schema in docs/json.md)."""
        return {
            "image_bytes": self.image_bytes,
            "data_bytes": self.data_bytes,
            "kernel_size": self.kernel_size,
            "rootfs_share": self.rootfs_share,
            "rootfs_size": self.rootfs_size,
            "init_free_bytes": self.init_free,
            "workspace_bytes": self.workspace,
            "cmdline": self.cmdline,
            "page_size": PAGE_SIZE,
            "min_ram_bytes": self.released.min_ram,
            "min_ram_retain_initrd_bytes": self.retained.min_ram,
            "step_bytes": self.released.step,
            "limit": self.released.limit,
            "reason": self.released.reason,
            "peak": {"used_bytes": self.peak_used, "by_owner": dict(self.peak)},
            "freed_initrd_bytes": self.freed,
            "release_wins_bytes": self.release_wins,
            "released": self.released.to_json(),
            "retained": self.retained.to_json(),
            "arch": {
                "name": self.arch.name,
                "fixed_bytes": self.arch.fixed,
                "struct_page_bytes": self.arch.struct_page,
                "section_bytes": self.arch.section,
                "runtime_bytes": self.arch.runtime,
                "runtime_growth": self.arch.runtime_growth,
                "after_unpack_bytes": self.arch.after_unpack,
                "freed_late_bytes": self.arch.freed_late,
            },
            "calibration": [c.to_json() for c in self.calibrations],
        }


class _Search:
    """One bisection: ``boot`` at RAM sizes, remembering what the last failure was."""

    def __init__(
        self,
        image: bytes,
        *,
        arch: ArchProfile,
        kernel_size: int,
        cmdline: str,
        rootfs_share: float | None,
        rootfs_size: int | None,
        init_free: int,
        step: int,
        progress: Progress | None,
        label: str,
        max_decompressed: int | None = None,
    ) -> None:
        self.image = image
        self.max_decompressed = max_decompressed
        self.arch = arch
        self.kernel_size = kernel_size
        self.cmdline = cmdline
        self.rootfs_share = rootfs_share
        self.rootfs_size = rootfs_size
        self.init_free = init_free
        self.step = step
        self.progress = progress
        self.label = label
        self.boots = 0
        self.expected: int | None = None

    def attempt(self, ram: int) -> BootReport | str:
        """The report of a boot with ``ram`` bytes, or the reason it could not start."""
        self.boots += 1
        if self.progress is not None:
            self.progress(f"{self.label}: booting with {format_size(ram)}", self.boots, self.expected)
        try:
            report = boot(
                self.image,
                machine=self.machine(ram),
                cmdline=self.cmdline,
                rootfs_size=self.rootfs_size,
                rootfs_share=self.rootfs_share,
                poison=None,
                max_decompressed=self.max_decompressed,
            )
        except BootError as exc:
            return str(exc)
        if report.allocator is not None:
            report.rootfs = None  # drop the page-backed tree before the RAM goes
            report.allocator.close()
        return report

    def machine(self, ram: int) -> Machine:
        """The machine of ``ram`` bytes every boot of the search runs on."""
        return Machine(ram_size=ram, kernel_size=self.kernel_size, arch=self.arch)

    def boots_ok(self, result: BootReport | str) -> bool:
        return (
            isinstance(result, BootReport)
            and result.ok
            and result.init is not None
            and memory_limit(result, self.arch, self.init_free) is None
        )

    def run(self, lower: int) -> tuple[int, BootReport, BootReport | str]:
        """(smallest booting RAM, its report, the result one step below)."""
        step = self.step
        lo = max(step, align_down(lower, step))
        first = self.attempt(lo)
        gap = step
        if self.boots_ok(first):
            # The bound was not a lower bound after all: widen the gap downwards.
            hi, above = lo, first
            while True:
                if hi == step:
                    raise BootError(f"boots with {format_size(step)}: nothing to search")
                lo = max(step, hi - gap)
                below = self.attempt(lo)
                if not self.boots_ok(below):
                    break
                hi, above = lo, below
                gap *= 2
        else:
            below = first
            _not_memory(below)
            while True:
                hi = lo + gap
                if hi > MAX_RAM:
                    raise BootError(
                        f"does not boot with up to {format_size(MAX_RAM)} of RAM: {_describe(below, self)}"
                    )
                above = self.attempt(hi)
                if self.boots_ok(above):
                    break
                _not_memory(above)
                lo, below = hi, above
                gap *= 2
        self.expected = self.boots + max(0, (gap // step - 1).bit_length())
        while hi - lo > step:
            mid = lo + (hi - lo) // 2 // step * step
            result = self.attempt(mid)
            if self.boots_ok(result):
                hi, above = mid, result
            else:
                lo, below = mid, result
        assert isinstance(above, BootReport)
        return hi, above, below


def _describe(result: BootReport | str, search: _Search | None = None) -> str:
    if isinstance(result, str):
        return result
    if result.unpack_error:
        return f"unpacking failed: {result.unpack_detail or result.unpack_error}"
    if result.panic is not None:
        return (
            f"out of memory while unpacking: {format_k(max(0, result.unpack_peak_free))} free at the "
            f"peak, below the {format_k(result.watermark_bytes)} watermarks"
        )
    if result.init is None:
        return "no init found"
    if search is None:
        return f"{format_k(result.free_pages_end * PAGE_SIZE)} free when init starts"
    return f"{format_k(max(0, free_at_init(result, search.arch)))} free when init starts"


def _not_memory(result: BootReport | str) -> None:
    """Raise when ``result`` failed for a reason more RAM cannot fix."""
    if isinstance(result, BootReport):
        if result.initrd_disabled:
            raise BootError(result.initrd_disabled)
        if result.unpack_error not in (None, "write error"):
            raise BootError(f"the image does not unpack: {result.unpack_detail or result.unpack_error}")
        if result.unpack_error is None and result.panic is None and result.init is None:
            raise BootError("the image unpacks but has no init (/init, /sbin/init, /bin/sh ...)")


def _share_words(share: float | None, size: int | None) -> str:
    if size is not None:
        return f"tmpfs's {format_size(size)} limit"
    if share is None or share == 0.5:
        return "tmpfs's half of the pages free when the allocator came up"
    return f"tmpfs's {share:.0%} of the pages free when the allocator came up"


def find_budget(
    image: bytes,
    *,
    kernel_size: int | None = None,
    arch: ArchProfile = FLAT,
    rootfs_share: float | None = None,
    rootfs_size: int | None = None,
    cmdline: str = "",
    init_free: int = DEFAULT_INIT_FREE,
    step: int = DEFAULT_STEP,
    calibrations: tuple[Calibration, ...] = (),
    progress: Progress | None = None,
    max_decompressed: int | None = None,
) -> Budget:
    """The RAM budget of ``image`` on the default machine layout (RAM at ``DEFAULT_RAM_BASE``).

    Every boot runs on ``Machine(ram_size=..., kernel_size=kernel_size, arch=arch)``
    (``kernel_size`` defaults to ``arch.fixed``), with tmpfs's limit as ``boot`` sets it:
    ``rootfs_size`` bytes, or ``rootfs_share`` of the pages free when the allocator came up, or
    by default half of them (:func:`~bootmem.fs.tmpfs.shmem_limits`).  ``step`` is the
    search's granularity, a multiple of the page size.  ``progress(what, boots, expected)`` is
    called before every boot.  ``max_decompressed`` caps the bytes the image decompresses to,
    in the reading of its file sizes and in every boot (default: each's own, see
    :func:`~bootmem.initramfs.open` and :func:`~bootmem.kernel.boot.boot`).  Raises
    :class:`BootError` when the image cannot boot with any RAM (it does not unpack, has no
    init, or needs more than :data:`MAX_RAM`).
    """
    if step % PAGE_SIZE or step <= 0:
        raise UsageError(f"search step {step} is not a positive multiple of {PAGE_SIZE}")
    if DEFAULT_RAM_BASE % step:
        raise UsageError(f"search step {step:#x} does not divide the RAM base {DEFAULT_RAM_BASE:#x}")
    if rootfs_size is not None and rootfs_share is not None:
        raise UsageError("give the rootfs limit as a size or as a share, not both")
    if rootfs_share is not None and not 0 < rootfs_share <= 1:
        raise UsageError(f"rootfs share {rootfs_share!r} is not in (0, 1]")

    data = file_data_bytes(image, max_decompressed=max_decompressed)
    if rootfs_size is not None and data > rootfs_size:
        raise BootError(
            f"rootfs data {format_size(data)} cannot fit in tmpfs's {format_size(rootfs_size)} limit"
        )
    kernel = align_up(kernel_size if kernel_size is not None else arch.fixed, PAGE_SIZE)
    initrd = align_up(len(image), PAGE_SIZE)
    # Lower bounds, before the part that grows with RAM: the pages held at the peak and at
    # init, and the pages the allocator must manage for tmpfs's limit to hold the data.
    held = kernel + arch.hole_bytes + PAGE_SIZE + data
    tmpfs_pages = shmem_limits(1_000_000, size=rootfs_size, share=rootfs_share)[0]
    tmpfs_bound = kernel + initrd + data * 1_000_000 // tmpfs_pages if rootfs_size is None else 0
    lower = {
        False: max(held + initrd, held + init_free, tmpfs_bound) - step,
        True: max(held + initrd + init_free, tmpfs_bound) - step,
    }

    results: dict[bool, tuple[SearchResult, BootReport]] = {}
    searches: dict[bool, _Search] = {}
    for retain in (False, True):
        line = " ".join([*cmdline.split(), *(["retain_initrd"] if retain else [])])
        search = _Search(
            image,
            arch=arch,
            kernel_size=kernel,
            cmdline=line,
            rootfs_share=rootfs_share,
            rootfs_size=rootfs_size,
            init_free=init_free,
            step=step,
            progress=progress,
            label="retain_initrd" if retain else "initrd released",
            max_decompressed=max_decompressed,
        )
        searches[retain] = search
        min_ram, ok, below = search.run(lower[retain])
        which, reason = _why(below, ok, search, retain, rootfs_share, rootfs_size)
        results[retain] = (
            SearchResult(
                min_ram=min_ram,
                step=step,
                boots=search.boots,
                limit=which,
                reason=reason,
                failure=_describe(below, search),
                rootfs_bytes=ok.rootfs_pages * PAGE_SIZE,
                free_at_init=free_at_init(ok, arch),
                peak_free=ok.unpack_peak_free,
            ),
            ok,
        )

    released = results[False][0]
    report, timeline = record_boot(
        image,
        machine=searches[False].machine(released.min_ram),
        cmdline=cmdline,
        rootfs_size=rootfs_size,
        rootfs_share=rootfs_share,
        poison=None,
        max_decompressed=max_decompressed,
    )
    peak = timeline.peak()
    peak_bytes: dict[Owner, int] = {o: n * PAGE_SIZE for o, n in peak.by_owner().items() if o != "free"}
    if report.allocator is not None:
        report.rootfs = None
        report.allocator.close()
    return Budget(
        image_bytes=len(image),
        data_bytes=data,
        kernel_size=kernel,
        arch=arch,
        rootfs_share=rootfs_share if rootfs_size is None else None,
        rootfs_size=rootfs_size,
        init_free=init_free,
        cmdline=cmdline,
        released=released,
        retained=results[True][0],
        peak=peak_bytes,
        peak_used=peak.used * PAGE_SIZE,
        freed=report.freed_pages * PAGE_SIZE,
        workspace=results[False][1].unpack_workspace,
        calibrations=calibrations,
    )


def _why(
    below: BootReport | str,
    ok: BootReport,
    search: _Search,
    retain: bool,
    share: float | None,
    size: int | None,
) -> tuple[Limit, str]:
    """Which limit fails one step below the answer, and the sentence that says why."""
    rootfs = format_size(ok.rootfs_pages * PAGE_SIZE)
    kernel = next((r.size for r in ok.reservations if r.name == "Kernel image"), 0)
    initrd = ok.initrd.size if ok.initrd is not None else 0
    if isinstance(below, str):
        return "placement", f"the kernel, initrd and device tree must fit in RAM: {below}"
    if below.unpack_error == "write error":
        if below.rootfs_limit_pages is not None and below.rootfs_pages >= below.rootfs_limit_pages:
            return "tmpfs", f"rootfs data {rootfs} must fit in {_share_words(share, size)}"
        return "pages", (
            f"while unpacking, kernel {format_size(kernel)} + initrd {format_size(initrd)} + rootfs "
            f"{rootfs} must all fit in RAM's pages at once"
        )
    arch, ram = search.arch, below.ram_size
    if below.panic is not None:
        watermark = below.watermark_bytes
        return "kernel", (
            f"while unpacking, kernel {format_size(kernel)} + initrd {format_size(initrd)} + rootfs {rootfs} "
            f"+ the kernel's own {format_size(arch.unpack_runtime_bytes(ram))} since mem_init + the "
            f"decompressor's {format_size(below.unpack_workspace)} must leave the page allocator's "
            f"{format_size(watermark)} of watermarks free"
        )
    held = "kernel, initrd and rootfs" if retain else "kernel and rootfs"
    in_use = (ok.total_pages - ok.free_pages_end) * PAGE_SIZE
    if arch.runtime:
        held += f" and the kernel's own {format_size(arch.runtime_bytes(ram))} since mem_init"
        in_use += arch.runtime_bytes(ram) - arch.freed_late
    return "init", (
        f"after unpacking, {held} ({format_size(in_use)}) must leave {format_size(search.init_free)} "
        "free for init"
    )


# --- bisection with any judge -----------------------------------------------------------------------


def bisect_smallest(
    boots: Callable[[list[int]], list[bool]],
    *,
    lo: int,
    hi: int,
    step: int,
    parallel: int = 1,
) -> int:
    """The smallest multiple of ``step`` that boots, by ``boots`` (which may be a real kernel).

    ``boots(sizes)`` says for each RAM size whether it boots; booting must be monotonic in RAM.
    ``lo`` and ``hi`` are tried first (together); the bracket widens while ``lo`` boots
    (halving it) or ``hi`` does not (doubling it, up to :data:`MAX_RAM`).  Then each round asks
    about ``parallel`` sizes at once, cutting the bracket into ``parallel + 1`` parts, until
    ``hi - lo == step``: ``hi`` boots and ``hi - step`` does not.  Raises :class:`BootError`
    when ``step`` itself boots or :data:`MAX_RAM` does not.

    >>> asked = []
    >>> def boots(sizes):
    ...     asked.append(sizes)
    ...     return [s >= 300 for s in sizes]
    >>> bisect_smallest(boots, lo=100, hi=1000, step=10, parallel=2)
    300
    >>> asked[0], len(asked)
    ([100, 1000], 6)
    """
    if step <= 0:
        raise UsageError(f"search step {step} is not positive")
    lo, hi = max(step, lo // step * step), max(step, -(-hi // step) * step)
    lo_boots, hi_boots = boots([lo, hi]) if lo != hi else boots([lo]) * 2
    while lo_boots:
        if lo == step:
            raise BootError(f"boots with {format_size(step)}: nothing to search")
        hi, lo = lo, max(step, lo // 2 // step * step)
        (lo_boots,) = boots([lo])
    while not hi_boots:
        if hi * 2 > MAX_RAM:
            raise BootError(f"does not boot with up to {format_size(MAX_RAM)} of RAM")
        lo, hi = hi, hi * 2
        (hi_boots,) = boots([hi])
    while hi - lo > step:
        cuts = max(1, parallel)
        points = sorted(
            {lo + (hi - lo) * (i + 1) // (cuts + 1) // step * step for i in range(cuts)} - {lo, hi}
        ) or [lo + step]
        for point, ok in zip(points, boots(points), strict=True):
            if ok:
                hi = point
                break
            lo = point
    return hi

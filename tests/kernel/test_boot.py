"""The boot sequence: placement, the device-tree handoff, the release of the initrd, the figures."""

from __future__ import annotations

import dataclasses
import re
import stat
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bootmem.errors import BootError, OutOfMemoryError, RegionBusyError
from bootmem.fdt import DeviceTree
from bootmem.fs.tmpfs import Tmpfs
from bootmem.kernel import unpack
from bootmem.kernel.arch import X86_64
from bootmem.kernel.boot import BootReport, CommandLine, Machine, boot
from bootmem.kernel.example import example_image
from bootmem.kernel.unpack import unpack_to_rootfs
from bootmem.mm import PAGE_SIZE, AllocatorEvent, PageAllocator
from tests.conftest import require_tool
from tests.kernel.conftest import MACHINE, SYNC, archive, compile_dts, dts, f, small_image

RAM = (0x4000_0000, 0x4400_0000)  # 64 MiB, as MACHINE
KERNEL = (0x4000_0000, 0x4100_0000)  # 16 MiB at the bottom

MakeDtb = Callable[..., bytes]


@pytest.fixture(params=["dtc", "build"])
def make_dtb(request: pytest.FixtureRequest) -> MakeDtb:
    """``make_dtb(initrd=(start, end), cells=1|2, memreserve=None)``: by dtc or by DeviceTree.build."""

    def make(*, initrd: tuple[int, int], cells: int = 2, memreserve: tuple[int, int] | None = None) -> bytes:
        if request.param == "dtc":
            return compile_dts(dts(initrd=initrd, cells=cells, memreserve=memreserve))
        return DeviceTree.build(
            memory=[RAM],
            initrd=initrd,
            bootargs=SYNC,
            memreserve=[memreserve] if memreserve else [],
            initrd_cells=cells,
        )

    return make


def _initrd_pfns(report: BootReport) -> range:
    assert report.initrd is not None
    return range(report.initrd.start // PAGE_SIZE, -(-report.initrd.end // PAGE_SIZE))


def _allocate_everything(pa: PageAllocator) -> set[int]:
    got = set()
    while True:
        try:
            got.add(pa.alloc(0, owner="everything"))
        except OutOfMemoryError:
            return got


def _accounted(report: BootReport) -> None:
    """Every page is free, in the rootfs, or reserved; the per-owner figures add up."""
    pa = report.allocator
    assert pa is not None and report.rootfs is not None
    pa.check_invariants()
    s = pa.stats()
    assert s["free"] + report.rootfs_pages + s["reserved"] == s["total"]
    assert s["allocated"] == report.rootfs_pages == report.rootfs.used_pages
    owners = pa.pages_by_owner()
    assert sum(owners.values()) == s["total"]
    assert owners.get("rootfs", 0) == report.rootfs_pages
    assert owners["free"] == s["free"] == report.free_pages_end


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.parametrize("cmdline", [SYNC, "initramfs_async=1"])
def test_release_gives_back_every_initrd_frame(cmdline: str) -> None:
    image = example_image()
    report = boot(image, machine=MACHINE, cmdline=cmdline)
    pa = report.allocator
    assert pa is not None and report.ok
    pfns = _initrd_pfns(report)
    assert report.freed_pages == len(pfns) == -(-len(image) // PAGE_SIZE)
    assert report.free_pages_end == report.free_pages_before_release + report.freed_pages
    assert f"Freeing initrd memory: {report.freed_pages * 4}K" in report.log.messages()
    assert not [r for r in pa.reserved_regions() if r[0] == "initrd"]
    pa.check_invariants()
    _accounted(report)
    # The freed frames read as POISON_FREE_INITMEM, and allocating every free page serves them all.
    assert report.initrd is not None
    assert pa.memory.read(report.initrd.start, 64) == b"\xcc" * 64
    everything = _allocate_everything(pa)
    assert len(everything) == report.free_pages_end
    assert set(pfns) <= everything
    pa.check_invariants()


def test_boot_figures_and_log() -> None:
    image = example_image()
    report = boot(image, machine=MACHINE, cmdline=SYNC)
    messages = report.log.messages()
    assert messages[messages.index("Trying to unpack rootfs image as initramfs...") + 1].startswith(
        "Freeing initrd memory: "
    )
    memory = next(m for m in messages if m.startswith("Memory: "))
    assert memory.startswith(f"Memory: {report.available_pages * 4}K/{report.total_pages * 4}K available (")
    assert report.init == "/init" and messages[-1] == "Run /init as init process"
    assert report.total_pages == MACHINE.ram_size // PAGE_SIZE
    assert report.reserved_pages_at_init == report.total_pages - report.available_pages
    assert report.rootfs is not None
    assert report.rootfs_files == len(report.rootfs.tree())
    assert report.rootfs_bytes == report.rootfs_pages * PAGE_SIZE
    assert report.peak_used_pages >= report.reserved_pages_at_init + report.rootfs_pages
    data = report.to_json()
    assert data["ok"] is True and data["freed_pages"] == report.freed_pages
    assert data["rootfs"] == {
        "pages": report.rootfs_pages,
        "bytes": report.rootfs_bytes,
        "files": report.rootfs_files,
        "limit_pages": report.available_pages // 2,
        "fs": "tmpfs",
        "limit_inodes": report.available_pages // 2,
    }
    assert data["initramfs_async"] is False
    assert [p["name"] for p in data["phases"]][:2] == ["handoff", "reserve"]


def test_builtin_initramfs_is_unpacked_first() -> None:
    image = archive(f("root/.profile", b"PS1=# \n"))
    report = boot(image, machine=MACHINE, cmdline=SYNC)
    assert report.rootfs is not None
    assert report.rootfs.lookup("/dev/console", follow_symlinks=False).rdev == (5, 1)
    assert report.rootfs.read("/root/.profile") == b"PS1=# \n"
    assert report.init is None
    assert report.log.messages()[-1] == "Kernel panic - not syncing: No working init found."
    bare = boot(image, machine=MACHINE, cmdline=SYNC, no_builtin=True)
    assert bare.rootfs is not None and not bare.rootfs.exists("/dev")


def test_retain_initrd_keeps_it_reserved() -> None:
    image = small_image()
    report = boot(image, machine=MACHINE, cmdline=f"{SYNC} retain_initrd")
    pa = report.allocator
    assert pa is not None and report.initrd is not None
    assert report.freed_pages == 0
    assert not any(m.startswith("Freeing initrd memory") for m in report.log.messages())
    assert ("initrd", report.initrd.start, report.initrd.end) in pa.reserved_regions()
    assert pa.memory.read(report.initrd.start, len(image)) == image
    _accounted(report)


@pytest.mark.parametrize(
    ("text", "retain", "asynchronous"),
    [
        ("", False, True),
        ("retain_initrd", True, True),
        ("retain-initrd", True, True),  # parameqn: '-' and '_' alike
        ("quiet initramfs_async=0", False, False),
        ("initramfs_async=off", False, False),
        ("initramfs-async=of", False, False),  # kstrtobool reads two characters at most
        ("initramfs_async=y", False, True),
        ("initramfs_async=0 initramfs_async=t", False, True),  # the last one wins
        # retain_initrd_param: 'if (*str) return 0' - a value is refused, the initrd is freed
        ("initramfs_async=1 retain_initrd=1", False, True),
        ("retain_initrdx", False, True),
        # __setup("initramfs_async=", ...): a bare word does not match; a bad value changes nothing
        ("initramfs_async=0 initramfs_async", False, False),
        ("initramfs_async=0 initramfs_async=maybe", False, False),
        ('initramfs_async="0"', False, False),  # next_arg takes the quotes off
        ("initramfs_async=0 -- retain_initrd", False, False),  # after '--': init's
    ],
)
def test_command_line(text: str, retain: bool, asynchronous: bool) -> None:
    args = CommandLine.parse(text)
    assert (args.retain_initrd, args.initramfs_async, args.text) == (retain, asynchronous, text)


@pytest.mark.parametrize(
    ("text", "tmpfs"),
    [
        ("", True),
        ("root=/dev/vda1 ro", False),
        ("root=", True),  # saved_root_name[0] is NUL
        ("rootwait", True),
        ("rootfstype=ext4", False),
        ("rootfstype=ext4,tmpfs", True),  # strstr
        ("rootfstype=", False),  # root_fs_names is "", which has no "tmpfs"
        ('"root=/dev/sda"', False),
        ("-- root=/dev/sda", True),
    ],
)
def test_rootfs_is_tmpfs_only_without_root(text: str, tmpfs: bool) -> None:
    # init/do_mounts.c init_rootfs (v6.1)
    assert CommandLine.parse(text).rootfs_is_tmpfs is tmpfs


# --- device trees ----------------------------------------------------------------------------


@pytest.mark.parametrize("cells", [1, 2])
def test_dtb_places_the_image_exactly_at_chosen(make_dtb: MakeDtb, cells: int) -> None:
    image = small_image()
    start = 0x4200_0100  # not page aligned
    end = start + len(image)
    report = boot(image, dtb=make_dtb(initrd=(start, end), cells=cells), cmdline="ignored: bootargs wins")
    pa = report.allocator
    assert pa is not None and report.ok, report.log
    assert report.cmdline.text == SYNC
    assert (report.initrd and (report.initrd.start, report.initrd.end)) == (start, end)
    # riscv and arm64 print no RAMDISK: line (x86's reserve_initrd prints it).
    assert not any(m.startswith("RAMDISK:") for m in report.log.messages())
    assert report.rootfs is not None and report.rootfs.read("/etc/b") == b"linked data\n"
    # Generic free_initrd_mem: free_reserved_area(PAGE_ALIGN(start), end & PAGE_MASK).
    assert report.free_policy == "linux-generic"
    assert report.freed_pages == (end // PAGE_SIZE) - (-(-start // PAGE_SIZE))
    _accounted(report)


def test_ramdisk_line_rounds_the_end_as_x86() -> None:
    # x86's reserve_initrd: RAMDISK: [mem image-PAGE_ALIGN(image + size) - 1].
    image = small_image()
    report = boot(image, machine=MACHINE, cmdline=SYNC)
    assert report.initrd is not None and len(image) % PAGE_SIZE
    end = -(-report.initrd.end // PAGE_SIZE) * PAGE_SIZE
    assert f"RAMDISK: [mem {report.initrd.start:#010x}-{end - 1:#010x}]" in report.log.messages()
    assert report.free_policy == "exact"


def test_no_freeing_line_when_no_page_is_freed(make_dtb: MakeDtb) -> None:
    # free_reserved_area prints "Freeing initrd memory" only when it freed pages: an initrd
    # inside one page, rounded inward, frees none.
    image = archive(f("init", b"x"))
    start = 0x4200_0100
    report = boot(image, dtb=make_dtb(initrd=(start, start + len(image))))
    assert report.ok and report.freed_pages == 0
    assert not any(m.startswith("Freeing initrd memory") for m in report.log.messages())
    _accounted(report)


def _qemu_virt_dtb(tmp_path: Path, initrd: Path) -> bytes:
    """The device tree QEMU's riscv64 ``virt`` machine hands a kernel, as ``dumpdtb`` writes it."""
    kernel = tmp_path / "kernel.bin"
    kernel.write_bytes(bytes(PAGE_SIZE))
    out = tmp_path / "virt.dtb"
    subprocess.run(
        [
            require_tool("qemu-system-riscv64"),
            "-M",
            f"virt,dumpdtb={out}",
            "-m",
            "256M",
            "-kernel",
            str(kernel),
            "-initrd",
            str(initrd),
            "-display",
            "none",
        ],
        capture_output=True,
        check=True,
    )
    return out.read_bytes()


@pytest.mark.parametrize("cells", [1, 2])
def test_qemu_dumpdtb_padded_past_totalsize_boots(tmp_path: Path, cells: int) -> None:
    """QEMU's ``-machine dumpdtb`` pads the blob to 1 MiB; a bootloader copies ``totalsize`` bytes."""
    image = small_image()
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(image)
    blob = _qemu_virt_dtb(tmp_path, initrd)  # QEMU writes one-cell initrd properties below 4G
    if cells == 2:
        source = subprocess.run(
            [require_tool("dtc"), "-q", "-I", "dtb", "-O", "dts"], input=blob, capture_output=True, check=True
        ).stdout.decode()
        source = re.sub(r"(linux,initrd-(?:start|end)) = <(0x[0-9a-f]+)>;", r"\1 = <0x00 \2>;", source)
        compiled = compile_dts(source)
        blob = compiled + bytes((1 << 20) - len(compiled))
    tree = DeviceTree.from_bytes(blob)
    assert len(blob) == 1 << 20 and tree.totalsize < 1 << 16
    assert tree.initrd is not None and tree.initrd.size == len(image)
    report = boot(image, dtb=blob)
    assert report.ok and report.init == "/init", report.log
    fdt = next(r for r in report.reservations if r.name == "Device tree")
    assert fdt.size == tree.totalsize and fdt.end <= tree.memory[0].end
    assert report.allocator is not None
    assert report.allocator.memory.read(fdt.start, fdt.size) == blob[: tree.totalsize]
    assert report.initrd is not None
    assert (report.initrd.start, report.initrd.end) == (tree.initrd.start, tree.initrd.end)


def test_dtb_image_loaded_at_chosen_is_the_image(make_dtb: MakeDtb) -> None:
    image = small_image()
    start = 0x4300_0000
    dtb = make_dtb(initrd=(start, start + len(image) + 100), cells=1)
    seen: list[bytes] = []
    report = boot(image, dtb=dtb, allocator_hook=lambda pa: seen.append(pa.memory.read(start, len(image))))
    assert seen == [image]
    assert report.initrd is not None and report.initrd.end == start + len(image) + 100
    assert report.ok


@pytest.mark.parametrize("start", [0x9000_0000, 0x3000_0000, 0x43FF_F000])
def test_dtb_initrd_outside_ram_is_disabled(make_dtb: MakeDtb, start: int) -> None:
    image = small_image()
    report = boot(image, dtb=make_dtb(initrd=(start, start + len(image))))
    size = -(-len(image) // PAGE_SIZE) * PAGE_SIZE
    message = f"INITRD: 0x{start:08x}+0x{size:08x} is not a memory region - disabling initrd"
    assert message in report.log.messages()
    assert report.initrd is None and report.initrd_disabled == message
    assert not report.ok
    assert "Trying to unpack rootfs image as initramfs..." not in report.log.messages()
    _accounted(report)


def test_dtb_initrd_overlapping_the_kernel_is_disabled(make_dtb: MakeDtb) -> None:
    image = small_image()
    start = 0x4080_0000
    report = boot(image, dtb=make_dtb(initrd=(start, start + len(image))))
    size = -(-len(image) // PAGE_SIZE) * PAGE_SIZE
    messages = report.log.messages()
    first = f"INITRD: 0x{start:08x}+0x{size:08x} overlaps in-use memory region"
    assert messages[messages.index(first) + 1] == " - disabling initrd"
    assert report.initrd is None and report.initrd_disabled is not None
    assert report.freed_pages == 0
    _accounted(report)


def test_dtb_initrd_over_a_memreserve_is_kept_and_freed_whole(make_dtb: MakeDtb) -> None:
    # riscv's setup_bootmem calls reserve_initrd_mem before early_init_fdt_scan_reserved_mem
    # (arm64_memblock_init reserves the initrd at the same point), so the memreserve entry is
    # not reserved yet when the initrd is checked; free_reserved_area later frees the initrd's
    # whole pages without asking memblock.
    image = small_image()
    start = 0x4208_0000
    reserve = (0x4200_0000, 0x4210_0000)
    report = boot(image, dtb=make_dtb(initrd=(start, start + len(image)), memreserve=reserve))
    assert report.ok and report.initrd is not None and report.initrd_disabled is None
    assert not any("overlaps in-use memory region" in m for m in report.log.messages())
    assert report.rootfs is not None and report.rootfs.read("/etc/b") == b"linked data\n"
    assert report.freed_pages == len(image) // PAGE_SIZE
    _accounted(report)


def test_dtb_initrd_above_the_kernel_is_not_under_struct_pages(make_dtb: MakeDtb) -> None:
    # memblock allocates the struct pages and hash tables after the initrd is reserved, so
    # never over it: the model places them above an initrd that lies where they would go.
    image = small_image()
    machine = Machine.for_arch(X86_64, 64 << 20)
    start = 0x4000_0000 + machine.kernel_size + PAGE_SIZE
    report = boot(image, machine=machine, dtb=make_dtb(initrd=(start, start + len(image))))
    assert report.initrd is not None  # (the 64M machine is too small for its kernel to boot)
    growing = [r for r in report.reservations if "struct pages" in r.name or "hash table" in r.name]
    assert growing and all(r.start >= report.initrd.end for r in growing)
    _accounted(report)


def test_dtb_image_bigger_than_chosen_range(make_dtb: MakeDtb) -> None:
    image = small_image()
    with pytest.raises(BootError, match=r"does not fit the \d+ bytes /chosen gives it"):
        boot(image, dtb=make_dtb(initrd=(0x4200_0000, 0x4200_0000 + len(image) - 1)))


def test_dtb_initrd_without_image() -> None:
    with pytest.raises(BootError, match="give the image"):
        boot(None, dtb=DeviceTree.build(memory=[RAM], initrd=(0x4200_0000, 0x4200_1000)))


def test_dtb_without_memory() -> None:
    with pytest.raises(BootError, match="no memory"):
        boot(small_image(), dtb=DeviceTree.build(bootargs=""))


def test_machine_too_small_for_kernel_and_image() -> None:
    with pytest.raises(BootError, match="does not fit"):
        boot(bytes(8 << 20), machine=Machine(ram_size=20 << 20))
    with pytest.raises(BootError):
        Machine(ram_size=(64 << 20) + 1)


# --- release policies ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["exact", "linux-generic"])
def test_free_policy_for_an_unaligned_initrd(policy: str) -> None:
    image = small_image()
    start = 0x4200_0100
    end = start + len(image)
    dtb = DeviceTree.build(memory=[RAM], initrd=(start, end), bootargs=SYNC)
    report = boot(image, dtb=dtb, free_policy=policy)  # type: ignore[arg-type]
    pa = report.allocator
    assert pa is not None
    touched = -(-end // PAGE_SIZE) - start // PAGE_SIZE
    inside = end // PAGE_SIZE - -(-start // PAGE_SIZE)
    partial = [r for r in pa.reserved_regions() if r[0] == "initrd (partial page)"]
    if policy == "exact":
        assert report.freed_pages == touched and not partial
    else:
        # free_reserved_area(PAGE_ALIGN(start), end & PAGE_MASK): the edge pages stay reserved.
        assert report.freed_pages == inside == touched - 2
        assert [(s, e) for _n, s, e in partial] == [
            (start, -(-start // PAGE_SIZE) * PAGE_SIZE),
            (end // PAGE_SIZE * PAGE_SIZE, end),
        ]
    assert f"Freeing initrd memory: {report.freed_pages * 4}K" in report.log.messages()
    _accounted(report)


def test_unknown_free_policy() -> None:
    with pytest.raises(BootError, match="unknown free policy"):
        boot(small_image(), machine=MACHINE, free_policy="lazy")  # type: ignore[arg-type]


# --- too little memory ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "rootfs_size"),
    [(MACHINE, 256 << 10), (Machine(ram_size=18 << 20), 18 << 20)],
    ids=["tmpfs-limit", "no-free-page"],
)
def test_too_little_memory_is_a_write_error(machine: Machine, rootfs_size: int) -> None:
    report = boot(example_image(), machine=machine, rootfs_size=rootfs_size, cmdline=SYNC)
    messages = report.log.messages()
    assert "Initramfs unpacking failed: write error" in messages
    assert report.unpack_error == "write error" and not report.ok
    assert report.freed_pages == len(_initrd_pfns(report)) > 0
    assert messages.index("Initramfs unpacking failed: write error") < messages.index(
        f"Freeing initrd memory: {report.freed_pages * 4}K"
    )
    if rootfs_size < machine.ram_size:
        assert report.rootfs_pages == rootfs_size // PAGE_SIZE
    _accounted(report)


# --- the provenance rule --------------------------------------------------------------------------


def test_stashed_slice_makes_release_fail_and_change_nothing() -> None:
    pa = PageAllocator(base=0, size=16 << 20)
    image = small_image()
    start, end = 0x10_0000, 0x10_0000 + len(image)
    pa.reserve(start, end, name="initrd")
    pa.memory.write(start, image)
    fs = Tmpfs(pa)
    lease = pa.lease(start, end, owner="initramfs unpacker")
    view = lease.view
    stash = view[:16]
    assert unpack_to_rootfs(view, fs).error is None
    view.release()
    before = (pa.stats(), pa.reserved_regions(), pa.leases(), pa.pages_by_owner())
    with pytest.raises(RegionBusyError) as info:
        pa.release_reserved(start, end)
    assert f"[{start:#x}, {end:#x})" in str(info.value)
    assert "'initramfs unpacker'" in str(info.value)
    assert (pa.stats(), pa.reserved_regions(), pa.leases(), pa.pages_by_owner()) == before
    assert bytes(stash[:6]) == b"070701"  # still readable: nothing was released
    pa.check_invariants()
    stash.release()
    lease.close()
    assert pa.release_reserved(start, end) == -(-end // PAGE_SIZE) - start // PAGE_SIZE
    pa.check_invariants()


def test_unpacker_stashing_a_slice_stops_the_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    stash: list[memoryview] = []

    unpack_image = unpack._unpack

    def stashing(image: unpack.ImageBytes, target: unpack.Target, cap: int | None) -> unpack.UnpackResult:
        stash.append(memoryview(image.read_at(100, 100)))
        return unpack_image(image, target, cap)

    monkeypatch.setattr(unpack, "_unpack", stashing)
    allocators: list[PageAllocator] = []
    with pytest.raises(RegionBusyError, match="'initramfs unpacker'") as info:
        boot(small_image(), machine=MACHINE, cmdline=SYNC, allocator_hook=allocators.append)
    pa = allocators[0]
    (initrd,) = [r for r in pa.reserved_regions() if r[0] == "initrd"]
    assert f"[{initrd[1]:#x}, {initrd[2]:#x})" in str(info.value)
    assert pa.stats()["allocated"] == pa.pages_by_owner()["rootfs"]
    pa.check_invariants()
    stash.clear()


# --- not an initramfs -------------------------------------------------------------------------------


def test_not_an_initramfs_is_kept_as_initrd_image_with_blk_dev_ram_built_in() -> None:
    image = b"hsqs" + bytes(range(256)) * 40
    report = boot(image, machine=dataclasses.replace(MACHINE, blk_dev_ram="y"), cmdline=SYNC)
    messages = report.log.messages()
    assert (
        "rootfs image is not initramfs (invalid magic at start of compressed archive); looks like an initrd"
        in messages
    )
    assert report.looks_like_initrd and report.unpack_error is not None
    assert report.rootfs is not None and report.rootfs.read("/initrd.image") == image
    assert report.freed_pages == len(_initrd_pfns(report))
    _accounted(report)


@pytest.mark.parametrize(
    ("blk_dev_ram", "line"),
    [("m", "Trying to unpack rootfs image as initramfs..."), ("n", "Unpacking initramfs...")],
)
def test_not_an_initramfs_fails_without_blk_dev_ram_built_in(blk_dev_ram: str, line: str) -> None:
    # Debian 6.1: CONFIG_BLK_DEV_RAM=m, so IS_ENABLED() but not #ifdef: the error is printed
    # and no /initrd.image is made.
    image = b"hsqs" + bytes(range(256)) * 40
    report = boot(image, machine=dataclasses.replace(MACHINE, blk_dev_ram=blk_dev_ram), cmdline=SYNC)
    messages = report.log.messages()
    assert line in messages
    assert "Initramfs unpacking failed: invalid magic at start of compressed archive" in messages
    assert not report.looks_like_initrd
    assert report.rootfs is not None and not report.rootfs.exists("/initrd.image")


def test_bad_checksum_is_logged() -> None:
    image = bytearray(archive(f("init", b"#!/bin/sh\n", 0o755), format="crc"))
    image[102:110] = b"DEADBEEF"
    report = boot(bytes(image), machine=MACHINE, cmdline=SYNC)
    assert "Initramfs unpacking failed: bad data checksum" in report.log.messages()
    assert report.unpack_detail is not None and "'init'" in report.unpack_detail
    _accounted(report)


def test_report_device_nodes() -> None:
    report = boot(example_image(), machine=MACHINE, cmdline=SYNC)
    assert report.rootfs is not None
    vda = report.rootfs.lookup("/dev/vda", follow_symlinks=False)
    assert stat.S_ISBLK(vda.mode) and vda.rdev == (254, 0)


def _peak_from_events(events: list[AllocatorEvent], hole_pages: int) -> int:
    """The most pages ever in use, replayed from the allocator's events (holes are not RAM)."""
    used = peak = 0
    for event in events:
        used += event.pages if event.op in ("alloc", "reserve") else -event.pages
        peak = max(peak, used)
    return peak - hole_pages


@pytest.mark.parametrize("cmdline", [SYNC, "initramfs_async=1"])
def test_peak_used_pages_is_the_high_water_mark(cmdline: str) -> None:
    # RAM in two banks with a 16 MiB hole between them, and a load allocating while unpacking.
    low, high = (0x4000_0000, 0x4200_0000), (0x4300_0000, 0x4500_0000)
    image = small_image()
    start = high[1] - 0x10_0000
    dtb = DeviceTree.build(memory=[low, high], initrd=(start, start + len(image)), bootargs=cmdline)
    events: list[AllocatorEvent] = []

    def load(pa: PageAllocator, done: threading.Event) -> None:
        held = [pa.alloc(2, owner="load") for _ in range(50)]
        for pfn in held:
            pa.free(pfn, 2)

    report = boot(image, dtb=dtb, observer=events.append, load=load)
    assert report.ok, report.log.messages()
    hole_pages = (high[0] - low[1]) // PAGE_SIZE
    assert report.peak_used_pages == _peak_from_events(events, hole_pages)
    assert report.peak_used_pages >= report.reserved_pages_at_init + 200

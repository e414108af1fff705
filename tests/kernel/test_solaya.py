"""Solaya's boot: its newc reader, extract()'s rules, the /chosen handoff, QEMU's placement, the
planned release, and every difference from Linux on real images."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

import bootmem.initramfs
from bootmem.errors import BootError, OutOfMemoryError
from bootmem.fdt import DeviceTree
from bootmem.initramfs.cpio import Entry
from bootmem.kernel.solaya import (
    SolayaCpioError,
    SolayaMachine,
    boot,
    extract_into,
    find_initrd_range,
    normalize,
    place,
    read_newc,
)
from bootmem.mm import PAGE_SIZE, SolayaAllocator
from tests.conftest import require_tool
from tests.initramfs import corpus
from tests.kernel.conftest import archive, d, f, fresh_fs, raw_entry, small_image, sym

MACHINE = SolayaMachine(ram_size=64 << 20, kernel_size=4 << 20)


def messages(report: object) -> list[str]:
    return [m.split("] ", 2)[-1] for m in report.log.messages()]  # type: ignore[attr-defined]


# --- the newc reader ---------------------------------------------------------------------------


def test_reader_agrees_with_gnu_cpio(tmp_path: Path) -> None:
    tree = corpus.build_tree(tmp_path / "root", files=60, big_mb=1)
    data = corpus.peer_archive(tree, "gnu-newc")
    listed = subprocess.run(
        [require_tool("cpio"), "-t", "--quiet"], input=data, capture_output=True, check=True
    ).stdout.decode("utf-8", "surrogateescape")
    entries = list(read_newc(memoryview(data)))
    assert "".join(e.name + "\n" for e in entries) == listed  # one name a line (one has a newline)
    for e in entries:
        if stat.S_ISREG(e.mode) and e.data:
            assert bytes(e.data) == (tree / e.name).read_bytes()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (archive(f("a", b"x"), format="crc"), "BadMagic"),  # 070702: Solaya takes 070701 only
        (archive(f("a", b"xyz"))[:60], "Truncated"),
        (archive(f("a", b"xyz"))[:114], "Truncated"),
        (raw_entry(b"\xffname", namesize=6), "InvalidName"),
        (raw_entry(b"name", namesize=4), "InvalidName"),  # no NUL inside c_namesize
        (b"070701" + b"zz" + archive(f("a"))[8:], "BadHex"),
    ],
    ids=["crc", "short-header", "short-name", "non-utf8-name", "no-nul", "bad-hex"],
)
def test_reader_errors(data: bytes, kind: str) -> None:
    with pytest.raises(SolayaCpioError) as info:
        list(read_newc(memoryview(data)))
    assert info.value.kind == kind and info.value.offset == 0


def test_reader_stops_at_the_trailer() -> None:
    data = archive(f("a", b"1")) + archive(f("b", b"2"))
    assert [e.name for e in read_newc(memoryview(data))] == ["a"]


@pytest.mark.parametrize(
    ("name", "path"), [("/etc/x", "etc/x"), ("./etc/x", "etc/x"), ("//./x", "x"), (".", ""), ("././x", "./x")]
)
def test_normalize(name: str, path: str) -> None:
    assert normalize(name) == path


# --- extract() ---------------------------------------------------------------------------------


def test_extract_rules() -> None:
    fs = fresh_fs()
    data = archive(
        d("."),
        f("./usr/bin/tool", b"T" * 5000, 0o750),  # parents made on the way
        Entry("dev/console", stat.S_IFCHR | 0o600, c_rdevmajor=5, c_rdevminor=1),
        Entry("dev/sda", stat.S_IFBLK | 0o660, c_rdevmajor=8),
        Entry("run/initctl", stat.S_IFIFO | 0o600),
        Entry("run/sock", stat.S_IFSOCK | 0o600),
        f("/bin/cat", b"CAT", 0o755, c_ino=7, c_nlink=2),
        f("bin/head", b"", 0o755, c_ino=7, c_nlink=2),  # data on the first link: Solaya links
        sym("bin/sh", "busybox"),
        Entry("odd", 0o644),  # no file type: neither made nor counted
    )
    result = extract_into(memoryview(data), fs)
    assert result.error is None
    assert result.entries == 4  # tool, cat, head, sh: "." and the skipped nodes are not counted
    assert fs.read("/usr/bin/tool") == b"T" * 5000
    assert stat.S_IMODE(fs.stat("/usr/bin/tool").st_mode) == 0o750
    assert fs.stat("/bin/head").st_ino == fs.stat("/bin/cat").st_ino
    assert fs.readlink("/bin/sh") == "busybox"
    # Skipped before their parents are made.
    assert not fs.exists("/dev") and not fs.exists("/run") and not fs.exists("/odd")
    assert [(x.path, x.what) for x in result.differences] == [
        ("/dev/console", "character device skipped"),
        ("/dev/sda", "block device skipped"),
        ("/run/initctl", "fifo skipped"),
        ("/run/sock", "socket skipped"),
    ]


def test_non_utf8_symlink_stops_extraction() -> None:
    fs = fresh_fs()
    data = archive(f("a", b"1"), Entry("l", stat.S_IFLNK | 0o777, linkname="\udcff"), f("b", b"2"))
    result = extract_into(memoryview(data), fs)
    assert result.error == "InvalidSymlinkTarget" and result.entries == 1
    assert fs.exists("/a") and not fs.exists("/b")
    assert result.differences[-1].path == "/l"


def test_a_name_twice_is_eexist_and_stops() -> None:
    fs = fresh_fs()
    result = extract_into(memoryview(archive(f("a", b"1"), f("a", b"2"), f("c"))), fs)
    assert result.error == "Vfs(EEXIST)" and fs.read("/a") == b"1" and not fs.exists("/c")


def test_a_file_where_a_parent_should_be_is_enotdir() -> None:
    fs = fresh_fs()
    result = extract_into(memoryview(archive(f("a", b"1"), f("a/b", b"2"))), fs)
    assert result.error == "Vfs(ENOTDIR)" and result.entries == 1


# --- the handoff and QEMU's placement -----------------------------------------------------------


@pytest.mark.parametrize(
    ("cells", "widths", "found"),
    [(2, (4, 8), True), (1, (4, 8), True), (1, (8,), False), (2, (8,), True)],
)
def test_find_initrd_range_cell_widths(cells: int, widths: tuple[int, ...], found: bool) -> None:
    blob = DeviceTree.build(
        memory=[(0x8000_0000, 0x9000_0000)], initrd=(0x8400_0000, 0x8400_1000), initrd_cells=cells
    )
    assert find_initrd_range(blob, widths) == ((0x8400_0000, 0x8400_1000) if found else None)


def test_find_initrd_range_absent_and_empty() -> None:
    assert find_initrd_range(DeviceTree.build(memory=[(0, 1 << 20)])) is None
    blob = DeviceTree.build(memory=[(0, 1 << 20)], initrd=(0x1000, 0x1000))
    assert find_initrd_range(blob) is None


@pytest.mark.parametrize(
    ("ram", "initrd_at", "fdt_at"),
    [
        (512 << 20, 0x9020_0000, 0x9FE0_0000),
        (128 << 20, 0x8420_0000, 0x87E0_0000),
        (2 << 30, 0xA020_0000, 0xFFE0_0000),
    ],
)
def test_qemu_placement(ram: int, initrd_at: int, fdt_at: int) -> None:
    _blob, fdt, initrd = place(SolayaMachine(ram_size=ram), 1000)
    assert initrd == (initrd_at, initrd_at + 1000) and fdt == fdt_at


# --- the boot ----------------------------------------------------------------------------------


def test_boot_logs_as_solaya_and_releases_the_initrd() -> None:
    image = small_image()
    report = boot(image, machine=MACHINE)
    assert messages(report)[3:6] == [
        f"initramfs: extracting {len(image)} bytes from /chosen",
        "initramfs: extracted 8 entries into /",
        f"release_reserved: {report.freed_pages} pages of the initrd "
        f"[{report.initrd.start:#x}, {report.initrd.end:#x}) back to the page allocator",  # type: ignore[union-attr]
    ]
    assert report.ok and report.init == "/init"
    pages = -(-len(image) // PAGE_SIZE)
    assert report.held_forever_pages == report.freed_pages == pages
    assert report.free_pages_end == report.free_pages_before_release + pages
    report.allocator.check_invariants()  # type: ignore[union-attr]


def test_boot_without_the_fix_holds_the_initrd() -> None:
    report = boot(small_image(), machine=MACHINE, release=False)
    assert report.freed_pages == 0 and report.held_forever_pages > 0
    assert report.allocator.stats()["reserved"] >= report.held_forever_pages  # type: ignore[union-attr]


def test_every_initrd_frame_is_served_after_the_boot() -> None:
    report = boot(small_image(), machine=MACHINE)
    sa = report.allocator
    assert isinstance(sa, SolayaAllocator) and report.initrd is not None
    served = set()
    while True:
        try:
            served.add(sa.alloc_pages(1))
        except OutOfMemoryError:
            break
    first, stop = report.initrd.start // PAGE_SIZE, -(-report.initrd.end // PAGE_SIZE)
    assert set(range(first, stop)) <= served


def test_hardlink_data_on_the_last_link_differs_from_linux() -> None:
    # GNU cpio writes a hardlink group's data with its last name; Solaya expects it on the first.
    report = boot(small_image(), machine=MACHINE)
    found = {x.path: x.what for x in report.differences}
    assert found["/etc/a"].startswith("differs: size 0 (Linux 12)")
    assert "nlink 1 (Linux 2)" in found["/etc/b"]


def test_distro_image_compressed_segment_is_ignored(tmp_path: Path) -> None:
    tree = corpus.build_tree(tmp_path / "root", files=40, big_mb=1)
    image = corpus.distro_image(tree, compression="gzip").data
    report = boot(image, machine=MACHINE)
    log = messages(report)
    assert any(m.startswith("initramfs: extracted ") and m.endswith(" entries into /") for m in log)
    found = {x.path: x.what for x in report.differences}
    assert "gzip-compressed segment 1, which Solaya never reads" in found["segment 1"]
    with bootmem.initramfs.open(image) as img:
        main = {"/" + e.name.removeprefix("./") for e in img if e.segment == 1 and e.name not in (".", "./")}
    assert main <= found.keys()


def test_compressed_image_is_bad_magic() -> None:
    image = corpus.peer_compress(small_image(), "gzip")
    report = boot(image, machine=MACHINE)
    assert "initramfs: extraction failed: Cpio(BadMagic)" in messages(report)
    assert report.unpack_error == "Cpio(BadMagic)" and not report.ok
    assert report.freed_pages == report.held_forever_pages  # released whatever happened


def test_one_cell_chosen_with_the_old_reader_is_no_initrd() -> None:
    machine = SolayaMachine(ram_size=64 << 20, kernel_size=4 << 20, initrd_cells=1, chosen_widths=(8,))
    report = boot(small_image(), machine=machine)
    assert "initramfs: no initrd in DTB /chosen; skipping extraction" in messages(report)
    assert report.initrd is None and report.freed_pages == 0
    assert report.differences[0].path == "/chosen" and "4 and 4 bytes" in report.differences[0].what


def test_a_dtb_whose_initrd_shares_the_device_trees_page_panics() -> None:
    _blob, fdt, _initrd = place(MACHINE, 100)
    blob = DeviceTree.build(memory=[(0x8000_0000, 0x8400_0000)], initrd=(fdt + 0x800, fdt + 0x900))
    with pytest.raises(
        BootError, match=r"Solaya panics in init_page_allocator.*Reserved area should be free"
    ):
        boot(b"\0" * 0x100, machine=MACHINE, dtb=blob)


def test_an_initrd_outside_the_heap_panics() -> None:
    blob = DeviceTree.build(memory=[(0x8000_0000, 0x8400_0000)], initrd=(0x8010_0000, 0x8010_1000))
    with pytest.raises(BootError, match="outside the heap's pages"):
        boot(b"\0" * 0x1000, machine=MACHINE, dtb=blob)


def test_sbin_init_beats_init() -> None:
    image = archive(d("sbin"), f("sbin/init", b"\x7fELF"), f("init", b"#!/bin/sh\n"))
    report = boot(image, machine=MACHINE)
    assert report.init == "/sbin/init"
    assert "init: loaded PID 1 from /sbin/init (4 bytes)" in messages(report)
    assert {x.path: x.what for x in report.differences}[
        "/sbin/init"
    ] == "Solaya runs it as PID 1; Linux runs /init"


def test_report_json() -> None:
    data = boot(small_image(), machine=MACHINE).to_json()
    assert data["kernel"] == "solaya"
    assert data["solaya"]["released_pages"] == data["solaya"]["held_forever_pages"] > 0
    assert any(x["path"] == "/etc/b" for x in data["solaya"]["differences"])

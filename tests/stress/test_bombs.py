"""Decompression bombs: a few KB of each compression that expand past the cap.

The image reader must stop with a clean :class:`DecompressionBombError` naming the member and
the cap, after decompressing no more than about the cap; in a boot the failure is logged as
Linux logs it ("Initramfs unpacking failed: decompressor failed"), the initrd is freed and no
page is leaked.
"""

from __future__ import annotations

import functools
import stat

import pytest

import bootmem.errors
import bootmem.initramfs
from bootmem.errors import DecompressionBombError
from bootmem.initramfs.compress import COMPRESSIONS, compress
from bootmem.initramfs.cpio import Entry
from bootmem.kernel.boot import Machine, boot
from tests.initramfs.corpus import archive, claimed_header

CAP = 1 << 20
BOMBS = [c for c in COMPRESSIONS if c != "none"]
HEAD = archive((Entry("init", stat.S_IFREG | 0o755, c_filesize=3), b"#!\n"))


@functools.cache
def _bomb(name: str, size: int) -> bytes:
    """One archive, then ``size`` NULs (skipped between archives), as one ``name`` member."""
    return compress(HEAD + bytes(size), name)


@functools.cache
def _file_bomb(name: str, size: int) -> bytes:
    """An archive whose one file holds ``size`` zero bytes, as one ``name`` member."""
    return compress(archive((Entry("zeros", stat.S_IFREG | 0o644, c_filesize=size), bytes(size))), name)


@pytest.mark.parametrize("name", BOMBS)
def test_a_bomb_stops_at_the_cap(name: str) -> None:
    bomb = _bomb(name, 4 * CAP)
    assert len(bomb) < 20_000, f"{name}: {len(bomb)} bytes is not a bomb"
    with (
        bootmem.initramfs.open(bomb, max_decompressed=CAP) as image,
        pytest.raises(DecompressionBombError, match=rf"cap of {CAP} bytes in the {name} member"),
    ):
        for _entry, reader in image.stream():
            reader.read_data()


@pytest.mark.parametrize("name", BOMBS)
def test_a_file_bomb_stops_at_the_cap(name: str) -> None:
    bomb = _file_bomb(name, 4 * CAP)
    with bootmem.initramfs.open(bomb, max_decompressed=CAP) as image, pytest.raises(DecompressionBombError):
        for _entry, reader in image.stream():
            for _ in reader.iter_data(1 << 16):
                pass


def test_the_default_cap_of_a_small_image() -> None:
    # default_cap: at least 256 MiB, else 1000 times the image; a 10 KB zstd bomb passes it.
    bomb = _bomb("zstd", (256 << 20) + (1 << 20))
    with (
        bootmem.initramfs.open(bomb) as image,
        pytest.raises(DecompressionBombError, match=r"passes the cap of 268435456 bytes"),
    ):
        for _entry, _reader in image.stream():
            pass


# An 8 MiB machine: the unpacker's cap is twice RAM, 16 MiB; the rootfs limit is half of the
# free pages, so the NUL bomb is a decompressor failure, the file bomb a write error.
MACHINE = Machine(ram_size=8 << 20, kernel_size=1 << 20)
BOOT_BOMB = 20 << 20


@pytest.mark.parametrize("async_unpack", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("name", BOMBS)
def test_a_bomb_in_boot_is_a_logged_error_with_no_page_leaked(name: str, async_unpack: bool) -> None:
    for bomb, message in (
        (_bomb(name, BOOT_BOMB), "decompressor failed"),
        (_file_bomb(name, BOOT_BOMB), None),
    ):
        report = boot(bomb, machine=MACHINE, cmdline=f"initramfs_async={int(async_unpack)}")
        pa = report.allocator
        assert pa is not None and report.rootfs is not None
        assert report.unpack_error is not None
        if message is not None:
            assert report.unpack_error == message
            assert "passes the cap" in (report.unpack_detail or "")
        else:  # the file fills the rootfs first, or the cap stops it
            assert report.unpack_error in ("write error", "decompressor failed")
        assert any("Initramfs unpacking failed: " in str(line) for line in report.log.lines)
        pa.check_invariants()
        assert report.initrd is not None
        assert report.freed_pages > 0
        assert "initrd" not in {region for region, _, _ in pa.reserved_regions()}
        assert pa.stats()["allocated"] == report.rootfs.used_pages == report.rootfs_pages
        assert pa.pages_by_owner().get(report.rootfs.owner, 0) == report.rootfs_pages


# --- bodies the unpacker skips (issue 11, hostile 1) ----------------------------------------
#
# init/initramfs.c do_header() sends an entry with c_namesize 0 or over PATH_MAX, and
# do_symlink() one whose target is over PATH_MAX, to SkipIt: the bytes stream by in do_skip()
# and are never collected.  A 64 KB zstd member holding such an entry made bootmem read the
# claimed 4 GiB into one bytes object (3.1 GB of host memory for `boot --mem 1G`).


#: What each hostile entry claims; the image holds SKIPPED bytes of body after its header.
SKIPPED = 96 << 20
HOSTILE_SKIPS = {
    "namesize-ffffffff": claimed_header(b"", mode=stat.S_IFREG | 0o644, namesize=0xFFFFFFFF, filesize=0),
    "symlink-fffffff0": claimed_header(b"l\0", mode=stat.S_IFLNK | 0o777, namesize=2, filesize=0xFFFFFFF0),
}


@functools.cache
def hostile_skip(kind: str, compression: str = "zstd", size: int = SKIPPED) -> bytes:
    """A compressed member: the hostile header, then ``size`` zero bytes of its claimed body."""
    return compress(HOSTILE_SKIPS[kind] + bytes(size), compression)


@pytest.mark.parametrize("kind", sorted(HOSTILE_SKIPS))
def test_a_skipped_body_is_streamed_not_held(kind: str) -> None:
    import tracemalloc

    image = hostile_skip(kind)
    assert len(image) < 20_000
    tracemalloc.start()
    try:
        with (
            bootmem.initramfs.open(image, strict=False, max_decompressed=SKIPPED + (1 << 20)) as img,
            pytest.raises(bootmem.errors.CpioError, match="truncated entry"),
        ):
            list(img)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Bounded by the decompressor's chunks, not the 96 MiB that streamed by.
    assert peak < 16 << 20, f"{peak} bytes held while skipping {SKIPPED}"


@pytest.mark.parametrize("kind", sorted(HOSTILE_SKIPS))
def test_a_skipped_body_in_boot_costs_no_memory(kind: str) -> None:
    import tracemalloc

    image = hostile_skip(kind)  # built before tracing: its 96 MiB of zeros are the test's, not boot's
    tracemalloc.start()
    try:
        report = boot(image, machine=Machine(ram_size=64 << 20, kernel_size=1 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 64 MiB of RAM: the cap is twice that, 128 MiB, past the 96 MiB the image holds, so the
    # skip runs off the end of the member as Linux's does.
    assert report.unpack_error is not None
    assert peak < 16 << 20, f"{peak} bytes held while skipping {SKIPPED}"

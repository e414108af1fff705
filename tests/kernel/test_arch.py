"""Architecture profiles against Debian 6.1's amd64 kernel booted under QEMU at 128M to 2G.

The logs in ``data/debian-6.1-amd64`` are that kernel's serial console, booted with
``qemu-system-x86_64 -accel tcg -m SIZE -kernel vmlinuz-6.1.0-57-amd64 -initrd busybox.cpio``
(a 1983488-byte busybox initrd), up to ``Freeing initrd memory``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bootmem.errors import UsageError
from bootmem.kernel.arch import X86_64, fit_fixed, fit_two, profile, ram_size_of
from bootmem.kernel.boot import Machine, boot
from bootmem.report.budget import Calibration, parse_dmesg
from bootmem.units import parse_size

DATA = Path(__file__).parent / "data" / "debian-6.1-amd64"
SIZES = ["128M", "256M", "344M", "352M", "512M", "1G", "2G"]
INITRD_BYTES = 1983488  # the busybox initrd of every log


def log(size: str) -> str:
    return (DATA / f"qemu-pc-{size}.log").read_text()


def calibration(size: str) -> Calibration:
    return parse_dmesg(log(size))


@pytest.mark.parametrize("size", SIZES)
def test_ram_size_from_the_memory_lines_total(size: str) -> None:
    c = calibration(size)
    assert c.arch == "x86_64"
    assert ram_size_of(X86_64, c.ram_bytes) == parse_size(size)


@pytest.mark.parametrize("size", SIZES)
def test_hash_tables_are_the_sizes_linux_printed(size: str) -> None:
    printed = {
        m.group(1): int(m.group(2))
        for m in re.finditer(
            r"\] (Dentry cache|Inode-cache) hash table entries: \d+ \(order: \d+, (\d+) bytes", log(size)
        )
    }
    modelled = {name: n for name, n in X86_64.hash_tables(parse_size(size))}
    assert modelled == printed


@pytest.mark.parametrize("size", SIZES)
def test_model_prints_linuxs_memory_total_and_reserved(size: str) -> None:
    """The model's Memory: line on the x86_64 profile, with an initrd of the logs' size."""
    c = calibration(size)
    ram = parse_size(size)
    report = boot(bytes(INITRD_BYTES), machine=Machine.for_arch(X86_64, ram), no_builtin=True)
    try:
        assert report.total_pages * 4096 == c.ram_bytes
        assert report.reserved_pages_at_init * 4096 == c.reserved_bytes
        # Linux's available figure is lower: per-CPU areas and deferred struct page init
        # (above ~1G) are taken before it prints; totalram, which tmpfs's limit uses, is the same.
        assert report.available_pages * 4096 == c.ram_bytes - c.reserved_bytes
    finally:
        assert report.allocator is not None
        report.rootfs = None
        report.allocator.close()


@pytest.mark.parametrize("source", SIZES)
def test_one_log_predicts_every_other_size(source: str) -> None:
    fitted = fit_fixed(X86_64, calibration(source).memory_line)
    assert fitted.fixed == X86_64.fixed
    for size in SIZES:
        c = calibration(size)
        predicted = fitted.reserved(parse_size(size)) + 4096 + c.initrd_bytes
        assert predicted == c.reserved_bytes, size


def test_two_logs_fit_the_struct_page_size() -> None:
    flat_guess = fit_two(profile("x86_64"), calibration("512M").memory_line, calibration("2G").memory_line)
    assert flat_guess.struct_page == 64 and flat_guess.fixed == X86_64.fixed


def test_two_logs_in_one_section_cannot_fit() -> None:
    with pytest.raises(UsageError, match="same struct page array"):
        fit_two(X86_64, calibration("344M").memory_line, calibration("352M").memory_line)


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match=r"'arm' .*flat, x86_64"):
        profile("arm")


@pytest.mark.parametrize("size", ["256M", "2G"])
def test_smp_alternatives_are_freed_before_rootfs_is_mounted(size: str) -> None:
    """On one CPU Linux frees the SMP alternatives before ``vfs_caches_init`` mounts rootfs, so
    tmpfs's limit is half of the Memory: line's totalram plus those pages."""
    text = log(size)
    freed = re.search(r"\] Freeing SMP alternatives memory: (\d+)K", text)
    assert freed is not None and text.index(freed.group(0)) < text.index("Mount-cache hash table")
    report = boot(bytes(INITRD_BYTES), machine=Machine.for_arch(X86_64, parse_size(size)), no_builtin=True)
    try:
        assert f"Freeing SMP alternatives memory: {freed.group(1)}K" in report.log.messages()
        totalram = report.available_pages + int(freed.group(1)) // 4
        assert report.rootfs_limit_pages == totalram // 2
    finally:
        assert report.allocator is not None
        report.rootfs = None
        report.allocator.close()


# The probe's logs: the same kernel booting Debian's MODULES=dep lz4 image with bootmem verify's probe
# prepended, up to the probe's /proc/meminfo (its per-path records left out); at 118784K the
# kernel ran out of memory in the unpack and printed its Mem-Info.
PROBE_SIZES = ["119808K", "160768K", "512M"]


@pytest.mark.parametrize("size", PROBE_SIZES)
def test_x86_64_runtime_is_what_the_probe_saw(size: str) -> None:
    c = parse_dmesg((DATA / f"probe-{size}.log").read_text())
    assert c.runtime_bytes is not None and c.freed_late_bytes == X86_64.freed_late == 8008 << 10
    # A line through 119808K and 512M; 160768K lies 144K above it.
    assert abs(X86_64.runtime_bytes(parse_size(size)) - c.runtime_bytes) <= 160 << 10


def test_x86_64_after_unpack_is_what_the_out_of_memory_report_says() -> None:
    from bootmem.kernel.workspace import UNPACK_BUFFERS, member_workspace

    text = (DATA / "probe-118784K-oom.log").read_text()
    assert "System is deadlocked on memory" in text and "unlz4" in text

    def pages(pattern: str) -> int:
        found = re.search(pattern, text)
        assert found is not None, pattern
        return int(found.group(1)) * 4096

    managed = pages(r"(\d+) pages RAM") - pages(r"(\d+) pages reserved")
    free, shmem = pages(r" free:(\d+) "), pages(r" shmem:(\d+) ")
    # Held by the kernel at the peak beyond the rootfs and the lz4 decompressor's buffers.
    held = managed - free - shmem - (member_workspace("lz4", b"") + UNPACK_BUFFERS)
    after_unpack = X86_64.runtime_bytes(parse_size("118784K")) - held
    assert abs(after_unpack - X86_64.after_unpack) <= 64 << 10

"""The RAM budget: the smallest RAM boots and one step less does not; calibration from dmesg."""

from __future__ import annotations

import random

import pytest

from bootmem.errors import BootError, UsageError
from bootmem.kernel.arch import X86_64
from bootmem.kernel.boot import BootReport, Machine, boot
from bootmem.mm import PAGE_SIZE
from bootmem.report.budget import Budget, find_budget, memory_limit, parse_dmesg
from tests.initramfs.corpus import archive, d
from tests.report.conftest import make_image

DMESG = """\
[    0.000000] Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075) #45-Ubuntu SMP
[    0.000000] Command line: BOOT_IMAGE=/vmlinuz-6.8.0-45-generic root=/dev/vda1 ro
[    0.004021] RAMDISK: [mem 0x7d1a2000-0x7fffefff]
[    0.041219] Memory: 1884664K/2096632K available (16384K kernel code, 4418K rwdata, 8812K rodata, \
4208K init, 4864K bss, 211712K reserved, 0K cma-reserved)
[    1.234567] Freeing initrd memory: 47476K
"""


def _boot(budget: Budget, image: bytes, ram: int, retain: bool) -> BootReport:
    """``image`` booted with ``ram`` bytes as the budget's search and ``bootmem boot`` boot it."""
    cmdline = " ".join([budget.cmdline, *(["retain_initrd"] if retain else [])]).strip()
    report = boot(
        image,
        machine=Machine(ram_size=ram, kernel_size=budget.kernel_size, arch=budget.arch),
        cmdline=cmdline,
        rootfs_size=budget.rootfs_size,
        rootfs_share=budget.rootfs_share,
    )
    assert report.allocator is not None
    report.rootfs = None
    report.allocator.close()
    return report


def _boots(budget: Budget, report: BootReport) -> bool:
    enough = memory_limit(report, budget.arch, budget.init_free) is None
    return report.ok and report.init is not None and enough


def assert_boundary(budget: Budget, image: bytes) -> dict[bool, BootReport]:
    """Both answers boot and one step less does not; returns the failing boots below them."""
    below = {}
    for retain, result in ((False, budget.released), (True, budget.retained)):
        assert result.min_ram % result.step == 0
        assert _boots(budget, _boot(budget, image, result.min_ram, retain)), (retain, result)
        below[retain] = _boot(budget, image, result.min_ram - result.step, retain)
        assert not _boots(budget, below[retain]), (retain, result)
    return below


def test_min_ram_boots_and_one_step_less_does_not() -> None:
    data = random.Random(7).randbytes(500_000)
    image = make_image({"lib/a.so": data, "bin/b": b"x" * 300_000}, compression="gzip")
    budget = find_budget(image, kernel_size=2 << 20, init_free=1 << 20)
    r, t = budget.released, budget.retained
    assert r.step == 64 << 10 and r.boots < 20
    below = assert_boundary(budget, image)
    assert budget.released.limit == "init" and below[False].unpack_error is None
    assert t.min_ram > r.min_ram
    assert budget.release_wins == t.min_ram - r.min_ram
    assert budget.freed >= len(image) // PAGE_SIZE * PAGE_SIZE
    assert budget.peak["initrd"] > 0 and budget.peak["rootfs"] > 0 and budget.peak["kernel"] == 2 << 20
    assert budget.to_json()["min_ram_bytes"] == r.min_ram


def test_tmpfs_half_of_the_free_pages_bites_first() -> None:
    # 12 MiB of zeros compress to almost nothing: tmpfs's half of the pages the allocator
    # manages bites long before the pages kernel + initrd + rootfs need.
    image = make_image({"zeros": bytes(12 << 20)}, compression="gzip")
    budget = find_budget(image, kernel_size=1 << 20, init_free=0)
    assert budget.released.limit == "tmpfs"
    assert "must fit in tmpfs's half of the pages free when the allocator came up" in budget.released.reason
    below = assert_boundary(budget, image)
    for report in below.values():
        assert report.unpack_error == "write error"
        assert report.rootfs_limit_pages == report.available_pages // 2 == report.rootfs_pages
    # retain_initrd changes nothing when tmpfs bites
    assert budget.retained.min_ram == budget.released.min_ram


def test_physical_pages_bite_with_a_big_tmpfs_size() -> None:
    image = make_image({"data": bytes(range(256)) * 8192}, compression="gzip")
    budget = find_budget(image, kernel_size=4 << 20, rootfs_size=1 << 30, init_free=0)
    assert budget.released.limit == "pages"
    assert "must all fit in RAM's pages" in budget.released.reason
    below = assert_boundary(budget, image)
    assert below[False].unpack_error == "write error"
    assert below[False].rootfs_pages < below[False].rootfs_limit_pages


def test_tmpfs_share_is_of_the_free_pages() -> None:
    """``size=25%``: a quarter of the pages free when the allocator came up, as boot sets it."""
    image = make_image({"zeros": bytes(4 << 20)}, compression="gzip")
    budget = find_budget(image, kernel_size=1 << 20, rootfs_share=0.25, init_free=0)
    assert budget.released.limit == "tmpfs" and "tmpfs's 25% of the pages free" in budget.released.reason
    below = assert_boundary(budget, image)
    assert below[False].rootfs_limit_pages == -(-below[False].available_pages // 4)


def test_x86_64_profile_struct_pages_and_hash_tables_count() -> None:
    # 300 MiB of zeros: at that size the struct pages and hash tables are ~5 MiB of reserved
    # memory the flat profile does not know about.
    image = make_image({"zeros": bytes(150 << 20)}, compression="gzip")
    budget = find_budget(image, arch=X86_64, init_free=0, step=1 << 20)
    assert budget.kernel_size == X86_64.fixed
    below = assert_boundary(budget, image)
    assert below[False].unpack_error == "write error" and budget.released.limit == "tmpfs"
    # tmpfs holds 150 MiB: the allocator must manage 300 MiB, above what the kernel holds.
    ram = budget.released.min_ram
    held = X86_64.fixed + X86_64.growing(ram) + PAGE_SIZE + X86_64.hole_bytes
    assert ram - held >= 2 * (150 << 20) + 2 * PAGE_SIZE > ram - (1 << 20) - held


def test_an_image_without_init_does_not_boot_at_any_size() -> None:
    with pytest.raises(BootError, match="no init"):
        find_budget(archive(d("etc")), kernel_size=1 << 20)


def test_parse_dmesg() -> None:
    c = parse_dmesg(DMESG)
    assert c.ram_bytes == 2096632 << 10
    assert c.available_bytes == 1884664 << 10
    assert c.reserved_bytes == 211712 << 10
    assert c.kernel_code_bytes == 16384 << 10
    assert c.initrd_start == 0x7D1A2000
    assert c.initrd_bytes == 0x7FFFF000 - 0x7D1A2000 == 47476 << 10
    assert c.freed_bytes == 47476 << 10
    assert c.kernel_size == (211712 - 47476 - 4) << 10


def test_parse_dmesg_without_ramdisk_uses_the_freed_figure() -> None:
    text = "Memory: 1000K/2000K available (100K kernel code, 900K reserved, 0K cma-reserved)\n"
    text += "Freeing initrd memory: 400K\n"
    assert parse_dmesg(text).kernel_size == (900 - 400 - 4) << 10


def test_parse_dmesg_needs_the_memory_line() -> None:
    with pytest.raises(UsageError, match="Memory:"):
        parse_dmesg("RAMDISK: [mem 0x1000-0x1fff]\n", where="x.log")


def test_parse_dmesg_reads_the_probes_meminfo() -> None:
    # bootmem verify's probe prints /proc/meminfo as init starts: the kernel's own use since
    # mem_init is MemTotal less what is free, the rootfs (Shmem) and init's own pages.
    from tests.kernel.test_arch import DATA

    c = parse_dmesg((DATA / "probe-119808K.log").read_text())
    assert c.runtime_bytes == (70656 - 25080 - 20592 - 108 - 48) << 10
    assert c.freed_late_bytes == (2036 + 2824 + 2040 + 1108) << 10
    assert parse_dmesg(DMESG).runtime_bytes is None


def test_a_probe_log_calibrates_the_runtime_and_the_budget_counts_it() -> None:
    from dataclasses import replace

    from bootmem.report.budget import calibrate
    from tests.kernel.test_arch import DATA

    c = parse_dmesg((DATA / "probe-512M.log").read_text())
    arch = calibrate(X86_64, [c])
    assert arch.runtime_bytes(512 << 20) == c.runtime_bytes
    # A kernel that needs 24 MiB more after mem_init needs more RAM for the same image.
    image = make_image({"lib/a.so": random.Random(3).randbytes(3 << 20)}, compression="gzip")
    without = find_budget(image, arch=replace(arch, runtime=0, after_unpack=0))
    with_runtime = find_budget(image, arch=arch)
    assert with_runtime.released.min_ram > without.released.min_ram + (16 << 20)
    assert with_runtime.released.limit == "kernel" and "the kernel's own" in with_runtime.released.reason
    below = assert_boundary(with_runtime, image)[False]
    # One step below, the boot itself panics as Linux does, and the budget reads that verdict.
    assert below.panic == "System is deadlocked on memory" and not below.ok and below.init is None
    assert memory_limit(below, arch, with_runtime.init_free) == "kernel"
    assert "Kernel panic - not syncing: System is deadlocked on memory" in str(below.log)
    assert "Freeing initrd memory" not in str(below.log)

"""The RAM budget: the smallest RAM boots and one step less does not; calibration from dmesg."""

from __future__ import annotations

import random

import pytest

from bootmem.errors import BootError, UsageError
from bootmem.kernel.boot import Machine, boot
from bootmem.mm import PAGE_SIZE
from bootmem.report.budget import find_budget, parse_dmesg
from tests.report.conftest import make_image

DMESG = """\
[    0.000000] Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075) #45-Ubuntu SMP
[    0.000000] Command line: BOOT_IMAGE=/vmlinuz-6.8.0-45-generic root=/dev/vda1 ro
[    0.004021] RAMDISK: [mem 0x7d1a2000-0x7fffefff]
[    0.041219] Memory: 1884664K/2096632K available (16384K kernel code, 4418K rwdata, 8812K rodata, \
4208K init, 4864K bss, 211712K reserved, 0K cma-reserved)
[    1.234567] Freeing initrd memory: 47476K
"""


def _boots(image: bytes, ram: int, kernel: int, cmdline: str = "", init_free: int = 0) -> bool:
    report = boot(image, machine=Machine(ram_size=ram, kernel_size=kernel), cmdline=cmdline)
    return report.ok and report.init is not None and report.free_pages_end * PAGE_SIZE >= init_free


def test_min_ram_boots_and_one_step_less_does_not() -> None:
    data = random.Random(7).randbytes(500_000)
    image = make_image({"lib/a.so": data, "bin/b": b"x" * 300_000}, compression="gzip")
    budget = find_budget(image, kernel_size=2 << 20, init_free=1 << 20)
    r = budget.released
    assert r.step == 64 << 10 and r.min_ram % r.step == 0
    assert _boots(image, r.min_ram, 2 << 20, init_free=1 << 20)
    assert not _boots(image, r.min_ram - r.step, 2 << 20, init_free=1 << 20)
    assert r.boots < 20
    t = budget.retained
    assert t.min_ram > r.min_ram
    assert _boots(image, t.min_ram, 2 << 20, "retain_initrd", 1 << 20)
    assert not _boots(image, t.min_ram - t.step, 2 << 20, "retain_initrd", 1 << 20)
    assert budget.release_wins == t.min_ram - r.min_ram
    assert budget.freed >= len(image) // PAGE_SIZE * PAGE_SIZE
    assert budget.peak["initrd"] > 0 and budget.peak["rootfs"] > 0 and budget.peak["kernel"] == 2 << 20
    assert "min" in "min_ram_bytes" and budget.to_json()["min_ram_bytes"] == r.min_ram


def test_tmpfs_half_of_ram_bites_first() -> None:
    # 12 MiB of zeros compress to almost nothing: RAM must be 24 MiB for tmpfs, far more than
    # the pages kernel + initrd + rootfs need.
    image = make_image({"zeros": bytes(12 << 20)}, compression="gzip")
    budget = find_budget(image, kernel_size=1 << 20, init_free=0)
    assert budget.released.limit == "tmpfs"
    assert "must fit in tmpfs's half of RAM" in budget.released.reason
    assert budget.released.min_ram >= 24 << 20
    # retain_initrd changes nothing when tmpfs bites
    assert budget.retained.min_ram == budget.released.min_ram


def test_physical_pages_bite_with_a_big_tmpfs_share() -> None:
    image = make_image({"data": bytes(range(256)) * 8192}, compression="gzip")
    budget = find_budget(image, kernel_size=4 << 20, rootfs_share=1.0, init_free=0)
    assert budget.released.limit == "pages"
    assert "must all fit in RAM's pages" in budget.released.reason


def test_an_image_without_init_does_not_boot_at_any_size() -> None:
    import io

    from bootmem.initramfs.cpio import CpioWriter, Entry

    out = io.BytesIO()
    with CpioWriter(out) as w:
        w.add(Entry("etc", 0o40755, c_ino=1))
    with pytest.raises(BootError, match="no init"):
        find_budget(out.getvalue(), kernel_size=1 << 20)


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

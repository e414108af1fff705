"""PhysicalMemory: sparse bytes, views, lazy fills."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bootmem.errors import InvalidRangeError
from bootmem.mm import PAGE_SIZE, PhysicalMemory
from bootmem.mm.ram import SECTION_SIZE

BASE = 0x8000_0000


@pytest.fixture
def ram() -> PhysicalMemory:
    return PhysicalMemory(BASE, 16 * PAGE_SIZE)


def test_starts_zeroed(ram: PhysicalMemory) -> None:
    assert ram.read(BASE, 16) == bytes(16)


def test_write_read(ram: PhysicalMemory) -> None:
    ram.write(BASE + 0xFFE, b"abcd")  # across a page boundary
    assert ram.read(BASE + 0xFFE, 4) == b"abcd"


def test_fill(ram: PhysicalMemory) -> None:
    ram.fill(BASE + 10, 5, 0x5A)
    assert ram.read(BASE + 9, 7) == b"\0" + b"Z" * 5 + b"\0"


def test_view_is_zero_copy(ram: PhysicalMemory) -> None:
    view = ram.view(BASE + PAGE_SIZE, 8)
    view[:3] = b"xyz"
    assert ram.read(BASE + PAGE_SIZE, 3) == b"xyz"
    ram.write(BASE + PAGE_SIZE + 3, b"!")
    assert bytes(view[3:4]) == b"!"
    view.release()


def test_map_window_at_unaligned_address(ram: PhysicalMemory) -> None:
    ram.write(BASE + 0x1234, b"data")
    window, offset = ram.map_window(BASE + 0x1234, 4)
    assert offset % PAGE_SIZE == 0x234
    assert window[offset : offset + 4] == b"data"
    window.close()


def test_discard_reads_as_fill_lazily(ram: PhysicalMemory) -> None:
    ram.write(BASE, b"x" * (3 * PAGE_SIZE))
    ram.discard(BASE + PAGE_SIZE, PAGE_SIZE, fill=0xCC)
    assert ram.pending_fills() == [(BASE + PAGE_SIZE, BASE + 2 * PAGE_SIZE, 0xCC)]
    assert ram.read(BASE + PAGE_SIZE - 1, 3) == b"x\xcc\xcc"
    # the read materialised only the bytes it covered
    assert ram.pending_fills() == [(BASE + PAGE_SIZE + 2, BASE + 2 * PAGE_SIZE, 0xCC)]
    view = ram.view(BASE + PAGE_SIZE, PAGE_SIZE)
    assert bytes(view) == b"\xcc" * PAGE_SIZE
    view.release()
    assert ram.pending_fills() == []


def test_write_overrides_pending_fill(ram: PhysicalMemory) -> None:
    ram.discard(BASE, PAGE_SIZE, fill=0xCC)
    ram.write(BASE + 1, b"ok")
    assert ram.read(BASE, 4) == b"\xccok\xcc"


def test_discard_unaligned_keeps_neighbours(ram: PhysicalMemory) -> None:
    ram.write(BASE, b"y" * (2 * PAGE_SIZE))
    ram.discard(BASE + 10, PAGE_SIZE, fill=0xAA)
    assert ram.read(BASE + 9, 2) == b"y\xaa"
    assert ram.read(BASE + PAGE_SIZE + 9, 2) == b"\xaay"


@pytest.mark.parametrize(("addr", "n"), [(BASE - 1, 2), (BASE + 16 * PAGE_SIZE - 1, 2), (BASE, -1), (0, 1)])
def test_out_of_range(ram: PhysicalMemory, addr: int, n: int) -> None:
    with pytest.raises(InvalidRangeError, match=r"0x8000"):
        ram.read(addr, n)
    with pytest.raises(InvalidRangeError):
        ram.view(addr, n)


def test_unaligned_ram_refused() -> None:
    with pytest.raises(InvalidRangeError, match="0x1001"):
        PhysicalMemory(0x1001, PAGE_SIZE)


def _rss_kib() -> int:
    """This process's resident memory now (not a peak, which earlier tests may have set)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_one_tebibyte_costs_only_pages_touched() -> None:
    before = _rss_kib()
    with PhysicalMemory(0, 1 << 40) as ram:
        for addr in range(0, 1 << 40, 1 << 36):
            ram.write(addr, b"touch")
        view = ram.view((1 << 40) - PAGE_SIZE, PAGE_SIZE)
        view[0] = 1
        view.release()
        assert ram.read(1 << 36, 5) == b"touch"
        during = _rss_kib()
    assert during - before < 64 * 1024  # KiB


def test_a_view_across_two_sections_is_one_window() -> None:
    with PhysicalMemory(0, 2 * SECTION_SIZE) as ram:
        ram.write(SECTION_SIZE - 3, b"across")
        view = ram.view(SECTION_SIZE - 3, 6)
        assert bytes(view) == b"across"
        view[5] = ord("!")
        view.release()
        assert ram.read(SECTION_SIZE - 3, 6) == b"across"[:5] + b"!"


def test_views_map_the_sections_they_touch_not_all_of_ram() -> None:
    # 1 TiB of RAM in an address space of 2 GiB: a mapping of all of it could not be made.
    script = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from bootmem.mm import PhysicalMemory\n"
        "ram = PhysicalMemory(0, 1 << 40)\n"
        "for addr in (0, 1 << 39, (1 << 40) - 4096):\n"
        "    view = ram.view(addr, 4096); view[0] = 7; view.release()\n"
        "    assert ram.read(addr, 1) == bytes([7])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr

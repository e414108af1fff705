"""Leases: a release while someone still holds the bytes is refused and changes nothing."""

from __future__ import annotations

import gc

import pytest

from bootmem.errors import LeaseClosedError, NotReservedError, RegionBusyError
from bootmem.mm import PAGE_SIZE, PageAllocator

from .conftest import page


@pytest.fixture
def leased(pa: PageAllocator) -> PageAllocator:
    pa.reserve(page(8), page(16), "initrd")
    return pa


def test_lease_reads_and_writes_reserved_bytes(leased: PageAllocator) -> None:
    lease = leased.lease(page(8) + 0x10, page(9), owner="unpack")
    view = lease.view
    assert len(view) == PAGE_SIZE - 0x10
    view[:6] = b"070701"
    assert leased.memory.read(page(8) + 0x10, 6) == b"070701"
    view.release()
    lease.close()
    assert lease.closed
    with pytest.raises(LeaseClosedError, match="'unpack'"):
        _ = lease.view


def test_release_refused_while_view_lives(leased: PageAllocator) -> None:
    lease = leased.lease(page(8), page(16), owner="unpack")
    view = lease.view
    before = (leased.stats(), leased.reserved_regions())
    with pytest.raises(RegionBusyError) as info:
        leased.release_reserved(page(8), page(16))
    message = str(info.value)
    assert "[0x80008000, 0x80010000)" in message and "'unpack'" in message
    assert (leased.stats(), leased.reserved_regions()) == before
    assert not lease.closed
    view[0] = 1  # still usable
    del view
    assert leased.release_reserved(page(8), page(16)) == 8
    assert lease.closed


def test_release_refused_while_slice_lives(leased: PageAllocator) -> None:
    lease = leased.lease(page(8), page(16), owner="unpack")
    header = lease.view[:110]
    with pytest.raises(RegionBusyError):
        leased.release_reserved(page(10), page(11))
    del header
    gc.collect()
    assert leased.release_reserved(page(10), page(11)) == 1


def test_release_outside_lease_is_allowed(leased: PageAllocator) -> None:
    lease = leased.lease(page(8), page(10), owner="unpack")
    view = lease.view
    assert leased.release_reserved(page(12), page(16)) == 4
    assert not lease.closed
    view.release()


def test_busy_refusal_is_atomic_across_leases(leased: PageAllocator) -> None:
    idle = leased.lease(page(8), page(9), owner="idle")
    busy = leased.lease(page(12), page(13), owner="busy")
    held = busy.view
    with pytest.raises(RegionBusyError, match="'busy'"):
        leased.release_reserved(page(8), page(16))
    assert not idle.closed
    idle.view[:2] = b"ok"  # remapped on demand
    assert leased.memory.read(page(8), 2) == b"ok"
    held.release()
    assert leased.release_reserved(page(8), page(16)) == 8
    assert idle.closed and busy.closed


def test_close_refused_while_view_lives(leased: PageAllocator) -> None:
    lease = leased.lease(page(8), page(9), owner="unpack")
    view = lease.view
    with pytest.raises(RegionBusyError, match="'unpack'"):
        lease.close()
    view.release()
    lease.close()
    assert leased.leases() == []


def test_context_manager(leased: PageAllocator) -> None:
    with leased.lease(page(8), page(9), owner="unpack") as lease:
        assert bytes(lease.view[:1]) == b"\0"
    assert lease.closed
    assert leased.leases() == []


def test_lease_needs_reserved_range(leased: PageAllocator) -> None:
    with pytest.raises(NotReservedError, match=r"\[0x80010000, 0x80011000\) is not reserved"):
        leased.lease(page(15), page(17), owner="unpack")


def test_leases_touching_the_released_range_are_not_in_it(leased: PageAllocator) -> None:
    """Half-open ranges: a lease ending at the release's start, or starting at its end, is not
    in ``[start, end)``, so its live views do not block the release and it stays open.

        page     8   10  12  14  16
        lease    [below)     [above)
        release      [   )
    """
    below = leased.lease(page(8), page(10), owner="below")
    above = leased.lease(page(12), page(16), owner="above")
    views = below.view, above.view
    assert leased.release_reserved(page(10), page(12)) == 2
    assert not below.closed and not above.closed
    for view in views:
        view.release()


def _rss_shmem() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssShmem:"):
                return int(line.split()[1]) * 1024
    pytest.skip("no RssShmem in /proc/self/status")


def test_pages_dropped_from_a_lease_leave_the_process_and_read_back_unchanged() -> None:
    import random

    size = 32 << 20
    pa = PageAllocator(base=0, size=64 << 20)
    pa.reserve(0, size, name="initrd")
    data = random.Random(14).randbytes(size)
    pa.memory.write(0, data)
    lease = pa.lease(0x10, size, owner="unpack")
    view = lease.view
    gc.collect()  # earlier tests' memory files go now, not between the measurements
    before = _rss_shmem()
    assert bytes(view) == data[0x10:]
    assert _rss_shmem() >= before + size - (1 << 20)
    piece = view[100:200]  # a slice alive across the drop
    lease.drop_pages(0, len(view))
    assert _rss_shmem() < before + (1 << 20)
    assert bytes(piece) == data[0x10 + 100 : 0x10 + 200] and bytes(view) == data[0x10:]  # faulted in again
    del piece
    view.release()
    lease.close()
    assert pa.memory.read(0, size) == data

"""Solaya's MetadataPageAllocator: layout, first fit, Used/Last runs, its assertions as errors, and
the planned release_reserved; the seed's test on both frame allocators."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootmem.errors import (
    AllocatorError,
    DoubleFreeError,
    InvalidFreeError,
    InvalidRangeError,
    NotReservedError,
    OutOfMemoryError,
    RegionBusyError,
    ReservedConflictError,
    UsageError,
)
from bootmem.fs.tmpfs import Tmpfs
from bootmem.mm import PAGE_SIZE, FrameAllocator, PageAllocator, SolayaAllocator
from bootmem.mm.solaya import FREE, LAST, METADATA, USED

BASE = 0x8000_0000
HEAP = BASE + 0x1000  # one page of "kernel" below the heap
# 65 heap pages of RAM: 64 pages of metadata bytes fit in one page, then 64 pages.
SIZE = 0x42000


@pytest.fixture
def sa() -> Iterator[SolayaAllocator]:
    allocator = SolayaAllocator(base=BASE, size=SIZE, heap_start=HEAP)
    yield allocator
    allocator.check_invariants()
    allocator.close()


def heap_page(sa: SolayaAllocator, i: int) -> int:
    """The address of heap page ``i``."""
    return sa.pages_start + i * PAGE_SIZE


def statuses(sa: SolayaAllocator, n: int) -> str:
    """The first ``n`` status bytes as letters: ``.`` free, ``u`` used, ``L`` last."""
    return "".join(".uL"[_byte(sa, i)] for i in range(n))


def _byte(sa: SolayaAllocator, i: int) -> int:
    return {"free": FREE, "used": USED, "last": LAST}[sa.status(sa.pages_start // PAGE_SIZE + i)]


# --- layout ---------------------------------------------------------------------------------


def test_layout_metadata_then_page_aligned_pages(sa: SolayaAllocator) -> None:
    # heap_size = 0x41000 = 266240; 266240 // 4097 = 64 bytes of metadata at the heap's start.
    assert sa.heap_pages == 64
    assert sa.pages_start == HEAP + PAGE_SIZE
    assert sa.pages_end == BASE + SIZE
    assert sa.reserved_regions() == [("Kernel image", BASE, HEAP), (METADATA, HEAP, HEAP + PAGE_SIZE)]
    assert sa.stats() == {"total": 66, "free": 64, "allocated": 0, "reserved": 2}


@pytest.mark.parametrize("ram_mib", [1, 128, 512])
def test_layout_follows_solaya_formula(ram_mib: int) -> None:
    size = ram_mib << 20
    heap_start = BASE + (2 << 20 if ram_mib > 2 else 0)
    with SolayaAllocator(base=BASE, size=size, heap_start=heap_start) as sa:
        heap_size = BASE + size - heap_start
        assert sa.heap_pages == heap_size // (PAGE_SIZE + 1)
        assert sa.pages_start % PAGE_SIZE == 0
        assert heap_start + sa.heap_pages <= sa.pages_start < heap_start + sa.heap_pages + PAGE_SIZE
        assert sa.pages_end <= BASE + size


def test_bad_geometry_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="0x80000800"):
        SolayaAllocator(base=BASE, size=SIZE, heap_start=BASE + 0x800)
    with pytest.raises(UsageError, match="not inside RAM"):
        SolayaAllocator(base=BASE, size=SIZE, heap_start=BASE + SIZE)


# --- alloc and dealloc ----------------------------------------------------------------------


def test_alloc_marks_used_then_last_and_is_first_fit(sa: SolayaAllocator) -> None:
    a = sa.alloc_pages(3)
    b = sa.alloc_pages(1)
    assert a == sa.pages_start // PAGE_SIZE and b == a + 3
    assert statuses(sa, 5) == "uuLL."
    assert sa.dealloc(a) == 3
    assert statuses(sa, 5) == "...L."
    # First fit: two pages fit in the hole at 0..2, four do not.
    assert sa.alloc_pages(2) == a
    assert sa.alloc_pages(4) == b + 1


def test_alloc_zeroes_the_pages(sa: SolayaAllocator) -> None:
    pfn = sa.alloc_pages(2)
    with sa.page_view(pfn, 2) as view:
        view[:] = b"\xab" * (2 * PAGE_SIZE)
    sa.dealloc(pfn)
    pfn = sa.alloc_pages(2)
    assert sa.memory.read(pfn * PAGE_SIZE, 2 * PAGE_SIZE) == bytes(2 * PAGE_SIZE)
    sa.dealloc(pfn)


def test_alloc_zero_pages_and_out_of_memory(sa: SolayaAllocator) -> None:
    with pytest.raises(UsageError, match="Cannot allocate zero pages"):
        sa.alloc_pages(0)
    with pytest.raises(OutOfMemoryError, match="no run of 65 free pages"):
        sa.alloc_pages(65)
    sa.alloc_pages(64)
    with pytest.raises(OutOfMemoryError, match="0 pages free"):
        sa.alloc_pages(1)


def test_double_free_is_solayas_assertion(sa: SolayaAllocator) -> None:
    pfn = sa.alloc_pages(1)
    sa.dealloc(pfn)
    with pytest.raises(DoubleFreeError, match="Double-free detected"):
        sa.dealloc(pfn)
    with pytest.raises(InvalidFreeError, match="not a heap page"):
        sa.dealloc(BASE // PAGE_SIZE)


def test_dealloc_from_the_middle_frees_the_tail(sa: SolayaAllocator) -> None:
    # Solaya does not check that the page starts an allocation.
    pfn = sa.alloc_pages(4)
    assert sa.dealloc(pfn + 2) == 2
    assert statuses(sa, 5) == "uu..."
    sa.check_invariants()
    # The head has lost its LAST: freeing it now runs into the next allocation's LAST.
    sa.alloc_pages(2)
    assert statuses(sa, 5) == "uuuL."
    assert sa.dealloc(pfn) == 4
    assert sa.stats()["allocated"] == 0


def test_free_is_stricter_than_dealloc(sa: SolayaAllocator) -> None:
    pfn = sa.alloc(order=2)
    with pytest.raises(InvalidFreeError, match=r"not the start of a 1-page allocation \(allocated to"):
        sa.free(pfn + 1, order=0)
    with pytest.raises(InvalidFreeError, match="not the start of a 2-page"):
        sa.free(pfn, order=1)
    sa.free(pfn, order=2)
    with pytest.raises(DoubleFreeError):
        sa.free(pfn, order=2)


def test_alloc_bulk_takes_the_lowest_free_pages_each_its_own(sa: SolayaAllocator) -> None:
    first = sa.alloc_pages(1)
    sa.alloc_pages(1)
    sa.dealloc(first)
    runs = sa.alloc_bulk(3, owner="rootfs")
    assert runs == [(first, 1), (first + 2, 2)]
    assert statuses(sa, 5) == "LLLL."
    sa.free(first + 3)
    assert sa.pages_by_owner()["rootfs"] == 2


def test_alloc_bulk_out_of_memory_keeps_what_it_took(sa: SolayaAllocator) -> None:
    sa.alloc_pages(60)
    with pytest.raises(OutOfMemoryError) as info:
        sa.alloc_bulk(5)
    assert info.value.runs == [(sa.pages_start // PAGE_SIZE + 60, 4)]


# --- reservations and release -----------------------------------------------------------------


def test_reservation_marks_used_last_without_zeroing(sa: SolayaAllocator) -> None:
    sa.memory.write(heap_page(sa, 1), b"initrd bytes")
    sa.reserve(heap_page(sa, 1) + 0x800, heap_page(sa, 3) + 1, name="initrd")
    assert statuses(sa, 5) == ".uuL."
    assert sa.memory.read(heap_page(sa, 1), 12) == b"initrd bytes"


def test_two_reservations_sharing_a_page_trip_the_assertion(sa: SolayaAllocator) -> None:
    # | dtb ... | ... initrd |: the initrd's last page holds the device tree's first byte.
    sa.reserve(heap_page(sa, 1), heap_page(sa, 2) + 0x10, name="initrd")
    with pytest.raises(ReservedConflictError, match=r"Reserved area should be free.*|reserved by 'initrd'"):
        sa.reserve(heap_page(sa, 2) + 0x10, heap_page(sa, 3), name="Device tree")


def test_reservation_outside_the_heap_pages(sa: SolayaAllocator) -> None:
    with pytest.raises(InvalidRangeError, match="outside the heap's pages"):
        sa.reserve(HEAP, HEAP + 0x10, name="Device tree")


def test_release_reserved_returns_the_frames_to_free(sa: SolayaAllocator) -> None:
    sa.reserve(heap_page(sa, 0), heap_page(sa, 3), name="initrd")
    assert sa.alloc_pages(1) == sa.pages_start // PAGE_SIZE + 3
    assert sa.release_reserved(heap_page(sa, 0), heap_page(sa, 3)) == 3
    assert statuses(sa, 4) == "...L"
    with pytest.raises(NotReservedError, match="not one reservation"):
        sa.release_reserved(heap_page(sa, 0), heap_page(sa, 3))


def test_release_of_part_of_a_reservation_or_an_allocation_is_refused(sa: SolayaAllocator) -> None:
    sa.reserve(heap_page(sa, 0), heap_page(sa, 3), name="initrd")
    pfn = sa.alloc_pages(2)
    with pytest.raises(NotReservedError, match="reserved by 'initrd'"):
        sa.release_reserved(heap_page(sa, 1), heap_page(sa, 3))
    with pytest.raises(NotReservedError, match="allocated to 'anonymous'"):
        sa.release_reserved(pfn * PAGE_SIZE, (pfn + 2) * PAGE_SIZE)
    assert statuses(sa, 6) == "uuLuL."


def test_release_while_a_leased_view_is_alive_is_refused(sa: SolayaAllocator) -> None:
    start, end = heap_page(sa, 0) + 4, heap_page(sa, 2)
    sa.reserve(start, end, name="initrd")
    lease = sa.lease(start, end, owner="initramfs::extract")
    view = lease.view
    archive = view[:6]  # extract()'s &'static [u8], still alive
    with pytest.raises(RegionBusyError, match="'initramfs::extract'"):
        sa.release_reserved(start, end)
    assert statuses(sa, 3) == "uL."
    archive.release()
    view.release()
    assert sa.release_reserved(start, end) == 2
    assert lease.closed and sa.leases() == []


def test_lease_outside_a_reservation(sa: SolayaAllocator) -> None:
    with pytest.raises(NotReservedError, match="not inside one reservation"):
        sa.lease(heap_page(sa, 0), heap_page(sa, 1))


# --- the seed's test, for both allocators ---------------------------------------------------


def _buddy() -> PageAllocator:
    return PageAllocator(base=BASE, size=SIZE, max_order=3)


def _solaya() -> SolayaAllocator:
    return SolayaAllocator(base=BASE, size=SIZE, heap_start=HEAP)


@pytest.mark.parametrize("make", [_buddy, _solaya], ids=["buddy", "solaya"])
def test_seed_reserve_release_allocate_until_oom_serves_every_reserved_frame(
    make: Callable[[], FrameAllocator],
) -> None:
    allocator = make()
    start, end = BASE + 0x10_000 + 0x123, BASE + 0x1C_000 - 0x80  # pages 0x10..0x1b, 12 frames
    allocator.reserve(start, end, name="initrd")
    before = allocator.stats()["free"]
    allocator.alloc(0)  # something allocated while the initrd is held
    assert allocator.release_reserved(start, end) == 12
    assert allocator.stats()["free"] == before - 1 + 12
    served: set[int] = set()
    while True:
        try:
            served.add(allocator.alloc(0))
        except OutOfMemoryError:
            break
    assert set(range(start // PAGE_SIZE, (end + PAGE_SIZE - 1) // PAGE_SIZE)) <= served
    assert allocator.stats()["free"] == 0
    allocator.check_invariants()
    allocator.close()


@pytest.mark.parametrize("make", [_buddy, _solaya], ids=["buddy", "solaya"])
def test_tmpfs_runs_on_either_allocator(make: Callable[[], FrameAllocator]) -> None:
    allocator = make()
    fs = Tmpfs(allocator)
    fs.mkdir("/etc", 0o755)
    with fs.create("/etc/motd", 0o644) as f:
        f.write(b"x" * (PAGE_SIZE + 1))
    assert fs.read("/etc/motd") == b"x" * (PAGE_SIZE + 1)
    assert allocator.pages_by_owner()["rootfs"] == 2
    fs.remove_path("/etc/motd")
    assert allocator.pages_by_owner().get("rootfs", 0) == 0
    allocator.check_invariants()
    allocator.close()


def test_a_heap_too_small_for_its_metadata() -> None:
    # Solaya: assert!(metadata.len() <= heap.len()); one page of heap has no room for a page.
    with SolayaAllocator(base=BASE, size=PAGE_SIZE) as sa:
        assert sa.heap_pages == 0
        with pytest.raises(OutOfMemoryError):
            sa.alloc_pages(1)
    assert issubclass(OutOfMemoryError, AllocatorError)


# --- against a reference: a list of statuses and Solaya's loops, literally ----------------------


class Reference:
    """Solaya's allocator as its Rust source reads, over a Python list."""

    def __init__(self, n: int) -> None:
        self.meta = [FREE] * n

    def alloc(self, k: int) -> int | None:
        for idx in range(len(self.meta) - k + 1):
            if all(self.meta[i] == FREE for i in range(idx, idx + k)):
                for i in range(idx, idx + k):
                    self.meta[i] = LAST if i == idx + k - 1 else USED
                return idx
        return None

    def dealloc(self, idx: int) -> int | None:
        if self.meta[idx] == FREE:
            return None
        if LAST not in self.meta[idx:]:
            return -1  # Solaya indexes past the metadata and panics
        count = 0
        while self.meta[idx] != LAST:
            self.meta[idx] = FREE
            idx += 1
            count += 1
        self.meta[idx] = FREE
        return count + 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 9), st.integers(0, 63)), max_size=60))
def test_matches_the_reference(ops: list[tuple[bool, int, int]]) -> None:
    ref = Reference(64)
    with SolayaAllocator(base=BASE, size=SIZE, heap_start=HEAP) as sa:
        first = sa.pages_start // PAGE_SIZE
        for is_alloc, k, idx in ops:
            if is_alloc:
                want = ref.alloc(k)
                if want is None:
                    with pytest.raises(OutOfMemoryError):
                        sa.alloc_pages(k)
                else:
                    assert sa.alloc_pages(k) == first + want
            else:
                want = ref.dealloc(idx)
                if want is None:
                    with pytest.raises(DoubleFreeError):
                        sa.dealloc(first + idx)
                elif want < 0:
                    with pytest.raises(InvalidFreeError, match="index out of bounds"):
                        sa.dealloc(first + idx)
                else:
                    assert sa.dealloc(first + idx) == want
            sa.check_invariants()
        assert [_byte(sa, i) for i in range(64)] == ref.meta


def test_largest_free_run(sa: SolayaAllocator) -> None:
    assert sa.largest_free_run() == 64
    sa.reserve(heap_page(sa, 10), heap_page(sa, 12), name="initrd")
    assert sa.largest_free_run() == 52
    sa.release_reserved(heap_page(sa, 10), heap_page(sa, 12))
    assert sa.largest_free_run() == 64
    sa.alloc_pages(64)
    assert sa.largest_free_run() == 0

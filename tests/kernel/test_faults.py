"""Fault injection: the k-th page allocation of a boot fails, for every k."""

from __future__ import annotations

import pytest

from bootmem.kernel.boot import boot
from bootmem.mm import AllocatorEvent, PageAllocator
from tests.kernel.conftest import MACHINE, SYNC, small_image


def _allocations(image: bytes, cmdline: str) -> int:
    events: list[AllocatorEvent] = []
    report = boot(image, machine=MACHINE, cmdline=cmdline, observer=events.append)
    assert report.ok
    return sum(e.pages for e in events if e.op == "alloc")  # a bulk allocation: one event per run


@pytest.mark.parametrize("cmdline", [SYNC, "initramfs_async=1"])
def test_every_failing_allocation_ends_cleanly(cmdline: str) -> None:
    image = small_image()
    n = _allocations(image, cmdline)
    assert n >= 6  # one per page of file data
    outcomes = set()
    for k in range(1, n + 2):

        def arm(pa: PageAllocator, k: int = k) -> None:
            pa.fail_nth_alloc(k)

        report = boot(image, machine=MACHINE, cmdline=cmdline, allocator_hook=arm)
        pa = report.allocator
        assert pa is not None and report.rootfs is not None
        messages = report.log.messages()
        if k <= n:
            assert report.unpack_error == "write error", (k, messages)
            assert "Initramfs unpacking failed: write error" in messages
        else:
            assert report.ok, (k, messages)
        outcomes.add(report.unpack_error)
        assert any(m.startswith("Freeing initrd memory: ") for m in messages)
        pa.check_invariants()
        stats = pa.stats()
        assert stats["allocated"] == report.rootfs_pages == report.rootfs.used_pages, k
        assert pa.pages_by_owner().get("rootfs", 0) == report.rootfs_pages
        # The failed file keeps only the pages it got; every page is accounted for.
        assert stats["free"] + stats["allocated"] + stats["reserved"] == stats["total"]
        inodes = {id(inode): inode for _path, inode in report.rootfs.walk()}
        assert sum(len(inode.pages) for inode in inodes.values()) == report.rootfs_pages
    assert outcomes == {None, "write error"}

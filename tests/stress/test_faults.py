"""Allocation failure injected at every k across the boot of a small image.

``PageAllocator.fail_nth_alloc(k)`` makes the k-th page allocated after the allocator comes up
fail once (Linux's ``fail_page_alloc``; ``alloc_bulk`` counts each page as one ``alloc``).  For
every k up to one past the pages a clean boot allocates, the boot must not raise: a failed
allocation is the tmpfs's ENOSPC, logged as Linux logs it ("Initramfs unpacking failed: write
error"); what was unpacked before it stays and is correct (a prefix of the entries, only the
file being written short); the initrd is freed all the same; and the books are exact:
``check_invariants``, allocated pages == rootfs pages.
"""

from __future__ import annotations

import stat

import pytest

from bootmem.kernel.boot import BootReport, Machine, boot
from bootmem.mm import AllocatorEvent, PageAllocator
from tests.stress.images import EARLY, FILES, MAIN, is_partial, small_image

MACHINE = Machine(ram_size=16 << 20, kernel_size=2 << 20)
IMAGE = small_image("zstd")
ENTRIES = EARLY + MAIN
PREFIX_PATHS = [{"/" + e.name for e, _ in ENTRIES[:k]} for k in range(len(ENTRIES) + 1)]


def _boot(cmdline: str, k: int | None = None, count: list[int] | None = None) -> BootReport:
    def hook(pa: PageAllocator) -> None:
        if count is not None:

            def tally(event: AllocatorEvent) -> None:
                if event.op == "alloc":  # a bulk allocation is one event per run of pages
                    count[0] += event.pages

            pa.subscribe(tally)
        pa.fail_nth_alloc(k)

    return boot(IMAGE, machine=MACHINE, cmdline=cmdline, allocator_hook=hook)


def _rootfs(report: BootReport, skip: frozenset[str] = frozenset()) -> dict[str, bytes | None]:
    """Path -> data (None but for regular files) of the rootfs, without ``/`` and ``skip``."""
    assert report.rootfs is not None
    fs = report.rootfs
    return {
        path: fs.read(path) if stat.S_ISREG(inode.mode) else None
        for path, inode in fs.walk()
        if path != "/" and path not in skip
    }


#: What the built-in initramfs puts in the rootfs before the initrd is unpacked.
BUILTIN = frozenset(_rootfs(boot(None, machine=MACHINE)))


@pytest.mark.parametrize("cmdline", ["initramfs_async=0", "initramfs_async=1"], ids=["sync", "async"])
def test_allocation_failure_at_every_k(cmdline: str) -> None:
    count = [0]
    clean = _boot(cmdline, None, count)
    allocations = count[0]
    assert clean.ok and allocations >= 3, (clean.unpack_error, allocations)
    clean_tree = _rootfs(clean, BUILTIN)
    for k in range(1, allocations + 2):
        report = _boot(cmdline, k)
        pa, fs = report.allocator, report.rootfs
        assert pa is not None and fs is not None
        pa.check_invariants()
        assert pa.stats()["allocated"] == fs.used_pages == report.rootfs_pages, k
        assert pa.pages_by_owner().get(fs.owner, 0) == report.rootfs_pages, k
        assert report.freed_pages == clean.freed_pages, k
        assert report.free_pages_end + report.rootfs_pages == clean.free_pages_end + clean.rootfs_pages, k
        tree = _rootfs(report, BUILTIN)
        if k > allocations:
            assert report.ok and tree == clean_tree, k
            continue
        assert report.unpack_error == "write error", (k, report.unpack_error, report.unpack_detail)
        assert any("Initramfs unpacking failed: write error" in str(line) for line in report.log.lines)
        assert set(tree) in PREFIX_PATHS, (k, sorted(tree))
        short = [p for p, data in tree.items() if data is not None and data != FILES[p]]
        for path in short:
            assert is_partial(tree[path] or b"", FILES[path]), (k, path)
        assert len({fs.lookup(p).ino for p in short}) <= 1, (k, short)

"""initramfs_async: unpacking in a thread while the boot thread allocates and frees pages."""

from __future__ import annotations

import threading

import pytest

from bootmem.kernel.boot import boot
from bootmem.kernel.example import example_image
from bootmem.mm import PageAllocator
from tests.kernel.conftest import MACHINE
from tests.mm.interleaving import Interleaving


class Load:
    """Allocates and frees pages (orders 0 to 3) until unpacking is done, then frees them all."""

    def __init__(self) -> None:
        self.rounds = 0
        self.overlapped = 0  # rounds run while the unpacking thread was still going

    def __call__(self, pa: PageAllocator, done: threading.Event) -> None:
        held: list[tuple[int, int]] = []
        while not done.is_set():
            order = self.rounds % 4
            held.append((pa.alloc(order, owner="load"), order))
            if len(held) > 32:
                pfn, old = held.pop(0)
                pa.free(pfn, old)
            self.rounds += 1
            self.overlapped += 1
        for pfn, order in held:
            pa.free(pfn, order)


def test_async_unpack_under_load_gives_the_same_rootfs() -> None:
    image = example_image()
    sync = boot(image, machine=MACHINE, cmdline="initramfs_async=0")
    load = Load()
    # The unpacker waits after its first rootfs allocation until the load has allocated.
    gate = Interleaving("rootfs", "load")
    asynchronous = boot(
        image, machine=MACHINE, cmdline="initramfs_async=1", load=load, allocator_hook=gate.install
    )
    gate.check()
    assert load.overlapped > 0, "the load never ran while unpacking"
    assert sync.rootfs is not None and asynchronous.rootfs is not None
    assert asynchronous.rootfs.tree() == sync.rootfs.tree()
    assert asynchronous.ok and asynchronous.freed_pages == sync.freed_pages
    assert asynchronous.rootfs_pages == sync.rootfs_pages
    pa = asynchronous.allocator
    assert pa is not None
    pa.check_invariants()
    stats = pa.stats()
    assert stats["allocated"] == asynchronous.rootfs_pages
    assert "load" not in pa.pages_by_owner()
    assert stats == {**stats, "free": sync.free_pages_end}
    # The peak counts the load's pages too.
    assert asynchronous.peak_used_pages >= sync.peak_used_pages


def test_sync_boot_runs_the_load_after_unpacking() -> None:
    seen: list[bool] = []

    def load(pa: PageAllocator, done: threading.Event) -> None:
        seen.append(done.is_set())

    report = boot(example_image(), machine=MACHINE, cmdline="initramfs_async=0", load=load)
    assert seen == [True] and report.ok


def test_error_in_the_unpacking_thread_reaches_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    from bootmem.kernel import boot as boot_module

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("unpacker crashed")

    monkeypatch.setattr(boot_module, "unpack_initrd", broken)
    waited: list[bool] = []

    def load(pa: PageAllocator, done: threading.Event) -> None:
        waited.append(done.wait(10))

    with pytest.raises(RuntimeError, match="unpacker crashed"):
        boot(example_image(), machine=MACHINE, cmdline="initramfs_async=1", load=load)
    assert waited == [True]

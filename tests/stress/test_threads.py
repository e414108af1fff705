"""Eight threads allocating and freeing while the initrd is unpacked and released.

Two ways in: through ``boot(..., load=...)``, whose ``load`` runs in the boot thread while the
asynchronous unpack (Linux's ``initramfs_async``) and the release of the initrd go on in the
``initramfs`` thread; and on a :class:`PageAllocator` directly, with the unpacker and the
release in the main thread, several rounds.  Every frame handed out is claimed in a shared
table: a frame handed out twice, or one inside the initrd while it is still reserved, fails the
test.  Afterwards the books are exact: ``check_invariants``, allocated pages == rootfs pages,
and the initrd's pages are free.
"""

from __future__ import annotations

import stat
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from bootmem.fs.tmpfs import Tmpfs
from bootmem.initramfs.compress import compress
from bootmem.initramfs.cpio import Entry
from bootmem.kernel.boot import Machine, boot
from bootmem.kernel.unpack import unpack_initrd
from bootmem.mm import PageAllocator
from bootmem.units import PAGE_SIZE
from tests.initramfs.corpus import archive
from tests.mm.interleaving import Interleaving
from tests.stress.images import FILES, small_image

THREADS = 8
MACHINE = Machine(ram_size=32 << 20, kernel_size=2 << 20, max_order=6)


class Frames:
    """Who holds each frame handed out by the allocator, to catch a frame handed out twice."""

    def __init__(self, forbidden: Callable[[int], bool] = lambda pfn: False) -> None:
        self.held: dict[int, int] = {}
        self.lock = threading.Lock()
        self.forbidden = forbidden
        self.handed = 0
        self.during = 0  # blocks handed out before the stop event was set

    def claim(self, pfn: int, order: int, worker: int) -> None:
        with self.lock:
            self.handed += 1
            for page in range(pfn, pfn + (1 << order)):
                assert page not in self.held, f"pfn {page:#x} handed to {worker}, held by {self.held[page]}"
                assert not self.forbidden(page), f"pfn {page:#x} handed to {worker} is reserved"
                self.held[page] = worker

    def unclaim(self, pfn: int, order: int) -> None:
        with self.lock:
            for page in range(pfn, pfn + (1 << order)):
                del self.held[page]


def churn(
    pa: PageAllocator, frames: Frames, index: int, stop: threading.Event, errors: list[BaseException]
) -> None:
    """Allocate and free blocks of order 0 to 3 until ``stop`` is set and 500 rounds have run."""
    mine: list[tuple[int, int]] = []
    rounds = 0
    try:
        while rounds < 500 or not stop.is_set():
            rounds += 1
            order = (rounds * 5 + index) % 4
            try:
                pfn = pa.alloc(order, owner=f"churn{index}")
            except MemoryError:
                pfn = -1
            if pfn >= 0:
                frames.claim(pfn, order, index)
                mine.append((pfn, order))
                if not stop.is_set():
                    with frames.lock:
                        frames.during += 1
            if len(mine) > 24 or (pfn < 0 and mine):
                for _ in range(len(mine) // 2 + 1):
                    old, old_order = mine.pop(0)
                    frames.unclaim(old, old_order)
                    pa.free(old, old_order)
    except BaseException as exc:
        errors.append(exc)
    finally:
        for old, old_order in mine:
            frames.unclaim(old, old_order)
            pa.free(old, old_order)


def _check_rootfs(fs: Tmpfs, files: dict[str, bytes] = FILES) -> None:
    for path, data in files.items():
        assert fs.read(path) == data, path


@pytest.fixture
def short_switch_interval() -> Iterator[None]:
    """Switch threads every 50 us, so the unpacker and the threads interleave finely."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(5e-5)
    yield
    sys.setswitchinterval(old)


#: A third segment of 400 files, so that the unpack lasts long enough to overlap the threads.
MANY = {f"/many/{i:03d}": bytes([i % 251]) * (3000 + i) for i in range(400)}
MANY_MEMBER = compress(
    archive(
        Entry("many", stat.S_IFDIR | 0o755),
        *((Entry(p[1:], stat.S_IFREG | 0o644), d) for p, d in MANY.items()),
    ),
    "gzip",
)


@pytest.mark.usefixtures("short_switch_interval")
def test_eight_threads_during_an_async_boot() -> None:
    image = small_image("gzip") + MANY_MEMBER
    for _ in range(4):
        frames = Frames()
        errors: list[BaseException] = []

        def load(
            pa: PageAllocator,
            done: threading.Event,
            frames: Frames = frames,
            errors: list[BaseException] = errors,
        ) -> None:
            workers = [
                threading.Thread(target=churn, args=(pa, frames, i, done, errors)) for i in range(THREADS)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()

        # The unpacker waits after its first rootfs allocation until a thread has allocated.
        gate = Interleaving("rootfs", "churn")
        report = boot(
            image, machine=MACHINE, cmdline="initramfs_async=1", load=load, allocator_hook=gate.install
        )
        assert not errors, errors
        assert report.ok, (report.unpack_error, report.unpack_detail)
        gate.check()
        assert frames.handed >= THREADS * 500 // 2 and frames.during > 0
        pa, fs = report.allocator, report.rootfs
        assert pa is not None and fs is not None
        pa.check_invariants()
        assert pa.stats()["allocated"] == fs.used_pages == report.rootfs_pages
        assert pa.pages_by_owner().get(fs.owner, 0) == report.rootfs_pages
        assert report.initrd is not None and report.freed_pages == -(-report.initrd.size // PAGE_SIZE)
        _check_rootfs(fs, {**FILES, **MANY})


@pytest.mark.usefixtures("short_switch_interval")
def test_eight_threads_on_the_allocator_during_unpack_and_release() -> None:
    image = small_image("zstd")
    base, size = 0x8000_0000, 16 << 20
    pa = PageAllocator(base=base, size=size, max_order=5)
    rounds = 6
    # Each round puts the image at its own page-aligned place, reserved, then unpacks and frees it.
    places = [base + (8 << 20) + r * (1 << 20) for r in range(rounds)]
    for start in places:
        pa.reserve(start, start + len(image), name="initrd")
        pa.memory.write(start, image)
    released: set[int] = set()

    def forbidden(pfn: int) -> bool:
        for start in places:
            first = start // PAGE_SIZE
            if first <= pfn < first + -(-len(image) // PAGE_SIZE) and start not in released:
                return True
        return False

    frames = Frames(forbidden)
    errors: list[BaseException] = []
    stop = threading.Event()
    workers = [threading.Thread(target=churn, args=(pa, frames, i, stop, errors)) for i in range(THREADS)]
    for worker in workers:
        worker.start()
    filesystems = []
    gates = []
    try:
        for start in places:
            fs = Tmpfs(pa, size_limit=1 << 20, owner=f"rootfs@{start:#x}")
            # Each unpack waits after its first allocation until a thread has allocated.
            gates.append(Interleaving(fs.owner, "churn"))
            gates[-1].install(pa)
            result = unpack_initrd(pa, start, start + len(image), fs)
            assert result.error is None, result.error
            with frames.lock:  # the release and the forbidden set change together
                freed = pa.release_reserved(start, start + len(image))
                released.add(start)
            assert freed == -(-len(image) // PAGE_SIZE)
            filesystems.append(fs)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not errors, errors
    for gate in gates:
        gate.check()
    assert frames.during > 0
    pa.check_invariants()
    owners = pa.pages_by_owner()
    assert pa.stats()["allocated"] == sum(fs.used_pages for fs in filesystems)
    for fs in filesystems:
        assert owners.get(fs.owner, 0) == fs.used_pages
        _check_rootfs(fs)
    assert pa.stats()["reserved"] == 0
    pa.close()

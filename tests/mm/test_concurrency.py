"""Threads allocating and freeing while another releases reserved ranges."""

from __future__ import annotations

import threading

from bootmem.mm import PAGE_SIZE, AllocatorEvent, PageAllocator

BASE = 0x1_0000_0000
PAGES = 4096
WORKERS = 4
ROUNDS = 3000


def test_alloc_free_while_releasing() -> None:
    pa = PageAllocator(base=BASE, size=PAGES * PAGE_SIZE, max_order=6)
    chunks = [(BASE + i * 64 * PAGE_SIZE, BASE + (i + 1) * 64 * PAGE_SIZE - 0x10) for i in range(32, 64)]
    for start, end in chunks:
        pa.reserve(start, end, "initrd")
    first = BASE // PAGE_SIZE
    reserved_frames = set(range(first + 32 * 64, first + 64 * 64))

    held: dict[int, int] = {}  # every frame currently handed out -> holder, to catch double handouts
    held_lock = threading.Lock()
    errors: list[BaseException] = []
    served: list[set[int]] = [set() for _ in range(WORKERS)]
    start_line = threading.Barrier(WORKERS + 1)
    seen: list[AllocatorEvent] = []
    pa.subscribe(seen.append)

    def claim(pfn: int, order: int, worker: int) -> None:
        with held_lock:
            for page in range(pfn, pfn + (1 << order)):
                if page in held:
                    raise AssertionError(f"pfn {page:#x} handed to {worker} while {held[page]} holds it")
                held[page] = worker

    def unclaim(pfn: int, order: int) -> None:
        with held_lock:
            for page in range(pfn, pfn + (1 << order)):
                del held[page]

    def worker(index: int) -> None:
        try:
            mine: list[tuple[int, int]] = []
            start_line.wait()
            for i in range(ROUNDS):
                order = (i * 7 + index) % 3
                try:
                    pfn = pa.alloc(order, owner=f"worker{index}")
                except MemoryError:
                    pfn = -1
                if pfn >= 0:
                    claim(pfn, order, index)
                    served[index].update(range(pfn, pfn + (1 << order)))
                    mine.append((pfn, order))
                if len(mine) > 40 or (pfn < 0 and mine):
                    for _ in range(len(mine) // 2 + 1):
                        old, old_order = mine.pop(0)
                        unclaim(old, old_order)
                        pa.free(old, old_order)
            for old, old_order in mine:
                unclaim(old, old_order)
                pa.free(old, old_order)
        except BaseException as exc:
            errors.append(exc)

    def releaser() -> None:
        try:
            start_line.wait()
            for start, end in chunks:
                pa.release_reserved(start, end)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    threads.append(threading.Thread(target=releaser))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors
    assert not held
    pa.check_invariants()
    assert pa.stats() == {"total": PAGES, "free": PAGES, "allocated": 0, "reserved": 0}
    assert set().union(*served) & reserved_frames, "no worker was served a released frame"
    released = sum(e.pages for e in seen if e.op == "release")
    assert released == len(reserved_frames)
    # The event stream is a consistent history: replaying it never hands a page out twice.
    # A formerly reserved frame is only handed out after the release that freed it.
    live: set[int] = set()
    released_so_far: set[int] = set()
    for event in seen:
        pages = set(range(event.pfn, event.pfn + event.pages))
        if event.op == "release":
            released_so_far |= pages
        elif event.op == "alloc":
            assert not pages & live
            assert pages & reserved_frames <= released_so_far
            live |= pages
        elif event.op == "free":
            live -= pages
    assert not live

"""Figures for bootmem.mm against DESIGN.md's performance budget.

Run ``python -m bench.bench_mm`` (``--quick`` for fewer repetitions), or ``python -m bench``
for every benchmark.  The figures:

* ``release_reserved`` of 1 GiB with poisoning on and off (goal: under 1 ms);
* release time of 16 MiB, 256 MiB, 4 GiB and 64 GiB, next to the number of 4 MiB blocks;
* the same 1 GiB freed page by page with ``free(order=0)``, and the ratio;
* order-0 ``alloc`` + ``free`` pairs per second (goal: 1,000,000);
* peak RSS of a 1 TiB machine with a few reservations and 100,000 allocated pages, measured in
  a fresh interpreter (goal: under 100 MB);
* Solaya's first-fit allocator beside the buddy one: ``release_reserved`` of 5 MiB, 256 MiB and
  1 GiB, single-page alloc + dealloc pairs, and first fit past 65536 one-page holes
  (docs/solaya.md).

Times are medians of several runs, each on a fresh reservation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/bench_mm.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import fmt_seconds
from bootmem.mm import PAGE_SIZE, PageAllocator, SolayaAllocator
from bootmem.units import align_up

GIB = 1 << 30
MIB = 1 << 20
BLOCK = 4 * MIB


def time_release(size: int, *, poison: int | None, repeat: int) -> float:
    """Median seconds of ``release_reserved`` of a fresh ``size``-byte reservation."""
    ram = max(2 * size, 256 * MIB)
    pa = PageAllocator(base=0, size=ram, poison=poison)
    start = ram // 2
    times = []
    for _ in range(repeat):
        pa.reserve(start, start + size, "initrd")
        t0 = time.perf_counter()
        pa.release_reserved(start, start + size)
        times.append(time.perf_counter() - t0)
    pa.check_invariants()
    pa.close()
    return statistics.median(times)


def time_free_page_by_page(size: int) -> float:
    """Seconds to ``free(order=0)`` every page of ``size`` bytes, one call per page."""
    pa = PageAllocator(base=0, size=size)
    pfns = [pa.alloc() for _ in range(size // PAGE_SIZE)]
    free = pa.free
    t0 = time.perf_counter()
    for pfn in pfns:
        free(pfn)
    elapsed = time.perf_counter() - t0
    pa.check_invariants()
    pa.close()
    return elapsed


def alloc_free_pairs_per_second(n: int) -> float:
    pa = PageAllocator(base=0x8000_0000, size=256 * MIB)
    alloc, free = pa.alloc, pa.free
    for _ in range(1000):  # warm the order-0 cache
        free(alloc())
    t0 = time.perf_counter()
    for _ in range(n):
        free(alloc())
    elapsed = time.perf_counter() - t0
    pa.close()
    return n / elapsed


# VmHWM, not ru_maxrss: the latter carries the parent's peak across fork and exec.
_RSS_CHILD = """
import json, re
def hwm_kib():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\\s+(\\d+)", f.read()).group(1))
from bootmem.mm import PageAllocator
base = hwm_kib()
pa = PageAllocator(base=0, size=1 << 40)
pa.reserve(0x100_0000, 0x300_0000, "kernel")
pa.reserve(0x80_0000_0000, 0x80_0400_0000 + 0x123, "initrd")
pa.reserve(0xFF_FFF0_0000, 0xFF_FFF1_0000, "dtb")
pfns = [pa.alloc(owner="rootfs") for _ in range(100_000)]
view = pa.page_view(pfns[0])
view[:4] = b"data"
view.release()
pa.release_reserved(0x80_0000_0000, 0x80_0400_0000 + 0x123)
peak = hwm_kib()
print(json.dumps({"baseline_kib": base, "peak_kib": peak, "stats": pa.stats()}))
"""


def one_tib_rss() -> dict[str, object]:
    """Peak RSS (KiB) of a fresh interpreter modelling 1 TiB, and of its imports alone."""
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD], check=True, capture_output=True, text=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


#: One figure: what was measured, its value, a note (the goal), and whether the goal is met.
Figure = tuple[str, str, str, "bool | None"]


def figures(*, quick: bool = False) -> list[Figure]:
    """Every allocator figure of the budget, measured now."""
    repeat = 3 if quick else 9
    pairs = 200_000 if quick else 1_000_000
    rows: list[Figure] = []

    on = time_release(GIB, poison=0xCC, repeat=repeat)
    off = time_release(GIB, poison=None, repeat=repeat)
    rows.append(("release_reserved 1 GiB, poison 0xcc (lazy)", fmt_seconds(on), "goal < 1 ms", on < 1e-3))
    rows.append(("release_reserved 1 GiB, poison off", fmt_seconds(off), "goal < 1 ms", off < 1e-3))

    for size in (16 * MIB, 256 * MIB, 4 * GIB, 64 * GIB):
        seconds = time_release(size, poison=0xCC, repeat=max(3, repeat // 3))
        blocks = size // BLOCK
        label = f"release_reserved {size // MIB} MiB ({blocks} blocks of 4 MiB)"
        rows.append((label, fmt_seconds(seconds), f"{seconds / blocks * 1e9:.0f} ns per block", None))

    one_by_one = time_free_page_by_page(GIB)
    rows.append(("free(order=0) page by page, 1 GiB (262144 calls)", fmt_seconds(one_by_one), "", None))
    rows.append(("ratio page-by-page / release_reserved (poison on)", f"{one_by_one / on:.0f}x", "", None))

    rate = alloc_free_pairs_per_second(pairs)
    rows.append(("alloc(0) + free(0) pairs", f"{rate / 1e6:.2f} M/s", "goal 1 M/s", rate >= 1e6))

    rss = one_tib_rss()
    peak = int(str(rss["peak_kib"])) * 1024 / 1e6
    baseline = int(str(rss["baseline_kib"])) * 1024 / 1e6
    rows.append(
        (
            "1 TiB machine, 3 reservations, 100000 pages allocated: peak RSS",
            f"{peak:.1f} MB",
            f"goal < 100 MB (interpreter and imports alone {baseline:.1f} MB)",
            peak < 100,
        )
    )
    rows += solaya_figures(quick=quick)
    return rows


# --- Solaya's allocator beside the buddy allocator (docs/solaya.md) ------------------------------


def _solaya(size: int) -> SolayaAllocator:
    """A Solaya heap over RAM ``[0x8000_0000, +size)``, starting after a 2 MiB kernel."""
    return SolayaAllocator(base=0x8000_0000, size=size, heap_start=0x8020_0000)


def time_release_both(size: int, *, repeat: int) -> tuple[float, float]:
    """Median seconds of ``release_reserved`` of a fresh ``size``-byte initrd, buddy then Solaya
    (both without poisoning: Solaya writes nothing to released frames)."""
    ram = max(2 * size, 256 * MIB)
    results = []
    for make in (lambda: PageAllocator(base=0x8000_0000, size=ram, poison=None), lambda: _solaya(ram)):
        allocator = make()
        start = 0x8000_0000 + ram // 2
        times = []
        for _ in range(repeat):
            allocator.reserve(start, start + size, "initrd")
            t0 = time.perf_counter()
            allocator.release_reserved(start, start + size)
            times.append(time.perf_counter() - t0)
        allocator.check_invariants()
        allocator.close()
        results.append(statistics.median(times))
    return results[0], results[1]


def solaya_alloc_free_pairs_per_second(n: int) -> float:
    sa = _solaya(256 * MIB)
    alloc, dealloc = sa.alloc_pages, sa.dealloc
    t0 = time.perf_counter()
    for _ in range(n):
        dealloc(alloc(1))
    elapsed = time.perf_counter() - t0
    sa.close()
    return n / elapsed


def solaya_first_fit_past_holes(holes: int, repeat: int) -> float:
    """Median seconds of ``alloc_pages(2)`` when the heap's first ``2 * holes`` pages alternate
    used and free: first fit looks at every one-page hole before it finds two pages."""
    sa = _solaya(align_up(4 * holes * PAGE_SIZE, MIB) + 4 * MIB)
    pfns = [sa.alloc_pages(1) for _ in range(2 * holes)]
    for pfn in pfns[::2]:
        sa.dealloc(pfn)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        pfn = sa.alloc_pages(2)
        times.append(time.perf_counter() - t0)
        sa.dealloc(pfn)
    sa.close()
    return statistics.median(times)


def solaya_figures(*, quick: bool = False) -> list[Figure]:
    """Solaya's allocator (the model of crates/mm/src/page_allocator.rs) against the buddy one."""
    repeat = 3 if quick else 9
    rows: list[Figure] = []
    for size in (5 * MIB, 256 * MIB, GIB):
        buddy, solaya = time_release_both(size, repeat=repeat)
        pages = size // PAGE_SIZE
        rows.append(
            (
                f"solaya: release_reserved {size // MIB} MiB ({pages} pages), buddy / solaya",
                f"{fmt_seconds(buddy)} / {fmt_seconds(solaya)}",
                f"solaya {solaya / buddy:.1f}x buddy, {solaya / pages * 1e9:.2f} ns per page",
                None,
            )
        )
    pairs = 100_000 if quick else 500_000
    rate = solaya_alloc_free_pairs_per_second(pairs)
    buddy_rate = alloc_free_pairs_per_second(pairs)
    rows.append(
        (
            "solaya: alloc(1) + dealloc pairs, buddy / solaya",
            f"{buddy_rate / 1e6:.2f} / {rate / 1e6:.2f} M/s",
            f"solaya {buddy_rate / rate:.1f}x slower",
            None,
        )
    )
    holes = 65_536
    seconds = solaya_first_fit_past_holes(holes, repeat)
    rows.append((f"solaya: first fit of 2 pages past {holes} one-page holes", fmt_seconds(seconds), "", None))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    rows = figures(quick=args.quick)
    width = max(len(r[0]) for r in rows)
    for label, figure, note, _ in rows:
        print(f"{label:<{width}}  {figure:>11}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

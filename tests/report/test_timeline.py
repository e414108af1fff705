"""The boot timeline: counts kept from events agree with the allocator, and add up to RAM."""

from __future__ import annotations

import json
import threading

from bootmem.kernel.boot import Machine
from bootmem.kernel.example import example_image
from bootmem.mm import PageAllocator
from bootmem.report.owners import OWNERS, owner_pages, reservation_owner
from bootmem.report.timeline import record_boot
from tests.report.conftest import make_image


def test_example_counts_match_the_allocator() -> None:
    report, timeline = record_boot(example_image(), machine=Machine(ram_size=64 << 20))
    assert report.ok and report.allocator is not None
    assert timeline.total_pages == report.total_pages
    for sample in timeline.samples:
        assert sum(sample.pages) == report.total_pages, sample
    assert timeline.final() == owner_pages(report.allocator)
    assert timeline.final()["initrd"] == 0
    assert timeline.final()["rootfs"] == report.rootfs_pages
    peak = timeline.peak()
    assert peak.used == report.peak_used_pages
    assert peak.by_owner()["initrd"] == report.freed_pages
    assert [name for name, _t in timeline.phases] == [
        "handoff",
        "reserve",
        "unpack start",
        "unpack end",
        "release",
        "init",
    ]


def test_runs_of_one_event_keep_their_ends() -> None:
    _report, timeline = record_boot(make_image({"big": bytes(600 << 10)}), machine=Machine(ram_size=64 << 20))
    events = [s.event for s in timeline.samples]
    assert events.count("alloc rootfs") == 2  # first and last of 150 page allocations
    assert len(timeline.samples) < 12


def test_json_pages_add_up_at_every_point() -> None:
    _report, timeline = record_boot(example_image(), machine=Machine(ram_size=48 << 20))
    data = json.loads(json.dumps(timeline.to_json()))
    assert data["owners"] == list(OWNERS)
    times = [s["time"] for s in data["samples"]]
    assert times == sorted(times)
    for sample in data["samples"]:
        assert sum(sample["pages"].values()) == data["total_pages"]
    assert {p["name"] for p in data["phases"]} >= {"unpack start", "release"}


def test_other_allocations_during_an_async_unpack() -> None:
    held: list[int] = []

    def load(pa: PageAllocator, done: threading.Event) -> None:
        for _ in range(40):
            held.append(pa.alloc(order=1, owner="driver"))
        for pfn in held[:10]:
            pa.free(pfn, order=1)
        done.wait()

    report, timeline = record_boot(example_image(), machine=Machine(ram_size=64 << 20), load=load)
    assert report.allocator is not None
    final = timeline.final()
    assert final["other"] == 60
    assert final == owner_pages(report.allocator)
    assert all(sum(s.pages) == report.total_pages for s in timeline.samples)


def test_retain_initrd_keeps_it_and_one_map() -> None:
    report, timeline = record_boot(
        example_image(), machine=Machine(ram_size=64 << 20), cmdline="retain_initrd"
    )
    assert report.allocator is not None
    assert timeline.final()["initrd"] > 0
    assert timeline.final() == owner_pages(report.allocator)
    assert [m.title for m in timeline.maps()] == ["initrd retained"]


def test_linux_generic_partial_pages_stay_initrd() -> None:
    report, timeline = record_boot(
        example_image(), machine=Machine(ram_size=64 << 20), free_policy="linux-generic"
    )
    assert report.allocator is not None
    assert timeline.final() == owner_pages(report.allocator)


def test_reservation_names() -> None:
    assert reservation_owner("Kernel image") == "kernel"
    assert reservation_owner("initrd (partial page)") == "initrd"
    assert reservation_owner("memreserve") == "firmware"
    assert reservation_owner("(no RAM)") is None


def test_map_blocks_follow_pages_freed_from_a_bulk_run() -> None:
    # alloc_bulk reports a run of pages as one event, but each page is freed on its own: a
    # free out of the middle of a run must leave the pages on either side on the map.
    def load(pa: PageAllocator, done: threading.Event) -> None:
        runs = pa.alloc_bulk(8, owner="load")
        pfn, npages = runs[0]
        assert npages == 8
        pa.free(pfn + 3)
        pa.free(pfn + 7)

    report, timeline = record_boot(
        make_image({"f": b"x"}), machine=Machine(ram_size=64 << 20), load=load, cmdline="initramfs_async=0"
    )
    assert report.ok and report.allocator is not None
    held: dict[str, int] = {}
    for pfn, pages, owner in timeline.snapshots[-1].blocks:
        assert pages > 0, (pfn, pages)
        held[owner] = held.get(owner, 0) + pages
    assert held["other"] == 6
    assert held["rootfs"] == report.rootfs_pages

"""Memory maps: cells by owner, small owners still visible, holes, and the terminal rendering."""

from __future__ import annotations

from rich.console import Console

from bootmem.kernel.boot import Machine
from bootmem.kernel.example import example_image
from bootmem.report.memmap import MemoryMap
from bootmem.report.terminal import map_renderable
from bootmem.report.timeline import record_boot

MiB = 1 << 20


def test_cells_by_owner() -> None:
    #   0      4M         8M                       16M
    #   |KKKKKK|..........|RR|.....................|I|D|
    m = MemoryMap.build(
        "t",
        [(0, 16 * MiB)],
        [
            ("Kernel image", 0, 4 * MiB),
            ("initrd", 14 * MiB, 15 * MiB),
            ("Device tree", 16 * MiB - 4096, 16 * MiB),
        ],
        [(8 * MiB // 4096, 256, "rootfs")],
        cells=16,
    )
    assert m.cell_bytes == MiB
    assert m.cells[:4] == ("kernel",) * 4
    assert m.cells[8] == "rootfs" and m.cells[14] == "initrd"
    assert m.cells[15] == "device tree"  # one page, yet visible
    assert m.pages["kernel"] == 1024 and m.pages["device tree"] == 1
    assert sum(m.pages.values()) == 4096


def test_small_owner_does_not_steal_the_only_cell_of_another() -> None:
    regions = [("initrd", 0, MiB - 4096), ("Device tree", MiB - 4096, MiB)]
    m = MemoryMap.build("t", [(0, 4 * MiB)], regions, [], cells=4)
    assert m.cells[0] == "initrd"


def test_holes_are_no_ram() -> None:
    ram = [(0, 4 * MiB), (8 * MiB, 12 * MiB)]
    m = MemoryMap.build("t", ram, [("(no RAM)", 4 * MiB, 8 * MiB)], [], cells=12)
    assert m.cells[4:8] == (None,) * 4
    assert m.pages["free"] == 2048


def test_terminal_map_plain_when_piped() -> None:
    _report, timeline = record_boot(example_image(), machine=Machine(ram_size=64 << 20))
    before, after = timeline.maps()
    console = Console(width=100, no_color=True, force_terminal=False)
    with console.capture() as capture:
        console.print(map_renderable(before))
    text = capture.get()
    assert "\x1b[" not in text
    assert "before the release" in text and "0x40000000" in text
    assert "K" in text and "I" in text and "R" in text
    assert "initrd" in text
    assert "initrd" not in after.owners_present()

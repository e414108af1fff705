"""Memory maps and labelled figures for a terminal, with rich.

On a terminal each cell of a map is a letter on its owner's colour; piped, the same letters
stay (rich drops the colours), so the map still reads: ``K`` kernel, ``D`` device tree, ``F``
firmware, ``I`` initrd, ``R`` rootfs, ``O`` other, ``.`` free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from rich.console import Console, RenderableType
from rich.text import Text

from bootmem.mm import PAGE_SIZE
from bootmem.report.memmap import MemoryMap
from bootmem.report.owners import COLOURS, DESCRIPTIONS, Owner
from bootmem.units import format_size

LETTERS: Final[dict[Owner, str]] = {
    "kernel": "K",
    "device tree": "D",
    "firmware": "F",
    "initrd": "I",
    "rootfs": "R",
    "other": "O",
    "free": ".",
}
#: Cells per terminal row, and in a map.
ROW_CELLS: Final = 64
MAP_CELLS: Final = 512


def _style(owner: Owner) -> str:
    if owner == "free":
        return f"#707070 on {COLOURS['free']}"
    return f"bold white on {COLOURS[owner]}"


def map_renderable(memory_map: MemoryMap, *, row_cells: int = ROW_CELLS) -> RenderableType:
    """``memory_map`` as rows of ``row_cells`` cells, each row led by its start address, and a legend."""
    out = Text()
    out.append(f"{memory_map.title}: ", style="bold")
    out.append(
        f"[{memory_map.start:#x}, {memory_map.end:#x}), one cell = {format_size(memory_map.cell_bytes)}\n"
    )
    width = len(f"{memory_map.end:#x}")
    cells = memory_map.cells
    for row in range(0, len(cells), row_cells):
        if row:
            out.append("\n")
        out.append(f"{memory_map.start + row * memory_map.cell_bytes:#0{width}x} ", style="dim")
        for owner in cells[row : row + row_cells]:
            if owner is None:
                out.append(" ")
            else:
                out.append(LETTERS[owner], style=_style(owner))
    legend = Text()
    for i, owner in enumerate(memory_map.owners_present()):
        legend.append("\n" + " " * (width + 1) if i % 3 == 0 else "   ")
        legend.append(LETTERS[owner], style=_style(owner))
        legend.append(f" {owner} {format_size(memory_map.pages[owner] * PAGE_SIZE)}")
    return Text.assemble(out, legend)


def owner_legend() -> str:
    """What the letters mean, one line."""
    return ", ".join(f"{LETTERS[o]} {DESCRIPTIONS[o]}" for o in LETTERS)


def print_maps(maps: Sequence[MemoryMap], console: Console) -> None:
    for i, memory_map in enumerate(maps):
        if i:
            console.print()
        console.print(map_renderable(memory_map))


def labelled_lines(rows: Sequence[tuple[str, str, Owner | None]], *, width: int = 12) -> Text:
    """``label  value`` lines, the label bold and the value in its owner's colour when it has one."""
    out = Text()
    for i, (label, value, owner) in enumerate(rows):
        if i:
            out.append("\n")
        out.append(f"{label:<{width}} ", style="bold")
        colour = COLOURS[owner] if owner is not None and owner != "free" else None
        out.append(value, style=colour or "")
    return out

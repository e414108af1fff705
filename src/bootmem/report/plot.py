"""The picture of a boot: pages by owner over time beside the physical memory map.

:func:`save_picture` writes a PNG or an SVG (by the file's ending) with matplotlib's
non-interactive backends: on the left a stacked-area chart of memory by owner in MiB against
milliseconds since boot, the boot's phases as labelled vertical lines; on the right the memory
map when unpacking ended and after the initrd's release, low addresses at the bottom.  SVG text
stays text, so the owners' names can be searched for in the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bootmem.errors import UsageError
from bootmem.mm import PAGE_SIZE
from bootmem.report.memmap import MemoryMap
from bootmem.report.owners import COLOURS, DESCRIPTIONS, OWNERS, Owner
from bootmem.report.timeline import Timeline
from bootmem.units import format_size

FORMATS = (".png", ".svg")
PICTURE_CELLS = 512
_MIB = float(1 << 20)
_HOLE_COLOUR = "#ffffff"
# Show free memory as a layer only when it does not dwarf what is used.
_FREE_LAYER_RATIO = 3.0


def picture_format(path: str | os.PathLike[str]) -> str:
    """``"png"`` or ``"svg"`` from the file's ending; :class:`UsageError` for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"cannot tell the picture format of {os.fspath(path)!r}: name it .png or .svg")
    return suffix[1:]


def save_picture(
    path: str | os.PathLike[str],
    timeline: Timeline,
    *,
    title: str = "Where boot memory goes",
) -> None:
    """Write ``timeline`` and its memory maps to ``path`` (``.png`` or ``.svg``)."""
    fmt = picture_format(path)
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9}):
        maps = timeline.maps(PICTURE_CELLS)
        nmaps = len(maps)
        fig = Figure(figsize=(11.0 + 2.0 * nmaps, 6.4), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        widths = [7.0] + [1.8] * nmaps
        grid = fig.add_gridspec(1, 1 + nmaps, width_ratios=widths)
        chart = fig.add_subplot(grid[0, 0])
        shown, label_top = _draw_timeline(chart, timeline)
        present: set[Owner] = set(shown)
        for i, memory_map in enumerate(maps):
            ax = fig.add_subplot(grid[0, 1 + i])
            _draw_map(ax, memory_map, with_addresses=i == 0)
            ax.set_box_aspect(None)
            present.update(memory_map.owners_present())
        _legend(fig, timeline, present)
        fig.suptitle(title, fontsize=12, fontweight="bold")
        # Lay the figure out once, then place the phase labels where they will be drawn.
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        _phase_lines(chart, timeline.phases, label_top)
        fig.savefig(path, format=fmt)


def _draw_timeline(ax: Any, timeline: Timeline) -> tuple[list[Owner], float]:
    """The stacked areas and the peak; returns the owners drawn and the y of the top label row."""
    samples = timeline.samples
    total_mib = timeline.total_pages * PAGE_SIZE / _MIB
    peak = timeline.peak()
    peak_mib = peak.used * PAGE_SIZE / _MIB
    with_free = total_mib <= _FREE_LAYER_RATIO * max(peak_mib, 1e-9)
    owners = [o for o in OWNERS if (o != "free" or with_free) and any(s.by_owner()[o] for s in samples)]

    # Steps between different events, straight lines within a run of one kind of event.
    xs: list[float] = []
    ys: list[list[float]] = [[] for _ in owners]
    previous = None
    for sample in samples:
        if previous is not None and sample.event != previous.event:
            xs.append(sample.time * 1e3)
            for row, owner in zip(ys, owners, strict=True):
                row.append(previous.by_owner()[owner] * PAGE_SIZE / _MIB)
        xs.append(sample.time * 1e3)
        pages = sample.by_owner()
        for row, owner in zip(ys, owners, strict=True):
            row.append(pages[owner] * PAGE_SIZE / _MIB)
        previous = sample
    end = max([xs[-1], *(t * 1e3 for _n, t in timeline.phases)]) if xs else 1.0
    end = max(end, 1e-3)
    if xs and xs[-1] < end:
        xs.append(end)
        for row in ys:
            row.append(row[-1])

    ax.stackplot(
        xs,
        *ys,
        colors=[COLOURS[o] for o in owners],
        labels=list(owners),
        linewidth=0.4,
        edgecolor="white",
    )
    top = total_mib if with_free else peak_mib
    ax.set_xlim(0, end * 1.02)
    ax.set_ylim(0, top * 1.32)
    ax.set_xlabel("time since boot (ms)")
    ax.set_ylabel("memory (MiB)" if with_free else "memory in use (MiB)")
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ram = format_size(timeline.total_pages * PAGE_SIZE)
    subtitle = f"RAM {ram}" + ("" if with_free else " (free pages not drawn)")
    ax.set_title(f"Pages by owner during boot - {subtitle}", fontsize=10, loc="left")

    ax.annotate(
        f"peak {format_size(peak.used * PAGE_SIZE)} in use",
        xy=(peak.time * 1e3, peak_mib),
        xytext=(-8, 10),
        textcoords="offset points",
        ha="right",
        fontsize=8.5,
        arrowprops={"arrowstyle": "-", "color": "#555555", "linewidth": 0.6},
    )
    return owners, top * 1.32


def _phase_lines(ax: Any, phases: Sequence[tuple[str, float]], ytop: float) -> None:
    """Dashed lines at the phases, labels in rows near the top so that none overlaps another.

    A label goes right of its line, or left of it where that fits and the right does not, in the
    highest row where it overlaps no other label and stays inside the chart.
    """
    renderer = ax.figure.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    rows: list[list[tuple[float, float]]] = []  # per row, the labels' (left, right) in display px
    for name, t in sorted(phases, key=lambda p: p[1]):
        x = t * 1e3
        ax.axvline(x, color="#333333", linestyle=(0, (4, 3)), linewidth=0.7, zorder=3)
        text = ax.text(
            x,
            0,
            f" {name} ",
            fontsize=8.5,
            va="top",
            zorder=4,
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
        )
        width = text.get_window_extent(renderer).width
        at = ax.transData.transform((x, 0))[0]
        choices = [(at, at + width, "left"), (at - width, at, "right")]
        row, (left, right, align) = 0, choices[0]
        while True:
            taken = rows[row] if row < len(rows) else []
            fits = [
                c
                for c in choices
                if box.x0 <= c[0]
                and c[1] <= box.x1
                and all(c[1] + 3 < lo or c[0] > hi + 3 for lo, hi in taken)
            ]
            if fits:
                left, right, align = fits[0]
                break
            row += 1
        if row == len(rows):
            rows.append([])
        rows[row].append((left, right))
        text.set_horizontalalignment(align)
        text.set_y(ytop * (0.97 - 0.06 * row))


def _draw_map(ax: Any, memory_map: MemoryMap, *, with_addresses: bool) -> None:
    """One memory map as a vertical bar, low addresses at the bottom, owners labelled beside it."""
    from matplotlib.colors import to_rgb

    cells = memory_map.cells
    image = [[to_rgb(COLOURS[c] if c is not None else _HOLE_COLOUR)] for c in cells]
    n = len(cells)
    ax.imshow(image, origin="lower", aspect="auto", interpolation="nearest", extent=(0, 1, 0, n))
    ax.set_xlim(0, 1)
    ax.set_xticks([])
    ticks = sorted({0, n // 4, n // 2, 3 * n // 4, n})
    ax.set_yticks(ticks)
    if with_addresses:
        labels = [f"{memory_map.start + i * memory_map.cell_bytes:#x}" for i in ticks]
        labels[-1] = f"{memory_map.end:#x}"
        ax.set_yticklabels(labels, fontsize=8, family="monospace")
        ax.set_ylabel(f"physical address (one cell = {format_size(memory_map.cell_bytes)})")
    else:
        ax.set_yticklabels([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(memory_map.title.replace(" the ", "\nthe ", 1), fontsize=9)
    used = sum(p for o, p in memory_map.pages.items() if o != "free")
    ax.set_xlabel(f"{format_size(used * PAGE_SIZE)}\nin use", fontsize=8)
    _label_owners(ax, memory_map)


def _label_owners(ax: Any, memory_map: MemoryMap) -> None:
    """Name each owner beside the middle of its largest run of cells, labels kept apart."""
    cells = memory_map.cells
    n = len(cells)
    marks: list[tuple[float, Owner]] = []
    for owner in memory_map.owners_present():
        if owner == "free":
            continue
        best: tuple[int, int] | None = None
        i = 0
        while i < n:
            if cells[i] == owner:
                j = i
                while j < n and cells[j] == owner:
                    j += 1
                if best is None or j - i > best[1] - best[0]:
                    best = (i, j)
                i = j
            else:
                i += 1
        if best is not None:
            marks.append(((best[0] + best[1]) / 2, owner))
    marks.sort()
    gap = n * 0.06
    placed: list[float] = []
    for y, _owner in marks:
        placed.append(max(y, placed[-1] + gap) if placed else y)
    # Push back down from the top when the last labels ran past it.
    for k in range(len(placed) - 1, -1, -1):
        limit = n - gap / 2 if k == len(placed) - 1 else placed[k + 1] - gap
        placed[k] = min(placed[k], limit)
    for (y, owner), label_y in zip(marks, placed, strict=True):
        ax.annotate(
            owner,
            xy=(1.0, y),
            xytext=(1.12, label_y),
            textcoords="data",
            va="center",
            fontsize=8,
            color="#222222",
            annotation_clip=False,
            arrowprops={"arrowstyle": "-", "color": COLOURS[owner], "linewidth": 1.2, "shrinkA": 0},
        )


def _legend(fig: Any, timeline: Timeline, present: set[Owner]) -> None:
    from matplotlib.patches import Patch

    peak = timeline.peak().by_owner()
    handles = []
    for owner in OWNERS:
        if owner not in present:
            continue
        figure = f"peak {format_size(peak[owner] * PAGE_SIZE)}" if owner != "free" else ""
        label = f"{owner}: {DESCRIPTIONS[owner]}" + (f" ({figure})" if figure else "")
        handles.append(Patch(facecolor=COLOURS[owner], edgecolor="#888888", linewidth=0.4, label=label))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)), frameon=False)

"""Tables on the terminal and docs/BENCHMARKS.md with its plot, from the runner's results."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any


def _first_line(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine_and_tools() -> dict[str, Any]:
    """The machine (CPU model, cores, RAM, kernel) and the version of every tool measured."""
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        ram_kib = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]
    import bootmem

    return {
        "machine": {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "ram": f"{ram_kib / (1 << 20):.1f} GiB",
            "kernel": platform.release(),
        },
        "tools": {
            "python": sys.version.split()[0],
            "bootmem": bootmem.__version__,
            "bsdtar": _first_line(["bsdtar", "--version"]),
            "GNU cpio": _first_line(["cpio", "--version"]),
            "busybox": _first_line(["busybox"]),
            "initramfs-tools": _first_line(["dpkg-query", "-W", "-f", "${Version}", "initramfs-tools-core"]),
            "zstd": _first_line(["zstd", "--version"]),
            "xz": _first_line(["xz", "--version"]),
            "gzip": _first_line(["gzip", "--version"]),
            "lz4": _first_line(["lz4", "--version"]),
        },
    }


MB = 1e6
MIB = 1 << 20
HEADLINE = "130 MB zstd"  # the image the issues name for their goals

#: Per section: ``peer -> (bound, strict)``: the subject's median over the peer's must be at
#: most ``bound`` (below it when ``strict``).  From DESIGN.md's performance budget.
GOALS: dict[str, dict[str, tuple[float, bool]]] = {
    "list": {"bsdtar -tf": (1.2, False), "cpio -t": (1.0, True), "lsinitramfs": (1.0, True)},
    "extract": {"bsdtar -xf": (1.2, False), "cpio -idm": (1.0, True), "unmkinitramfs": (1.0, True)},
    "create": {"find | cpio -o | zstd -3": (1.0, True)},
    "boot": {"floor": (1.3, False)},
}
BOOT_RSS_SLACK = 64 * MIB
LS_RSS_GROWTH = 16 * MIB  # "does not grow with the image": the largest within this of the smallest


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1e3:.1f} ms"


def cell(text: str) -> str:
    """``text`` for a markdown table cell: a pipeline's ``|`` escaped."""
    return text.replace("|", "\\|")


def met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def goal_text(bound: float, strict: bool) -> str:
    return "faster than" if strict and bound == 1.0 else f"within {bound:g}x of"


def meets(ratio: float, bound: float, strict: bool) -> bool:
    return ratio < bound if strict else ratio <= bound


def comparison_table(section: str, rows: list[dict[str, Any]]) -> list[str]:
    """A markdown table: one row per image, each contender's median and the subject's ratio."""
    names = list(rows[0]["samples"])
    subject = names[0]
    goals = GOALS.get(section, {})
    head = ["image", *(cell(n) for n in names), "goals"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        samples = row["samples"]
        ours = median(samples[subject])
        cells = [row["title"], fmt_ms(ours)]
        verdicts = []
        for name in names[1:]:
            if name not in samples:
                cells.append("n/a")
                continue
            ratio = ours / median(samples[name])
            cells.append(f"{fmt_ms(median(samples[name]))} ({ratio:.2f}x)")
            if name in goals:
                bound, strict = goals[name]
                verdicts.append(
                    f"{goal_text(bound, strict)} {cell(name)}: {met(meets(ratio, bound, strict))}"
                )
        cells.append("; ".join(verdicts) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def headline(section: str, rows: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """``(goal, figure, met)`` for the headline image of ``section``."""
    out = []
    for row in rows:
        if row["title"] != HEADLINE:
            continue
        samples = row["samples"]
        subject = next(iter(samples))
        for name, (bound, strict) in GOALS[section].items():
            if name in samples:
                ratio = median(samples[subject]) / median(samples[name])
                goal = f"{section}, {HEADLINE}: {subject} {goal_text(bound, strict)} {cell(name)}"
                out.append((goal, f"{ratio:.2f}x", meets(ratio, bound, strict)))
    return out


def all_goals(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    goals: list[tuple[str, str, bool]] = []
    for section in ("list", "extract", "create", "boot"):
        goals += headline(section, results.get(section, []))
    rss = results.get("ls_rss", [])
    if len(rss) > 1:
        growth = rss[-1]["bootmem ls"] - rss[0]["bootmem ls"]
        goals.append(
            (
                f"bootmem ls peak RSS does not grow with the image ({rss[0]['image']} -> {rss[-1]['image']})",
                f"{rss[0]['bootmem ls'] / MB:.1f} -> {rss[-1]['bootmem ls'] / MB:.1f} MB",
                growth <= LS_RSS_GROWTH,
            )
        )
    for row in results.get("scaling", []):
        if row["image"] == HEADLINE and "hwm" in row:
            hwm, touched = median(row["hwm"]), row["touched"]
            goals.append(
                (
                    f"boot host peak memory <= touched + 64 MiB, {HEADLINE} on {fmt_ram(row['ram'])}",
                    f"{hwm / MIB:.0f} MiB vs {(touched + BOOT_RSS_SLACK) / MIB:.0f} MiB",
                    hwm <= touched + BOOT_RSS_SLACK,
                )
            )
    for label, value, note, ok in results.get("mm", []):
        if ok is not None:
            goals.append((f"{label} ({note})", value, ok))
    return goals


def fmt_ram(ram: int) -> str:
    return (
        f"{ram >> 40} TiB" if ram >= 1 << 40 else f"{ram >> 30} GiB" if ram >= 1 << 30 else f"{ram >> 20} MiB"
    )


def boot_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| image | RAM | floor | boot() | ratio | goal within 1.3x |", "|---|---|---|---|---|---|"]
    for row in rows:
        floor, booted = median(row["samples"]["floor"]), median(row["samples"]["boot()"])
        ratio = booted / floor
        lines.append(
            f"| {row['title']} | {fmt_ram(row['ram'])} | {fmt_ms(floor)} | {fmt_ms(booted)} | "
            f"{ratio:.2f}x | {met(ratio <= 1.3)} |"
        )
    return lines


def scaling_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| image | modelled RAM | boot (fresh process) | host peak memory | modelled RAM touched | "
        "goal RSS <= touched + 64 MiB |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "hwm" not in row:
            lines.append(
                f"| {row['image']} | {fmt_ram(row['ram'])} | does not fit (tmpfs is half of RAM) | | | |"
            )
            continue
        hwm, touched = median(row["hwm"]), row["touched"]
        lines.append(
            f"| {row['image']} | {fmt_ram(row['ram'])} | {fmt_ms(median(row['seconds']))} | "
            f"{hwm / MIB:.0f} MiB | {touched / MIB:.0f} MiB | {met(hwm <= touched + BOOT_RSS_SLACK)} |"
        )
    return lines


def plot_scaling(rows: list[dict[str, Any]], path: Path) -> None:
    """Boot time and host peak memory against image size and against modelled RAM, 2 x 2 panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if "hwm" in r]
    images = sorted({r["image"] for r in done}, key=lambda name: float(name.split()[0]))
    rams = sorted({r["ram"] for r in done})
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    for metric, row_axes, unit, scale in (
        ("seconds", axes[0], "boot time (s)", 1.0),
        ("hwm", axes[1], "host peak memory (MiB)", 1 / MIB),
    ):
        by_size, by_ram = row_axes
        for ram in rams:
            pts = sorted((r["unpacked"] / MB, median(r[metric]) * scale) for r in done if r["ram"] == ram)
            by_size.plot(*zip(*pts, strict=True), marker="o", label=f"RAM {fmt_ram(ram)}")
        for image in images:
            pts = sorted((r["ram"], median(r[metric]) * scale) for r in done if r["image"] == image)
            (line,) = by_ram.plot(*zip(*pts, strict=True), marker="o", label=image)
            if metric == "hwm":  # the goal of each image, in its colour
                goal = sorted(
                    (r["ram"], (r["touched"] + BOOT_RSS_SLACK) / MIB) for r in done if r["image"] == image
                )
                by_ram.plot(*zip(*goal, strict=True), linestyle="--", color=line.get_color(), linewidth=0.8)
        if metric == "hwm":
            by_ram.plot([], [], linestyle="--", color="grey", label="goal: touched + 64 MiB (dashed)")
        by_size.set_xlabel("image size, unpacked (MB)")
        by_ram.set_xlabel("modelled RAM")
        by_ram.set_xscale("log", base=2)
        by_ram.set_xticks(rams, [fmt_ram(r) for r in rams])
        for ax in (by_size, by_ram):
            ax.set_ylabel(unit)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
            ax.set_ylim(bottom=0)
    axes[0][0].set_title("boot time vs image size (zstd)")
    axes[0][1].set_title("boot time vs modelled RAM")
    axes[1][0].set_title("host peak memory vs image size (zstd)")
    axes[1][1].set_title("host peak memory vs modelled RAM")
    fig.suptitle("bootmem boot(): each point the median of boots in fresh processes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_tables(results: dict[str, Any]) -> None:
    """The document's tables, on the terminal."""
    for line in body(results):
        print(line)


PEERS = """Every contender runs as a fresh process (`sh -c`, output to /dev/null); bootmem as
`python -m bootmem`, so its figures include the interpreter's start (about 20 ms) and imports;
bootmem's modules are byte-compiled before the first run, as `pip install` leaves them.

- `bootmem ls`, `bootmem extract`, `lsinitramfs` and `unmkinitramfs` are given the whole image
  (early segment, padding, compressed main member) and find the segments themselves.
- bsdtar, GNU cpio and busybox cpio stop at the first trailer: given the whole image they would
  see only the early microcode archive, so they are given the compressed main member alone (the
  work that dominates). bsdtar decompresses it itself; the cpios read it from the compressor's
  own `-dc` through a pipe (so two processes share the work on two cores).
- `extract` runs into an emptied directory each time (emptying is not timed).
- `create` archives the tree of the main archive (unpacked once with GNU cpio): `bootmem create
  DIR -o IMAGE --compress zstd:3` against `find | cpio -o -H newc | zstd -3` (GNU and busybox cpio)
  and `bsdtar --format newc -cf - . | zstd -3`.
- `boot()` runs in this process against the floor: the same main member decompressed by the
  library bootmem uses for it (zstandard, lzma, zlib, lz4.block) plus one copy of its bytes into
  memory already touched; unpacking is synchronous (`initramfs_async=0`), on the smallest
  power-of-two RAM of at least 1 GiB whose tmpfs (half of RAM) holds the image.
- Scaling: each boot in a fresh interpreter. Host peak memory is the process's VmHWM plus the
  peak of the memory file that holds modelled RAM (file data is written into it with pwrite, so
  VmHWM alone would miss it); the initrd's pages, mapped through the unpacker's lease, count in
  both, so the figure is an upper bound. The image file is mapped and its pages dropped once the
  bootloader step has copied it into modelled RAM. A RAM size is skipped for an image that would
  not fit (tmpfs is half of RAM).
"""


SCALING_NOTE = """\
Host peak RSS is the interpreter with bootmem imported, the allocator's metadata (growing with
modelled RAM: about 20 MiB more at 1 TiB than at 1 GiB), and the pages of file data the rootfs
holds; it stays well under the pages the boot touched, because pages released with the initrd
and never written again cost the host nothing."""

READING = """\
## Reading the figures

- bootmem runs in CPython; every command pays the interpreter's start and imports (tens of
  milliseconds), which dominate at 10 MB; against codecs that decompress at memory speed (zstd,
  lz4) the per-entry Python work, not decompression, sets bootmem's time. With xz, where
  decompression dominates, `ls`, `extract` and `boot()` are within about 10% of bsdtar and of
  the floor; gzip lies between.
- The pipelines `decompressor -dc | cpio` use two processes, so on two cores decompression and
  archive parsing overlap; bsdtar and bootmem do both in one thread.
- Each figure is the median of alternating runs in one session; differences under about 5% are
  within the noise of this machine."""


def body(results: dict[str, Any]) -> list[str]:
    """The measured part of the document (also printed on the terminal)."""
    lines: list[str] = []
    goals = all_goals(results)
    if goals:
        missed = sum(1 for *_, ok in goals if not ok)
        lines += ["## Goals", "", f"{len(goals) - missed} of {len(goals)} goals met.", ""]
        lines += ["| goal | figure | result |", "|---|---|---|"]
        lines += [f"| {goal} | {figure} | {met(ok)} |" for goal, figure, ok in goals]
        lines.append("")
    if results.get("images"):
        lines += ["## Images", ""]
        lines += ["| image | entries | unpacked | image size | ratio |", "|---|---|---|---|---|"]
        for im in results["images"]:
            lines.append(
                f"| {im['label']} | {im['entries']} | {im['unpacked'] / MB:.1f} MB | "
                f"{im['size'] / MB:.1f} MB | {im['unpacked'] / im['size']:.2f}x |"
            )
        lines.append("")
    titles = {
        "list": "Listing",
        "extract": "Extraction to disk",
        "create": "Creation (zstd -3)",
    }
    for section, title in titles.items():
        if results.get(section):
            runs = min(len(v) for r in results[section] for v in r["samples"].values())
            lines += [
                f"## {title}",
                "",
                f"Medians (at least {runs} runs each); in brackets bootmem's time "
                "over the peer's (below 1: bootmem is faster).",
                "",
            ]
            lines += comparison_table(section, results[section])
            lines.append("")
    if results.get("ls_rss"):
        lines += ["### Peak RSS of listing", "", "| image | bootmem ls | bsdtar -tf |", "|---|---|---|"]
        for row in results["ls_rss"]:
            peer = row.get("bsdtar -tf")
            lines.append(
                f"| {row['image']} | {row['bootmem ls'] / MB:.1f} MB | {peer / MB if peer else 0:.1f} MB |"
            )
        lines.append("")
    if results.get("boot"):
        lines += ["## Boot against the floor", "", *boot_table(results["boot"]), ""]
    if results.get("scaling"):
        lines += ["## Scaling with image size and modelled RAM", ""]
        lines += ["![boot time and host peak memory](bench-scaling.png)", ""]
        lines += [*scaling_table(results["scaling"]), ""]
        lines += [SCALING_NOTE, ""]
    if results.get("mm"):
        lines += ["## Allocator (bootmem.mm)", "", "| figure | value | goal | result |", "|---|---|---|---|"]
        for label, value, note, ok in results["mm"]:
            lines.append(f"| {label} | {value} | {note} | {'-' if ok is None else met(ok)} |")
        lines.append("")
    return lines


def write_document(results: dict[str, Any], out: Path) -> Path:
    """Write ``out``/BENCHMARKS.md and ``out``/bench-scaling.png; return the document's path."""
    meta = results["meta"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {meta['date']} with `{meta['command']}` "
        f"(about {meta.get('seconds', 0) / 60:.0f} minutes); "
        "the figures change with the machine: run it again to compare on yours. Goals are DESIGN.md's "
        f"performance budget, judged on the {HEADLINE} image as the issues name it; the tables show every "
        "image against the same goals.",
        "",
        "## Machine and tools",
        "",
        "| | |",
        "|---|---|",
    ]
    for key, value in {**meta["machine"], **meta["tools"]}.items():
        lines.append(f"| {key} | {value} |")
    lines += ["", "## What each contender is given", "", PEERS]
    lines += body(results)
    lines += ["", READING]
    doc = out / "BENCHMARKS.md"
    doc.write_text("\n".join(lines).rstrip() + "\n")
    if any("hwm" in r for r in results.get("scaling", [])):
        plot_scaling(results["scaling"], out / "bench-scaling.png")
    return doc

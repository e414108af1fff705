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

BOOT_RSS_SLACK = 32 * MIB
LS_RSS_GROWTH = 16 * MIB  # "does not grow with the image": the largest within this of the smallest
#: The sections whose rows compare bootmem with peers, in the document's order.
COMPARED = ("list", "extract", "create", "create19", "boot")


def _mb(title: str) -> float | None:
    """The unpacked size a generated image's title names (``"10 MB zstd"`` -> 10.0)."""
    try:
        return float(title.split()[0])
    except ValueError:
        return None


def goal_for(section: str, peer: str, title: str) -> tuple[float, bool] | None:
    """``(bound, strict)`` for the row ``title`` of ``section`` against ``peer``: bootmem's median
    over the peer's must be at most ``bound`` (below it when ``strict``); ``None``: no goal.
    From DESIGN.md's performance budget and issue 14."""
    if section == "list" and peer == "bsdtar -tf":
        mb = _mb(title)
        return (1.5, False) if mb is not None and mb <= 10 else (1.15, False)  # 10 MB: start-up bound
    if section == "extract" and peer == "bsdtar -xf":
        return (1.0, False)
    if section == "create" and peer == "find | cpio -o | zstd -3":
        return (1.0, True)
    if section == "create19" and peer == "bsdtar | zstd -19":
        return (1 / 1.8, False)
    if section == "boot" and peer == "floor":
        return (1.3, False)
    return None


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
    if strict and bound == 1.0:
        return "faster than"
    if bound < 1:
        return f"at least {1 / bound:.3g}x faster than"
    return f"within {bound:.3g}x of"


def meets(ratio: float, bound: float, strict: bool) -> bool:
    return ratio < bound if strict else ratio <= bound


def comparison_table(section: str, rows: list[dict[str, Any]]) -> list[str]:
    """A markdown table: one row per image, each contender's median and the subject's ratio.
    A row whose subject ran with other options (``bootmem extract --filter tar``) says so."""
    subject = next(iter(rows[0]["samples"]))
    peers = list(dict.fromkeys(name for row in rows for name in list(row["samples"])[1:]))
    head = ["image", cell(subject), *(cell(n) for n in peers), "goal"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        samples = row["samples"]
        mine = next(iter(samples))
        ours = median(samples[mine])
        cpu = row.get("cpu", {})
        note = f" ({mine.removeprefix(subject).strip()})" if mine != subject else ""
        cells = [row["title"], fmt_ms(ours) + note + (f"; CPU {fmt_ms(median(cpu[mine]))}" if cpu else "")]
        verdicts = []
        for name in peers:
            if name not in samples:
                cells.append("n/a")
                continue
            ratio = ours / median(samples[name])
            cells.append(f"{fmt_ms(median(samples[name]))} ({ratio:.2f}x{_cpu_ratio(cpu, mine, name, '; ')})")
            goal = goal_for(section, name, row["title"])
            if goal is not None:
                verdicts.append(f"{goal_text(*goal)} {cell(name)}: {met(meets(ratio, *goal))}")
        cells.append("; ".join(verdicts) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cpu_ratio(cpu: dict[str, list[float]], subject: str, peer: str, sep: str) -> str:
    """``sep`` and the ratio of CPU seconds (medians), when both were measured; else ``""``."""
    if not cpu.get(subject) or not cpu.get(peer) or not median(cpu[peer]):
        return ""
    return f"{sep}CPU {median(cpu[subject]) / median(cpu[peer]):.2f}x"


def verdicts(section: str, rows: list[dict[str, Any]]) -> list[tuple[str, str, float, bool, str]]:
    """``(title, goal, ratio, met, cpu)`` of every row of ``section`` that has a goal; ``cpu``
    is the ratio of CPU times as text (``" (CPU 1.20x)"``), or ``""`` when not measured."""
    out = []
    for row in rows:
        samples = row["samples"]
        subject = next(iter(samples))
        for name in list(samples)[1:]:
            goal = goal_for(section, name, row["title"])
            if goal is not None:
                ratio = median(samples[subject]) / median(samples[name])
                text = f"{subject} {goal_text(*goal)} {cell(name)}"
                cpu = _cpu_ratio(row.get("cpu", {}), subject, name, "")
                out.append((row["title"], text, ratio, meets(ratio, *goal), f" ({cpu})" if cpu else ""))
    return out


def all_goals(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """``(goal, figure, met)``: each section's goal on the headline image and on the Debian
    image, then on every image of the run (how many met, the worst)."""
    goals: list[tuple[str, str, bool]] = []
    for section in COMPARED:
        rows = verdicts(section, results.get(section, []))
        for title, text, ratio, ok, cpu in rows:
            if title == HEADLINE or title.startswith("Debian") or len(rows) == 1:
                figure = (
                    f"{ratio:.2f}x{cpu}"
                    if section != "create19"
                    else f"{ratio:.2f}x the time ({1 / ratio:.2f}x as fast)"
                )
                goals.append((f"{section}, {title}: {text}", figure, ok))
        if len(rows) > 1:
            worst = max(rows, key=lambda r: r[2] if r[3] else r[2] * 1e6)
            missed = [r for r in rows if not r[3]]
            text = next((r[1] for r in rows if r[0] == HEADLINE), rows[-1][1])
            note = " (10 MB images: within 1.5x)" if section == "list" else ""
            goals.append(
                (
                    f"{section}, all {len(rows)} images: {text}{note}",
                    f"{len(rows) - len(missed)} of {len(rows)} met; worst {worst[2]:.2f}x ({worst[0]})",
                    not missed,
                )
            )
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
                    f"boot host peak memory <= touched + 32 MiB, {HEADLINE} on {fmt_ram(row['ram'])}",
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
    lines = [
        "| image | RAM | floor | floor + memory file | boot() | ratio | CPU: floor, boot(), ratio "
        "| goal within 1.3x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        floor, booted = (median(row["samples"]["floor"]), median(row["samples"]["boot()"]))
        ratio = booted / floor
        files = row["samples"].get("floor + memory file")  # not in results saved before it was measured
        file = f"{fmt_ms(median(files))} ({median(files) / floor:.2f}x)" if files else "-"
        cpu = row.get("cpu", {})
        cpus = (
            f"{fmt_ms(median(cpu['floor']))}, {fmt_ms(median(cpu['boot()']))}"
            f"{_cpu_ratio(cpu, 'boot()', 'floor', ', ').replace('CPU ', '')}"
            if cpu
            else "-"
        )
        lines.append(
            f"| {row['title']} | {fmt_ram(row['ram'])} | {fmt_ms(floor)} | {file} | {fmt_ms(booted)} | "
            f"{ratio:.2f}x | {cpus} | {met(ratio <= 1.3)} |"
        )
    return lines


def scaling_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| image | modelled RAM | boot (fresh process) | host peak memory | modelled RAM touched | "
        "goal RSS <= touched + 32 MiB |",
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
            by_ram.plot([], [], linestyle="--", color="grey", label="goal: touched + 32 MiB (dashed)")
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

- Images: generated ones (a raw early microcode cpio, padding, then the main archive compressed
  by the real tool with the settings distributions use, in every codec the kernel reads) and a
  real one, built on the machine by Debian's `mkinitramfs` (initramfs-tools, `MODULES=most`)
  for Debian's current kernel package (`bootmem.verify`: fetched with apt, unpacked, not
  installed).
- `bootmem ls`, `bootmem extract`, `lsinitramfs` and `unmkinitramfs` are given the whole image
  (early segment, padding, compressed main member) and find the segments themselves.
- bsdtar, GNU cpio and busybox cpio stop at the first trailer: given the whole image they would
  see only the early microcode archive, so they are given the compressed main member alone (the
  work that dominates). bsdtar decompresses it itself; the cpios read it from the compressor's
  own `-dc` through a pipe (so two processes share the work on two cores).
- 500 MB images are compared with bsdtar and GNU cpio only, and those in xz, bzip2 and lzma are
  listed only (each run of each contender decompresses for tens of seconds): extraction and
  `boot()` in those codecs are judged on the 10 and 130 MB images (`--every-codec` runs all).
- `extract` runs into an emptied directory each time (emptying is not timed), with the default
  filter.
- `create` archives the tree of the main archive (unpacked once with GNU cpio): `bootmem create
  DIR -o IMAGE --compress zstd:3` against `find | cpio -o -H newc | zstd -3` (GNU and busybox cpio)
  and `bsdtar --format newc -cf - . | zstd -3`. At zstd -19, `bootmem create --compress zstd:19`
  (libzstd's worker threads, one per core) and `zstd:19,threads=0` (one thread) against
  `bsdtar | zstd -19` (zstd's default: one thread) and `zstd -19 -T0`.
- `boot()` runs in this process against the floor: the same main member decompressed by the
  library bootmem uses for it (zstandard, lzma, zlib, bz2, lz4.block) plus one copy of its bytes
  into memory already touched; unpacking is synchronous (`initramfs_async=0`), on the smallest
  power-of-two RAM of at least 1 GiB whose tmpfs (half of RAM) holds the image. A second
  reference, "floor + memory file", writes the decompressed bytes with pwrite into a fresh
  memory file instead (as modelled RAM is written, the host allocating its pages on first
  write): what it adds to the floor is the cost of modelling RAM as a memory file. The goal is
  judged against the floor.
- Scaling: each boot in a fresh interpreter. Host peak memory is the largest of samples taken
  every 0.2 ms by a thread of that interpreter: its own resident pages (RssAnon + RssFile) plus
  the pages of the memory file that holds modelled RAM (file data is written into it with
  pwrite, so VmHWM alone would miss it); the memory file's pages the process maps (the initrd,
  read through the unpacker's lease) are in the file's count only, so no page counts twice.
  The image file is mapped and its pages dropped once the bootloader step has copied it into
  modelled RAM. A RAM size is skipped for an image that would not fit (tmpfs is half of RAM).
"""


SCALING_NOTE = """\
Host peak memory is reached as the unpack ends, before the initrd is released: the memory file
then holds every page the boot touched (the rootfs's and the initrd's), and on top of it come
the interpreter with bootmem imported (about 33 MiB, numpy about 16 of it), the allocator's
metadata (growing with modelled RAM: about 20 MiB more at 1 TiB than at 1 GiB) and the unpack's
buffers (the decompressor's, the prefetched chunks)."""

READING = """\
## Reading the figures

- Each figure is the median of alternating runs in one session, the order reversed every other
  round, so drift and other load fall on all contenders alike; the header gives the load
  average each run saw. On this shared two-core machine absolute times are inflated by other
  work; ratios are the figures to read, and ratios of commands that last tens of milliseconds
  (start-up bound) move the most.
- bootmem runs in CPython: `python -c pass` alone takes about as long as bsdtar's whole listing
  of a 10 MB image (the start-up table), and the imports of `bootmem ls` come on top, so at
  10 MB the listing is start-up bound. What is left of them is argparse (with re, enum and
  gettext, which calls locale), zstandard (with typing, which its `__init__` imports on Python
  3.11, and platform), the decompressing thread's queue and threading, and bootmem's own
  modules (about 3 ms); dataclasses (inspect, ast, dis, tokenize) are no longer among them.
- Against codecs that decompress at memory speed (zstd, lz4), `bootmem ls` is the interpreter's
  start and imports (the start-up table), the decompression (the same library work as bsdtar's,
  plus python-lz4's copy of each 8 MiB block) and some 15 to 20 us of Python per entry (header
  parsing, the stream's wrappers, the hand-off from the decompressing thread); with xz, lzma
  and bzip2, where decompression dominates, `ls`, `extract` and `boot()` stay close to bsdtar
  and to the floor.
- The pipelines `decompressor -dc | cpio` use two processes, so on two cores decompression and
  archive parsing overlap; bsdtar does both in one thread.
- `create --compress zstd:N` compresses in libzstd's worker threads, one per core: on two cores
  the most it can win over one thread is 2x, less what the archiving thread and other load
  take. Every thread count of 1 or more writes the same bytes (libzstd's multi-threaded format
  does not depend on it), so the default is reproducible from one machine to another;
  `threads=0` is zstd's single-threaded mode, whose bytes differ (as `zstd --single-thread`
  differs from `zstd -T1`). libzstd cuts the input into jobs of four windows (32 MiB at level
  19), so an archive under 32 MiB is one job and gains nothing from threads; the CPU time per
  byte is the same either way (24 MB at level 19: 19.9 s of CPU in two threads, 19.6 s in one).
- Where the time goes: the profiles below. `ls` mostly waits for its decompressing thread,
  `extract` for the host's file system (`open`, `mkdir`, `write`), and `boot()` writes file
  data into the memory file that holds modelled RAM (`pwrite`); the Python per entry (header
  parsing, tmpfs, page allocation) is the smaller part in all three.
- Host memory of `boot()`: the interpreter with bootmem imported (about 33 MiB, numpy about 16
  of it) comes on top of the modelled RAM touched before the boot has done anything, and the
  unpack's buffers and metadata (about 13 MiB at the peak on the 130 MB image) on top of that,
  so "touched + 32 MiB" is missed by about those buffers up to 256 GiB of modelled RAM, and by
  the allocator's metadata more at 1 TiB (the scaling table).
- The goals missed, and where the difference goes (the tables and profiles above):
  - `ls` of zstd and of the Debian image: the interpreter's start and `ls`'s imports (the
    start-up table: `python + ls's imports` against bsdtar's whole listing) plus 15 to 20 us of
    Python an entry; libzstd's work is bsdtar's. At 10 MB the start-up alone is over twice
    bsdtar's listing, so 1.5x cannot be met by a CPython program that imports argparse and
    zstandard; at 130 MB the start-up and the entries are about the gap.
  - `ls` of gzip: CPython's zlib module, decompressing the 130 MB member and nothing else,
    takes about as long as bsdtar's whole listing (about 425 ms, the same system libz), so the
    start-up and the Python per entry are the difference.
  - `ls` and `boot()` of lz4: python-lz4 has no decompress-into-a-buffer call; each 8 MiB
    block is allocated and copied by it, which bsdtar's liblz4 does not do.
  - `extract` of the 10 MB and Debian images: both tools spend most of their time in the same
    `open`, `mkdir` and `write` calls of the host's file system (the profile); what is left is
    mostly bootmem's start-up, a larger share of a short extraction.
  - `boot()` of zstd, lz4 and the Debian image: the column "floor + memory file" is already at
    or over 1.3x the floor. Modelled RAM is a memory file, whose pages the host allocates and
    zeroes on first write, and no decompressor writes into them directly; `boot()`'s own
    work (tmpfs, page allocation, the cpio state machine, some 20 us an entry) comes on top.
    At 10 MB the floor is 9 ms, against which that work per entry and a boot's fixed cost
    (the machine, the tmpfs mount, the release) weigh the most.
- A real image finds what generated ones hid: Debian's image holds absolute symlinks
  (`etc/mtab -> /proc/mounts`), which the default `extract` filter (`rootfs`) creates as
  archived and `--filter data` refuses."""


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
        "startup": "Start-up",
        "extract": "Extraction to disk",
        "create": "Creation (zstd -3)",
        "create19": "Creation at zstd -19, in threads and in one",
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
            if section == "startup":
                lines += [STARTUP, ""]
                if results.get("importtime"):
                    lines += ["```", *results["importtime"], "```", ""]
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
    if results.get("failures"):
        lines += ["## Failures", "", "| section | image | what failed |", "|---|---|---|"]
        for f in results["failures"]:
            lines.append(f"| {f['section']} | {f['title']} | {cell(f['error'])} |")
        lines.append("")
    if results.get("profiles"):
        lines += ["## Where the time goes", "", PROFILES, ""]
        for title, profile in results["profiles"].items():
            lines += [f"`{title}`", "", "```", *profile, "```", ""]
    return lines


STARTUP = """\
`python -c pass` is the interpreter's own start; `python + ls's imports` adds every module
`bootmem ls` imports before it reads the image (its parser, the image reader, zstandard). The
listing is the rest. Below, `python -X importtime` of those imports (the least of several runs):
the modules with the most time of their own."""

PROFILES = """\
Each command once under cProfile (`python -m bench.profile`), the functions with the most time
of their own first. The profiler slows Python code several times and C code not at all, so the
codecs' share (the `read` and `decompress` methods) reads lower here than it is unprofiled.
`ls` and `extract` decompress in a thread of their own, which cProfile does not follow: there
the main thread's wait for it (`acquire` of a lock) stands for the decompression."""


CODECS = ("zstd", "xz", "gzip", "lz4", "bzip2", "lzma")


def _order(title: str) -> tuple[float, int]:
    """Generated images by size then codec, the Debian images after them."""
    codec = title.split()[-1]
    return (_mb(title) or float("inf"), CODECS.index(codec) if codec in CODECS else len(CODECS))


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Saved runs as one: rows of a later run replace the same image's rows of an earlier
    one; the document names every run (its date, commit and command)."""
    if len(parts) == 1:
        return parts[0]
    out: dict[str, Any] = {"meta": {**parts[-1]["meta"], "parts": [p["meta"] for p in parts]}}
    keys: dict[str, tuple[str, ...]] = {
        "images": ("label",),
        "ls_rss": ("image",),
        "scaling": ("image", "ram"),
        "failures": ("section", "title"),
    }
    for part in parts:
        for section, value in part.items():
            if section == "meta":
                continue
            if not (isinstance(value, list) and all(isinstance(row, dict) for row in value)):
                out[section] = value  # profiles, import times, the allocator's figures: whole
                continue
            key = keys.get(section, ("title",))
            rows = out.setdefault(section, [])
            for row in value:
                rows[:] = [r for r in rows if [r[k] for k in key] != [row[k] for k in key]] + [row]
    for section, rows in out.items():
        if isinstance(rows, list) and rows and isinstance(rows[0], dict) and section != "failures":
            name = next(k for k in ("title", "image", "label") if k in rows[0])
            rows.sort(key=lambda r, name=name: (_order(r[name]), r.get("ram", 0)))
    return out


def _load(meta: dict[str, Any]) -> str:
    load = meta.get("load")
    if not load:
        return ""
    cores = meta["machine"]["cores"]
    return f"; load average {load[0]:.1f} at the start, {load[1]:.1f} at the end, on {cores} cores"


def write_document(results: dict[str, Any], out: Path) -> Path:
    """Write ``out``/BENCHMARKS.md and ``out``/bench-scaling.png; return the document's path."""
    meta = results["meta"]
    runs = meta.get("parts", [meta])
    measured = "; ".join(
        f"{m['date']} with `{m['command']}` at commit {m.get('commit', '?')} "
        f"(about {m.get('seconds', 0) / 60:.0f} minutes{_load(m)})"
        for m in runs
    )
    lines = [
        "# Benchmarks",
        "",
        f"Measured {measured}. The figures change with the machine: run it again to compare on yours. "
        "Goals are DESIGN.md's performance budget and issue 14's, judged on every image; the summary "
        f"names the {HEADLINE} image and the Debian image, then counts the rest.",
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

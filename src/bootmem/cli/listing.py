"""`bootmem` subcommands: ls and examine.

Both stream the image once (:meth:`bootmem.initramfs.Image.stream`): no file data is kept, so
memory does not grow with the image.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import stat
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from bootmem.cli.inputs import IMAGE_HELP, add_max_size, add_selection, image_source, max_size, selection
from bootmem.cli.output import print_json, printable
from bootmem.errors import UsageError
from bootmem.initramfs import Entry, Image, Segment
from bootmem.initramfs import open as open_image


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the `bootmem` parser."""
    ls = subparsers.add_parser(
        "ls",
        help="list every entry of every segment of an initramfs image",
        description="List every entry of every segment of IMAGE, in order, as the kernel sees them.",
    )
    ls.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    add_selection(ls)
    ls.add_argument("-l", dest="long", action="store_true", help="long listing, as `ls -l`")
    ls.add_argument(
        "--sort", choices=("image", "name", "size"), default="image",
        help="image order (default), by name, or largest first",
    )  # fmt: skip
    ls.add_argument("--top", type=int, metavar="N", help="only the first N rows (after --sort)")
    ls.add_argument("--json", action="store_true", help='JSON on stdout: {"entries": [...]}')
    add_max_size(ls)
    ls.set_defaults(func=run_ls)

    examine = subparsers.add_parser(
        "examine",
        help="one row per segment of an initramfs image",
        description="Show the segments of IMAGE: offset, end, compression, cpio format, sizes, entries.",
    )
    examine.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    examine.add_argument(
        "--contents", action="store_true",
        help="what the image holds: kernel versions, modules, firmware, microcode, init, busybox",
    )  # fmt: skip
    examine.add_argument("--json", action="store_true", help='JSON on stdout: {"segments": [...]}')
    add_max_size(examine)
    examine.set_defaults(func=run_examine)


def long_line(entry: Entry) -> str:
    """``entry`` as a line of ``ls -l``: mode, nlink, uid, gid, size (``major, minor`` for
    devices), mtime (UTC), name and ``-> target`` for symlinks; names escaped for a terminal."""
    mode = stat.filemode(entry.c_mode)
    if entry.ischr() or entry.isblk():
        size = f"{entry.c_rdevmajor:>4}, {entry.c_rdevminor:>4}"
    else:
        size = f"{entry.c_filesize:>10}"
    mtime = time.strftime("%Y-%m-%d %H:%M", time.gmtime(entry.c_mtime))
    owner = f"{entry.c_nlink:>3} {entry.c_uid:>5} {entry.c_gid:>5}"
    line = f"{mode} {owner} {size} {mtime} {printable(entry.name)}"
    if entry.linkname is not None:
        line += f" -> {printable(entry.linkname)}"
    return line


def entry_json(entry: Entry) -> dict[str, Any]:
    """``entry`` as a JSON object (names as stored, lossless)."""
    doc: dict[str, Any] = {
        "name": entry.name,
        "type": entry.type,
        "mode": f"{entry.mode:04o}",
        "nlink": entry.c_nlink,
        "uid": entry.c_uid,
        "gid": entry.c_gid,
        "size": entry.c_filesize,
        "mtime": entry.c_mtime,
        "ino": entry.c_ino,
        "segment": entry.segment,
        "format": entry.format,
    }
    if entry.linkname is not None:
        doc["linkname"] = entry.linkname
    if entry.ischr() or entry.isblk():
        doc["rdev"] = [entry.c_rdevmajor, entry.c_rdevminor]
    return doc


def selected_entries(args: argparse.Namespace, img: Image) -> Iterator[Entry]:
    """The entries of ``img`` that ``args.patterns``, ``args.segment``, ``args.sort`` and
    ``args.top`` choose, in order; streamed when no sort is asked for.  A pattern or segment
    that selects nothing is an error naming it, after the rest was listed."""
    chosen = selection(args)
    entries: Iterable[Entry] = (e for e, _ in img.stream() if chosen.matches(e))
    if args.sort == "name":
        entries = sorted(entries, key=lambda e: e.name)
    elif args.sort == "size":
        entries = heapq.nlargest(args.top, entries, key=lambda e: e.c_filesize) if args.top else sorted(
            entries, key=lambda e: e.c_filesize, reverse=True)  # fmt: skip
    if args.top is not None:
        entries = itertools.islice(entries, max(args.top, 0))
    yield from entries
    if args.top is None and (missing := chosen.unmatched()):
        raise UsageError(f"nothing in {chosen.scope(repr(args.image))} matches {', '.join(missing)}")


def _print_entries_json(entries: Iterable[Entry]) -> None:
    """``{"entries": [...]}`` written as the entries stream, one per line: memory does not grow
    with the image (the same JSON ``print_json`` would write, laid out differently).  An error
    part way still closes the document, holding the entries before it; the exit status says."""
    import json  # only for --json: `bootmem ls` starts without it

    out = sys.stdout
    out.write('{"entries": [')
    try:
        for n, entry in enumerate(entries):
            out.write(("\n  " if n == 0 else ",\n  ") + json.dumps(entry_json(entry), ensure_ascii=True))
    finally:
        out.write("\n]}\n")
        out.flush()


def run_ls(args: argparse.Namespace) -> int:
    with open_image(image_source(args.image), max_decompressed=max_size(args)) as img:
        if args.json:
            _print_entries_json(selected_entries(args, img))
            return 0
        out = sys.stdout
        batch: list[str] = []
        fmt = long_line if args.long else (lambda e: printable(e.name))
        for entry in selected_entries(args, img):
            batch.append(fmt(entry))
            if len(batch) >= 512:
                out.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            out.write("\n".join(batch) + "\n")
        out.flush()
    return 0


_COLUMNS = ("index", "offset", "end", "compression", "format", "compressed", "uncompressed", "entries")


def _row(seg: Segment) -> tuple[str, ...]:
    return (
        str(seg.index),
        f"{seg.offset:#x}",
        f"{seg.end:#x}",
        seg.compression,
        seg.format,
        str(seg.compressed_size),
        str(seg.uncompressed_size),
        str(seg.entries),
    )


def run_examine(args: argparse.Namespace) -> int:
    if args.contents:
        return _run_contents(args)
    with open_image(image_source(args.image), max_decompressed=max_size(args)) as img:
        segments = img.segments
        if args.json:
            print_json({"segments": [s.asdict() for s in segments]})
            return 0
        if img.uki_section is not None:
            at, size = img.uki_section
            print(f"unified kernel image: .initrd section at {at:#x}, {size} bytes; offsets below are in it")
        rows = [_COLUMNS, *(_row(s) for s in segments)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
        for r in rows:
            print("  ".join(cell.rjust(w) if i not in (3, 4) else cell.ljust(w) for i, (cell, w) in
                            enumerate(zip(r, widths, strict=True))).rstrip())  # fmt: skip
    return 0


def _run_contents(args: argparse.Namespace) -> int:
    from bootmem.initramfs.summary import summarise
    from bootmem.units import format_size

    with open_image(image_source(args.image), max_decompressed=max_size(args)) as img:
        summary = summarise(img)
    if args.json:
        print_json(summary.to_json())
        return 0
    segments = ", ".join(f"{s['index']}: {s['compression']} {s['format']} ({s['entries']} entries)"
                         for s in summary.segments)  # fmt: skip
    modules = summary.module_total
    rows = [
        ("segments", segments),
        ("kernel", ", ".join(summary.kernel_versions) or "no modules"),
        ("modules", f"{modules.count} ({format_size(modules.bytes)})"),
        *((f"  {where}", f"{t.count} ({format_size(t.bytes)})") for where, t in summary.modules.items()),
        ("firmware", f"{summary.firmware.count} files ({format_size(summary.firmware.bytes)})"),
        ("microcode", ", ".join(f"{v} ({format_size(n)})" for v, n in summary.microcode.items()) or "none"),
        ("init", printable(summary.init) if summary.init else "none found: the kernel would panic"),
        ("interpreter", printable(summary.interpreter) if summary.interpreter else "none (static or data)"),
        ("busybox", f"{summary.busybox}, {summary.applets} applets" if summary.busybox else "no"),
        ("binaries", f"{summary.binaries} other executables in bin and sbin"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0

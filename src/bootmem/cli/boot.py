"""`bootmem boot`: run the initrd lifecycle on a modelled machine and print what Linux prints."""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from bootmem.cli.inputs import BOOT_MAX_SIZE_HELP, add_max_size, max_size
from bootmem.cli.output import console, print_json, styled
from bootmem.errors import UsageError
from bootmem.fdt import read_blob
from bootmem.kernel.arch import profile
from bootmem.kernel.boot import DEFAULT_RAM_BASE, BootReport, Machine, boot
from bootmem.kernel.example import example_image
from bootmem.mm import PAGE_SIZE, AllocatorEvent
from bootmem.report.owners import Owner
from bootmem.units import format_size, parse_address, parse_size, parse_size_or_share


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``boot`` to the ``bootmem`` parser."""
    p = subparsers.add_parser(
        "boot",
        help="boot an initrd on a modelled machine and show where memory goes",
        description=(
            "Boot an initramfs image on a modelled machine: the bootloader places it, the kernel "
            "reserves it, unpacks it into a page-backed tmpfs and releases its frames. Prints the "
            "boot log in Linux's format and a summary. With no --initrd, boots a built-in example. "
            "Exits 1 when unpacking failed or the initrd was disabled."
        ),
    )
    add_machine_arguments(p)
    p.add_argument(
        "--kernel",
        choices=("linux", "solaya"),
        default="linux",
        help="the kernel whose boot is modelled: linux (default) or solaya (QEMU riscv virt, "
        "its first-fit allocator and extract(), with its planned release_reserved)",
    )
    p.add_argument("--dtb", type=Path, metavar="FILE", help="device tree blob giving RAM and /chosen initrd")
    p.add_argument(
        "--free-policy",
        choices=("exact", "linux-generic"),
        default=None,
        help="exact: free every page nothing else holds, as x86 does (default without --dtb); "
        "linux-generic: round the range inward as free_reserved_area does (default with --dtb, "
        "as riscv and arm64)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the log")
    p.add_argument(
        "--tree", type=Path, metavar="FILE", help="write the booted rootfs, one tab-separated line per path"
    )
    p.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="write a picture (.png or .svg) of memory by owner over the boot beside the memory maps",
    )
    p.add_argument(
        "--map",
        action="store_true",
        help="print the physical memory map before and after the initrd's release",
    )
    p.add_argument(
        "--timeline",
        type=Path,
        metavar="FILE",
        help="write the pages by owner at every allocator event as JSON",
    )
    p.set_defaults(func=run)


def add_machine_arguments(p: argparse.ArgumentParser) -> None:
    """The options that describe the machine and the image (shared with ``budget``)."""
    p.add_argument(
        "--initrd",
        type=Path,
        metavar="IMAGE",
        help="the initramfs image, or - for standard input (default: built-in example)",
    )
    p.add_argument("--mem", default="256M", metavar="SIZE", help="RAM size (default 256M)")
    add_max_size(p, BOOT_MAX_SIZE_HELP)
    p.add_argument(
        "--arch",
        metavar="PROFILE",
        help="what the kernel holds as RAM grows: x86_64 (Debian 6.1's kernel under QEMU: struct pages, "
        "hash tables, the first MiB; the default) or flat (the kernel image alone; the default with --dtb)",
    )
    p.add_argument(
        "--base",
        default=hex(DEFAULT_RAM_BASE),
        metavar="ADDR",
        help=f"RAM base address (default {DEFAULT_RAM_BASE:#x})",
    )
    p.add_argument(
        "--kernel-size",
        metavar="SIZE",
        help="the kernel's fixed footprint, reserved at the bottom of RAM (default: the profile's, "
        "54432K for x86_64, 16M for flat)",
    )
    p.add_argument(
        "--cmdline",
        default="",
        metavar="STR",
        help="kernel command line; retain_initrd and initramfs_async=0|1 are honoured",
    )
    p.add_argument(
        "--rootfs-size",
        metavar="SIZE|PCT",
        help="tmpfs size limit: bytes (64M) or a percentage of the pages free when the allocator came "
        "up, as tmpfs's size=N%% (default 50%%, Linux's)",
    )


def machine_from(args: argparse.Namespace) -> Machine:
    arch = profile(args.arch or ("flat" if getattr(args, "dtb", None) is not None else "x86_64"))
    return Machine(
        ram_size=parse_size(args.mem),
        ram_base=parse_address(args.base),
        kernel_size=parse_size(args.kernel_size) if args.kernel_size is not None else arch.fixed,
        arch=arch,
    )


def rootfs_limit(text: str | None) -> tuple[float | None, int | None]:
    """``--rootfs-size``: ``(share, None)`` for ``"50%"``, ``(None, bytes)`` for a size, both None
    for the default (half of the pages free when the allocator came up)."""
    if text is None:
        return None, None
    return parse_size_or_share(text)


def read_initrd(path: Path | None, limit: int, pipe_limit: int | None = None) -> bytes | memoryview:
    """The image at ``path`` (``-`` for standard input, ``None`` for the built-in example),
    refused if above ``limit`` bytes.

    The size is checked before the data is read: with ``fstat`` for a regular file, which is
    then mapped, not copied; anything else (a pipe, ``/dev/zero``) is copied to a temporary
    file in pieces, at most ``pipe_limit + 1`` bytes (``--max-size``; by default
    :data:`~bootmem.initramfs.image.DEFAULT_PIPE_LIMIT`, as every command reads a pipe) and
    never more than ``limit + 1``, and that file is mapped.  So neither host memory nor the
    temporary file grows without bound.  Raises :class:`UsageError` naming the file and both
    sizes.
    """
    if path is None:
        return example_image()
    name = "standard input" if str(path) == "-" else repr(os.fsdecode(path))
    too_large = f"initrd {name} is larger than the {format_size(limit)} of RAM it must be loaded into"
    with contextlib.ExitStack() as stack:
        if str(path) == "-":
            f: BinaryIO = sys.stdin.buffer
        else:
            f = stack.enter_context(path.open("rb"))
        info = os.fstat(f.fileno())
        if stat.S_ISREG(info.st_mode) and f.seekable() and f.tell() == 0:
            if info.st_size > limit:
                raise UsageError(f"initrd {name} of {info.st_size} bytes is larger than the "
                                 f"{format_size(limit)} of RAM it must be loaded into")  # fmt: skip
            return _mapped(f, info.st_size)
        from bootmem.initramfs.image import DEFAULT_PIPE_LIMIT, spool

        most = DEFAULT_PIPE_LIMIT if pipe_limit is None else pipe_limit
        if most < limit:
            hint = "give a file" if pipe_limit is None else "give a file, or another limit with --max-size"
            limit, too_large = (
                most,
                f"{name} is not seekable and passes {most} bytes, the most read from a pipe ({hint})",
            )
        spooled, size = spool(f, limit, lambda: UsageError(too_large), prefix="bootmem-initrd-")
        return _mapped(stack.enter_context(spooled), size)


def _mapped(f: BinaryIO, size: int) -> bytes | memoryview:
    """The first ``size`` bytes of ``f``, mapped read-only (the mapping outlives ``f``)."""
    if size == 0:
        return b""
    return memoryview(mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ))


def ram_limit(machine: Machine, dtb: bytes | None) -> int:
    """The bytes of RAM an initrd can at most occupy: the device tree's RAM, else the machine's."""
    if dtb is None:
        return machine.ram_size
    from bootmem.fdt import DeviceTree

    return sum(r.size for r in DeviceTree.from_bytes(dtb).memory)


def run(args: argparse.Namespace) -> int:
    if args.kernel == "solaya":
        from bootmem.cli.boot_solaya import run as run_solaya

        return run_solaya(args)
    from bootmem.cli.progress import progress_bar

    if args.plot is not None:
        from bootmem.report.plot import picture_format

        picture_format(args.plot)  # refuse a bad name before booting
    machine = machine_from(args)
    dtb = read_blob(args.dtb) if args.dtb is not None else None
    image = read_initrd(args.initrd, ram_limit(machine, dtb))
    share, size = rootfs_limit(args.rootfs_size)
    options: dict[str, Any] = {
        "machine": machine,
        "dtb": dtb,
        "cmdline": args.cmdline,
        "free_policy": args.free_policy,
        "rootfs_size": size,
        "rootfs_share": share,
        "max_decompressed": max_size(args),
    }
    timeline = None
    with progress_bar("unpacking into rootfs", unit="bytes") as bar:

        def count(event: AllocatorEvent) -> None:
            if event.op == "alloc":
                bar.advance(event.pages * PAGE_SIZE)

        if args.plot is not None or args.map or args.timeline is not None:
            from bootmem.report.timeline import record_boot

            report, timeline = record_boot(image, observer=count, **options)
        else:
            report = boot(image, observer=count, **options)
    source = "built-in example" if args.initrd is None else str(args.initrd)
    source = "standard input" if source == "-" else source

    def figures() -> None:
        if styled():
            from bootmem.report.terminal import labelled_lines

            console().print(labelled_lines(summary_rows(report, source=source)))
        else:
            print(summary(report, source=source))

    return show(args, report, timeline, title=f"Where boot memory goes: {source}", figures=figures)


def show(
    args: argparse.Namespace, report: Any, timeline: Any, *, title: str, figures: Callable[[], None]
) -> int:
    """What every ``bootmem boot`` prints and writes once the boot is done: the files it was asked
    for, then the JSON, or the kernel's log, the ``figures`` and the ``--map``; the exit status."""
    write_files(args, report, timeline, title=title)
    if args.json:
        print_json(report.to_json())
        return 0 if report.ok else 1
    print(report.log)
    print()
    figures()
    if args.map and timeline is not None:
        from bootmem.report.terminal import MAP_CELLS, print_maps

        print()
        print_maps(timeline.maps(MAP_CELLS), console())
    return 0 if report.ok else 1


def write_files(args: argparse.Namespace, report: Any, timeline: Any, *, title: str) -> None:
    """The files a boot writes besides its output: ``--tree``, ``--plot`` and ``--timeline``."""
    if args.tree is not None:
        assert report.rootfs is not None
        lines = report.rootfs.tree()
        args.tree.write_text(
            "".join(line + "\n" for line in lines), encoding="utf-8", errors="surrogateescape"
        )
    if timeline is not None and args.plot is not None:
        from bootmem.report.plot import save_picture

        save_picture(args.plot, timeline, title=title)
    if timeline is not None and args.timeline is not None:
        with args.timeline.open("w", encoding="utf-8") as out:
            json.dump(timeline.to_json(), out, indent=1)
            out.write("\n")


def summary(report: BootReport, *, source: str) -> str:
    """The figures people ask for, in human units, one per line."""
    return "\n".join(f"{label:<12} {value}" for label, value, _owner in summary_rows(report, source=source))


def summary_rows(report: BootReport, *, source: str) -> list[tuple[str, str, Owner | None]]:
    """:func:`summary`'s lines as ``(label, value, owner)``; the owner colours the value on a terminal."""
    page = PAGE_SIZE

    def pages(n: int) -> str:
        return f"{format_size(n * page):>10}  ({n} pages)"

    ram = report.ram_size
    kernel = next((r for r in report.reservations if r.name == "Kernel image"), None)
    rows: list[tuple[str, str, Owner | None]] = [("initrd", source, None)]
    rows.append(("RAM", f"{format_size(ram):>10}  at {report.ram[0].start:#x}", None))
    if kernel is not None:
        rows.append(("kernel", f"{format_size(kernel.size):>10}  at {kernel.start:#x}", "kernel"))
    if report.initrd is not None:
        r = report.initrd
        rows.append(("initrd", f"{format_size(r.size):>10}  at {r.start:#x}-{r.end:#x}", "initrd"))
    elif report.initrd_disabled:
        rows.append(("initrd", f"disabled: {report.initrd_disabled}", "other"))
    rows.append(("available", f"{pages(report.available_pages)}  when the allocator came up", None))
    rows.append(("rootfs", f"{pages(report.rootfs_pages)}  in {report.rootfs_files} paths", "rootfs"))
    if report.rootfs_fs == "ramfs":
        rows.append(("rootfs is", "ramfs (the command line names a root=): no limit but RAM", None))
    if report.unpack_error:
        rows.append(("unpacking", f"failed: {report.unpack_detail}", "other"))
    if report.cmdline.retain_initrd:
        rows.append(("freed", "nothing: retain_initrd", "initrd"))
    else:
        rows.append(("freed", f"{pages(report.freed_pages)}  from the initrd", "initrd"))
    rows.append(("peak used", pages(report.peak_used_pages), None))
    rows.append(("free at end", pages(report.free_pages_end), None))
    if report.panic is not None:
        # The unpack's peak is the end of the unpack: nothing was freed after it.
        runtime = report.free_pages_end * page - report.unpack_peak_free - report.unpack_workspace
        rows.append(("panic", (
            f"{report.panic}: {format_size(max(0, report.unpack_peak_free))} free at the unpack's peak once "
            f"the kernel's own {format_size(runtime)} and the decompressors' "
            f"{format_size(report.unpack_workspace)} are taken off, below the "
            f"{format_size(report.watermark_bytes)} watermarks"), "other"))  # fmt: skip
        rows.append(("init", "not run", "other"))
    else:
        rows.append(("init", report.init or "none found", None if report.init else "other"))
    return rows

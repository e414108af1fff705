"""`bootmem boot`: run the initrd lifecycle on a modelled machine and print what Linux prints."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bootmem.cli.output import print_json
from bootmem.errors import UsageError
from bootmem.kernel.boot import DEFAULT_KERNEL_SIZE, DEFAULT_RAM_BASE, BootReport, Machine, boot
from bootmem.kernel.example import example_image
from bootmem.mm import PAGE_SIZE
from bootmem.units import format_size, parse_address, parse_size


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
    p.add_argument("--dtb", type=Path, metavar="FILE", help="device tree blob giving RAM and /chosen initrd")
    p.add_argument(
        "--free-policy",
        choices=("exact", "linux-generic"),
        default="exact",
        help="exact: free every page nothing else holds (default); "
        "linux-generic: round the range inward as free_reserved_area does",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the log")
    p.add_argument(
        "--tree", type=Path, metavar="FILE", help="write the booted rootfs, one tab-separated line per path"
    )
    p.set_defaults(func=run)


def add_machine_arguments(p: argparse.ArgumentParser) -> None:
    """The options that describe the machine and the image (shared with ``budget``)."""
    p.add_argument(
        "--initrd", type=Path, metavar="IMAGE", help="the initramfs image (default: built-in example)"
    )
    p.add_argument("--mem", default="256M", metavar="SIZE", help="RAM size (default 256M)")
    p.add_argument(
        "--base",
        default=hex(DEFAULT_RAM_BASE),
        metavar="ADDR",
        help=f"RAM base address (default {DEFAULT_RAM_BASE:#x})",
    )
    p.add_argument(
        "--kernel-size",
        default=f"{DEFAULT_KERNEL_SIZE >> 20}M",
        metavar="SIZE",
        help="kernel image size, reserved at the bottom of RAM (default 16M)",
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
        help="tmpfs size limit: bytes (64M) or a percentage of RAM (50%%, the default)",
    )


def machine_from(args: argparse.Namespace) -> Machine:
    return Machine(
        ram_size=parse_size(args.mem),
        ram_base=parse_address(args.base),
        kernel_size=parse_size(args.kernel_size),
    )


def rootfs_limit(text: str | None, ram_bytes: int) -> int | None:
    """``--rootfs-size``: ``"50%"`` of RAM or a size; None for the default (half of RAM)."""
    if text is None:
        return None
    if text.strip().endswith("%"):
        try:
            pct = float(text.strip()[:-1])
        except ValueError:
            raise UsageError(f"not a percentage: {text!r}") from None
        if not 0 < pct <= 100:
            raise UsageError(f"--rootfs-size {text!r} must be between 0% and 100%")
        return int(ram_bytes * pct / 100) // PAGE_SIZE * PAGE_SIZE
    return parse_size(text)


def read_initrd(path: Path | None) -> bytes:
    return example_image() if path is None else path.read_bytes()


def run(args: argparse.Namespace) -> int:
    machine = machine_from(args)
    image = read_initrd(args.initrd)
    dtb = args.dtb.read_bytes() if args.dtb is not None else None
    report = boot(
        image,
        machine=machine,
        dtb=dtb,
        cmdline=args.cmdline,
        free_policy=args.free_policy,
        rootfs_size=rootfs_limit(args.rootfs_size, machine.ram_size),
    )
    if args.tree is not None:
        assert report.rootfs is not None
        lines = report.rootfs.tree()
        args.tree.write_text(
            "".join(line + "\n" for line in lines), encoding="utf-8", errors="surrogateescape"
        )
    if args.json:
        print_json(report.to_json())
    else:
        print(report.log)
        print()
        print(summary(report, source=str(args.initrd) if args.initrd else "built-in example"))
    return 0 if report.ok else 1


def summary(report: BootReport, *, source: str) -> str:
    """The figures people ask for, in human units, one per line."""
    page = PAGE_SIZE

    def pages(n: int) -> str:
        return f"{format_size(n * page):>10}  ({n} pages)"

    ram = sum(r.size for r in report.ram)
    kernel = next((r for r in report.reservations if r.name == "Kernel image"), None)
    lines = [f"initrd       {source}"]
    lines.append(f"RAM          {format_size(ram):>10}  at {report.ram[0].start:#x}")
    if kernel is not None:
        lines.append(f"kernel       {format_size(kernel.size):>10}  at {kernel.start:#x}")
    if report.initrd is not None:
        r = report.initrd
        lines.append(f"initrd       {format_size(r.size):>10}  at {r.start:#x}-{r.end:#x}")
    elif report.initrd_disabled:
        lines.append(f"initrd       disabled: {report.initrd_disabled}")
    lines.append(f"available    {pages(report.available_pages)}  when the allocator came up")
    lines.append(f"rootfs       {pages(report.rootfs_pages)}  in {report.rootfs_files} paths")
    if report.unpack_error:
        lines.append(f"unpacking    failed: {report.unpack_detail}")
    if report.cmdline.retain_initrd:
        lines.append("freed        nothing: retain_initrd")
    else:
        lines.append(f"freed        {pages(report.freed_pages)}  from the initrd")
    lines.append(f"peak used    {pages(report.peak_used_pages)}")
    lines.append(f"free at end  {pages(report.free_pages_end)}")
    lines.append(f"init         {report.init or 'none found'}")
    return "\n".join(lines)

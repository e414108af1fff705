"""`bootmem boot --kernel solaya`: the image booted as Solaya boots it, with its planned release."""

from __future__ import annotations

import argparse

from bootmem.cli.output import printable
from bootmem.errors import UsageError
from bootmem.kernel.boot import DEFAULT_RAM_BASE
from bootmem.kernel.solaya import DEFAULT_KERNEL_SIZE, QEMU_VIRT_DRAM, SolayaMachine, SolayaReport, boot
from bootmem.mm import PAGE_SIZE, FrameAllocator
from bootmem.units import format_size, parse_address, parse_size

#: Options of ``bootmem boot`` that mean nothing to Solaya, and why.
_LINUX_ONLY = {
    "cmdline": "Solaya reads no command line for the initrd",
    "rootfs_size": "Solaya's tmpfs has no size limit",
    "arch": "the machine is QEMU riscv virt",
}


def run(args: argparse.Namespace) -> int:
    """Boot ``args.initrd`` as Solaya; print its log, the figures and every difference from Linux."""
    from bootmem.cli.boot import read_initrd, show, summary_rows
    from bootmem.fdt import read_blob

    if parse_address(args.base) not in (DEFAULT_RAM_BASE, QEMU_VIRT_DRAM):
        raise UsageError(f"--base {args.base}: QEMU virt's RAM is at {QEMU_VIRT_DRAM:#x} for --kernel solaya")
    for option, why in _LINUX_ONLY.items():
        if getattr(args, option, None):
            raise UsageError(f"--{option.replace('_', '-')} does not apply to --kernel solaya: {why}")
    if args.plot is not None:
        from bootmem.report.plot import picture_format

        picture_format(args.plot)
    kernel_size = parse_size(args.kernel_size) if args.kernel_size is not None else DEFAULT_KERNEL_SIZE
    machine = SolayaMachine(ram_size=parse_size(args.mem), kernel_size=kernel_size)
    dtb = read_blob(args.dtb) if args.dtb is not None else None
    image = read_initrd(args.initrd, machine.ram_size)
    recorder = None
    if args.plot is not None or args.map or args.timeline is not None:
        from bootmem.report.timeline import TimelineRecorder

        recorder = TimelineRecorder()

        def attach(allocator: FrameAllocator) -> None:
            recorder.attach(allocator)

        report = boot(image, machine=machine, dtb=dtb, observer=recorder, allocator_hook=attach)
    else:
        report = boot(image, machine=machine, dtb=dtb)
    timeline = recorder.timeline(report) if recorder is not None else None
    source = str(args.initrd) if args.initrd else "built-in example"

    def figures() -> None:
        rows = [row for row in summary_rows(report, source=source) if row[0] != "freed"]
        print("\n".join(f"{label:<12} {value}" for label, value, _owner in rows))
        print("\n".join(solaya_lines(report)))

    return show(args, report, timeline, title=f"Where Solaya's boot memory goes: {source}", figures=figures)


def solaya_lines(report: SolayaReport) -> list[str]:
    """What only a Solaya boot has: the held and released initrd, first fit, the differences."""

    def pages(n: int) -> str:
        return f"{format_size(n * PAGE_SIZE):>10}  ({n} pages)"

    lines = [
        f"{'held today':<12} {pages(report.held_forever_pages)}  "
        "reserved for the kernel's lifetime without the fix",
        f"{'released':<12} {pages(report.freed_pages)}  by the planned release_reserved after extract()",
    ]
    if report.first_fit_hole:
        lines.append(f"{'first fit':<12} {report.first_fit_hole}")
    lines += [f"{'note':<12} {note}" for note in report.notes]
    lines.append("")
    if not report.differences:
        lines.append("Solaya and Linux build the same rootfs from this image.")
    else:
        lines.append(f"{len(report.differences)} differences from Linux:")
        lines += [f"  {printable(d.path)}: {d.what}" for d in report.differences]
    return lines

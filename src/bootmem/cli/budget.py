"""`bootmem budget`: how much RAM an image needs to boot, and where it goes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bootmem.cli.inputs import BOOT_MAX_SIZE_HELP, add_max_size, max_size
from bootmem.cli.output import print_json
from bootmem.errors import UsageError
from bootmem.units import format_k, format_size, parse_size, parse_size_or_share


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``budget`` to the ``bootmem`` parser."""
    p = subparsers.add_parser(
        "budget",
        help="find the smallest RAM that boots an image, and where its memory goes",
        description=(
            "Boot IMAGE on modelled machines of different RAM sizes and report: the peak memory while "
            "unpacking and who holds it, what releasing the initrd gives back, and the smallest RAM that "
            "boots the image (bisected to 64 KiB: that size boots, 64 KiB less does not) with the limit "
            "that bites first - tmpfs's limit (half of the pages free when the allocator came up), the "
            "physical pages, the memory the kernel itself needs while unpacking (its allocations since "
            "mem_init and the decompressor's buffers, above the page allocator's watermarks), or the free "
            "memory init needs - both with the initrd released and with retain_initrd. A machine boots "
            "when unpacking succeeds, an init is found, the kernel's needs are met and --init-free is "
            "left free; every boot is the one `bootmem boot --mem SIZE` runs with the same options."
        ),
    )
    p.add_argument("image", type=Path, metavar="IMAGE")
    p.add_argument(
        "--arch",
        metavar="PROFILE",
        help="what the kernel holds as RAM grows: x86_64 (Debian 6.1's kernel under QEMU; the default, "
        "or the log's) or flat (the kernel image alone)",
    )
    p.add_argument(
        "--kernel-size",
        metavar="SIZE",
        help="the kernel's fixed footprint (default: the profile's, or fitted by --from-log)",
    )
    p.add_argument(
        "--rootfs-size",
        metavar="PCT|SIZE",
        help="tmpfs size limit: a percentage of the pages free when the allocator came up, as tmpfs's "
        "size=N%% (default 50%%, Linux's), or a fixed size",
    )
    p.add_argument("--cmdline", default="", metavar="STR", help="kernel command line (initramfs_async=0|1)")
    p.add_argument(
        "--from-log",
        type=Path,
        action="append",
        metavar="DMESG",
        help="a real kernel's boot log: its Memory:, RAMDISK: and Freeing initrd memory: lines "
        "calibrate the kernel's fixed footprint; give it twice, with logs at RAM sizes 128M apart "
        "or more, to fit the part that grows with RAM too",
    )
    p.add_argument(
        "--init-free",
        default="4M",
        metavar="SIZE",
        help="memory that must be free when init starts for the boot to count (default 4M)",
    )
    p.add_argument("--json", action="store_true", help="print the budget as JSON")
    add_max_size(p, BOOT_MAX_SIZE_HELP)
    real = p.add_argument_group("the real kernel (QEMU)")
    real.add_argument(
        "--confirm",
        action="store_true",
        help="boot a real kernel at the predicted minimum and one step below and say whether Linux "
        "agrees (the image is booted with bootmem verify's probe prepended, and budgeted so too)",
    )
    real.add_argument(
        "--real",
        action="store_true",
        help="bisect the smallest RAM with the real kernel alone, to --real-step (slow: a minute a boot)",
    )
    real.add_argument(
        "--real-step", default="1M", metavar="SIZE", help="the real bisection's granularity (default 1M)"
    )
    real.add_argument(
        "--parallel",
        type=int,
        default=2,
        metavar="N",
        help="real boots at once (default 2; QEMU's TCG keeps a core busy per boot)",
    )
    from bootmem.cli.verify import add_kernel_arguments

    add_kernel_arguments(real)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.real:
        return run_real(args)

    from bootmem.cli.boot import read_initrd
    from bootmem.cli.progress import progress_bar
    from bootmem.initramfs.image import DEFAULT_PIPE_LIMIT
    from bootmem.kernel.arch import profile
    from bootmem.mm.ram import MAX_RAM_SIZE
    from bootmem.report.budget import DEFAULT_STEP, calibrate, find_budget, parse_dmesg

    logs = tuple(
        parse_dmesg(path.read_text(encoding="utf-8", errors="replace"), where=str(path))
        for path in args.from_log or ()
    )
    # A log whose kernel no profile matches is calibrated flat: its whole footprint, fixed.
    arch = profile(args.arch or ((logs[0].arch or "flat") if logs else "x86_64"))
    if logs:
        if args.kernel_size is not None:
            raise UsageError("give --kernel-size or --from-log, not both")
        arch = calibrate(arch, list(logs))
    kernel_size = parse_size(args.kernel_size) if args.kernel_size is not None else arch.fixed
    share, size = parse_size_or_share(args.rootfs_size) if args.rootfs_size else (None, None)
    cap = max_size(args)
    image = bytes(read_initrd(args.image, MAX_RAM_SIZE, pipe_limit=cap or DEFAULT_PIPE_LIMIT))
    with progress_bar("budget", total=None) as bar:

        def progress(what: str, boots: int, expected: int | None) -> None:
            bar.update(description=what, completed=boots - 1, total=expected)

        def budget_of(image: bytes, arch: Any, kernel_size: int, logs: tuple[Any, ...]) -> Any:
            return find_budget(
                image,
                kernel_size=kernel_size,
                arch=arch,
                rootfs_share=share,
                rootfs_size=size,
                cmdline=args.cmdline,
                init_free=parse_size(args.init_free),
                step=DEFAULT_STEP,
                calibrations=logs,
                progress=progress,
                max_decompressed=cap,
            )

        budget = budget_of(image, arch, kernel_size, logs)
        confirmation = None
        if args.confirm:
            from bootmem.verify.kernel import find_kernel
            from bootmem.verify.threshold import RealMachine, confirm

            machine = RealMachine(
                image,
                find_kernel(args.kernel),
                cmdline=args.cmdline,
                accel=args.accel,
                timeout=args.timeout,
                parallel=_parallel(args),
            )

            def predict(found: Any) -> tuple[int, int]:
                # Calibrated by the real kernel's own log (or --from-log), for the probed image.
                progress("the model, for the image with the probe prepended", 1, None)
                fitted = calibrate(profile(found.arch or "flat"), [found]) if not logs else arch
                composed = budget_of(machine.composed, fitted, fitted.fixed, logs or (found,))
                return composed.released.min_ram, composed.released.step

            progress("booting the real kernel", 1, None)
            confirmation = confirm(machine, predict, calibration=logs[0] if logs else None)
    if args.json:
        document = budget.to_json()
        if confirmation is not None:
            document["confirm"] = confirmation.to_json()
        print_json(document)
    else:
        print(render(budget, source=str(args.image)))
        if confirmation is not None:
            print(render_confirmation(confirmation))
    return 0 if confirmation is None or confirmation.agree else 1


def _parallel(args: argparse.Namespace) -> int:
    if args.parallel < 1:
        raise UsageError(f"--parallel {args.parallel}: give at least 1")
    return int(args.parallel)


def render_confirmation(confirmation: Any) -> str:
    """``--confirm``'s lines: the model's minimum for the probed image, the real boots, the verdict."""
    lines = [
        "",
        f"confirm        the model's minimum with the probe prepended: {format_k(confirmation.predicted)}",
    ]
    if confirmation.calibration_boot is not None:
        boot = confirmation.calibration_boot
        lines.append(
            f"{'':<14} calibrated from a real boot with {format_k(boot.ram)} ({boot.seconds:.0f}s); "
            f"QEMU's firmware keeps {format_k(confirmation.hole)}"
        )
    for boot in (confirmation.at, confirmation.below):
        lines.append(f"{'':<14} Linux with {format_k(boot.ram)}: {boot.why} ({boot.seconds:.0f}s)")
    lines.append(f"{'':<14} {confirmation.verdict()}")
    return "\n".join(lines)


def run_real(args: argparse.Namespace) -> int:
    """``budget --real``: bisect the smallest RAM with the real kernel alone, with progress."""
    import time

    from bootmem.cli.progress import progress_bar
    from bootmem.report.budget import file_data_bytes
    from bootmem.verify.kernel import find_kernel
    from bootmem.verify.threshold import RealMachine, real_threshold

    step = parse_size(args.real_step)
    image = args.image.read_bytes()
    machine = RealMachine(
        image,
        find_kernel(args.kernel),
        cmdline=args.cmdline,
        accel=args.accel,
        timeout=args.timeout,
        parallel=_parallel(args),
    )
    # A bracket from the image: its file data plus a small kernel, to twice the data plus a large one.
    data = file_data_bytes(machine.composed)
    lo, hi = max(step, data + (32 << 20)), 2 * data + (256 << 20)
    started = time.monotonic()
    with progress_bar("budget --real", total=None) as bar:

        def progress(what: str, boots: int, expected: int | None) -> None:
            elapsed = time.monotonic() - started
            rounds = max(1, ((hi - lo) // step).bit_length() * 2 // 3)
            left = f", about {elapsed / boots * 2 * rounds:.0f}s in all" if boots else ""
            bar.update(description=f"{what} ({boots} boots, {elapsed:.0f}s{left})")

        threshold = real_threshold(machine, lo=lo, hi=hi, step=step, progress=progress)
    if args.json:
        print_json(threshold.to_json())
        return 0
    below = threshold.below
    print(f"image          {args.image}: {format_size(len(image))}, booted with the probe prepended")
    print(
        f"min RAM        {format_size(threshold.min_ram)}: {format_k(threshold.min_ram)} boots under Linux, "
        f"{format_k(threshold.min_ram - step)} does not ({below.why if below else 'not booted'}); "
        f"step {format_k(step)}, {len(threshold.boots)} boots in {time.monotonic() - started:.0f}s"
    )
    for boot in sorted(threshold.boots, key=lambda b: b.ram):
        print(f"{'':<14} {format_k(boot.ram):>10}: {boot.why} ({boot.seconds:.0f}s)")
    return 0


def render(budget: Any, *, source: str) -> str:
    """The budget for people: one figure per line, then the sentence that explains the answer."""
    from bootmem.report.budget import LIMITS

    def size(n: int) -> str:
        return format_size(n)

    released, retained = budget.released, budget.retained
    lines = [f"image          {source}: {size(budget.image_bytes)}, {size(budget.data_bytes)} of file data"]
    arch = budget.arch
    grows = (
        f"; struct pages ({arch.struct_page} B per page) and hash tables grow with RAM"
        if arch.struct_page
        else ""
    )
    lines.append(f"kernel         {size(budget.kernel_size)} fixed, {arch.name} profile{grows}")
    for c in budget.calibrations:
        lines.append(
            f"calibration    {c.reserved_bytes >> 10}K reserved at {c.ram_bytes >> 10}K RAM, "
            f"{c.initrd_bytes >> 10}K of it the initrd"
        )
    if budget.rootfs_size is not None:
        tmpfs = size(budget.rootfs_size)
    else:
        share = budget.rootfs_share if budget.rootfs_share is not None else 0.5
        tmpfs = f"{share:.0%} of the pages free when the allocator came up"
    lines.append(f"tmpfs limit    {tmpfs}; init needs {size(budget.init_free)} free")
    if arch.runtime or arch.watermarks:
        ram = released.min_ram
        lines.append(
            f"runtime        the kernel holds {size(arch.unpack_runtime_bytes(ram))} since mem_init while "
            f"unpacking and {size(arch.runtime_bytes(ram))} when init starts ({size(arch.freed_late)} of "
            f"init sections freed); the decompressor {size(budget.workspace)}; "
            f"{size(released.peak_free)} left free at the unpack's peak"
        )
    parts = ", ".join(f"{owner} {size(n)}" for owner, n in budget.peak.items() if n)
    lines.append(f"peak           {size(budget.peak_used)} in use while unpacking: {parts}")
    lines.append(
        f"release        freeing the initrd gives back {size(budget.freed)}; the image boots in "
        f"{size(budget.release_wins)} less RAM than with retain_initrd"
    )
    for label, result in (("min RAM", released), ("retain_initrd", retained)):
        lines.append(
            f"{label:<14} {size(result.min_ram)}: {format_k(result.min_ram)} boots, "
            f"{format_k(result.min_ram - result.step)} does not ({result.failure}); "
            f"step {format_k(result.step)}, {result.boots} boots"
        )
        lines.append(f"{'':<14} limit: {LIMITS[result.limit]}: {result.reason}")
    lines.append("")
    lines.append(
        f"Why: {released.reason}, so {size(released.min_ram)} is the least RAM that boots this image."
    )
    return "\n".join(lines)

"""`bootmem verify`: boot an image under a real Linux kernel in QEMU and in the model; compare."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bootmem.cli.output import print_json
from bootmem.units import format_k, parse_size


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``verify`` to the ``bootmem`` parser."""
    p = subparsers.add_parser(
        "verify",
        help="boot an image under a real Linux kernel in QEMU and compare it with the model",
        description=(
            "Prepend a probe segment (a static busybox whose init prints the rootfs Linux built) to "
            "IMAGE, boot it under a real kernel in QEMU, and boot the same bytes in the model on a "
            "machine calibrated from that kernel's own Memory: line. Prints the figures side by side "
            "(Memory:, the unpack messages, Freeing initrd memory:) and every path whose type, mode, "
            "owner, size, link count, device or content differs. Exits 0 when Linux and the model "
            "agree, 1 when they do not. With no IMAGE, verifies the built-in example."
        ),
    )
    p.add_argument("image", type=Path, nargs="?", metavar="IMAGE", help="initramfs image (default: example)")
    add_kernel_arguments(p)
    p.add_argument(
        "--mem",
        action="append",
        metavar="SIZE",
        help="QEMU's RAM (default 256M); repeat to boot several sizes, in parallel",
    )
    p.add_argument("--cmdline", default="", metavar="STR", help="more kernel command line words")
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    p.add_argument(
        "--console", type=Path, metavar="FILE", help="write the real kernel's serial console to FILE"
    )
    p.set_defaults(func=run)


def add_kernel_arguments(p: argparse.ArgumentParser) -> None:
    """``--kernel``, ``--accel`` and ``--timeout``: the real kernel and how QEMU runs it."""
    p.add_argument(
        "--kernel",
        type=Path,
        metavar="PATH",
        help="a bzImage, or a tree unpacked from a Debian kernel package "
        "(default: Debian's current amd64 kernel, fetched once with apt-get into ~/.cache/bootmem)",
    )
    p.add_argument(
        "--accel",
        choices=("tcg", "kvm", "auto"),
        default="tcg",
        help="QEMU accelerator: tcg (default), kvm, or auto (KVM when a guest proves it answers)",
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, metavar="SECONDS", help="kill a boot after this long"
    )


def run(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from bootmem.cli.progress import progress_bar
    from bootmem.kernel.example import example_image
    from bootmem.verify.compare import Verdict, verify_image
    from bootmem.verify.images import probe_segment
    from bootmem.verify.kernel import find_kernel

    image = args.image.read_bytes() if args.image is not None else example_image()
    sizes = [parse_size(m) for m in (args.mem or ["256M"])]
    kernel = find_kernel(args.kernel)
    probe = probe_segment(kernel.busybox)
    with progress_bar("verify", total=len(sizes)) as bar:

        def one(ram: int) -> Verdict:
            def progress(line: str, seconds: float) -> None:
                bar.update(description=f"{format_k(ram)} {seconds:5.1f}s {line[:60]}")

            verdict = verify_image(
                image,
                kernel,
                ram=ram,
                cmdline=args.cmdline,
                accel=args.accel,
                timeout=args.timeout,
                probe=probe,
                progress=progress,
            )
            bar.advance()
            return verdict

        with ThreadPoolExecutor(max_workers=2) as pool:
            verdicts = list(pool.map(one, sizes))
    if args.console is not None:
        args.console.write_text("\n\n".join(v.qemu.console for v in verdicts) + "\n")
    if args.json:
        print_json({"agree": all(v.agree for v in verdicts), "boots": [v.to_json() for v in verdicts]})
    else:
        source = str(args.image) if args.image is not None else "built-in example"
        print("\n\n".join(render(v, source=source) for v in verdicts))
    return 0 if all(v.agree for v in verdicts) else 1


def render(verdict: Any, *, source: str) -> str:
    """One verdict for people: the boot, the figures side by side, then each difference."""
    from bootmem.verify.compare import INFORMATIONAL

    k = verdict.kernel
    name = k.package or str(k.image)
    lines = [
        f"image      {source}, booted with the probe prepended",
        f"kernel     {name} ({k.arch}), QEMU {verdict.qemu.accel}, {verdict.qemu.seconds:.1f}s"
        + (", timed out" if verdict.qemu.timed_out else ""),
        f"RAM        {format_k(verdict.ram)} (the model boots the {verdict.linux.total_k}K Linux manages)",
        "",
        f"{'':<24}{'linux':>14}{'model':>14}",
    ]
    for figure, linux, model in verdict.figures():
        mark = (
            ""
            if linux == model
            else (
                "  (not judged: " + INFORMATIONAL[figure] + ")" if figure in INFORMATIONAL else "  <- differs"
            )
        )
        lines.append(f"{figure:<24}{linux:>14}{model:>14}{mark}")
    linux_paths = len(verdict.linux.tree) if verdict.linux.tree is not None else 0
    path_diffs = [d for d in verdict.differences if d.what.startswith("/")]
    lines.append(f"{'paths':<24}{linux_paths:>14}{len(verdict.model_tree):>14}")
    for d in path_diffs:
        lines.append(f"  {d.what}: linux {d.linux}, model {d.model}")
    other = [d for d in verdict.differences if not d.what.startswith("/") and d.what == "rootfs"]
    for d in other:
        lines.append(f"  rootfs: linux {d.linux}, model {d.model}")
    lines.append("")
    count = len(verdict.differences)
    lines.append(
        "verdict    Linux and the model agree" if verdict.agree else f"verdict    {count} difference(s)"
    )
    return "\n".join(lines)

#!/usr/bin/env python3
"""Build the inputs docs/guide.md works on, in a directory (default: the current one).

    python3 docs/guide_inputs.py [DIR] [--scale S]

writes ``tree/`` (the main archive's tree: ``init``, a userland, shared libraries, compressed
kernel modules, firmware, ``etc/``, the ``bin -> usr/bin`` symlinks), ``tree-small/`` (the same
without the ``amdgpu`` module and with another hostname), ``early/`` (CPU microcode for the
early archive) and ``dmesg.txt`` (the boot log of section 6).  File data is pseudo-random from a
fixed seed, about one part in seven zeros, so zstd shrinks it about as much as it shrinks real
binaries; ``--scale`` multiplies every file's size (1 gives the guide's 19 MiB image).
Standard library only; the same inputs every run.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
from pathlib import Path

KERNEL = "6.8.0-45-generic"
# path under tree/ -> size in bytes at scale 1
FILES = {
    "usr/bin/busybox": 2_200_000,
    "usr/lib/systemd/systemd": 1_900_000,
    "usr/lib/systemd/systemd-udevd": 1_100_000,
    "usr/lib/x86_64-linux-gnu/libc.so.6": 2_100_000,
    "usr/lib/x86_64-linux-gnu/libudev.so.1": 190_000,
    "usr/lib/x86_64-linux-gnu/libkmod.so.2": 110_000,
    "usr/lib/x86_64-linux-gnu/libsystemd-shared-255.so": 4_300_000,
    f"usr/lib/modules/{KERNEL}/kernel/drivers/amdgpu.ko.zst": 4_500_000,
    f"usr/lib/modules/{KERNEL}/kernel/drivers/nvme.ko.zst": 90_000,
    f"usr/lib/modules/{KERNEL}/kernel/drivers/virtio_blk.ko.zst": 30_000,
    f"usr/lib/modules/{KERNEL}/kernel/fs/ext4.ko.zst": 520_000,
    f"usr/lib/modules/{KERNEL}/modules.dep": 40_000,
    f"usr/lib/modules/{KERNEL}/modules.alias": 1_400_000,
    "usr/lib/firmware/amdgpu/navi10_gpu_info.bin": 1_000_000,
    "usr/lib/firmware/regulatory.db": 5_000,
    "usr/sbin/cryptsetup": 3_400_000,
}
EARLY = {
    "kernel/x86/microcode/AuthenticAMD.bin": 40960,
    "kernel/x86/microcode/GenuineIntel.bin": 122880,
}
SYMLINKS = {
    "bin": "usr/bin",
    "sbin": "usr/sbin",
    "lib": "usr/lib",
    "lib64": "usr/lib64",
    "etc/mtab": "/proc/mounts",
}
INIT = "#!/bin/sh\nmount -t proc proc /proc\nexec /usr/lib/systemd/systemd\n"
DMESG = (
    "[    0.000000] Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075) #45-Ubuntu SMP PREEMPT_DYNAMIC\n"
    "[    0.000000] Command line: BOOT_IMAGE=/vmlinuz-6.8.0-45-generic root=/dev/vda1 ro quiet\n"
    "[    0.004021] RAMDISK: [mem 0x7ed2a000-0x7fffdfff]\n"
    "[    0.041219] Memory: 1985324K/2096632K available (20480K kernel code, 4418K rwdata, 8812K rodata, "
    "4208K init, 4864K bss, 111308K reserved, 0K cma-reserved)\n"
    "[    1.234567] Freeing initrd memory: 19408K\n"
)
MTIME = 1_764_000_000  # 2025-11-24


def data(name: str, size: int) -> bytes:
    """``size`` pseudo-random bytes for ``name``, one 4 KiB block in seven zero."""
    rng = random.Random(name)
    blocks = []
    for i in range(0, size, 4096):
        n = min(4096, size - i)
        blocks.append(bytes(n) if rng.randrange(7) == 0 else rng.randbytes(n))
    return b"".join(blocks)


def write_tree(root: Path, files: dict[str, int], scale: float, *, hostname: str, skip: str = "") -> None:
    for path, size in files.items():
        if skip and skip in path:
            continue
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data(path, max(1, int(size * scale))))
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/hostname").write_text(hostname + "\n")
    (root / "etc/os-release").write_text('NAME="Ubuntu"\nVERSION_ID="24.04"\n')
    for directory in ("proc", "sys", "dev", "run", "tmp", "usr/lib64"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    for name, target in SYMLINKS.items():
        link = root / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    clamp_mtimes(root)


def clamp_mtimes(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (MTIME, MTIME), follow_symlinks=False)
    os.utime(root, (MTIME, MTIME))


def build(directory: Path, scale: float = 1.0) -> None:
    """Write ``tree/``, ``tree-small/``, ``early/`` and ``dmesg.txt`` under ``directory``, replacing them."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("tree", "tree-small", "early"):
        shutil.rmtree(directory / name, ignore_errors=True)
    write_tree(directory / "tree", FILES, scale, hostname="guide")
    write_tree(directory / "tree-small", FILES, scale, hostname="guide2", skip="amdgpu.ko")
    early = directory / "early"
    for path, size in EARLY.items():
        target = early / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data(path, size))
    clamp_mtimes(early)
    (directory / "dmesg.txt").write_text(DMESG)


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the inputs of docs/guide.md.")
    parser.add_argument("directory", nargs="?", default=".", type=Path)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every file's size (default 1)")
    args = parser.parse_args()
    build(args.directory, args.scale)


if __name__ == "__main__":
    main()

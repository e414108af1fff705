"""Seed corpora for the fuzz harnesses, built from interop-style images and device trees.

``python -m fuzz.seeds [DIR]`` writes ``DIR/<target>/<name>`` (default ``fuzz/corpus``) for the
targets ``image``, ``unpack``, ``extract`` and ``fdt``.  The images are small versions of what
the interop tests use: a tree archived by GNU cpio (newc and crc), bsdcpio and busybox,
compressed by every compressor's command-line tool and by bootmem's own compressors, and
distribution-shaped images (a raw early microcode archive, NUL padding, a compressed main
archive), plus hostile archives for extraction.  The device trees come from
:meth:`DeviceTree.build` (1- and 2-cell initrd, reservations) and from ``dtc``.

The functions return ``{name: bytes}`` so that the smoke tests can use the seeds without
writing them.  A peer tool or codec package (python-lzo) that is not installed is left out,
not an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.initramfs.corpus import PEER_COMPRESSORS, archive, claimed_header, pe_with_initrd

from bootmem.errors import MissingCodecError
from bootmem.fdt import DeviceTree
from bootmem.initramfs.compress import compress
from bootmem.initramfs.cpio import Entry, Format

TARGETS = ("image", "unpack", "extract", "fdt")
MTIME = 1_700_000_000

# Every compression bootmem writes, with the command-line tool that writes the same format.
_TOOLS = PEER_COMPRESSORS
_ARCHIVERS: dict[str, list[str]] = {
    "gnu-newc": ["cpio", "-o", "-H", "newc", "--null", "--quiet"],
    "gnu-crc": ["cpio", "-o", "-H", "crc", "--null", "--quiet"],
    "bsdcpio": ["bsdcpio", "-o", "--format", "newc", "-0", "--quiet"],
    "busybox": ["busybox", "cpio", "-o", "-H", "newc", "-0"],
}


def _run(cmd: list[str], data: bytes, cwd: str | None = None) -> bytes | None:
    if shutil.which(cmd[0]) is None:
        return None
    return subprocess.run(cmd, input=data, cwd=cwd, capture_output=True, check=True).stdout


def _small_tree(root: Path) -> None:
    """A few KB shaped like an initramfs: dirs, files, symlinks, a hardlink pair, a fifo."""
    for d in ("usr/bin", "usr/lib/modules", "etc", "dev", "dir with spaces"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "init").write_bytes(b"#!/bin/sh\nexec /usr/bin/sh\n")
    (root / "init").chmod(0o755)
    (root / "usr/bin/busybox").write_bytes(bytes(range(256)) * 6)
    os.link(root / "usr/bin/busybox", root / "usr/bin/sh")
    (root / "etc/fstab").write_bytes(b"proc /proc proc defaults 0 0\n" * 8)
    (root / "etc/empty").write_bytes(b"")
    (root / "usr/lib/modules/m.ko").write_bytes(b"\x7fELF" + b"\x00" * 300 + b"module" * 40)
    (root / "dir with spaces/ünï.txt").write_bytes(b"unicode\n")
    os.symlink("usr/bin", root / "bin")
    os.symlink("/usr/bin/sh", root / "usr/bin/abs-sh")
    os.symlink("nowhere", root / "dangling")
    os.mkfifo(root / "dev/initctl")
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (MTIME, MTIME), follow_symlinks=False)


def _archive(root: Path, tool: str) -> bytes | None:
    names = subprocess.run(["find", ".", "-print0"], cwd=root, capture_output=True, check=True).stdout
    listing = b"\0".join(sorted(names.rstrip(b"\0").split(b"\0"))) + b"\0"
    return _run(_ARCHIVERS[tool], listing, cwd=str(root))


def _microcode() -> bytes:
    return archive(
        *[
            (Entry("kernel", 0o40755, c_ino=1, c_nlink=2, c_mtime=MTIME), b""),
            (Entry("kernel/x86", 0o40755, c_ino=2, c_nlink=2, c_mtime=MTIME), b""),
            (Entry("kernel/x86/microcode", 0o40755, c_ino=3, c_nlink=2, c_mtime=MTIME), b""),
            (
                Entry("kernel/x86/microcode/GenuineIntel.bin", 0o100644, c_ino=4, c_filesize=64),
                b"\x01\x00\x00\x00microcode update" * 3 + b"\0" * 4,
            ),
        ]
    )


def image_seeds() -> dict[str, bytes]:
    """Images: peer archives raw and compressed, multi-segment distro shapes, crc, bootmem's own."""
    seeds: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        _small_tree(root)
        archives = {tool: _archive(root, tool) for tool in _ARCHIVERS}
    main = archives.get("gnu-newc") or _own_archive()
    crc = archives.get("gnu-crc") or _own_archive("crc")
    for tool, data in archives.items():
        if data is not None:
            seeds[f"raw-{tool}"] = data
    seeds["raw-bootmem-newc"] = _own_archive()
    seeds["raw-bootmem-crc"] = _own_archive("crc")
    early = _microcode()
    for name, cmd in _TOOLS.items():
        packed = _run(cmd, main)
        if packed is not None:
            seeds[f"{name}-tool"] = packed
            seeds[f"distro-{name}-tool"] = early + b"\0" * 12 + packed
        try:
            ours = compress(main, name)
        except MissingCodecError:  # python-lzo, the lzo extra, is not installed
            continue
        seeds[f"{name}-bootmem"] = ours
        seeds[f"distro-{name}-bootmem"] = early + b"\0" * 512 + ours
    seeds["crc-gzip"] = compress(crc, "gzip")
    seeds["two-members"] = compress(early, "zstd") + compress(main, "xz")
    seeds["two-archives-one-member"] = compress(early + b"\0" * 8 + main, "gzip")
    seeds["raw-then-raw"] = early + main
    seeds["early-only"] = early
    seeds["not-cpio"] = b"\x00\x00\x00\x00hsqs" + b"\xaa" * 60
    seeds["empty"] = b""  # a zero-length initrd: no initrd, as Linux
    # Directories nested 1,100 deep, compressed (16 KB): the model's tree, removed by the unpack
    # harness, is deeper than Python's recursion limit.
    seeds["nested-1100-directories-gzip"] = compress(
        archive(*[Entry("/".join(["n"] * k), 0o40755) for k in range(1, 1101)]), "gzip"
    )
    # A raw archive that ends inside a file's data: no error, and that file is left short.
    seeds["raw-cut-inside-data"] = cut_inside_data()
    seeds.update(_hostile_skips())
    seeds["odc"] = b"070707" + b"0" * 70
    # A unified kernel image: the initrd in a PE file's .initrd section.
    seeds["uki-gzip"] = pe_with_initrd(compress(main, "gzip"))
    # Issue 11's hostile input 6: NUL padding between members counted toward the bomb cap, and a
    # gzip member far above its compressed size (zeros compress about 1000x).
    seeds["hostile-padding-then-zeros-gzip"] = early + bytes(8192) + compress(bytes(4 << 20), "gzip")
    seeds["hostile-zeros-file-zstd"] = compress(archive((Entry("zeros", 0o100644), bytes(4 << 20))), "zstd")
    return seeds


def _hostile_skips() -> dict[str, bytes]:
    """Entries whose claimed body init/initramfs.c skips (issue 11, hostile 1): a c_namesize of
    0xffffffff and a symlink claiming 0xfffffff0 bytes, each followed by 8 MiB of zeros (more
    than the harnesses' caps), as zstd and gzip members and raw."""
    heads = {
        "namesize-ffffffff": claimed_header(b"", mode=0o100644, namesize=0xFFFFFFFF, filesize=0),
        "symlink-fffffff0": claimed_header(b"l\0", mode=0o120777, namesize=2, filesize=0xFFFFFFF0),
    }
    seeds: dict[str, bytes] = {}
    for kind, head in heads.items():
        body = head + bytes(8 << 20)
        seeds[f"hostile-skip-{kind}-zstd"] = compress(body, "zstd")
        seeds[f"hostile-skip-{kind}-gzip"] = compress(body, "gzip")
        seeds[f"hostile-skip-{kind}-raw"] = head + bytes(4096)
    return seeds


def cut_inside_data() -> bytes:
    """A raw archive cut 1,000 bytes into the data of a file of three pages (found by the
    unpack harness, which took the short file for a write error)."""
    whole = archive((Entry("big", 0o100644, c_mtime=MTIME), b"x" * 3 * 4096))
    return whole[: whole.index(b"big\0") + 4 + 1000]


def _own_archive(fmt: Format = "newc") -> bytes:
    return archive(
        *[
            (Entry(".", 0o40755, c_ino=1, c_nlink=3, c_mtime=MTIME), b""),
            (Entry("bin", 0o40755, c_ino=2, c_nlink=2, c_mtime=MTIME), b""),
            (Entry("bin/sh", 0o100755, c_ino=3, c_nlink=2, c_mtime=MTIME), b"#!busybox" * 30),
            (Entry("bin/ash", 0o100755, c_ino=3, c_nlink=2, c_mtime=MTIME), b"#!busybox" * 30),
            (Entry("init", 0o120777, c_ino=4, linkname="bin/sh", c_mtime=MTIME), b""),
            (Entry("dev", 0o40755, c_ino=5, c_nlink=2, c_mtime=MTIME), b""),
            (Entry("dev/console", 0o20600, c_ino=6, c_rdevmajor=5, c_rdevminor=1), b""),
            (Entry("dev/sda", 0o60660, c_ino=7, c_rdevmajor=8), b""),
            (Entry("run-fifo", 0o10644, c_ino=8), b""),
            (Entry("sock", 0o140644, c_ino=9), b""),
        ],
        format=fmt,
    )


def extract_seeds() -> dict[str, bytes]:
    """The image seeds, plus archives that try to write outside the destination."""
    hostile = {
        "dotdot": [(Entry("../escape", 0o100644), b"x")],
        "absolute": [(Entry("/tmp/abs-escape", 0o100644), b"x")],
        "symlink-dir-out": [
            (Entry("up", 0o120777, linkname=".."), b""),
            (Entry("up/escape", 0o100644), b"x"),
        ],
        "symlink-abs-then-write": [
            (Entry("etc", 0o120777, linkname="/etc"), b""),
            (Entry("etc/escape", 0o100644), b"x"),
        ],
        "symlink-file-then-write": [
            (Entry("f", 0o120777, linkname="../victim"), b""),
            (Entry("f", 0o100644), b"x"),
        ],
        "hardlink-after-symlink": [
            (Entry("a", 0o100644, c_ino=7, c_nlink=2), b"a"),
            (Entry("a", 0o120777, linkname="../victim"), b""),
            (Entry("b", 0o100644, c_ino=7, c_nlink=2), b"b"),
        ],
        "dir-replaced-by-symlink": [
            (Entry("d", 0o40755), b""),
            (Entry("d", 0o120777, linkname=".."), b""),
            (Entry("d/x", 0o100644), b"x"),
        ],
    }
    # Issue 11's hostile input 5: device numbers of 2^31 and more (OverflowError from os.makedev),
    # and a hardlink whose first name became a directory (a bare PermissionError).
    for kind, mode in {"c": 0o20600, "b": 0o60600, "p": 0o10600, "s": 0o140600}.items():
        hostile[f"rdev-{kind}-80000000"] = [
            Entry(f"dev/{kind}-major", mode, c_rdevmajor=0x8000_0000, c_rdevminor=1),
            Entry(f"dev/{kind}-minor", mode, c_rdevmajor=1, c_rdevminor=0xFFFF_FFFF),
        ]
    hostile["hardlink-first-name-became-dir"] = [
        (Entry("a", 0o100644, c_ino=5, c_nlink=2), b""),
        Entry("a", 0o40755),
        (Entry("b", 0o100644, c_ino=5, c_nlink=2), b"data"),
    ]
    # Hostile input 4: one entry of 1,100 components (RecursionError from os.makedirs) and
    # nested directories (cubic time), as deep as the harness's -max_len lets them be.
    hostile["deep-1100-components"] = [(Entry("/".join(["d"] * 1100) + "/f", 0o100644), b"deep")]
    hostile["nested-60-directories"] = [Entry("/".join(["n"] * k), 0o40755) for k in range(1, 61)]
    seeds = dict(image_seeds())
    for name, entries in hostile.items():
        seeds[f"hostile-{name}"] = archive(*entries)
    return seeds


def fdt_seeds() -> dict[str, bytes]:
    """Device trees from :meth:`DeviceTree.build` and from ``dtc``."""
    gib = 1 << 30
    seeds = {
        "build-plain": DeviceTree.build(memory=[(0x4000_0000, 0x4000_0000 + gib)]),
        "build-initrd-2cells": DeviceTree.build(
            memory=[(0x4000_0000, 0x5000_0000)], initrd=(0x4800_0000, 0x4810_0000), bootargs="console=ttyS0"
        ),
        "build-initrd-1cell": DeviceTree.build(
            memory=[(0x8000_0000, 0x9000_0000)], initrd=(0x8800_0000, 0x8800_1000), initrd_cells=1
        ),
        "build-reserved": DeviceTree.build(
            memory=[(0x4000_0000, 0x5000_0000), (0x6000_0000, 0x7000_0000)],
            memreserve=[(0x4000_0000, 0x4001_0000)],
            reserved_memory=[("fw@4f000000", 0x4F00_0000, 0x4F10_0000)],
            address_cells=1,
            size_cells=1,
        ),
    }
    dts = """/dts-v1/;
/memreserve/ 0x40000000 0x10000;
/ {
    #address-cells = <2>; #size-cells = <2>;
    model = "qemu,virt";
    memory@40000000 { device_type = "memory"; reg = <0x0 0x40000000 0x0 0x10000000>; };
    memory@80000000 { device_type = "memory"; reg = <0x0 0x80000000 0x0 0x0>; status = "disabled"; };
    reserved-memory {
        #address-cells = <2>; #size-cells = <2>; ranges;
        opensbi@40000000 { reg = <0x0 0x40000000 0x0 0x80000>; no-map; };
        dyn { size = <0x0 0x100000>; };
    };
    chosen {
        bootargs = "root=/dev/ram0 retain_initrd";
        linux,initrd-start = <0x48000000>;
        linux,initrd-end = <0x0 0x48100000>;
    };
};
"""
    # Hostile machines: RAM bootmem refuses to model (2^50 bytes, 2^50 apart, at the top bit),
    # a totalsize past the 16 MiB bootmem reads, and a blob padded past its totalsize as QEMU's.
    seeds["hostile-memory-2-50"] = DeviceTree.build(memory=[(0x8000_0000, 0x8000_0000 + (1 << 50))])
    seeds["hostile-memory-apart"] = DeviceTree.build(memory=[(0, 1 << 30), (1 << 50, (1 << 50) + (1 << 30))])
    seeds["hostile-memory-top-bit"] = DeviceTree.build(memory=[(1 << 63, (1 << 63) + (1 << 30))])
    plain = seeds["build-plain"]
    seeds["hostile-totalsize"] = plain[:4] + (0xFFFF_FFF0).to_bytes(4, "big") + plain[8:]
    seeds["padded"] = plain + bytes(4096)
    # Magic-less seeds: property values for fuzz_fdt's sequential writer, cut at b"\xff\xfe".
    values = [
        (2).to_bytes(4, "big"),
        (1).to_bytes(4, "big"),
        (0x4000_0000).to_bytes(8, "big") + (0x1000_0000).to_bytes(4, "big"),
        b"okay\0",
        b"memory\0",
        (0x4800_0000).to_bytes(4, "big"),
        (0x4810_0000).to_bytes(8, "big"),
        b"console=ttyS0 initramfs_async=0\0",
        (1).to_bytes(4, "big"),
        (1).to_bytes(4, "big"),
        (0x4F00_0000).to_bytes(4, "big") + (0x10_0000).to_bytes(4, "big"),
        b"disabled\0",
        b"memory\0",
        (0x6000_0000).to_bytes(8, "big") + (0x100_0000).to_bytes(4, "big"),
        (0x4000_0000).to_bytes(8, "big") + (0x1_0000).to_bytes(8, "big"),
    ]
    seeds["values-full"] = b"\xff\xfe".join(values)
    seeds["values-short"] = b"\xff\xfe".join(values[:3])
    compiled = _run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-"], dts.encode())
    if compiled is not None:
        seeds["dtc-qemu"] = compiled
    return seeds


def seeds_for(target: str) -> dict[str, bytes]:
    """The seeds of harness ``target`` (one of :data:`TARGETS`)."""
    if target in ("image", "unpack"):
        return image_seeds()
    if target == "extract":
        return extract_seeds()
    if target == "fdt":
        return fdt_seeds()
    raise ValueError(f"unknown fuzz target {target!r} (one of {', '.join(TARGETS)})")


def write(directory: str | os.PathLike[str], targets: tuple[str, ...] = TARGETS) -> dict[str, int]:
    """Write the seeds of ``targets`` under ``directory/<target>/``; return the count per target."""
    counts: dict[str, int] = {}
    for target in targets:
        out = Path(directory) / target
        out.mkdir(parents=True, exist_ok=True)
        seeds = seeds_for(target)
        for name, data in seeds.items():
            (out / f"seed-{name}").write_bytes(data)
        counts[target] = len(seeds)
    return counts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = args[0] if args else str(Path(__file__).parent / "corpus")
    for target, n in write(directory).items():
        print(f"{target}: {n} seeds in {Path(directory) / target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

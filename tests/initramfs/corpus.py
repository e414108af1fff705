"""Realistic trees and images made by the real tools, for the whole test suite.

Plain functions (the fixtures in ``conftest.py`` wrap them):

- :func:`archive` (with :func:`f`, :func:`d`, :func:`sym`, :func:`raw_entry`): the one in-memory
  archive builder;
- :func:`build_tree`: a directory shaped like an initramfs root - nested dirs, empty and
  multi-MB files, symlinks (relative, absolute, dangling), hardlink groups, a fifo, device
  nodes when root, odd names (spaces, UTF-8, a newline, a leading dash), fixed mtimes;
- :func:`peer_archive`: a cpio archive of a tree written by GNU cpio, bsdcpio or busybox;
- :func:`peer_compress`: bytes compressed by the real command-line tool;
- :func:`distro_image`: a raw early segment (CPU microcode) + NUL padding + a compressed main
  archive, as dracut and initramfs-tools build them, with the layout it was built with.

Tools are found through ``tests.conftest.require_tool`` (skip, or fail under CI).
"""

from __future__ import annotations

import io
import os
import random
import stat
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bootmem.initramfs.cpio import TRAILER, CpioWriter, Entry, Format, pack_header, pad4
from tests.conftest import require_tool

PeerTool = Literal["gnu-newc", "gnu-crc", "bsdcpio", "busybox"]
PEER_TOOLS: tuple[PeerTool, ...] = ("gnu-newc", "gnu-crc", "bsdcpio", "busybox")
#: The compressions with a command-line tool, and the command that writes each as the kernel wants it.
PEER_COMPRESSORS: dict[str, list[str]] = {
    "gzip": ["gzip", "-9", "-n", "-c"],
    "bzip2": ["bzip2", "-9", "-c"],
    "xz": ["xz", "--check=crc32", "-c"],
    "lzma": ["lzma", "-c"],
    "lz4": ["lz4", "-l", "-q", "-c"],
    "zstd": ["zstd", "-q", "-c"],
    "lzo": ["lzop", "-q", "-c"],
}
MTIME = 1_700_000_000  # every entry's mtime (2023-11-14)
MICROCODE_NAME = "kernel/x86/microcode/GenuineIntel.bin"

# Names an initramfs really holds, plus the ones that break naive tools.
_DIRS = (
    "usr/bin",
    "usr/sbin",
    "usr/lib/modules/6.1.0-13-amd64/kernel/drivers/net/ethernet/intel",
    "usr/lib/modules/6.1.0-13-amd64/kernel/drivers/block",
    "usr/lib/modules/6.1.0-13-amd64/kernel/fs/ext4",
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/firmware/i915",
    "etc/udev/rules.d",
    "scripts/local-top",
    "var/lib/empty",
    "dev",
    "proc",
    "sys",
    "run",
    "dir with spaces",
    "ünïcödé/日本語",
)


Member = Entry | tuple[Entry, bytes]


def archive(*members: Member, format: Format = "newc") -> bytes:
    """One cpio archive of ``members`` (an Entry, or an Entry and its data), trailer included.

    This is the test suite's one in-memory archive builder; every ``c_filesize`` is taken from
    the data (:class:`CpioWriter`'s rule).
    """
    out = io.BytesIO()
    with CpioWriter(out, format=format) as w:
        for member in members:
            entry, data = member if isinstance(member, tuple) else (member, b"")
            w.add(entry, data)
    return out.getvalue()


def f(name: str, data: bytes = b"", mode: int = 0o644, **fields: int) -> tuple[Entry, bytes]:
    """A regular file entry (mtime :data:`MTIME` unless given) and its data."""
    fields.setdefault("c_mtime", MTIME)
    return Entry(name, stat.S_IFREG | mode, **fields), data


def d(name: str, mode: int = 0o755, **fields: int) -> Entry:
    """A directory entry (nlink 2, mtime :data:`MTIME` unless given)."""
    fields.setdefault("c_mtime", MTIME)
    fields.setdefault("c_nlink", 2)
    return Entry(name, stat.S_IFDIR | mode, **fields)


def sym(name: str, target: str, **fields: int) -> Entry:
    """A symlink entry to ``target`` (mtime :data:`MTIME` unless given)."""
    fields.setdefault("c_mtime", MTIME)
    return Entry(name, stat.S_IFLNK | 0o777, linkname=target, **fields)


def raw_entry(
    name: bytes,
    *,
    namesize: int,
    data: bytes = b"",
    mode: int = stat.S_IFREG | 0o644,
    entry: Entry | None = None,
) -> bytes:
    """A newc entry written byte by byte, with a ``c_namesize`` that need not match ``name``
    (the writer refuses such entries; the kernel meets them).  The header's other fields are
    ``entry``'s when given (its name and mode then ignored for ``name`` and ``mode``), else
    zero."""
    header = pack_header(entry or Entry("x", mode), namesize=namesize, filesize=len(data))
    body = name + b"\0" * pad4(len(header) + len(name))
    return header + body + data + b"\0" * pad4(len(data))


def raw_archive(*members: bytes) -> bytes:
    """``members`` (from :func:`raw_entry`) followed by the trailer."""
    trailer = TRAILER.encode() + b"\0"
    return b"".join(members) + raw_entry(trailer, namesize=len(trailer))


def claimed_header(name: bytes, *, mode: int, namesize: int, filesize: int) -> bytes:
    """A newc header claiming ``namesize`` and ``filesize``, then ``name`` and nothing else: the
    start of an entry whose claimed body the caller supplies, or leaves out (hostile claims of
    up to 4 GiB)."""
    return pack_header(Entry("x", mode, c_nlink=1), namesize=namesize, filesize=filesize) + name


def pe_with_initrd(initrd: bytes) -> bytes:
    """A minimal PE/COFF file whose one section, ``.initrd``, holds ``initrd``: the layout of a
    unified kernel image, without the stub's code."""
    pe = bytearray(0x200)
    pe[:2] = b"MZ"
    struct.pack_into("<I", pe, 0x3C, 0x80)  # e_lfanew
    pe[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<HHIIIHH", pe, 0x84, 0x8664, 1, 0, 0, 0, 0, 0)  # machine, one section
    struct.pack_into("<8sIIII", pe, 0x98, b".initrd", len(initrd), 0x1000, len(initrd), 0x200)
    return bytes(pe) + initrd


def _content(rng: random.Random, size: int) -> bytes:
    """Data that compresses like real binaries: runs of random bytes and repeated text."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        n = min(left, rng.randint(256, 64 * 1024))
        if rng.random() < 0.5:
            parts.append(rng.randbytes(n))
        else:
            word = rng.randbytes(rng.randint(4, 64))
            parts.append((word * (n // len(word) + 1))[:n])
        left -= n
    return b"".join(parts)


def build_tree(
    root: Path, *, files: int = 300, big_mb: int = 4, devices: bool = os.geteuid() == 0, seed: int = 1
) -> Path:
    """Fill directory ``root`` (created if missing) with a realistic initramfs tree; return it.

    ``files`` regular files spread over nested directories (about 10% empty, a few KB typical),
    one file of ``big_mb`` MiB and one of half that, symlinks, two hardlink groups, a fifo,
    char and block device nodes when ``devices``, and odd names.  Every mtime is :data:`MTIME`.
    The result depends only on the arguments.
    """
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for d in _DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(files):
        d = _DIRS[i % 10] if i % 7 else _DIRS[rng.randrange(len(_DIRS))]
        if d in ("dev", "proc", "sys", "run"):
            d = "usr/lib/x86_64-linux-gnu"
        size = 0 if i % 10 == 3 else int(rng.paretovariate(1.2) * 600)
        (root / d / f"file{i:04d}.{('so', 'ko', 'rules', 'sh')[i % 4]}").write_bytes(
            _content(rng, min(size, 512 * 1024))
        )
    if big_mb:
        (root / "usr/lib/firmware/i915/big.bin").write_bytes(_content(rng, big_mb << 20))
        (root / "usr/lib/firmware/i915/half.bin").write_bytes(_content(rng, big_mb << 19))
    busybox = root / "usr/bin/busybox"
    busybox.write_bytes(_content(rng, 300_000))
    busybox.chmod(0o755)
    for name in ("sh", "mount", "switch_root"):  # a hardlink group of 4
        os.link(busybox, root / "usr/bin" / name)
    rules = root / "etc/udev/rules.d/50-udev-default.rules"  # a hardlink group of 2
    rules.write_bytes(_content(rng, 5000))
    os.link(rules, root / "etc/udev/rules.d/99-copy.rules")
    os.symlink("usr/bin", root / "bin")
    os.symlink("usr/lib", root / "lib")
    os.symlink("../usr/bin/busybox", root / "usr/sbin/init")
    os.symlink("/usr/bin/sh", root / "usr/sbin/absolute-sh")
    os.symlink("nowhere/missing", root / "dangling")
    os.mkfifo(root / "run/initctl")
    if devices:
        os.mknod(root / "dev/console", 0o600 | stat.S_IFCHR, os.makedev(5, 1))
        os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(root / "dev/sda", 0o660 | stat.S_IFBLK, os.makedev(8, 0))
    odd = {
        "dir with spaces/file name.txt": b"spaces\n",
        "ünïcödé/日本語/ファイル.txt": b"unicode\n",
        "new\nline": b"newline in the name\n",
        "-leading-dash": b"dash\n",
        "usr/bin/setuid-helper": b"#!/bin/sh\n",
    }
    for name, data in odd.items():
        (root / name).write_bytes(data)
    (root / "usr/bin/setuid-helper").chmod(0o4755)
    (root / "init").write_bytes(b"#!/bin/sh\nexec /usr/sbin/init\n")
    (root / "init").chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (MTIME, MTIME), follow_symlinks=False)
    os.utime(root, (MTIME, MTIME))
    return root


def _file_list(tree: Path) -> bytes:
    """``find . -print0 | sort -z`` of ``tree``: the names cpio is fed, as dracut feeds them."""
    found = subprocess.run(["find", ".", "-print0"], cwd=tree, capture_output=True, check=True).stdout
    return b"\0".join(sorted(found.rstrip(b"\0").split(b"\0"))) + b"\0"


def peer_archive(tree: Path, tool: PeerTool) -> bytes:
    """``tree`` archived by a real tool: GNU ``cpio -o -H newc|crc``, ``bsdcpio -o --format newc``
    or ``busybox cpio -o -H newc``, fed ``find . -print0 | sort -z``."""
    commands = {
        "gnu-newc": [require_tool("cpio"), "-o", "-H", "newc", "--null", "--quiet"],
        "gnu-crc": [require_tool("cpio"), "-o", "-H", "crc", "--null", "--quiet"],
        "bsdcpio": [require_tool("bsdcpio"), "-o", "--format", "newc", "-0", "--quiet"],
        "busybox": [require_tool("busybox"), "cpio", "-o", "-H", "newc", "-0"],
    }
    return subprocess.run(
        commands[tool], cwd=tree, input=_file_list(tree), capture_output=True, check=True
    ).stdout


def peer_compress(data: bytes, name: str) -> bytes:
    """``data`` compressed by the real command-line tool for ``name`` (see :data:`PEER_COMPRESSORS`)."""
    if name == "none":
        return data
    cmd = PEER_COMPRESSORS[name]
    exe = require_tool(cmd[0])
    return subprocess.run([exe, *cmd[1:]], input=data, capture_output=True, check=True).stdout


def peer_list(archive: bytes) -> list[str]:
    """The names GNU ``cpio -t`` lists for the first archive of ``archive``, split on newlines.

    A name holding a newline comes out as two lines, so compare with ``"\\n".join(names)``.
    """
    out = subprocess.run(
        [require_tool("cpio"), "-t", "--quiet"], input=archive, capture_output=True, check=True
    ).stdout
    return os.fsdecode(out).split("\n")[:-1]


def cpio_end(archive: bytes) -> int:
    """Where a tool's archive really ends: right after its trailer's padding (tools pad further)."""
    body = archive.rstrip(b"\0")
    assert body.endswith(b"TRAILER!!!"), "not a cpio archive ending in a trailer"
    return (len(body) + 1 + 3) & ~3


@dataclass(frozen=True, slots=True)
class DistroImage:
    """An image and how it was built: ``early`` and ``main`` are the uncompressed archives."""

    data: bytes
    early: bytes
    main: bytes
    compression: str
    main_offset: int
    main_end: int

    @property
    def early_end(self) -> int:
        return cpio_end(self.early)


def distro_image(
    tree: Path,
    *,
    compression: str = "zstd",
    tool: PeerTool = "gnu-newc",
    microcode: bytes = b"\x01\x00\x00\x00microcode update" * 512,
    padding: int = 512,
) -> DistroImage:
    """An image as distributions build it: a raw early cpio holding
    :data:`MICROCODE_NAME` (written by GNU cpio, which pads it to 512 bytes), ``padding`` more
    NULs, then ``tree`` archived by ``tool`` and compressed by the real ``compression`` tool."""
    with tempfile.TemporaryDirectory() as tmp:
        early_root = Path(tmp)
        (early_root / MICROCODE_NAME).parent.mkdir(parents=True)
        (early_root / MICROCODE_NAME).write_bytes(microcode)
        for dirpath, dirnames, filenames in os.walk(early_root, topdown=False):
            for name in filenames + dirnames:
                os.utime(os.path.join(dirpath, name), (MTIME, MTIME))
        early = peer_archive(early_root, "gnu-newc")
    main = peer_archive(tree, tool)
    packed = peer_compress(main, compression)
    head = early + b"\0" * padding
    return DistroImage(
        data=head + packed,
        early=early,
        main=main,
        compression=compression,
        main_offset=len(head),
        main_end=len(head) + len(packed),
    )

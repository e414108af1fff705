"""Builders for the kernel tests: small cpio archives made in memory, and a small machine."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from bootmem.fs.tmpfs import Tmpfs
from bootmem.initramfs.cpio import CpioWriter, Entry, pack_header, pad4
from bootmem.kernel.boot import Machine
from bootmem.mm import PageAllocator
from tests.initramfs import corpus

MTIME = 1_700_000_000
MACHINE = Machine(ram_size=64 << 20)
#: A command line that keeps unpacking in the boot thread: deterministic tests.
SYNC = "initramfs_async=0"

Member = Entry | tuple[Entry, bytes]


def f(name: str, data: bytes = b"", mode: int = 0o644, **fields: int) -> tuple[Entry, bytes]:
    """A regular file entry and its data."""
    fields.setdefault("c_mtime", MTIME)
    return Entry(name, stat.S_IFREG | mode, **fields), data


def d(name: str, mode: int = 0o755, **fields: int) -> Entry:
    fields.setdefault("c_mtime", MTIME)
    fields.setdefault("c_nlink", 2)
    return Entry(name, stat.S_IFDIR | mode, **fields)


def sym(name: str, target: str, **fields: int) -> Entry:
    fields.setdefault("c_mtime", MTIME)
    return Entry(name, stat.S_IFLNK | 0o777, linkname=target, **fields)


def archive(*members: Member, format: str = "newc") -> bytes:
    """One cpio archive (ending in its trailer) of ``members``, as bytes."""
    out = io.BytesIO()
    with CpioWriter(out, format=format) as w:  # type: ignore[arg-type]
        for member in members:
            entry, data = member if isinstance(member, tuple) else (member, b"")
            w.add(entry, data)
    return out.getvalue()


def raw_entry(name: bytes, *, namesize: int, data: bytes = b"", mode: int = stat.S_IFREG | 0o644) -> bytes:
    """A newc entry written byte by byte, with a ``c_namesize`` that need not match ``name``."""
    header = pack_header(Entry("x", mode), namesize=namesize, filesize=len(data))
    body = name + b"\0" * pad4(len(header) + len(name))
    return header + body + data + b"\0" * pad4(len(data))


def fresh_fs(ram: int = 64 << 20, limit: int | None = None) -> Tmpfs:
    return Tmpfs(PageAllocator(base=0, size=ram), size_limit=limit)


def small_image() -> bytes:
    """A few directories, files (one of three pages), a symlink and a hardlink pair."""
    return archive(
        d("bin"),
        d("etc"),
        f("init", b"#!/bin/sh\nexec /bin/sh\n", 0o755),
        f("bin/sh", bytes(range(256)) * 40, 0o755),  # 10240 bytes: 3 pages
        sym("bin/ash", "sh"),
        f("etc/a", b"", c_ino=9, c_nlink=2),
        f("etc/b", b"linked data\n", c_ino=9, c_nlink=2),
        f("etc/hostname", b"small\n"),
    )


@pytest.fixture(scope="session")
def kernel_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small realistic tree (see :func:`corpus.build_tree`), built once."""
    return corpus.build_tree(tmp_path_factory.mktemp("kernel-corpus") / "root", files=120, big_mb=1)


def dts(
    *,
    initrd: tuple[int, int] | None,
    cells: int = 2,
    memory: tuple[int, int] = (0x4000_0000, 0x4400_0000),
    memreserve: tuple[int, int] | None = None,
    bootargs: str = SYNC,
) -> str:
    """Device tree source for ``dtc``: RAM, ``/chosen`` with the initrd in ``cells`` cells."""

    def cell(value: int) -> str:
        return f"<{value:#x}>" if cells == 1 else f"<{value >> 32:#x} {value & 0xFFFF_FFFF:#x}>"

    start, end = memory
    size = end - start
    reserve = f"/memreserve/ {memreserve[0]:#x} {memreserve[1] - memreserve[0]:#x};\n" if memreserve else ""
    chosen = f'\t\tbootargs = "{bootargs}";\n'
    if initrd is not None:
        chosen += f"\t\tlinux,initrd-start = {cell(initrd[0])};\n\t\tlinux,initrd-end = {cell(initrd[1])};\n"
    return (
        f"/dts-v1/;\n{reserve}/ {{\n\t#address-cells = <2>;\n\t#size-cells = <2>;\n"
        f'\tmodel = "test,board";\n\tcompatible = "test,board";\n'
        f"\tchosen {{\n{chosen}\t}};\n"
        f'\tmemory@{start:x} {{\n\t\tdevice_type = "memory";\n'
        f"\t\treg = <{start >> 32:#x} {start & 0xFFFF_FFFF:#x} {size >> 32:#x} {size & 0xFFFF_FFFF:#x}>;\n"
        f"\t}};\n}};\n"
    )


def compile_dts(source: str) -> bytes:
    """``dtc -I dts -O dtb`` of ``source``."""
    import subprocess

    from tests.conftest import require_tool

    return subprocess.run(
        [require_tool("dtc"), "-q", "-I", "dts", "-O", "dtb"],
        input=source.encode(),
        capture_output=True,
        check=True,
    ).stdout

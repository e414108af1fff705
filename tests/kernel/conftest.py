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

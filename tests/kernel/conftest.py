"""Fixtures for the kernel tests: small images (made with :mod:`tests.initramfs.corpus`), a small machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootmem.fs.tmpfs import Tmpfs
from bootmem.kernel.boot import Machine
from bootmem.mm import PageAllocator
from tests.initramfs import corpus

# The kernel tests build their archives with the suite's one builder.
from tests.initramfs.corpus import MTIME, archive, d, f, raw_entry, sym  # noqa: F401

MACHINE = Machine(ram_size=64 << 20)
#: A command line that keeps unpacking in the boot thread: deterministic tests.
SYNC = "initramfs_async=0"


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

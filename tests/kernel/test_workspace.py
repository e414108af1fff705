"""The decompressors' buffers, read from headers the real compressors write.

zstd's window and xz's dictionary are checked against what ``zstd -lv`` and ``xz -lvv`` say of the
same file; the fixed sizes against Linux 6.1's ``lib/decompress_*.c`` constants.
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest

from bootmem.kernel.boot import init_rootfs
from bootmem.kernel.unpack import unpack_to_rootfs
from bootmem.kernel.workspace import UNPACK_BUFFERS, member_workspace
from bootmem.mm import PAGE_SIZE, PageAllocator
from tests.conftest import require_tool
from tests.report.conftest import make_image

DATA = random.Random(11).randbytes(300_000)


def compress(tmp_path: Path, argv: list[str], name: str, data: bytes = DATA, *, stdin: bool = False) -> Path:
    """``data`` compressed by ``argv`` (reading a file, or stdin so the size is unknown) into ``name``."""
    out = tmp_path / name
    if stdin:
        out.write_bytes(subprocess.run(argv, input=data, capture_output=True, check=True).stdout)
    else:
        src = tmp_path / "data.bin"
        src.write_bytes(data)
        out.write_bytes(subprocess.run([*argv, str(src)], capture_output=True, check=True).stdout)
    return out


@pytest.mark.parametrize(("level", "stdin"), [(3, True), (19, True), (3, False)])
def test_zstd_window_is_what_zstd_lists(tmp_path: Path, level: int, stdin: bool) -> None:
    zstd = require_tool("zstd")
    path = compress(tmp_path, [zstd, "-q", f"-{level}", "-c"], "a.zst", stdin=stdin)
    listed = subprocess.run([zstd, "-lv", str(path)], capture_output=True, text=True, check=True).stdout
    window = int(re.search(r"Window Size: .*\((\d+) B\)", listed).group(1))  # type: ignore[union-attr]
    block = min(window, 128 << 10)
    expected = (128 << 10) + -(-((96 << 10) + 2 * block + window + 64) // PAGE_SIZE) * PAGE_SIZE
    assert member_workspace("zstd", path.read_bytes()[:64]) == expected


@pytest.mark.parametrize("filters", [["--lzma2=dict=1MiB"], ["--x86", "--lzma2=dict=3MiB"], []])
def test_xz_dictionary_is_what_xz_lists(tmp_path: Path, filters: list[str]) -> None:
    xz = require_tool("xz")
    path = compress(tmp_path, [xz, "--check=crc32", *filters, "-c"], "a.xz")
    listed = subprocess.run([xz, "-lvv", str(path)], capture_output=True, text=True, check=True).stdout
    value, unit = re.search(r"--lzma2=dict=(\d+)(KiB|MiB)", listed).groups()  # type: ignore[union-attr]
    dictionary = int(value) << (20 if unit == "MiB" else 10)
    assert member_workspace("xz", path.read_bytes()[:64]) == (32 << 10) + dictionary


@pytest.mark.parametrize("level", [1, 9])
def test_bzip2_block_size_level(tmp_path: Path, level: int) -> None:
    path = compress(tmp_path, [require_tool("bzip2"), f"-{level}", "-c"], "a.bz2")
    expected = (44 << 10) + -(-400_000 * level // PAGE_SIZE) * PAGE_SIZE
    assert member_workspace("bzip2", path.read_bytes()[:64]) == expected


def test_lzma_dictionary_and_probabilities(tmp_path: Path) -> None:
    # xz writes the .lzma header with an unknown size: the window is the whole dictionary.
    path = compress(tmp_path, [require_tool("xz"), "--format=lzma", "--lzma1=dict=1MiB", "-c"], "a.lzma")
    probs = -(-((1846 + (0x300 << 3)) * 2) // PAGE_SIZE) * PAGE_SIZE  # lc=3, lp=0
    assert member_workspace("lzma", path.read_bytes()[:64]) == (1 << 20) + probs


def test_fixed_buffers() -> None:
    assert member_workspace("lz4", b"") == 8 << 20
    assert member_workspace("lzo", b"") == 256 << 10
    assert member_workspace("gzip", b"") == (16 << 10) + (40 << 10)
    assert member_workspace("none", b"") == 0


def test_an_image_holds_its_largest_members_buffers() -> None:
    small = make_image({"a": DATA}, compression="gzip")
    raw = make_image({"b": b"x"}, compression="none")
    lz4 = make_image({"c": DATA}, compression="lz4")

    def workspace(image: bytes) -> int:
        fs = init_rootfs(PageAllocator(base=0, size=64 << 20))
        return unpack_to_rootfs(image, fs).workspace

    assert workspace(raw) == UNPACK_BUFFERS
    assert workspace(raw + small) == UNPACK_BUFFERS + member_workspace("gzip", b"")
    assert workspace(small + lz4 + small) == UNPACK_BUFFERS + member_workspace("lz4", b"")

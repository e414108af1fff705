"""Regressions found by fuzzing the image reader and host extraction (fuzz/).

Each test names the bug and holds the smallest input that showed it.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

import bootmem.initramfs
from bootmem.errors import ExtractError
from bootmem.initramfs.cpio import TRAILER, Entry, pack_header, pad4
from bootmem.initramfs.extract import extractall


def _member(name: bytes, data: bytes = b"", mode: int = stat.S_IFREG | 0o644) -> bytes:
    """A newc member whose ``c_namesize`` covers ``name`` exactly (it may hold NULs)."""
    header = pack_header(Entry("x", mode), namesize=len(name), filesize=len(data))
    return header + name + b"\0" * pad4(len(header) + len(name)) + data + b"\0" * pad4(len(data))


def _archive(*members: bytes) -> bytes:
    return b"".join(members) + _member(TRAILER.encode() + b"\0")


def test_a_name_with_a_nul_inside_ends_at_the_nul(tmp_path: Path) -> None:
    # c_namesize may cover bytes after the name's NUL; the name ran to c_namesize - 1, NULs and
    # all, and extraction died in os.lstat with "ValueError: embedded null byte".
    image = _archive(_member(b"file\0../junk\0", b"data"))
    with bootmem.initramfs.open(image) as img:
        assert img.getnames() == ["file"]
    extractall(image, tmp_path / "dest")
    assert (tmp_path / "dest" / "file").read_bytes() == b"data"


def test_a_symlink_target_with_a_nul_inside_ends_at_the_nul(tmp_path: Path) -> None:
    # do_symlink() passes the target as a C string; bootmem kept the NUL and os.symlink raised
    # ValueError under the tar filter (os.path.realpath under the data filter).
    image = _archive(_member(b"link\0", b"target\0/etc/passwd", mode=stat.S_IFLNK | 0o777))
    with bootmem.initramfs.open(image) as img:
        assert img.getmember("link").linkname == "target"
    for filter in ("tar", "data"):
        extractall(image, tmp_path / filter, filter=filter)
        assert (tmp_path / filter / "link").readlink() == Path("target")


def test_a_symlink_with_an_empty_target_is_skipped(tmp_path: Path) -> None:
    # symlink("", path) fails with ENOENT, which escaped extractall as FileNotFoundError; the
    # kernel's init_symlink fails the same way and unpacking goes on.
    image = _archive(_member(b"a\0", b"", mode=stat.S_IFLNK | 0o777), _member(b"b\0", b"after"))
    for filter in ("tar", "data"):
        result = extractall(image, tmp_path / filter, filter=filter)
        assert result.skipped == [("a", "empty symlink target")]
        assert not (tmp_path / filter / "a").is_symlink()
        assert (tmp_path / filter / "b").read_bytes() == b"after"


def test_a_node_mknod_refuses_is_an_extract_error(tmp_path: Path) -> None:
    # A fifo whose c_rdevminor does not fit a dev_t (2**24): mknod(2) fails with EINVAL, which
    # escaped extractall as OSError; only EPERM was turned into an ExtractError.
    header = pack_header(Entry("x", stat.S_IFIFO | 0o644, c_rdevminor=1 << 24), namesize=5, filesize=0)
    image = _archive(header + b"fifo\0" + b"\0" * pad4(len(header) + 5))
    with pytest.raises(ExtractError, match=r"cannot create p node 'fifo' \(rdev 0:16777216\): Invalid"):
        extractall(image, tmp_path / "dest", filter="tar")

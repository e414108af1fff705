"""Regressions found by fuzzing the image reader and host extraction (fuzz/).

Each test names the bug and holds the smallest input that showed it.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

import bootmem.initramfs
from bootmem.initramfs.cpio import Entry
from bootmem.initramfs.extract import extractall
from bootmem.kernel.unpack import kernel_rdev
from tests.initramfs.corpus import raw_archive, raw_entry


def _member(name: bytes, data: bytes = b"", mode: int = stat.S_IFREG | 0o644) -> bytes:
    """A newc member whose ``c_namesize`` covers ``name`` exactly (it may hold NULs)."""
    return raw_entry(name, namesize=len(name), data=data, mode=mode)


def _raw(entry: Entry, data: bytes) -> bytes:
    """One newc member of ``entry`` and its data."""
    name = entry.name.encode() + b"\0"
    return raw_entry(name, namesize=len(name), data=data, entry=entry)


def test_a_name_with_a_nul_inside_ends_at_the_nul(tmp_path: Path) -> None:
    # c_namesize may cover bytes after the name's NUL; the name ran to c_namesize - 1, NULs and
    # all, and extraction died in os.lstat with "ValueError: embedded null byte".
    image = raw_archive(_member(b"file\0../junk\0", b"data"))
    with bootmem.initramfs.open(image) as img:
        assert img.getnames() == ["file"]
    extractall(image, tmp_path / "dest")
    assert (tmp_path / "dest" / "file").read_bytes() == b"data"


def test_a_symlink_target_with_a_nul_inside_ends_at_the_nul(tmp_path: Path) -> None:
    # do_symlink() passes the target as a C string; bootmem kept the NUL and os.symlink raised
    # ValueError under the tar filter (os.path.realpath under the data filter).
    image = raw_archive(_member(b"link\0", b"target\0/etc/passwd", mode=stat.S_IFLNK | 0o777))
    with bootmem.initramfs.open(image) as img:
        assert img.getmember("link").linkname == "target"
    for filter in ("tar", "data"):
        extractall(image, tmp_path / filter, filter=filter)
        assert (tmp_path / filter / "link").readlink() == Path("target")


def test_a_symlink_with_an_empty_target_is_skipped(tmp_path: Path) -> None:
    # symlink("", path) fails with ENOENT, which escaped extractall as FileNotFoundError.  Linux's
    # own init_symlink makes it (vfs_symlink takes the empty name); the host cannot, so it is
    # skipped and said so, and unpacking goes on.
    image = raw_archive(_member(b"a\0", b"", mode=stat.S_IFLNK | 0o777), _member(b"b\0", b"after"))
    for filter in ("tar", "data"):
        result = extractall(image, tmp_path / filter, filter=filter)
        assert [name for name, _ in result.skipped] == ["a"]
        assert "empty symlink target" in result.skipped[0][1]
        assert not (tmp_path / filter / "a").is_symlink()
        assert (tmp_path / filter / "b").read_bytes() == b"after"


def test_a_fifo_with_a_device_number_is_made_as_the_kernel_makes_it(tmp_path: Path) -> None:
    # A fifo whose c_rdevminor does not fit a dev_t (2**24): mknod(2) failed with EINVAL, which
    # escaped extractall as OSError.  init_mknod() passes 0 for a fifo, whatever the header says.
    image = raw_archive(_raw(Entry("fifo", stat.S_IFIFO | 0o644, c_rdevminor=1 << 24), b""))
    result = extractall(image, tmp_path / "dest", filter="tar")
    assert result.skipped == []
    assert stat.S_ISFIFO(os.lstat(tmp_path / "dest" / "fifo").st_mode)


@pytest.mark.parametrize(("major", "minor"), [(0x80000000, 1), (1, 0x80000000), (0xFFFFFFFF, 0xFFFFFFFF)])
def test_a_device_number_of_2_to_the_31_or_more_is_no_overflow(
    tmp_path: Path, major: int, minor: int
) -> None:
    # os.makedev raised OverflowError.  The kernel makes MKDEV(major, minor) in a 32-bit dev_t;
    # without root the node is counted, not made.
    entry = Entry("dev/x", stat.S_IFCHR | 0o600, c_rdevmajor=major, c_rdevminor=minor)
    image = raw_archive(_raw(entry, b""))
    result = extractall(image, tmp_path / "dest", filter="tar")
    assert result.skipped == []
    if os.geteuid() == 0:
        st = os.lstat(tmp_path / "dest" / "dev" / "x")
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == kernel_rdev(major, minor)
    else:
        assert result.nodes_skipped == 1


def test_a_hardlink_whose_first_name_became_a_directory_is_skipped(tmp_path: Path) -> None:
    # link(2) to a directory is EPERM, which escaped the API as a bare PermissionError.
    first = Entry("a", stat.S_IFREG | 0o644, c_ino=5, c_nlink=2)
    second = Entry("b", stat.S_IFREG | 0o644, c_ino=5, c_nlink=2)
    image = raw_archive(_raw(first, b""), _raw(Entry("a", stat.S_IFDIR | 0o755), b""), _raw(second, b"data"))
    result = extractall(image, tmp_path / "dest")
    assert [name for name, _ in result.skipped] == ["b"]
    assert "cannot link to 'a'" in result.skipped[0][1]
    assert (tmp_path / "dest" / "a").is_dir()


def test_one_entry_of_1100_components_and_2040_nested_directories(tmp_path: Path) -> None:
    # os.makedirs recursed once per component (RecursionError), and each entry re-checked its
    # whole path with realpath (cubic time for nested directories).
    deep = "/".join(["d"] * 1100) + "/file"
    nested = [_raw(Entry("/".join(["n"] * k), stat.S_IFDIR | 0o755), b"") for k in range(1, 2041)]
    result = extractall(
        raw_archive(_raw(Entry(deep, stat.S_IFREG | 0o644), b"deep"), *nested), tmp_path / "dest"
    )
    assert result.skipped == [] and result.error is None
    assert (tmp_path / "dest" / deep).read_bytes() == b"deep"
    fd = os.open(tmp_path / "dest", os.O_RDONLY | os.O_DIRECTORY)
    try:  # the absolute path is over PATH_MAX
        assert stat.S_ISDIR(os.stat("/".join(["n"] * 2040), dir_fd=fd).st_mode)
    finally:
        os.close(fd)
        # shutil.rmtree recurses once per level and cannot remove this tree: pytest's cleanup of
        # old temporary directories would fail on it in a later run.
        subprocess.run(["rm", "-rf", str(tmp_path / "dest")], check=True)

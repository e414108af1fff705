"""bootmem.fs.tmpfs: the namespace, file data in allocator pages, limits, errors, tree()."""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import stat
import threading

import pytest

from bootmem.errors import OutOfMemoryError, TmpfsError, TmpfsNoSpaceError, TmpfsNotFoundError
from bootmem.fs.tmpfs import DIR_CACHE_SIZE, MAXSYMLINKS, Tmpfs
from bootmem.mm import PAGE_SIZE, AllocatorEvent, PageAllocator
from tests.fs.conftest import RAM_BASE, RAM_PAGES, rootfs_pages

S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK, S_IFREG = (
    stat.S_IFCHR,
    stat.S_IFBLK,
    stat.S_IFIFO,
    stat.S_IFSOCK,
    stat.S_IFREG,
)


def raises_errno(err: int) -> pytest.RaisesExc[TmpfsError]:
    return pytest.raises(TmpfsError, check=lambda e: e.errno == err)


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that differ from page to page and from zero and poison."""
    return bytes((i * 7 + seed + i // PAGE_SIZE) % 251 + 1 for i in range(n))


def pages_for(size: int) -> int:
    return -(-size // PAGE_SIZE)


# --- errors -------------------------------------------------------------------------------


def test_error_carries_errno_and_path(fs: Tmpfs) -> None:
    with pytest.raises(TmpfsNotFoundError) as info:
        fs.lookup("/no/such")
    exc = info.value
    assert isinstance(exc, FileNotFoundError)
    assert exc.errno == errno.ENOENT
    assert exc.filename == "/no/such"
    assert str(exc) == "[Errno 2] No such file or directory: '/no/such'"


def test_empty_path_is_enoent(fs: Tmpfs) -> None:
    with raises_errno(errno.ENOENT):
        fs.lookup("")
    with raises_errno(errno.ENOENT):
        fs.mkdir("", 0o755)


# --- directories --------------------------------------------------------------------------


def test_root(fs: Tmpfs) -> None:
    root = fs.lookup("/")
    assert root is fs.root
    # tmpfs's default root mode (shmem_init_fs_context: 0777 | S_ISVTX); ramfs's is 0755.
    assert (root.kind, root.permissions, root.nlink, root.ino) == ("d", 0o1777, 2, 1)
    assert Tmpfs(PageAllocator(base=0, size=1 << 20), ramfs=True).root.permissions == 0o755


def test_mkdir_nlink_counts_subdirectories(fs: Tmpfs) -> None:
    fs.mkdir("/a", 0o700, uid=1, gid=2, mtime=3)
    fs.mkdir("/a/b", 0o755)
    fs.mkdir("/a/c", 0o755)
    fs.mknod("/a/f", S_IFIFO | 0o600)
    a = fs.lookup("/a")
    assert (a.kind, a.permissions, a.uid, a.gid, a.mtime) == ("d", 0o700, 1, 2, 3)
    assert a.nlink == 2 + 2
    assert fs.root.nlink == 3
    assert fs.listdir("/a") == ["b", "c", "f"]
    fs.rmdir("/a/b")
    assert a.nlink == 3


def test_directory_size_is_tmpfs_bogo_dirent(fs: Tmpfs) -> None:
    # mm/shmem.c: 2 * BOGO_DIRENT_SIZE, plus BOGO_DIRENT_SIZE (20) per entry.
    fs.mkdir("/d", 0o755)
    assert fs.stat("/d").st_size == 40
    fs.mknod("/d/x", S_IFREG | 0o644)
    fs.symlink("x", "/d/y")
    assert fs.stat("/d").st_size == 80
    fs.unlink("/d/x")
    assert fs.stat("/d").st_size == 60


def test_mkdir_errors(fs: Tmpfs) -> None:
    fs.mkdir("/a", 0o755)
    fs.mknod("/file", S_IFREG | 0o644)
    with raises_errno(errno.EEXIST):
        fs.mkdir("/a", 0o755)
    with raises_errno(errno.EEXIST):
        fs.mkdir("/", 0o755)
    with raises_errno(errno.EEXIST):
        fs.mkdir("/a/.", 0o755)
    with raises_errno(errno.ENOENT):
        fs.mkdir("/missing/b", 0o755)
    with raises_errno(errno.ENOTDIR):
        fs.mkdir("/file/b", 0o755)
    fs.mkdir("/a/b/", 0o755)  # a trailing slash is fine for mkdir
    assert fs.lookup("/a/b").is_dir


def test_relative_paths_start_at_root(fs: Tmpfs) -> None:
    fs.mkdir("etc", 0o755)
    fs.mkdir("./etc/init.d", 0o755)
    assert fs.lookup("/etc/init.d") is fs.lookup("etc//init.d/")


def test_dotdot_never_escapes_root(fs: Tmpfs) -> None:
    fs.mkdir("/etc", 0o755)
    fs.mkdir("/etc/ssl", 0o755)
    etc = fs.lookup("/etc")
    assert fs.lookup("/../../etc") is etc
    assert fs.lookup("/etc/ssl/../../../etc/./ssl/..") is etc
    assert fs.lookup("/..") is fs.root


def test_rmdir(fs: Tmpfs) -> None:
    fs.mkdir("/a", 0o755)
    fs.mkdir("/a/b", 0o755)
    fs.mknod("/f", S_IFREG)
    with raises_errno(errno.ENOTEMPTY):
        fs.rmdir("/a")
    with raises_errno(errno.ENOTDIR):
        fs.rmdir("/f")
    with raises_errno(errno.ENOENT):
        fs.rmdir("/nope")
    with raises_errno(errno.EBUSY):
        fs.rmdir("/")
    with raises_errno(errno.EINVAL):
        fs.rmdir("/a/.")
    fs.rmdir("/a/b/")
    fs.rmdir("/a")
    assert fs.listdir("/") == ["f"]
    assert fs.root.nlink == 2


# --- special files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "char", "rdev"),
    [
        (S_IFCHR, "c", (5, 1)),
        (S_IFBLK, "b", (8, 16)),
        (S_IFIFO, "p", (0, 0)),
        (S_IFSOCK, "s", (0, 0)),
        (S_IFREG, "f", (0, 0)),
        (0, "f", (0, 0)),
    ],
)
def test_mknod(fs: Tmpfs, kind: int, char: str, rdev: tuple[int, int]) -> None:
    fs.mknod("/node", kind | 0o640, rdev=(rdev[0] or 9, rdev[1] or 9), uid=7, gid=8, mtime=9)
    inode = fs.lookup("/node")
    assert (inode.kind, inode.permissions, inode.uid, inode.gid, inode.mtime) == (char, 0o640, 7, 8, 9)
    assert inode.rdev == (rdev if char in "cb" else (0, 0))
    assert (inode.size, inode.nlink, inode.pages) == (0, 1, [])
    assert fs.stat("/node").st_rdev == os.makedev(*inode.rdev)


def test_mknod_errors(fs: Tmpfs) -> None:
    with raises_errno(errno.EPERM):
        fs.mknod("/d", stat.S_IFDIR | 0o755)
    with raises_errno(errno.EINVAL):
        fs.mknod("/l", stat.S_IFLNK | 0o777)
    fs.mknod("/c", S_IFCHR, rdev=(1, 3))
    with raises_errno(errno.EEXIST):
        fs.mknod("/c", S_IFCHR, rdev=(1, 3))
    with raises_errno(errno.ENOENT):
        fs.mknod("/new/", S_IFIFO)
    with raises_errno(errno.EEXIST):
        fs.mknod("/c/", S_IFIFO)


# --- symlinks -----------------------------------------------------------------------------


def test_symlink_and_readlink(fs: Tmpfs) -> None:
    fs.mkdir("/usr", 0o755)
    fs.mkdir("/usr/bin", 0o755)
    fs.write_file("/usr/bin/sh", b"#!")
    fs.symlink("usr/bin", "/bin", uid=3, mtime=4)
    link = fs.lookup("/bin", follow_symlinks=False)
    assert (link.kind, link.permissions, link.size, link.uid, link.mtime) == ("l", 0o777, 7, 3, 4)
    assert fs.readlink("/bin") == "usr/bin"
    assert fs.lookup("/bin") is fs.lookup("/usr/bin")
    assert fs.read("/bin/sh") == b"#!"
    assert fs.stat("/bin").st_mode == stat.S_IFDIR | 0o755
    assert fs.stat("/bin", follow_symlinks=False).st_mode == stat.S_IFLNK | 0o777


def test_symlink_size_is_encoded_target_length(fs: Tmpfs) -> None:
    target = os.fsdecode(b"caf\xc3\xa9/\xff")
    fs.symlink(target, "/l")
    assert fs.lookup("/l", follow_symlinks=False).size == 7


def test_symlink_relative_to_its_directory_and_absolute(fs: Tmpfs) -> None:
    fs.mkdir("/a", 0o755)
    fs.mkdir("/a/b", 0o755)
    fs.mkdir("/c", 0o755)
    fs.symlink("../../c", "/a/b/up")
    fs.symlink("/a/b", "/abs")
    fs.symlink("/../../../c", "/escape")
    assert fs.lookup("/a/b/up") is fs.lookup("/c")
    assert fs.lookup("/abs/up") is fs.lookup("/c")
    assert fs.lookup("/escape") is fs.lookup("/c")
    # ".." after a symlink is taken from where the symlink led (path_lookupat), not textually
    assert fs.lookup("/abs/..") is fs.lookup("/a")


def test_symlink_errors(fs: Tmpfs) -> None:
    fs.symlink("nowhere", "/dangling")
    fs.mknod("/f", S_IFREG)
    fs.symlink("f", "/tofile")
    with raises_errno(errno.ENOENT):
        fs.symlink("", "/empty")
    with raises_errno(errno.EEXIST):
        fs.symlink("x", "/dangling")
    with raises_errno(errno.ENOENT):
        fs.lookup("/dangling")
    assert fs.lookup("/dangling", follow_symlinks=False).is_symlink
    with raises_errno(errno.ENOTDIR):
        fs.lookup("/tofile/x")
    with raises_errno(errno.ENOTDIR):
        fs.lookup("/tofile/")
    with raises_errno(errno.EINVAL):
        fs.readlink("/f")


def test_symlink_loops(fs: Tmpfs) -> None:
    fs.symlink("self", "/self")
    fs.symlink("b", "/a")
    fs.symlink("a", "/b")
    for path in ("/self", "/a", "/b/x", "/self/"):
        with raises_errno(errno.ELOOP):
            fs.lookup(path)
    assert fs.lookup("/a", follow_symlinks=False).target == "b"
    with raises_errno(errno.ELOOP):
        fs.mkdir("/a/sub", 0o755)


def test_symlink_chain_limit(fs: Tmpfs) -> None:
    fs.mkdir("/end", 0o755)
    previous = "/end"
    for i in range(MAXSYMLINKS + 1):
        fs.symlink(previous, f"/l{i}")
        previous = f"/l{i}"
    assert fs.lookup(f"/l{MAXSYMLINKS - 1}") is fs.lookup("/end")
    with raises_errno(errno.ELOOP):
        fs.lookup(f"/l{MAXSYMLINKS}")


def test_final_symlink_not_followed_by_create_unlink(fs: Tmpfs) -> None:
    fs.write_file("/target", b"data")
    fs.symlink("target", "/link")
    with raises_errno(errno.ELOOP):
        fs.create("/link", 0o644)
    with raises_errno(errno.EEXIST):
        fs.mkdir("/link", 0o755)
    fs.unlink("/link")
    assert fs.read("/target") == b"data"
    assert fs.listdir("/") == ["target"]


# --- hard links ---------------------------------------------------------------------------


def test_hardlinks_share_inode_and_data(fs: Tmpfs, pa: PageAllocator) -> None:
    data = pattern(PAGE_SIZE + 10)
    fs.write_file("/a", data, mode=0o755)
    fs.mkdir("/d", 0o755)
    fs.link("/a", "/d/b")
    fs.link("/d/b", "/c")
    a = fs.lookup("/a")
    assert fs.lookup("/d/b") is a and fs.lookup("/c") is a
    assert a.nlink == 3
    assert fs.stat("/c").st_ino == fs.stat("/a").st_ino
    assert rootfs_pages(pa) == 2
    with fs.create("/c", 0o600, truncate=False) as f:
        f.write(b"XY")
    assert fs.read("/d/b") == b"XY" + data[2:]
    fs.chmod("/d/b", 0o700)
    assert a.permissions == 0o700
    fs.unlink("/a")
    fs.unlink("/c")
    assert a.nlink == 1 and rootfs_pages(pa) == 2
    fs.unlink("/d/b")
    assert a.nlink == 0 and rootfs_pages(pa) == 0 and fs.used_pages == 0


def test_link_errors_and_symlink_source(fs: Tmpfs) -> None:
    fs.mkdir("/d", 0o755)
    fs.mknod("/f", S_IFREG)
    fs.symlink("f", "/s")
    with raises_errno(errno.EPERM):
        fs.link("/d", "/d2")
    with raises_errno(errno.EEXIST):
        fs.link("/f", "/d")
    with raises_errno(errno.ENOENT):
        fs.link("/missing", "/x")
    with raises_errno(errno.ENOENT):
        fs.link("/f", "/missing/x")
    fs.link("/s", "/s2")  # link(2) does not follow a final symlink
    assert fs.lookup("/s2", follow_symlinks=False) is fs.lookup("/s", follow_symlinks=False)
    assert fs.lookup("/s", follow_symlinks=False).nlink == 2


# --- regular files ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, PAGE_SIZE - 1, PAGE_SIZE, PAGE_SIZE + 1, 3 * PAGE_SIZE + 1])
@pytest.mark.parametrize("chunk", [None, 1000, PAGE_SIZE])
def test_data_round_trip(fs: Tmpfs, pa: PageAllocator, size: int, chunk: int | None) -> None:
    data = pattern(size)
    with fs.create("/f", 0o644, uid=5, gid=6) as f:
        step = chunk or max(size, 1)
        for start in range(0, size, step):
            assert f.write(data[start : start + step]) == len(data[start : start + step])
        assert f.tell() == size
    inode = fs.lookup("/f")
    assert (inode.size, inode.uid, inode.gid, inode.permissions) == (size, 5, 6, 0o644)
    assert len(inode.pages) == pages_for(size) == fs.used_pages == rootfs_pages(pa)
    assert fs.used_bytes == pages_for(size) * PAGE_SIZE
    assert fs.read("/f") == data
    assert fs.sha256("/f") == hashlib.sha256(data).hexdigest()
    assert fs.stat("/f").st_blocks == pages_for(size) * 8


def test_data_lives_in_allocator_pages(fs: Tmpfs, pa: PageAllocator) -> None:
    data = pattern(PAGE_SIZE + 5)
    fs.write_file("/f", data)
    first, second = fs.lookup("/f").pages
    with pa.page_view(first) as page:
        assert page.tobytes() == data[:PAGE_SIZE]
    with pa.page_view(second) as page:
        assert page[:5].tobytes() == data[PAGE_SIZE:]


def test_data_in_scattered_frames(fs: Tmpfs, pa: PageAllocator) -> None:
    hog = [pa.alloc(order=0, owner="hog") for _ in range(64)]
    for pfn in hog[::2]:
        pa.free(pfn)
    data = pattern(5 * PAGE_SIZE + 3)
    with fs.create("/f", 0o644) as f:
        for start in range(0, len(data), 3000):
            f.write(data[start : start + 3000])
    pfns = fs.lookup("/f").pages
    assert any(b != a + 1 for a, b in itertools.pairwise(pfns))
    assert fs.read("/f") == data
    assert fs.sha256("/f") == hashlib.sha256(data).hexdigest()
    fs.unlink("/f")
    for pfn in hog[1::2]:
        pa.free(pfn)


def test_write_accepts_any_buffer(fs: Tmpfs) -> None:
    with fs.create("/f", 0o644) as f:
        f.write(bytearray(b"ab"))
        f.write(memoryview(b"xxcdxx")[2:4])
        f.write(memoryview(bytes(range(8))).cast("B", (2, 4)))
    assert fs.read("/f") == b"abcd" + bytes(range(8))


def test_create_existing(fs: Tmpfs, pa: PageAllocator) -> None:
    fs.write_file("/f", pattern(2 * PAGE_SIZE), mode=0o600, uid=1)
    with fs.create("/f", 0o777, uid=9, truncate=False) as f:
        f.write(b"new")
    inode = fs.lookup("/f")
    assert (inode.permissions, inode.uid, inode.size) == (0o600, 1, 2 * PAGE_SIZE)
    assert fs.read("/f")[:4] == b"new" + pattern(4)[3:]
    with fs.create("/f", 0o644) as f:  # O_TRUNC frees the pages
        assert rootfs_pages(pa) == 0 and inode.size == 0
        f.write(b"short")
    assert fs.read("/f") == b"short" and rootfs_pages(pa) == 1


def test_create_errors(fs: Tmpfs) -> None:
    fs.mkdir("/d", 0o755)
    fs.mknod("/c", S_IFCHR, rdev=(1, 3))
    fs.mknod("/f", S_IFREG)
    with raises_errno(errno.EISDIR):
        fs.create("/d", 0o644)
    with raises_errno(errno.EISDIR):
        fs.create("/", 0o644)
    with raises_errno(errno.EISDIR):
        fs.create("/new/", 0o644)
    with raises_errno(errno.ENOTDIR):
        fs.create("/f/", 0o644)
    with raises_errno(errno.EEXIST):
        fs.create("/c", 0o644)
    with raises_errno(errno.ENOENT):
        fs.create("/missing/f", 0o644)
    with raises_errno(errno.ENOTDIR):
        fs.create("/f/g", 0o644)


def test_closed_file_refuses_writes(fs: Tmpfs) -> None:
    f = fs.create("/f", 0o644)
    f.close()
    f.close()
    assert f.closed
    with pytest.raises(ValueError, match="closed file"):
        f.write(b"x")


def test_seek_overwrite_and_zero_filled_gap(fs: Tmpfs, pa: PageAllocator) -> None:
    # Dirty a few pages and free them: the next file reuses them and must still read zeros.
    fs.write_file("/dirty", b"\xee" * (4 * PAGE_SIZE))
    fs.unlink("/dirty")
    with fs.create("/f", 0o644) as f:
        f.write(b"head")
        f.seek(2 * PAGE_SIZE + 100)
        f.write(b"tail")
        f.seek(1)
        f.write(b"EA")
    expected = b"hEAd" + bytes(2 * PAGE_SIZE + 96) + b"tail"
    assert fs.read("/f") == expected
    assert rootfs_pages(pa) == 3
    with raises_errno(errno.EINVAL):
        f.seek(-1)


def test_read_errors(fs: Tmpfs) -> None:
    fs.mkdir("/d", 0o755)
    fs.mknod("/p", S_IFIFO)
    with raises_errno(errno.EISDIR):
        fs.read("/d")
    with raises_errno(errno.EINVAL):
        fs.read("/p")
    with raises_errno(errno.ENOENT):
        fs.read("/none")


# --- truncate -----------------------------------------------------------------------------


def test_truncate_shrinks_and_grows(fs: Tmpfs, pa: PageAllocator) -> None:
    fs.write_file("/dirty", b"\xee" * (4 * PAGE_SIZE))
    fs.unlink("/dirty")
    data = pattern(3 * PAGE_SIZE + 1)
    fs.write_file("/f", data)
    assert rootfs_pages(pa) == 4
    fs.truncate("/f", PAGE_SIZE + 10)
    assert rootfs_pages(pa) == 2 == fs.used_pages
    assert fs.read("/f") == data[: PAGE_SIZE + 10]
    fs.truncate("/f", 3 * PAGE_SIZE)  # grows with zeros, also over the old tail of page 1
    assert rootfs_pages(pa) == 3
    assert fs.read("/f") == data[: PAGE_SIZE + 10] + bytes(2 * PAGE_SIZE - 10)
    fs.truncate("/f", 0)
    assert rootfs_pages(pa) == 0 and fs.read("/f") == b""
    fs.truncate("/f", 5)
    assert fs.read("/f") == bytes(5)


def test_sparse_truncate_is_a_hole_at_the_tail(fs: Tmpfs, pa: PageAllocator) -> None:
    # shmem_setattr: growing a file allocates nothing; the hole reads as zeros until written.
    fs.write_file("/dirty", b"\xee" * (4 * PAGE_SIZE))
    fs.unlink("/dirty")
    with fs.create("/f", 0o644) as f:
        f.write(b"head")
        fs.truncate("/f", 3 * PAGE_SIZE + 5, sparse=True)
        assert rootfs_pages(pa) == 1 == fs.used_pages
        assert fs.stat("/f").st_blocks == PAGE_SIZE // 512
        assert fs.read("/f") == b"head" + bytes(3 * PAGE_SIZE + 1)
        assert fs.sha256("/f") == hashlib.sha256(b"head" + bytes(3 * PAGE_SIZE + 1)).hexdigest()
        f.write(b"x" * PAGE_SIZE)  # fills the hole as written: pages 0 and 1, the size kept
        assert rootfs_pages(pa) == 2 and fs.stat("/f").st_size == 3 * PAGE_SIZE + 5
        assert fs.read("/f") == b"head" + b"x" * PAGE_SIZE + bytes(2 * PAGE_SIZE + 1)
    fs.truncate("/f", 2, sparse=True)  # shrinking is shrinking
    assert fs.read("/f") == b"he" and rootfs_pages(pa) == 1
    fs.truncate("/f", 6, sparse=True)  # the old tail of the page reads as zeros
    assert fs.read("/f") == b"he" + bytes(4) and rootfs_pages(pa) == 1
    fs.truncate("/f", PAGE_SIZE + 1)  # a plain grow fills the hole with pages
    assert rootfs_pages(pa) == 2 and fs.read("/f") == b"he" + bytes(PAGE_SIZE - 1)


def test_open_file_truncate_is_ftruncate(fs: Tmpfs, pa: PageAllocator) -> None:
    # The open file's inode, not the path's: with another file at its path now, the file
    # opened (still linked as /g) is the one cut.
    with fs.create("/f", 0o644) as f:
        f.write(b"abcdef")
        fs.link("/f", "/g")
        fs.unlink("/f")
        fs.write_file("/f", b"other")
        f.truncate(3)
        assert fs.read("/g") == b"abc" and fs.read("/f") == b"other"
        f.truncate(2 * PAGE_SIZE, sparse=True)  # a hole: no page taken
        assert fs.stat("/g").st_size == 2 * PAGE_SIZE and rootfs_pages(pa) == 2
        assert fs.read("/g") == b"abc" + bytes(2 * PAGE_SIZE - 3)
        assert f.tell() == 6  # the position does not move
        with raises_errno(errno.EINVAL):
            f.truncate(-1)
    with pytest.raises(ValueError, match="closed"):
        f.truncate(0)


def test_truncate_follows_symlinks_and_errors(fs: Tmpfs) -> None:
    fs.write_file("/f", b"abcdef")
    fs.symlink("f", "/l")
    fs.mkdir("/d", 0o755)
    fs.mknod("/c", S_IFCHR, rdev=(1, 3))
    fs.truncate("/l", 3)
    assert fs.read("/f") == b"abc"
    with raises_errno(errno.EISDIR):
        fs.truncate("/d", 0)
    with raises_errno(errno.EINVAL):
        fs.truncate("/c", 0)
    with raises_errno(errno.EINVAL):
        fs.truncate("/f", -1)


# --- removal ------------------------------------------------------------------------------


def test_unlink(fs: Tmpfs, pa: PageAllocator) -> None:
    before = pa.stats()
    fs.mkdir("/d", 0o755)
    fs.write_file("/d/f", pattern(3 * PAGE_SIZE + 1))
    fs.mknod("/d/c", S_IFCHR, rdev=(4, 64))
    assert pa.stats() != before
    fs.unlink("/d/f")
    fs.unlink("/d/c")
    assert pa.stats() == before
    pa.check_invariants()
    with raises_errno(errno.ENOENT):
        fs.unlink("/d/f")
    with raises_errno(errno.EISDIR):
        fs.unlink("/d")
    with raises_errno(errno.EISDIR):
        fs.unlink("/")
    fs.mknod("/d/p", S_IFIFO)
    with raises_errno(errno.ENOTDIR):
        fs.unlink("/d/p/")


def test_unlinked_open_file_keeps_pages_until_close(fs: Tmpfs, pa: PageAllocator) -> None:
    f = fs.create("/f", 0o644)
    f.write(pattern(PAGE_SIZE + 1))
    fs.unlink("/f")
    assert rootfs_pages(pa) == 2
    f.write(b"more")
    assert rootfs_pages(pa) == 2
    f.close()
    assert rootfs_pages(pa) == 0 == fs.used_pages


def test_remove_path(fs: Tmpfs, pa: PageAllocator) -> None:
    before = pa.stats()
    fs.mkdir("/a", 0o755)
    fs.mkdir("/a/b", 0o755)
    fs.write_file("/a/b/f", pattern(PAGE_SIZE * 2))
    fs.write_file("/keep", b"k")
    fs.link("/keep", "/a/b/k")
    fs.symlink("/keep", "/a/l")
    fs.symlink("/a", "/la")
    assert fs.remove_path("/la")  # the link goes, not the directory it points at
    assert fs.lookup("/a").is_dir
    assert fs.remove_path("/a")
    assert fs.listdir("/") == ["keep"]
    assert fs.lookup("/keep").nlink == 1
    assert fs.root.nlink == 2
    assert not fs.remove_path("/a")
    assert not fs.remove_path("/a/b/c")
    assert not fs.remove_path("/keep/x")
    with raises_errno(errno.EBUSY):
        fs.remove_path("/")
    fs.unlink("/keep")
    assert pa.stats() == before


# --- attributes ---------------------------------------------------------------------------


def test_chown_chmod_utime(fs: Tmpfs) -> None:
    fs.write_file("/f", b"x")
    fs.symlink("f", "/l")
    fs.chmod("/f", stat.S_IFDIR | 0o4755)  # only the permission bits change
    assert fs.stat("/f").st_mode == stat.S_IFREG | 0o4755
    fs.chmod("/l", 0o2711)  # follows the link
    assert fs.lookup("/f").permissions == 0o2711
    assert fs.lookup("/l", follow_symlinks=False).permissions == 0o777
    fs.chown("/l", 10, 20)
    assert (fs.stat("/f").st_uid, fs.stat("/f").st_gid) == (10, 20)
    fs.chown("/l", 30, 40, follow_symlinks=False)
    assert (fs.stat("/l", follow_symlinks=False).st_uid, fs.stat("/f").st_uid) == (30, 10)
    fs.utime("/l", 1_700_000_000, follow_symlinks=False)
    assert fs.stat("/l", follow_symlinks=False).st_mtime == 1_700_000_000
    assert fs.stat("/f").st_mtime == 0
    fs.utime("/l", 5)
    assert fs.stat("/f").st_mtime == 5
    fs.utime("/", 6)
    assert fs.root.mtime == 6
    with raises_errno(errno.ENOENT):
        fs.chmod("/missing", 0o644)


def test_stat_fields(fs: Tmpfs) -> None:
    fs.write_file("/f", pattern(10), mode=0o640, uid=1, gid=2, mtime=3)
    st = fs.stat("/f")
    assert (st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size, st.st_mtime, st.st_rdev) == (
        S_IFREG | 0o640,
        1,
        1,
        2,
        10,
        3,
        0,
    )
    assert st.st_ino == fs.lookup("/f").ino != fs.root.ino


def test_exists(fs: Tmpfs) -> None:
    fs.mknod("/f", S_IFREG)
    fs.symlink("none", "/dangling")
    assert fs.exists("/f") and not fs.exists("/g") and not fs.exists("/f/x")
    assert not fs.exists("/dangling") and fs.exists("/dangling", follow_symlinks=False)


def test_find(fs: Tmpfs) -> None:
    fs.mkdir("/d", 0o755)
    fs.mknod("/d/f", S_IFREG)
    fs.symlink("f", "/d/link")
    fs.symlink("loop", "/loop")
    assert fs.find("/d/f") is fs.lookup("/d/f")
    assert fs.find("/d/g") is None and fs.find("/e/g") is None and fs.find("/d/f/x") is None
    assert fs.find("/d/link") is fs.lookup("/d/f")
    assert fs.find("/d/link", follow_symlinks=False) is fs.lookup("/d/link", follow_symlinks=False)
    with pytest.raises(TmpfsError) as caught:
        fs.find("/loop")
    assert caught.value.errno == errno.ELOOP


# --- the size limit and the allocator running dry ------------------------------------------


def test_default_limit_is_half_of_ram(fs: Tmpfs) -> None:
    assert fs.limit_pages == RAM_PAGES // 2
    assert fs.size_limit == RAM_PAGES // 2 * PAGE_SIZE


def test_limit_rounds_up_to_pages(pa: PageAllocator) -> None:
    assert Tmpfs(pa, size_limit=1).limit_pages == 1
    assert Tmpfs(pa, size_limit=0).limit_pages == 0
    assert Tmpfs(pa, size_limit=2 * PAGE_SIZE).limit_pages == 2
    with pytest.raises(ValueError, match="negative"):
        Tmpfs(pa, size_limit=-1)


def test_write_past_size_limit(pa: PageAllocator) -> None:
    fs = Tmpfs(pa, size_limit=3 * PAGE_SIZE)
    data = pattern(4 * PAGE_SIZE)
    with fs.create("/big", 0o644) as f:
        with pytest.raises(TmpfsNoSpaceError) as info:
            f.write(data)
        assert info.value.errno == errno.ENOSPC and info.value.filename == "/big"
        assert "limit" in str(info.value)
        assert f.tell() == 3 * PAGE_SIZE
    inode = fs.lookup("/big")
    assert inode.size == 3 * PAGE_SIZE == fs.used_bytes
    assert fs.read("/big") == data[: 3 * PAGE_SIZE]
    assert rootfs_pages(pa) == 3
    with raises_errno(errno.ENOSPC):
        fs.write_file("/more", b"x")
    assert fs.lookup("/more").size == 0
    with raises_errno(errno.ENOSPC):
        fs.truncate("/more", 1)
    fs.truncate("/big", PAGE_SIZE)
    fs.write_file("/more", pattern(2 * PAGE_SIZE))
    assert rootfs_pages(pa) == 3
    pa.check_invariants()


def test_write_with_gap_past_limit_keeps_no_gap_pages(pa: PageAllocator) -> None:
    fs = Tmpfs(pa, size_limit=2 * PAGE_SIZE)
    with fs.create("/f", 0o644) as f:
        f.write(b"abc")
        f.seek(5 * PAGE_SIZE)
        with raises_errno(errno.ENOSPC):
            f.write(b"far")
        assert f.tell() == 5 * PAGE_SIZE
    assert fs.read("/f") == b"abc"
    assert rootfs_pages(pa) == 1 == fs.used_pages


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_alloc_failure_mid_write(fs: Tmpfs, pa: PageAllocator, k: int) -> None:
    before = pa.stats()
    data = pattern(4 * PAGE_SIZE - 7)
    pa.fail_nth_alloc(k)
    with fs.create("/f", 0o644) as f, pytest.raises(TmpfsNoSpaceError) as info:
        f.write(data)
    assert isinstance(info.value.__cause__, OutOfMemoryError)
    assert "no free page" in str(info.value)
    kept = (k - 1) * PAGE_SIZE
    assert fs.lookup("/f").size == kept
    assert fs.read("/f") == data[:kept]
    assert rootfs_pages(pa) == k - 1 == fs.used_pages
    pa.check_invariants()
    fs.unlink("/f")
    assert pa.stats() == before


def test_alloc_failure_mid_truncate_changes_nothing(fs: Tmpfs, pa: PageAllocator) -> None:
    fs.write_file("/f", b"abc")
    pa.fail_nth_alloc(3)
    with raises_errno(errno.ENOSPC):
        fs.truncate("/f", 5 * PAGE_SIZE)
    assert fs.lookup("/f").size == 3 and rootfs_pages(pa) == 1
    fs.truncate("/f", 5 * PAGE_SIZE)
    assert fs.read("/f") == b"abc" + bytes(5 * PAGE_SIZE - 3)


def test_allocator_exhausted(pa: PageAllocator) -> None:
    fs = Tmpfs(pa, size_limit=2 * RAM_PAGES * PAGE_SIZE)
    hog = [pa.alloc(order=0, owner="hog") for _ in range(RAM_PAGES - 2)]
    with raises_errno(errno.ENOSPC):
        fs.write_file("/f", pattern(3 * PAGE_SIZE))
    assert fs.lookup("/f").size == 2 * PAGE_SIZE
    assert pa.stats()["free"] == 0
    fs.unlink("/f")
    for pfn in hog:
        pa.free(pfn)
    assert pa.stats()["free"] == RAM_PAGES


def test_a_write_takes_its_pages_in_one_bulk(fs: Tmpfs, pa: PageAllocator) -> None:
    seen: list[AllocatorEvent] = []
    pa.subscribe(seen.append)
    data = pattern(10 * PAGE_SIZE + 1)
    fs.write_file("/f", data)
    assert [(e.op, e.pages) for e in seen] == [("alloc", 11)]  # a fresh allocator: one run
    pfns = fs.lookup("/f").pages
    assert pfns == list(range(pfns[0], pfns[0] + 11))
    assert fs.read("/f") == data


def test_data_written_into_released_poisoned_pages(pa: PageAllocator) -> None:
    fs = Tmpfs(pa)
    pa.reserve(RAM_BASE, RAM_BASE + RAM_PAGES * PAGE_SIZE // 2, "initrd")
    hog = pa.alloc_bulk(RAM_PAGES // 2, owner="hog")  # every page not reserved
    pa.release_reserved(RAM_BASE, RAM_BASE + RAM_PAGES * PAGE_SIZE // 2)  # reads as 0xcc
    data = pattern(3 * PAGE_SIZE + 100)
    fs.write_file("/f", data)
    inode = fs.lookup("/f")
    assert all(RAM_BASE // PAGE_SIZE <= p < (RAM_BASE // PAGE_SIZE) + RAM_PAGES // 2 for p in inode.pages)
    assert fs.read("/f") == data
    with pa.page_view(inode.pages[-1]) as last:
        assert last[:100].tobytes() == data[-100:]
        assert last[100:].tobytes() == b"\xcc" * (PAGE_SIZE - 100)  # never written: still poison
    for first, n in hog:
        for p in range(first, first + n):
            pa.free(p)


# --- lookups after removals: the directory cache ---------------------------------------------


def test_lookup_through_a_directory_replaced_by_a_symlink(fs: Tmpfs) -> None:
    fs.mkdir("/a", 0o755)
    fs.mkdir("/a/b", 0o755)
    fs.write_file("/a/b/f", b"old")
    fs.mkdir("/c", 0o755)
    fs.write_file("/c/f", b"new")
    assert fs.read("/a/b/f") == b"old"  # /a/b is remembered now
    fs.remove_path("/a/b")
    with raises_errno(errno.ENOENT):
        fs.lookup("/a/b/f")
    fs.symlink("/c", "/a/b")
    assert fs.read("/a/b/f") == b"new"
    assert fs.lookup("/a/b/f") is fs.lookup("/c/f")


def test_lookup_through_a_directory_replaced_by_a_file(fs: Tmpfs) -> None:
    fs.mkdir("/d", 0o755)
    fs.write_file("/d/f", b"x")
    assert fs.exists("/d/f")
    fs.unlink("/d/f")
    fs.rmdir("/d")
    fs.write_file("/d", b"now a file")
    with raises_errno(errno.ENOTDIR):
        fs.lookup("/d/f")
    with raises_errno(errno.ENOTDIR):
        fs.create("/d/g", 0o644)


@pytest.mark.parametrize("spelling", ["/a/b/f", "a/b/f", "/a//b/f", "/a/./b/f", "/a/b/../b/f", "//a/b/f"])
def test_every_spelling_finds_the_same_inode(fs: Tmpfs, spelling: str) -> None:
    fs.mkdir("/a", 0o755)
    fs.mkdir("/a/b", 0o755)
    fs.write_file("/a/b/f", b"x")
    target = fs.lookup("/a/b/f")
    assert fs.lookup(spelling) is target
    assert fs.lookup(spelling) is target  # and again, from what was remembered
    fs.unlink("/a/b/f")
    with raises_errno(errno.ENOENT):
        fs.lookup(spelling)


def test_final_symlink_under_a_remembered_directory(fs: Tmpfs) -> None:
    fs.mkdir("/bin", 0o755)
    fs.write_file("/bin/busybox", b"bb")
    fs.symlink("busybox", "/bin/sh")
    assert fs.lookup("/bin/busybox").is_file
    assert fs.lookup("/bin/sh", follow_symlinks=False).is_symlink
    assert fs.lookup("/bin/sh") is fs.lookup("/bin/busybox")
    fs.symlink("loop", "/bin/loop")
    with raises_errno(errno.ELOOP):
        fs.lookup("/bin/loop")


def test_more_directories_than_are_remembered(pa: PageAllocator) -> None:
    count = DIR_CACHE_SIZE + 10
    fs = Tmpfs(pa, inode_limit=3 * count)  # more than 4 MiB of RAM would give
    for i in range(count):
        fs.mkdir(f"/d{i}", 0o755)
        fs.mknod(f"/d{i}/n", stat.S_IFIFO | 0o644)
    for i in range(count):
        assert fs.lookup(f"/d{i}/n").kind == "p"
    fs.remove_path("/d0")
    assert not fs.exists("/d0/n")
    assert fs.exists(f"/d{count - 1}/n")


# --- walk and tree ------------------------------------------------------------------------


def build_small_tree(fs: Tmpfs) -> None:
    fs.mkdir("/bin", 0o755, mtime=100)
    fs.write_file("/bin/busybox", b"hello", mode=0o4755, mtime=200)
    fs.link("/bin/busybox", "/bin/sh")
    fs.symlink("busybox", "/bin/ls", mtime=300)
    fs.mkdir("/dev", 0o755)
    fs.mknod("/dev/console", S_IFCHR | 0o600, rdev=(5, 1))
    fs.mknod("/dev/sda", S_IFBLK | 0o660, rdev=(8, 0), gid=6)
    fs.mkdir("/run", 0o1777, uid=0, gid=0, mtime=7)
    fs.mknod("/run/initctl", S_IFIFO | 0o600)
    fs.mknod("/run/sock", S_IFSOCK | 0o755, uid=1000, gid=1000)
    fs.mkdir("/bin-extra", 0o700)


def test_walk_sorted_by_path(fs: Tmpfs) -> None:
    build_small_tree(fs)
    paths = [path for path, _ in fs.walk()]
    assert paths == sorted(paths)
    assert paths[:3] == ["/", "/bin", "/bin-extra"]
    inodes = dict(fs.walk())
    assert inodes["/bin/sh"] is inodes["/bin/busybox"]


def test_tree_format(fs: Tmpfs) -> None:
    build_small_tree(fs)
    hello = hashlib.sha256(b"hello").hexdigest()
    assert fs.tree() == [
        "/\td\t1777\t0\t0\t120\t6\t0\t-\t-",
        "/bin\td\t0755\t0\t0\t100\t2\t100\t-\t-",
        "/bin-extra\td\t0700\t0\t0\t40\t2\t0\t-\t-",
        f"/bin/busybox\tf\t4755\t0\t0\t5\t2\t200\t-\t{hello}",
        "/bin/ls\tl\t0777\t0\t0\t7\t1\t300\t-\tbusybox",
        f"/bin/sh\tf\t4755\t0\t0\t5\t2\t200\t-\t{hello}",
        "/dev\td\t0755\t0\t0\t80\t2\t0\t-\t-",
        "/dev/console\tc\t0600\t0\t0\t0\t1\t0\t5:1\t-",
        "/dev/sda\tb\t0660\t0\t6\t0\t1\t0\t8:0\t-",
        "/run\td\t1777\t0\t0\t80\t2\t7\t-\t-",
        "/run/initctl\tp\t0600\t0\t0\t0\t1\t0\t-\t-",
        "/run/sock\ts\t0755\t1000\t1000\t0\t1\t0\t-\t-",
    ]


def test_tree_of_empty_fs(fs: Tmpfs) -> None:
    assert fs.tree() == ["/\td\t1777\t0\t0\t40\t2\t0\t-\t-"]


def test_inode_repr(fs: Tmpfs) -> None:
    fs.write_file("/f", b"abc", mode=0o644)
    assert repr(fs.lookup("/f")) == "Inode(ino=2, kind='f', mode=0o0644, uid=0, gid=0, size=3, nlink=1)"


# --- threads ------------------------------------------------------------------------------


def test_populating_while_another_thread_allocates(fs: Tmpfs, pa: PageAllocator) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def load() -> None:
        try:
            while not stop.is_set():
                pfns = [pa.alloc(order=0, owner="load") for _ in range(8)]
                for pfn in pfns:
                    with pa.page_view(pfn) as page:
                        page[:4] = b"LOAD"
                    pa.free(pfn)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        files = {f"/f{i}": pattern(i * 1500 + 1, seed=i) for i in range(40)}
        for path, data in files.items():
            fs.write_file(path, data)
    finally:
        stop.set()
        worker.join()
    assert not errors
    for path, data in files.items():
        assert fs.read(path) == data
    assert rootfs_pages(pa) == fs.used_pages == sum(pages_for(len(d)) for d in files.values())
    pa.check_invariants()


def test_open_file_owner_mode_and_mtime(fs: Tmpfs) -> None:
    # fchown, fchmod and futimens on the open file, as the unpacker applies them.
    with fs.create("/f", 0o600, uid=1, gid=2) as out:
        out.chown(7, 8)
        out.chmod(0o4755)
        out.write(b"data")
        out.utime(123)
    st = fs.stat("/f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime) == (7, 8, 0o4755, 123)
    assert stat.S_ISREG(st.st_mode)


# --- inodes and ramfs -----------------------------------------------------------------------


def test_every_inode_and_every_further_link_counts(pa: PageAllocator) -> None:
    # mm/shmem.c shmem_reserve_inode: the root takes one; so does each directory, file,
    # symlink and node, and each hard link past the first (shmem_link); unlinking a link gives
    # one back (shmem_unlink), evicting the inode the last one.
    fs = Tmpfs(pa, inode_limit=5)
    assert fs.used_inodes == 1  # the root
    fs.mkdir("/d", 0o755)
    fs.write_file("/d/f", b"x")
    fs.symlink("f", "/d/l")
    assert fs.used_inodes == 4
    fs.link("/d/f", "/d/g")
    assert fs.used_inodes == 5
    with pytest.raises(TmpfsNoSpaceError, match="inode limit 5"):
        fs.mknod("/p", stat.S_IFIFO | 0o644)
    with pytest.raises(TmpfsNoSpaceError):
        fs.link("/d/f", "/d/h")
    with pytest.raises(TmpfsNoSpaceError):
        fs.create("/new", 0o644)
    assert not fs.exists("/p") and not fs.exists("/d/h") and not fs.exists("/new")
    with pytest.raises(TmpfsError) as exists:  # EEXIST is found before the inode is needed
        fs.mkdir("/d", 0o755)
    assert exists.value.errno == errno.EEXIST
    fs.unlink("/d/g")  # a link past the first
    assert fs.used_inodes == 4
    with fs.create("/d/f", 0o644, truncate=False) as f:
        fs.unlink("/d/f")  # still open: not evicted yet
        assert fs.used_inodes == 4
        f.write(b"y")
    assert fs.used_inodes == 3
    fs.remove_path("/d")  # the symlink and the directory
    assert fs.used_inodes == 1


def test_the_default_inode_limit_is_half_the_pages(pa: PageAllocator) -> None:
    fs = Tmpfs(pa)
    assert fs.limit_inodes == RAM_PAGES // 2  # shmem_default_max_inodes, no highmem
    for i in range(RAM_PAGES // 2 - 1):
        fs.mknod(f"/n{i}", stat.S_IFIFO | 0o644)
    with pytest.raises(TmpfsNoSpaceError):
        fs.mknod("/one-more", stat.S_IFIFO | 0o644)


def test_ramfs_has_no_limits_and_no_dirent_sizes(pa: PageAllocator) -> None:
    fs = Tmpfs(pa, ramfs=True)
    assert fs.limit_pages is None and fs.size_limit is None and fs.limit_inodes is None
    fs.mkdir("/d", 0o755)
    fs.write_file("/d/big", bytes((RAM_PAGES - 8) * PAGE_SIZE))  # far past tmpfs's half
    assert rootfs_pages(pa) == RAM_PAGES - 8
    assert fs.stat("/d").st_size == 0 and fs.stat("/").st_size == 0
    fs.symlink("x", "/short")  # page_symlink: a page whatever the length
    assert rootfs_pages(pa) == RAM_PAGES - 7
    fs.symlink("c" * PAGE_SIZE, "/long", allow_empty=True)
    assert fs.readlink("/long") == "c" * (PAGE_SIZE - 1)
    with pytest.raises(TmpfsError) as too_long:
        fs.symlink("c" * (PAGE_SIZE + 1), "/longer")
    assert too_long.value.errno == errno.ENAMETOOLONG
    fs.unlink("/short")
    assert rootfs_pages(pa) == RAM_PAGES - 7
    with pytest.raises(TmpfsNoSpaceError):  # only the allocator's pages bound it
        fs.write_file("/more", bytes(8 * PAGE_SIZE))


def test_remove_path_of_a_tree_deeper_than_the_recursion_limit(pa: PageAllocator) -> None:
    fs = Tmpfs(pa, inode_limit=4000)
    path = ""
    for _ in range(3000):
        path += "/d"
        fs.mkdir(path, 0o755)
    fs.write_file(path + "/f", b"x" * PAGE_SIZE)
    used = fs.used_pages
    assert fs.remove_path("/d")
    assert fs.listdir("/") == []
    assert fs.used_pages == used - 1
    assert fs.root.nlink == 2

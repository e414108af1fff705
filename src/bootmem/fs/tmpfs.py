"""An in-memory filesystem, like Linux's tmpfs, whose file data lives in allocator pages.

The unpacker populates it the way ``init/initramfs.c`` populates rootfs: ``mkdir``, ``mknod``,
``symlink``, ``link``, ``create`` + ``write`` (``filp_open(O_TRUNC)`` + ``kernel_write``), ``chown``,
``chmod``, ``utime`` and, on a type change, ``remove_path`` (``clean_path``).

Ownership of memory: a regular file's bytes are stored only in order-0 pages allocated from the
:class:`~bootmem.mm.PageAllocator` (owner ``"rootfs"`` by default) as the file grows, one page per
``PAGE_SIZE`` bytes of its size, the last page partly used - less where a sparse
:meth:`Tmpfs.truncate` left a hole at its tail, which reads as zeros and holds no page until
written.  Pages go back to the allocator when the
file is truncated or its last link is removed (and no :class:`OpenFile` still has it open).  So at
every moment each page is either free in the allocator or in exactly one file.

Paths are ``/``-separated; a relative path is taken from the root.  ``.`` and ``..`` are resolved
inside the filesystem and never climb above the root; symlinks met on the way are followed (at
most :data:`MAXSYMLINKS` per lookup, then ``ELOOP``), the final component only where the operation
says so.  Errors are :class:`~bootmem.errors.TmpfsError` with the ``errno`` Linux gives and the
path in ``filename``: ``[Errno 2] No such file or directory: '/etc/passwd'``.

Times are not modelled: new inodes get the ``mtime`` they are given (default 0) and nothing
changes it but :meth:`Tmpfs.utime`.  Permissions are not checked (everything runs as root).

>>> from bootmem.mm import PageAllocator
>>> fs = Tmpfs(PageAllocator(base=0x8000_0000, size=1 << 20))
>>> fs.mkdir("/etc", 0o755)
>>> with fs.create("/etc/hostname", 0o644) as f:
...     f.write(b"bootmem\\n")
8
>>> fs.read("/etc/hostname"), fs.used_pages
(b'bootmem\\n', 1)
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from bootmem.errors import (
    OutOfMemoryError,
    TmpfsError,
    TmpfsNoSpaceError,
    TmpfsNotFoundError,
    UsageError,
)
from bootmem.filetypes import type_char
from bootmem.units import PAGE_SIZE

if TYPE_CHECKING:
    from bootmem.mm import FrameAllocator

__all__ = ["MAXSYMLINKS", "Inode", "OpenFile", "Stat", "Tmpfs"]

MAXSYMLINKS = 40  # include/linux/namei.h: symlinks followed in one lookup before ELOOP
DIR_CACHE_SIZE = 4096  # directory paths remembered by a Tmpfs for its lookups (a dcache)
BOGO_DIRENT_SIZE = 20  # mm/shmem.c: a directory's i_size is 2 * 20 plus 20 per entry
DEFAULT_OWNER = "rootfs"

_MKNOD_TYPES = frozenset({stat.S_IFREG, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK})
_ZERO_PAGE = memoryview(bytes(PAGE_SIZE))


def _error(err: int, path: str, detail: str = "") -> TmpfsError:
    """The exception for ``err`` at ``path``: its strerror (plus ``detail``), ``filename`` = path."""
    message = os.strerror(err) + (f" ({detail})" if detail else "")
    exc: TmpfsError
    if err == errno.ENOENT:
        exc = TmpfsNotFoundError(message)
    elif err == errno.ENOSPC:
        exc = TmpfsNoSpaceError(message)
    else:
        exc = TmpfsError(err, message)
    exc.filename = path
    return exc


#: mm/shmem.c: a symlink target this long, with its NUL, is kept in the inode, not a page.
SHORT_SYMLINK_LEN = 128


class Inode:
    """One file of any type, shared by all its hard links.

    ``mode`` is the full ``st_mode`` (type and permission bits); ``rdev`` is ``(major, minor)``
    (``(0, 0)`` but for devices); ``size`` is in bytes.  A regular file's data is in ``pages``
    (pfns, ``ceil(size / PAGE_SIZE)`` of them, fewer when the tail is a hole); a symlink's
    target is ``target``; a directory's children are ``entries`` (name -> Inode) and its
    ``parent`` is the directory holding it (the root is its own parent).  Read the attributes
    freely; change them only through :class:`Tmpfs`.
    """

    __slots__ = (
        "entries",
        "gid",
        "ino",
        "mode",
        "mtime",
        "nlink",
        "opened",
        "pages",
        "parent",
        "rdev",
        "size",
        "target",
        "uid",
    )

    def __init__(
        self, ino: int, mode: int, uid: int, gid: int, mtime: int, rdev: tuple[int, int] = (0, 0)
    ) -> None:
        self.ino = ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.mtime = mtime
        self.rdev = rdev
        self.nlink = 0
        self.size = 0
        self.pages: list[int] = []
        self.target: str | None = None
        self.entries: dict[str, Inode] | None = None
        self.parent: Inode | None = None
        self.opened = 0  # OpenFile objects not yet closed

    @property
    def kind(self) -> str:
        """The type as ``find -type`` spells it: one of ``d f l c b p s``."""
        return type_char(self.mode)

    @property
    def permissions(self) -> int:
        """The permission bits, setuid, setgid and sticky included (``mode & 0o7777``)."""
        return stat.S_IMODE(self.mode)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    def __repr__(self) -> str:
        return (
            f"Inode(ino={self.ino}, kind={self.kind!r}, mode={self.permissions:#06o}, "
            f"uid={self.uid}, gid={self.gid}, size={self.size}, nlink={self.nlink})"
        )


@dataclass(frozen=True, slots=True)
class Stat:
    """A snapshot of an inode, with ``os.stat_result``'s field names; ``st_blocks`` in 512 B units."""

    st_mode: int
    st_ino: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int
    st_mtime: int
    st_rdev: int
    st_blocks: int


class OpenFile:
    """A regular file open for writing, as :meth:`Tmpfs.create` returns it.

    Writes go at the current position (0 after opening) and move it; writing past the end
    zero-fills the gap.  Use it as a context manager or call :meth:`close`.  While it is open the
    file's pages stay allocated even if its last link is removed, as on Linux.
    """

    def __init__(self, fs: Tmpfs, inode: Inode, path: str) -> None:
        self._fs = fs
        self.inode = inode
        self.path = path
        self._pos = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Copy ``data`` into the file's pages at the current position; return ``len(data)``.

        Raises :class:`~bootmem.errors.TmpfsNoSpaceError` when a page is needed past the size
        limit or the allocator has none; the file then keeps the bytes that fit in the pages it
        got (its size grows to cover them, no further), and the position is left after them.
        """
        if self._closed:
            raise ValueError("I/O operation on closed file")
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        with view:
            self._pos, error = self._fs._write_at(self.inode, self._pos, view, self.path)
            if error is not None:
                try:
                    raise error
                finally:
                    # The traceback holds this frame: without the local, a cycle would keep
                    # ``data`` (perhaps a view of the initrd's lease) alive until a gc run.
                    del error, data
            return len(view)

    def truncate(self, size: int, *, sparse: bool = False) -> None:
        """Set the open file's size (``ftruncate``), as :meth:`Tmpfs.truncate` does for a path;
        the position does not move."""
        if self._closed:
            raise ValueError("I/O operation on closed file")
        with self._fs._lock:
            self._fs._truncate(self.inode, size, sparse, self.path)

    def chown(self, uid: int, gid: int) -> None:
        """Set the open file's owner and group (``fchown``)."""
        with self._fs._lock:
            self.inode.uid, self.inode.gid = uid, gid

    def chmod(self, mode: int) -> None:
        """Set the open file's permission bits, ``mode & 0o7777`` (``fchmod``)."""
        with self._fs._lock:
            self.inode.mode = stat.S_IFMT(self.inode.mode) | stat.S_IMODE(mode)

    def utime(self, mtime: int) -> None:
        """Set the open file's modification time in seconds (``futimens``)."""
        with self._fs._lock:
            self.inode.mtime = mtime

    def seek(self, position: int) -> int:
        """Move to byte ``position`` (absolute, not negative); return it."""
        if position < 0:
            raise _error(errno.EINVAL, self.path, f"negative position {position}")
        self._pos = position
        return position

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        """Close; idempotent.  Frees the pages if the file lost its last link while open."""
        if not self._closed:
            self._closed = True
            self._fs._release(self.inode)

    def __enter__(self) -> OpenFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def shmem_limits(
    totalram_pages: int, *, size: int | None = None, share: float | None = None
) -> tuple[int, int]:
    """``(max_blocks, max_inodes)`` of a tmpfs mounted while ``totalram_pages`` are managed.

    ``totalram_pages`` is Linux's ``totalram_pages()`` when the filesystem is mounted: the pages
    the page allocator manages (free or allocated), not those memblock kept for the kernel or
    the initrd.  By default ``max_blocks`` is half of them (mm/shmem.c
    ``shmem_default_max_blocks``); ``size`` bytes give ``ceil(size / PAGE_SIZE)`` blocks and
    ``share`` (``size=50%`` is 0.5) that share of ``totalram_pages``, rounded up
    (``shmem_parse_one``).  ``max_inodes`` is ``shmem_default_max_inodes``:
    ``min(totalram - totalhigh, totalram / 2)``, and the model has no highmem.  Raises
    :class:`UsageError` for a negative size or a share outside ``(0, 1]``.

    >>> shmem_limits(1000), shmem_limits(1000, share=0.25), shmem_limits(1000, size=4097)
    ((500, 500), (250, 500), (2, 500))
    """
    inodes = totalram_pages // 2
    if size is not None:
        if size < 0:
            raise UsageError(f"negative tmpfs size limit {size}")
        return -(-size // PAGE_SIZE), inodes
    if share is not None:
        if not 0 < share <= 1:
            raise UsageError(f"tmpfs share {share!r} is not in (0, 1]")
        millionths = round(share * 1_000_000)
        return -(-totalram_pages * millionths // 1_000_000), inodes
    return totalram_pages // 2, inodes


class Tmpfs:
    """A tmpfs whose regular-file data lives in order-0 pages of ``allocator`` (any
    :class:`~bootmem.mm.FrameAllocator`).

    ``size_limit`` is in bytes and counts pages of file data (rounded up to whole pages, as
    ``mount -o size=`` does); ``None`` means Linux's default from :func:`shmem_limits`: half of
    the pages the allocator manages now (free or allocated; reserved pages do not count).
    ``inode_limit`` is ``nr_inodes`` (default :func:`shmem_limits`'s): as ``shmem_reserve_inode``
    counts them, every inode takes one - the root, each directory, file, symlink and node - and
    so does every further hard link (``shmem_link``); past the limit a create or a link is
    ``ENOSPC``.  Pages are allocated with ``owner``.  Every public method holds one lock, so
    one thread may populate the filesystem while others use the same allocator.  The root
    directory has mode 1777, tmpfs's default (``shmem_init_fs_context``: ``0777 | S_ISVTX``).

    ``ramfs=True`` makes it ramfs instead (what rootfs is when the command line names a
    ``root=``): no size or inode limit (only the allocator's pages), every symlink in a page of
    its own (``page_symlink``), directories of size 0 (no ``BOGO_DIRENT_SIZE``), a root of
    mode 0755 (``RAMFS_DEFAULT_MODE``).
    """

    def __init__(
        self,
        allocator: FrameAllocator,
        size_limit: int | None = None,
        *,
        owner: str = DEFAULT_OWNER,
        inode_limit: int | None = None,
        ramfs: bool = False,
    ) -> None:
        self._allocator = allocator
        self.owner = owner
        self.ramfs = ramfs
        stats = allocator.stats()
        blocks, inodes = shmem_limits(stats["free"] + stats["allocated"], size=size_limit)
        self.limit_pages: int | None = None if ramfs else blocks
        self.limit_inodes: int | None = None if ramfs else inodes if inode_limit is None else inode_limit
        self._free_inodes = self.limit_inodes or 0
        self._dirent = 0 if ramfs else BOGO_DIRENT_SIZE
        self._lock = threading.RLock()
        self._next_ino = 1
        self._used_pages = 0
        root_mode = 0o755 if ramfs else 0o1777  # RAMFS_DEFAULT_MODE; tmpfs: 0777 | S_ISVTX
        self.root = self._new_inode(stat.S_IFDIR | root_mode, 0, 0, 0, path="/")
        self.root.parent = self.root
        self.root.nlink = 2
        # Path as given -> the directory it resolved to.  Creating names cannot change what an
        # existing path resolves to, removing one can: every removal empties it.
        self._dirs: dict[str, Inode] = {"": self.root}

    # --- figures --------------------------------------------------------------------------

    @property
    def size_limit(self) -> int | None:
        """The limit in bytes: ``limit_pages * PAGE_SIZE`` (None for ramfs: no limit)."""
        return None if self.limit_pages is None else self.limit_pages * PAGE_SIZE

    @property
    def used_inodes(self) -> int:
        """Inodes charged to ``inode_limit`` (every inode, and every hard link past the first)."""
        return 0 if self.limit_inodes is None else self.limit_inodes - self._free_inodes

    @property
    def used_pages(self) -> int:
        """Pages of file data held, open-but-unlinked files included."""
        return self._used_pages

    @property
    def used_bytes(self) -> int:
        """Bytes of RAM held for file data: ``used_pages * PAGE_SIZE`` (what ``df`` reports)."""
        return self._used_pages * PAGE_SIZE

    # --- creating -------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int, uid: int = 0, gid: int = 0, mtime: int = 0) -> None:
        """Make directory ``path`` with permission bits ``mode & 0o7777``.

        ``EEXIST`` if anything is at ``path`` (a symlink to a directory too), ``ENOENT`` or
        ``ENOTDIR`` if its parent is missing or not a directory.
        """
        with self._lock:
            parent, name = self._new_name(path, dir_ok=True)
            inode = self._new_inode(stat.S_IFDIR | stat.S_IMODE(mode), uid, gid, mtime, path=path)
            self._attach(parent, name, inode)

    def mknod(
        self,
        path: str,
        mode: int,
        rdev: tuple[int, int] = (0, 0),
        uid: int = 0,
        gid: int = 0,
        mtime: int = 0,
    ) -> None:
        """Make a device, fifo, socket or empty regular file; ``mode`` carries the type.

        ``rdev`` is ``(major, minor)`` and is kept for character and block devices only.  A
        type of 0 means a regular file (as ``mknod(2)``); ``S_IFDIR`` is ``EPERM``, an unknown
        type ``EINVAL``; otherwise the errors of :meth:`mkdir`.
        """
        kind = stat.S_IFMT(mode) or stat.S_IFREG
        if kind == stat.S_IFDIR:
            raise _error(errno.EPERM, path, "mknod of a directory")
        if kind not in _MKNOD_TYPES:
            raise _error(errno.EINVAL, path, f"file type {kind:#o}")
        if kind not in (stat.S_IFCHR, stat.S_IFBLK):
            rdev = (0, 0)
        with self._lock:
            parent, name = self._new_name(path)
            inode = self._new_inode(kind | stat.S_IMODE(mode), uid, gid, mtime, rdev, path=path)
            self._attach(parent, name, inode)

    def symlink(
        self, target: str, path: str, uid: int = 0, gid: int = 0, mtime: int = 0, *, allow_empty: bool = False
    ) -> None:
        """Make symlink ``path`` pointing at ``target`` (stored as given, not resolved); mode 0777.

        An empty ``target`` is ``ENOENT``, as ``symlink(2)``, unless ``allow_empty`` (the kernel's
        own ``init_symlink`` hands it to ``vfs_symlink`` as it is).  As ``shmem_symlink``: a
        target of ``PAGE_SIZE - 1`` bytes or more is ``ENAMETOOLONG``, and one of
        ``SHORT_SYMLINK_LEN`` bytes or more is kept in a page of its own, charged to the size
        limit (``ENOSPC`` when there is none).  On ramfs (``ramfs_symlink``, ``page_symlink``)
        every target takes a page, and one of ``PAGE_SIZE`` bytes reads back without its last
        byte (``page_get_link`` ends it at ``PAGE_SIZE - 1``).
        """
        encoded = os.fsencode(target)
        if not encoded and not allow_empty:
            raise _error(errno.ENOENT, path, "empty symlink target")
        if len(encoded) + 1 > PAGE_SIZE:
            if not self.ramfs or len(encoded) > PAGE_SIZE:
                raise _error(errno.ENAMETOOLONG, path, f"symlink target of {len(encoded)} bytes")
            encoded = encoded[: PAGE_SIZE - 1]
            target = os.fsdecode(encoded)
        with self._lock:
            parent, name = self._new_name(path)
            inode = self._new_inode(stat.S_IFLNK | 0o777, uid, gid, mtime, path=path)
            if self.ramfs or len(encoded) + 1 > SHORT_SYMLINK_LEN:
                error = self._alloc_pages(inode, 1, path)
                if error is not None:
                    for pfn in inode.pages:
                        self._free_page(pfn)
                    self._free_inode()  # iput: the new inode is evicted
                    try:
                        raise error
                    finally:
                        del error  # no cycle through this frame's traceback (see OpenFile.write)
                self._allocator.memory.write(inode.pages[0] * PAGE_SIZE, encoded + b"\0")
            inode.target = target
            inode.size = len(encoded)
            self._attach(parent, name, inode)

    def link(self, existing: str, new: str) -> None:
        """Make ``new`` a hard link to the inode at ``existing`` (a final symlink is not followed).

        Both names then share the inode (data, mode, owner, mtime); ``nlink`` counts them.
        ``EPERM`` for a directory; ``EEXIST`` if ``new`` exists.
        """
        with self._lock:
            inode = self._resolve(existing, follow_final=False)
            if inode.is_dir:
                raise _error(errno.EPERM, existing, "hard link to a directory")
            parent, name = self._new_name(new)
            self._reserve_inode(new)  # shmem_link: each further link takes an inode
            self._attach(parent, name, inode)

    def create(self, path: str, mode: int, uid: int = 0, gid: int = 0, *, truncate: bool = True) -> OpenFile:
        """Open regular file ``path`` for writing, making it (mode, uid, gid) if absent.

        Like ``open(O_WRONLY | O_CREAT | O_NOFOLLOW [| O_TRUNC])``: an existing regular file is
        opened as it is (its mode and owner unchanged) and emptied when ``truncate``; an
        existing directory is ``EISDIR``, a symlink ``ELOOP``, anything else ``EEXIST``.
        """
        with self._lock:
            parent, name, trailing = self._parent(path, errno.EISDIR)
            assert parent.entries is not None
            inode = parent.entries.get(name)
            if trailing:
                raise _error(errno.EISDIR if inode is None or inode.is_dir else errno.ENOTDIR, path)
            if inode is None:
                inode = self._new_inode(stat.S_IFREG | stat.S_IMODE(mode), uid, gid, 0, path=path)
                self._attach(parent, name, inode)
            elif inode.is_dir:
                raise _error(errno.EISDIR, path)
            elif inode.is_symlink:
                raise _error(errno.ELOOP, path, "final symlink not followed")
            elif not inode.is_file:
                raise _error(errno.EEXIST, path, f"a {inode.kind!r} node, not a regular file")
            elif truncate:
                self._shrink(inode, 0)
            inode.opened += 1
            return OpenFile(self, inode, path)

    def write_file(
        self,
        path: str,
        data: bytes | bytearray | memoryview,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        mtime: int = 0,
    ) -> None:
        """``create`` (truncating), write all of ``data``, close, and set ``mtime``."""
        with self._lock, self.create(path, mode, uid, gid) as f:
            f.write(data)
            f.inode.mtime = mtime

    # --- changing -------------------------------------------------------------------------

    def truncate(self, path: str, size: int, *, sparse: bool = False) -> None:
        """Set regular file ``path``'s size (symlinks followed): shrinking frees the pages past it,
        growing allocates zero-filled pages - or, with ``sparse``, none: the new tail is a hole
        that reads as zeros and takes pages only as it is written (``shmem_setattr``, which is
        what Linux's ``vfs_truncate`` does on tmpfs; the model's holes are at the tail only).

        A grow that cannot get every page it needs raises ``ENOSPC`` and leaves the file as it
        was.  ``EISDIR`` for a directory, ``EINVAL`` for another type or a negative size.
        """
        with self._lock:
            self._truncate(self._resolve(path, follow_final=True), size, sparse, path)

    def _truncate(self, inode: Inode, size: int, sparse: bool, path: str) -> None:
        if inode.is_dir:
            raise _error(errno.EISDIR, path)
        if not inode.is_file or size < 0:
            raise _error(errno.EINVAL, path, f"truncate to {size}")
        if size <= inode.size:
            self._shrink(inode, size)
        elif sparse:
            self._zero_tail(inode)
            inode.size = size
        else:
            self._grow(inode, size, path)

    def chown(self, path: str, uid: int, gid: int, *, follow_symlinks: bool = True) -> None:
        """Set owner and group; ``follow_symlinks=False`` changes a symlink itself (``lchown``)."""
        with self._lock:
            inode = self._resolve(path, follow_final=follow_symlinks)
            inode.uid, inode.gid = uid, gid

    def chmod(self, path: str, mode: int) -> None:
        """Set the permission bits (``mode & 0o7777``) of ``path``, symlinks followed."""
        with self._lock:
            inode = self._resolve(path, follow_final=True)
            inode.mode = stat.S_IFMT(inode.mode) | stat.S_IMODE(mode)

    def utime(self, path: str, mtime: int, *, follow_symlinks: bool = True) -> None:
        """Set the modification time (seconds); ``follow_symlinks=False`` as ``lutimes``.

        (``init/initramfs.c``'s ``do_utime`` does not follow: pass ``follow_symlinks=False``.)
        """
        with self._lock:
            inode = self._resolve(path, follow_final=follow_symlinks)
            inode.mtime = mtime

    # --- removing -------------------------------------------------------------------------

    def unlink(self, path: str) -> None:
        """Remove the name ``path`` (a final symlink is removed, not followed).

        The inode goes with its last link, a regular file's pages back to the allocator (once
        no :class:`OpenFile` has it open).  ``EISDIR`` for a directory.
        """
        with self._lock:
            parent, name, trailing = self._parent(path, errno.EISDIR)
            inode = self._child(parent, name, path)
            if inode.is_dir:
                raise _error(errno.EISDIR, path)
            if trailing:
                raise _error(errno.ENOTDIR, path)
            self._detach(parent, name)

    def rmdir(self, path: str) -> None:
        """Remove empty directory ``path``.  ``ENOTDIR``, ``ENOTEMPTY``; the root is ``EBUSY``."""
        with self._lock:
            parent, name, _ = self._parent(path, errno.EINVAL, errno.EBUSY)
            inode = self._child(parent, name, path)
            if not inode.is_dir:
                raise _error(errno.ENOTDIR, path)
            assert inode.entries is not None
            if inode.entries:
                raise _error(errno.ENOTEMPTY, path)
            self._detach(parent, name)

    def remove_path(self, path: str) -> bool:
        """Remove whatever is at ``path``, a directory with everything under it; True if there was
        something.  A final symlink is removed, not followed.  Missing ``path`` (or a parent that
        is missing or not a directory) is not an error.  The root is ``EBUSY``.

        (Linux's ``clean_path`` uses ``rmdir``, which leaves a non-empty directory in place;
        callers that want exactly that use :meth:`rmdir`.)
        """
        with self._lock:
            try:
                parent, name, _ = self._parent(path, errno.EINVAL, errno.EBUSY)
            except TmpfsError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    return False
                raise
            assert parent.entries is not None
            if name not in parent.entries:
                return False
            self._detach(parent, name)
            return True

    # --- reading --------------------------------------------------------------------------

    def lookup(self, path: str, *, follow_symlinks: bool = True) -> Inode:
        """The inode at ``path``; ``follow_symlinks=False`` returns a final symlink itself.

        ``ENOENT`` (:class:`~bootmem.errors.TmpfsNotFoundError`), ``ENOTDIR``, ``ELOOP``.
        """
        with self._lock:
            return self._resolve(path, follow_final=follow_symlinks)

    def find(self, path: str, *, follow_symlinks: bool = True) -> Inode | None:
        """The inode :meth:`lookup` would return, or ``None`` where it raises ``ENOENT`` or
        ``ENOTDIR``; other errors (``ELOOP``) are raised."""
        with self._lock:
            try:
                return self._find(path, follow_final=follow_symlinks)
            except TmpfsError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    return None
                raise

    def exists(self, path: str, *, follow_symlinks: bool = True) -> bool:
        """Whether :meth:`lookup` would find something (False for ``ENOENT`` and ``ENOTDIR``)."""
        return self.find(path, follow_symlinks=follow_symlinks) is not None

    def stat(self, path: str, *, follow_symlinks: bool = True) -> Stat:
        """A :class:`Stat` snapshot of ``path`` (``follow_symlinks=False`` is ``lstat``)."""
        with self._lock:
            inode = self._resolve(path, follow_final=follow_symlinks)
            return Stat(
                st_mode=inode.mode,
                st_ino=inode.ino,
                st_nlink=inode.nlink,
                st_uid=inode.uid,
                st_gid=inode.gid,
                st_size=inode.size,
                st_mtime=inode.mtime,
                st_rdev=os.makedev(*inode.rdev),
                st_blocks=len(inode.pages) * (PAGE_SIZE // 512),
            )

    def read(self, path: str) -> bytes:
        """All bytes of regular file ``path`` (symlinks followed).  ``EISDIR``; ``EINVAL`` for
        other types."""
        with self._lock:
            inode = self._regular(path)
            data = bytearray(inode.size)
            at = 0
            for window in self._windows(inode):
                data[at : at + len(window)] = window
                at += len(window)
            return bytes(data)

    def readlink(self, path: str) -> str:
        """The target of symlink ``path``.  ``EINVAL`` if it is not a symlink."""
        with self._lock:
            inode = self._resolve(path, follow_final=False)
            if inode.target is None:
                raise _error(errno.EINVAL, path, "not a symlink")
            return inode.target

    def listdir(self, path: str = "/") -> list[str]:
        """The names in directory ``path``, sorted.  ``ENOTDIR``."""
        with self._lock:
            inode = self._resolve(path, follow_final=True)
            if inode.entries is None:
                raise _error(errno.ENOTDIR, path)
            return sorted(inode.entries)

    def sha256(self, path: str) -> str:
        """The hex SHA-256 of regular file ``path``'s data, hashed in place in its pages."""
        with self._lock:
            return self._sha256(self._regular(path))

    def walk(self) -> Iterator[tuple[str, Inode]]:
        """Every ``(absolute path, inode)``, the root ``/`` included, sorted by path (as ``str``).

        A file with several hard links appears once per name, with the same inode.  The list is
        taken under the lock when iteration starts.
        """
        with self._lock:
            found: list[tuple[str, Inode]] = [("/", self.root)]
            stack: list[tuple[str, Inode]] = [("", self.root)]
            while stack:
                prefix, directory = stack.pop()
                assert directory.entries is not None
                for name, child in directory.entries.items():
                    path = f"{prefix}/{name}"
                    found.append((path, child))
                    if child.entries is not None:
                        stack.append((path, child))
        found.sort(key=lambda item: item[0])
        return iter(found)

    def tree(self) -> list[str]:
        """One tab-separated line per path, sorted by path (``bootmem boot --tree``)::

            path type mode uid gid size nlink mtime rdev data

        ``type`` is one of ``d f l c b p s``; ``mode`` the permission bits in 4-digit octal
        (``0755``, ``4755``); ``rdev`` is ``major:minor`` for ``c`` and ``b``, ``-`` otherwise;
        ``data`` is the SHA-256 of a regular file's bytes, a symlink's target, ``-`` otherwise.
        """
        with self._lock:
            lines = []
            for path, inode in self.walk():
                kind = inode.kind
                rdev = f"{inode.rdev[0]}:{inode.rdev[1]}" if kind in ("c", "b") else "-"
                if kind == "f":
                    data = self._sha256(inode)
                elif kind == "l":
                    assert inode.target is not None
                    data = inode.target
                else:
                    data = "-"
                lines.append(
                    f"{path}\t{kind}\t{inode.permissions:04o}\t{inode.uid}\t{inode.gid}\t{inode.size}"
                    f"\t{inode.nlink}\t{inode.mtime}\t{rdev}\t{data}"
                )
            return lines

    # --- path resolution ------------------------------------------------------------------

    def _resolve(self, path: str, *, follow_final: bool) -> Inode:
        """The inode at ``path``.  Symlinks before the last component are always followed, the
        last one when ``follow_final`` or when a ``/`` follows it (as ``path_lookupat``)."""
        inode = self._find(path, follow_final=follow_final)
        if inode is None:
            raise _error(errno.ENOENT, path)
        return inode

    def _find(self, path: str, *, follow_final: bool) -> Inode | None:
        """:meth:`_resolve`, but ``None`` when the last component is missing from a directory
        that exists (the common miss, with no exception to make)."""
        head, _, name = path.rpartition("/")
        if name and name != "." and name != "..":
            parent = self._dirs.get(head)
            if parent is None:
                try:
                    parent = self._walk(head, follow_final=True)
                except TmpfsError:
                    return self._walk(path, follow_final=follow_final)  # the error, for path
                if parent.entries is None:
                    return self._walk(path, follow_final=follow_final)
                if len(self._dirs) >= DIR_CACHE_SIZE:
                    self._dirs = {"": self.root}
                self._dirs[head] = parent
            assert parent.entries is not None
            child = parent.entries.get(name)
            if child is None or child.target is None or not follow_final:
                return child
        return self._walk(path, follow_final=follow_final)

    def _walk(self, path: str, *, follow_final: bool) -> Inode:
        """:meth:`_resolve` one component at a time."""
        if not path:
            raise _error(errno.ENOENT, path, "empty path")
        pending = path.split("/")
        pending.reverse()
        current = self.root
        followed = 0
        while pending:
            name = pending.pop()
            entries = current.entries
            if entries is None:
                raise _error(errno.ENOTDIR, path)
            if name in ("", "."):
                continue
            if name == "..":
                assert current.parent is not None
                current = current.parent
                continue
            child = entries.get(name)
            if child is None:
                raise _error(errno.ENOENT, path)
            if child.target is not None and (pending or follow_final):
                followed += 1
                if followed > MAXSYMLINKS:
                    raise _error(errno.ELOOP, path)
                if child.target.startswith("/"):
                    current = self.root
                pending.extend(reversed(child.target.split("/")))
                continue
            current = child
        return current

    def _parent(self, path: str, special: int, root: int | None = None) -> tuple[Inode, str, bool]:
        """The directory holding ``path``'s last component, the component, and whether ``path``
        ends in ``/``.  A last component that names no entry - the root, ``.``, ``..`` - raises
        ``special`` (``root`` for the root, if given)."""
        if not path:
            raise _error(errno.ENOENT, path, "empty path")
        stripped = path.rstrip("/")
        head, _, name = stripped.rpartition("/")
        parent = self._resolve(head or "/", follow_final=True)
        if parent.entries is None:
            raise _error(errno.ENOTDIR, path)
        if name in ("", ".", ".."):
            raise _error(root if name == "" and root is not None else special, path)
        return parent, name, stripped != path

    def _new_name(self, path: str, *, dir_ok: bool = False) -> tuple[Inode, str]:
        """Where ``path`` is to be made: ``EEXIST`` if taken; a trailing ``/`` is ``ENOENT``
        unless ``dir_ok`` (Linux's ``filename_create``)."""
        parent, name, trailing = self._parent(path, errno.EEXIST)
        assert parent.entries is not None
        if name in parent.entries:
            raise _error(errno.EEXIST, path)
        if trailing and not dir_ok:
            raise _error(errno.ENOENT, path)
        return parent, name

    def _child(self, parent: Inode, name: str, path: str) -> Inode:
        assert parent.entries is not None
        inode = parent.entries.get(name)
        if inode is None:
            raise _error(errno.ENOENT, path)
        return inode

    def _regular(self, path: str) -> Inode:
        inode = self._resolve(path, follow_final=True)
        if inode.is_dir:
            raise _error(errno.EISDIR, path)
        if not inode.is_file:
            raise _error(errno.EINVAL, path, f"a {inode.kind!r} node, not a regular file")
        return inode

    # --- the namespace --------------------------------------------------------------------

    def _new_inode(
        self, mode: int, uid: int, gid: int, mtime: int, rdev: tuple[int, int] = (0, 0), *, path: str
    ) -> Inode:
        self._reserve_inode(path)
        inode = Inode(self._next_ino, mode, uid, gid, mtime, rdev)
        self._next_ino += 1
        if inode.is_dir:
            inode.entries = {}
            inode.size = 2 * self._dirent
        return inode

    def _reserve_inode(self, path: str) -> None:
        """``shmem_reserve_inode``: one of ``nr_inodes``, or ``ENOSPC``."""
        if self.limit_inodes is not None:
            if not self._free_inodes:
                raise _error(errno.ENOSPC, path, f"tmpfs inode limit {self.limit_inodes}")
            self._free_inodes -= 1

    def _free_inode(self) -> None:
        """``shmem_free_inode``."""
        if self.limit_inodes is not None:
            self._free_inodes += 1

    def _attach(self, parent: Inode, name: str, inode: Inode) -> None:
        assert parent.entries is not None
        parent.entries[name] = inode
        parent.size += self._dirent
        if inode.is_dir:
            inode.parent = parent
            inode.nlink = 2
            parent.nlink += 1
        else:
            inode.nlink += 1

    def _detach(self, parent: Inode, name: str) -> None:
        """Remove ``parent``'s entry ``name``, a directory's contents first (without recursion:
        a tree may be deeper than Python's recursion limit)."""
        if len(self._dirs) > 1:
            self._dirs = {"": self.root}
        work = [(parent, name, False)]
        while work:
            parent, name, emptied = work.pop()
            assert parent.entries is not None
            inode = parent.entries[name]
            if inode.entries and not emptied:
                work.append((parent, name, True))
                work.extend((inode, child, False) for child in reversed(inode.entries))
                continue
            self._unlink_entry(parent, name)

    def _unlink_entry(self, parent: Inode, name: str) -> None:
        """Remove ``parent``'s entry ``name``, an empty directory or anything else."""
        assert parent.entries is not None
        inode = parent.entries.pop(name)
        parent.size -= self._dirent
        if inode.entries is not None:
            parent.nlink -= 1
            inode.nlink = 0
            inode.parent = None
            self._free_inode()  # evicted
        else:
            inode.nlink -= 1
            if inode.nlink:
                self._free_inode()  # shmem_unlink: a link past the first gives its inode back
            elif inode.opened == 0:
                self._evict(inode)

    def _evict(self, inode: Inode) -> None:
        """``shmem_evict_inode``: the last link gone and the last file closed."""
        self._shrink(inode, 0)  # a symlink's page too
        self._free_inode()

    def _release(self, inode: Inode) -> None:
        """An :class:`OpenFile` of ``inode`` closed."""
        with self._lock:
            inode.opened -= 1
            if inode.nlink == 0 and inode.opened == 0:
                self._evict(inode)

    # --- pages ----------------------------------------------------------------------------

    def _alloc_pages(self, inode: Inode, count: int, path: str) -> TmpfsError | None:
        """Append ``count`` pages for file data to ``inode.pages``, charged to the size limit.

        As many as the limit and the allocator allow are appended; the ENOSPC error for the
        first page that could not be had is returned, ``None`` when all were.
        """
        limit = self.limit_pages
        room = count if limit is None else max(0, min(count, limit - self._used_pages))
        runs: list[tuple[int, int]] = []
        error: TmpfsError | None = None
        if room:
            try:
                runs = self._allocator.alloc_bulk(room, owner=self.owner)
            except OutOfMemoryError as exc:
                runs = exc.runs
                error = _error(errno.ENOSPC, path, "no free page")
                error.__cause__ = exc
        if error is None and room < count:
            error = _error(errno.ENOSPC, path, f"tmpfs size limit {self.limit_pages} pages")
        pages = inode.pages
        for pfn, npages in runs:
            pages.extend(range(pfn, pfn + npages))
            self._used_pages += npages
        return error

    def _free_page(self, pfn: int) -> None:
        self._allocator.free(pfn, order=0)
        self._used_pages -= 1

    def _zero(self, pfn: int, start: int, end: int) -> None:
        """Zero bytes ``[start, end)`` of page ``pfn``."""
        if start < end:
            with self._allocator.page_view(pfn) as page:
                page[start:end] = _ZERO_PAGE[: end - start]

    def _windows(self, inode: Inode) -> Iterator[memoryview]:
        """Views of a regular file's data, one per run of consecutive pages, then its hole at
        the tail (zeros) if it has one; each view is released when the iteration moves on."""
        remaining = inode.size
        for pfn, npages in _runs(inode.pages, 0, len(inode.pages)):
            n = min(remaining, npages * PAGE_SIZE)
            with self._allocator.page_view(pfn, npages) as window, window[:n] as used:
                yield used
            remaining -= n
        while remaining > 0:
            n = min(remaining, PAGE_SIZE)
            yield _ZERO_PAGE[:n]
            remaining -= n

    def _zero_tail(self, inode: Inode) -> None:
        """Zero the last page past the size, where the size ends inside it (before a grow)."""
        if inode.size % PAGE_SIZE and len(inode.pages) > inode.size // PAGE_SIZE:
            self._zero(inode.pages[inode.size // PAGE_SIZE], inode.size % PAGE_SIZE, PAGE_SIZE)

    def _sha256(self, inode: Inode) -> str:
        digest = hashlib.sha256()
        for window in self._windows(inode):
            digest.update(window)
        return digest.hexdigest()

    def _shrink(self, inode: Inode, size: int) -> None:
        """Cut a regular file to ``size`` (not above its size), freeing the pages past it."""
        keep = -(-size // PAGE_SIZE)
        while len(inode.pages) > keep:
            self._free_page(inode.pages.pop())
        inode.size = size

    def _grow(self, inode: Inode, size: int, path: str) -> None:
        """Extend a regular file to ``size`` with zeros, all or nothing."""
        old = len(inode.pages)
        error = self._alloc_pages(inode, -(-size // PAGE_SIZE) - old, path)
        if error is not None:
            while len(inode.pages) > old:
                self._free_page(inode.pages.pop())
            try:
                raise error
            finally:
                del error  # no cycle through this frame's traceback (see OpenFile.write)
        self._zero_tail(inode)
        for pfn in inode.pages[old:]:
            self._zero(pfn, 0, PAGE_SIZE)
        inode.size = size

    def _write_at(self, inode: Inode, pos: int, data: memoryview, path: str) -> tuple[int, TmpfsError | None]:
        """Copy ``data`` into ``inode`` at byte ``pos``; return the position after the bytes
        copied and, if a page could not be had, the ENOSPC error.  The size then covers the bytes
        copied (and the zero-filled gap before them), no more."""
        end = pos + len(data)
        if end == pos:
            return pos, None
        with self._lock:
            pages = inode.pages
            first_new = len(pages)
            if pos > inode.size:
                self._zero_tail(inode)
            error = self._alloc_pages(inode, -(-end // PAGE_SIZE) - first_new, path)
            if error is not None:
                end = len(pages) * PAGE_SIZE  # copy what fits in the pages there are
                if end <= pos:  # nothing to copy: give back the pages taken for the gap
                    self._shrink(inode, inode.size)
                    return pos, error
            # New pages in the gap before pos (or holding its start) read as zeros there.
            for index in range(first_new, len(pages)):
                gap = min(pos - index * PAGE_SIZE, PAGE_SIZE)
                if gap <= 0:
                    break
                self._zero(pages[index], 0, gap)
            first = pos // PAGE_SIZE
            offset = pos - first * PAGE_SIZE
            copied = 0
            memory = self._allocator.memory
            for pfn, npages in _runs(pages, first, (end - 1) // PAGE_SIZE + 1):
                n = min(npages * PAGE_SIZE - offset, end - pos - copied)
                # Written into the memory file, not through a mapping: a page the host has not
                # given yet is then filled directly, with no fault and no zeroing first.
                memory.write(pfn * PAGE_SIZE + offset, data[copied : copied + n])
                copied += n
                offset = 0
            last = (end - 1) // PAGE_SIZE
            if end < inode.size and end % PAGE_SIZE and last >= first_new:
                self._zero(pages[last], end % PAGE_SIZE, PAGE_SIZE)  # a new page inside a hole
            inode.size = max(inode.size, end)
        return end, error


def _runs(pfns: list[int], start: int, stop: int) -> Iterator[tuple[int, int]]:
    """``pfns[start:stop]`` as runs of consecutive frames: ``(first pfn, number of pages)``."""
    if start >= stop:
        return
    head = pfns[start]
    count = 1
    for index in range(start + 1, stop):
        pfn = pfns[index]
        if pfn == head + count:
            count += 1
        else:
            yield head, count
            head, count = pfn, 1
    yield head, count

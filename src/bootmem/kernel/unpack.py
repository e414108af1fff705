"""Unpacking an initramfs into the rootfs, by the rules of Linux's ``init/initramfs.c``.

The image is read by :mod:`bootmem.initramfs` (segments, compressions, cpio); what this module
adds is what the kernel *does* with each entry:

- ``clean_path``: an existing path of another type is removed first (a directory only if it
  is empty: ``init_rmdir`` fails otherwise, and the new entry then fails quietly too);
- a regular file is opened with ``O_TRUNC`` and rewritten, so later segments win; with
  ``c_nlink >= 2`` it is first looked up by (ino, major, minor, type) among the hardlinks of
  the current archive (``find_link``) and, when found, linked instead and written through the
  link without truncation; the table is emptied at every ``TRAILER!!!`` (``free_hash``);
- symlinks replace whatever is at their path (``clean_path(name, 0)``);
- device nodes, fifos and sockets are made unless they are a hardlink already seen;
- directory mtimes are set after everything else (``dir_utime``), since creating children
  changes them;
- failures of the filesystem calls are ignored, as the kernel ignores them, except a short
  write: "write error".  The first error ends unpacking and what was unpacked stays
  (``error()`` keeps only the first message);
- entries the kernel skips (``c_namesize`` 0 or over ``PATH_MAX``, symlink targets over
  ``PATH_MAX``, a directory or special file with a body) are skipped, and counted.

The initrd is read through a lease on its reserved range, closed before this module returns,
so that the release that follows can prove nobody holds the initrd's bytes.
"""

from __future__ import annotations

import functools
import stat
from collections.abc import Callable
from dataclasses import dataclass

import bootmem.initramfs
from bootmem.errors import (
    ChecksumError,
    CompressionError,
    DecompressionBombError,
    ImageError,
    MissingCodecError,
    TmpfsError,
    TmpfsNoSpaceError,
)
from bootmem.fs.tmpfs import Tmpfs
from bootmem.initramfs.cpio import CpioReader, Entry
from bootmem.mm import PageAllocator

# usr/default_cpio_list: what a kernel built without CONFIG_INITRAMFS_SOURCE carries.
DEFAULT_BUILTIN_LIST = """\
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /root 0700 0 0
"""

# The messages init/initramfs.c passes to error(), which the log prints after
# "Initramfs unpacking failed: ".  bootmem's own messages start with (or contain) them.
KERNEL_MESSAGES = (
    "incorrect cpio method used: use -H newc option",
    "no cpio magic",
    "junk within compressed archive",
    "junk at the end of compressed archive",
    "invalid magic at start of compressed archive",
    "broken padding",
    "bad data checksum",
    "write error",
    "decompressor failed",
)


@functools.cache
def default_builtin() -> bytes:
    """The built-in initramfs of a kernel without ``CONFIG_INITRAMFS_SOURCE``, as cpio bytes."""
    import io

    from bootmem.initramfs.create import create_image

    out = io.BytesIO()
    create_image(out, manifest=DEFAULT_BUILTIN_LIST.splitlines())
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class UnpackError:
    """The first error of an unpack: Linux's ``message`` and bootmem's ``detail`` (with offsets)."""

    message: str
    detail: str


@dataclass(frozen=True, slots=True)
class UnpackResult:
    """What an unpack did: entries applied and skipped, segments read, and the first error."""

    entries: int
    skipped: int
    segments: int
    error: UnpackError | None
    looks_like_initrd: bool = False


def kernel_message(exc: BaseException) -> str:
    """The message Linux would print for the failure ``exc`` describes."""
    text = str(exc)
    if isinstance(exc, TmpfsNoSpaceError):
        return "write error"
    if isinstance(exc, ChecksumError):
        return "bad data checksum"
    for message in KERNEL_MESSAGES:
        if message in text:
            return message
    if isinstance(exc, (CompressionError, MissingCodecError, DecompressionBombError)):
        return "decompressor failed"
    if "without its NUL" in text:
        return "malformed archive"
    return text


class _Unpacker:
    """The state init/initramfs.c keeps across the entries of one ``unpack_to_rootfs``."""

    def __init__(self, fs: Tmpfs) -> None:
        self.fs = fs
        self.links: dict[tuple[int, int, int, int], str] = {}
        self.dirs: list[tuple[str, int]] = []
        self.archive: tuple[int, int] = (0, 0)
        self.entries = 0
        self.skipped = 0

    def apply(self, entry: Entry, reader: CpioReader) -> None:
        where = (entry.segment, entry.archive)
        if where != self.archive:  # a TRAILER!!! went by: free_hash()
            self.links.clear()
            self.archive = where
        mode = entry.c_mode
        if not stat.S_ISREG(mode) and not stat.S_ISLNK(mode) and entry.c_filesize:
            # do_header reads the name only "if (S_ISREG(mode) || !body_len)": any other
            # entry with a body is skipped whole.
            self.skipped += 1
            return
        self.entries += 1
        path = _path(entry.name)
        if stat.S_ISLNK(mode):
            self._clean(path, 0)
            self._quietly(
                self.fs.symlink, entry.linkname or "", path, entry.c_uid, entry.c_gid, entry.c_mtime
            )
            return
        self._clean(path, stat.S_IFMT(mode))
        if stat.S_ISREG(mode):
            self._regular(entry, path, reader)
        elif stat.S_ISDIR(mode):
            if not self._quietly(self.fs.mkdir, path, mode, entry.c_uid, entry.c_gid, entry.c_mtime):
                # init_mkdir failed (the path exists): init_chown and init_chmod still apply.
                self._quietly(self.fs.chown, path, entry.c_uid, entry.c_gid)
                self._quietly(self.fs.chmod, path, mode)
            self.dirs.append((path, entry.c_mtime))
        elif entry.isdev() and self._maybe_link(entry, path) == 0:
            # init_mknod, then init_chown, init_chmod and do_utime whether or not it succeeded:
            # a node already there (the built-in /dev/console) takes the entry's attributes.
            self._quietly(self.fs.mknod, path, mode, (entry.c_rdevmajor, entry.c_rdevminor))
            self._quietly(self.fs.chown, path, entry.c_uid, entry.c_gid)
            self._quietly(self.fs.chmod, path, mode)
            self._utime(path, entry.c_mtime)

    def _regular(self, entry: Entry, path: str, reader: CpioReader) -> None:
        linked = self._maybe_link(entry, path)
        if linked < 0:
            return
        try:
            out = self.fs.create(path, entry.c_mode, entry.c_uid, entry.c_gid, truncate=linked != 1)
        except TmpfsError:
            return  # filp_open failed: the kernel skips the data (state SkipIt)
        with out:
            # do_name: vfs_fchown and vfs_fchmod on every opened file, so an existing file
            # rewritten by a later segment takes that entry's owner and mode too.
            out.chown(entry.c_uid, entry.c_gid)
            out.chmod(entry.c_mode)
            try:
                for chunk in reader.iter_data():
                    out.write(chunk)  # TmpfsNoSpaceError: "write error", raised to the caller
            finally:
                # do_copy: do_utime_path() on the open file, after a short write too.
                out.utime(entry.c_mtime)

    def _maybe_link(self, entry: Entry, path: str) -> int:
        """``maybe_link``: 1 when linked to an earlier entry, 0 when not a known link, -1 on failure."""
        if entry.c_nlink < 2:
            return 0
        old = self.links.get(entry.link_key)
        if old is None:
            self.links[entry.link_key] = path
            return 0
        self._clean(path, 0)
        return 1 if self._quietly(self.fs.link, old, path) else -1

    def _clean(self, path: str, fmode: int) -> None:
        """``clean_path``: remove what is at ``path`` when its type differs from ``fmode``'s."""
        try:
            st = self.fs.find(path, follow_symlinks=False)
        except TmpfsError:
            return
        if st is not None and stat.S_IFMT(st.mode) != fmode:
            remove = self.fs.rmdir if st.is_dir else self.fs.unlink
            self._quietly(remove, path)

    def _utime(self, path: str, mtime: int) -> None:
        """``do_utime``: ``init_utimes`` with ``AT_SYMLINK_NOFOLLOW``."""
        self._quietly(self.fs.utime, path, mtime, follow_symlinks=False)

    @staticmethod
    def _quietly(call: Callable[..., object], *args: object, **kwargs: object) -> bool:
        """Run a filesystem call whose failure the kernel ignores; True if it succeeded."""
        try:
            call(*args, **kwargs)
        except TmpfsNoSpaceError:
            raise
        except TmpfsError:
            return False
        return True

    def finish(self) -> None:
        """``dir_utime``: directory mtimes, newest entry first as the kernel's list runs."""
        for path, mtime in reversed(self.dirs):
            self._utime(path, mtime)
        self.dirs.clear()


def _path(name: str) -> str:
    return "/" + name if not name.startswith("/") else name


def unpack_to_rootfs(
    data: bytes | memoryview, fs: Tmpfs, *, max_decompressed: int | None = None
) -> UnpackResult:
    """Unpack the image ``data`` into ``fs`` by the kernel's rules; never raises for bad input.

    ``max_decompressed`` caps the bytes decompressed (default: the image module's cap).  The
    result carries the first error, if any; what was unpacked before it stays in ``fs``.
    """
    unpacker = _Unpacker(fs)
    img = bootmem.initramfs.open(data, strict=False, max_decompressed=max_decompressed)
    error: UnpackError | None = None
    readers: dict[int, CpioReader] = {}  # per segment, for the entries its reader skipped
    # Keep the pass open until the segments are counted: a pass abandoned by an error raised
    # here (a checksum met while copying, a write error) would make ``img.segments`` start a
    # second pass, which raises that error again.
    stream = img.stream()
    try:
        for entry, reader in stream:
            readers[entry.segment] = reader
            unpacker.apply(entry, reader)
    except (ImageError, TmpfsError) as exc:
        message = kernel_message(exc)
        error = UnpackError(message, str(exc))
    finally:
        unpacker.finish()
        segments = len(img.segments)
        resume = img.segments[-1].end if img.segments else 0
        del stream  # the last reference: the pass ends here
        img.close()
    if error is not None and _truncated_raw(error, data, resume):
        # A raw archive cut short is not an error for the kernel: write_buffer() consumes the
        # partial header or data and unpack_to_rootfs() returns with no message.
        error = None
    skipped = unpacker.skipped + sum(reader.skipped for reader in readers.values())
    return UnpackResult(unpacker.entries, skipped, segments, error)


def _truncated_raw(error: UnpackError, data: bytes | memoryview, resume: int) -> bool:
    """Whether ``error`` is a truncation of the raw segment that starts after offset ``resume``."""
    if not error.detail.startswith("truncated"):
        return False
    view = memoryview(data)
    while resume < len(view) and view[resume] == 0:
        resume += 1
    return bytes(view[resume : resume + 1]) == b"0"


def unpack_builtin(data: bytes, fs: Tmpfs) -> UnpackError | None:
    """The built-in initramfs (``__initramfs_start``), unpacked before the initrd."""
    return unpack_to_rootfs(data, fs).error


def unpack_initrd(allocator: PageAllocator, start: int, end: int, fs: Tmpfs) -> UnpackResult:
    """Unpack the initrd at ``[start, end)`` through a lease, closed before returning.

    When nothing could be unpacked because the image is not a cpio at all, the image is kept
    as ``/initrd.image`` (``populate_initrd_image``) and the result says it looks like an initrd.
    """
    lease = allocator.lease(start, end, owner="initramfs unpacker")
    try:
        view = lease.view
        try:
            result = unpack_to_rootfs(view, fs, max_decompressed=_cap(allocator))
            if (
                result.error is not None
                and result.entries == 0
                and result.error.message
                in (
                    "no cpio magic",
                    "invalid magic at start of compressed archive",
                )
            ):
                _keep_initrd_image(fs, view)
                result = UnpackResult(0, result.skipped, 0, result.error, looks_like_initrd=True)
        finally:
            view.release()
    finally:
        lease.close()
    return result


def _cap(allocator: PageAllocator) -> int:
    # The rootfs cannot hold more than RAM; a stream that expands past twice that is a bomb.
    return 2 * allocator.size


def _keep_initrd_image(fs: Tmpfs, view: memoryview) -> None:
    try:
        with fs.create("/initrd.image", 0o100700) as out:
            out.write(view)
    except TmpfsNoSpaceError:
        pass  # Linux: "/initrd.image: short write", and boot goes on

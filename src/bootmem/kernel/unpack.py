"""Unpacking an initramfs, by the rules of Linux's ``init/initramfs.c`` (v6.1 and current).

This is that file's state machine, once.  The entry loop is :class:`Unpacker`: the kernel's
states as methods (``do_start``, ``do_collect``, ``do_header``, ``do_skip``, ``do_name``,
``do_copy``, ``do_symlink``, ``do_reset``) in one ``actions`` table, a ``collect`` buffer for
fields that straddle input chunks, and ``write_buffer`` / ``flush_buffer`` feeding them bytes.
The image loop, :func:`unpack_image`, is ``unpack_to_rootfs``: a ``0`` at a 4-aligned offset
feeds the raw bytes to the machine, NULs are skipped, anything else is a compressed member
(:mod:`bootmem.initramfs.compress`) whose output goes through ``flush_buffer``.

What the machine does to a filesystem goes through a :class:`Target`, the calls the kernel
makes (``clean_path``, ``init_mkdir``, ``filp_open`` ...).  There are two: :class:`TmpfsTarget`
(the modelled rootfs, here) and the host directory of :mod:`bootmem.initramfs.extract`, which
adds its filters.  So the rules below hold for both:

- after *every* entry NULs are skipped (``do_reset``) and the image loop decides what follows,
  so a raw archive needs no trailer before a compressed member; ``TRAILER!!!`` only empties the
  hardlink table (``free_hash``), and only as the name of an entry read by ``do_name``: a
  symlink named so is a symlink, a directory with a body is skipped;
- header fields are read with ``simple_strtoul`` (never fails: hex digits up to the first
  other byte, an optional ``0x``); the mode is a ``umode_t`` (16 bits); a device number goes
  through ``new_encode_dev(MKDEV(major, minor))`` (12-bit major, 20-bit minor);
- entries with ``c_namesize`` 0 or over ``PATH_MAX``, symlinks with a target over
  ``PATH_MAX`` and anything but a regular file with a body are skipped whole (``do_header``);
- an existing path of another type is removed first (``clean_path``); a regular file is
  opened with ``O_TRUNC`` unless linked, takes the entry's owner and mode, and is truncated to
  ``c_filesize`` *before* its data is written (``vfs_truncate`` in ``do_name``);
- the ``070702`` byte sum is checked only for files opened, over the bytes written;
- hardlinks are matched on (ino, major, minor, type) within one archive (``find_link``);
- uid or gid ``0xffffffff`` is ``-1`` to ``chown``: unchanged;
- directory mtimes are set last, newest first (``dir_utime``);
- ``error()`` keeps the first message; the entry in progress is finished and nothing after it
  is read.  A raw archive cut short is no error.

The initrd is read through a lease on its reserved range, closed before this module returns,
so that the release that follows can prove nobody holds the initrd's bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bootmem.errors import (
    CompressionError,
    DecompressionBombError,
    DecompressorError,
    ImageError,
    MissingCodecError,
    RegionBusyError,
    TmpfsError,
    TmpfsNoSpaceError,
)
from bootmem.initramfs.compress import Budget, ImageBytes, MemberStream, Prefetch, decompress_method
from bootmem.initramfs.cpio import HEADER_SIZE, PATH_MAX, TRAILER, Entry, data_checksum
from bootmem.initramfs.image import Image, Source, image_bytes
from bootmem.kernel.workspace import UNPACK_BUFFERS, member_workspace

if TYPE_CHECKING:  # numpy comes with bootmem.mm, hashlib with the tmpfs: extraction starts without them
    from bootmem.fs.tmpfs import OpenFile, Tmpfs
    from bootmem.mm import PageAllocator
    from bootmem.mm.lease import Lease

# usr/default_cpio_list: what a kernel built without CONFIG_INITRAMFS_SOURCE carries.
DEFAULT_BUILTIN_LIST = """\
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /root 0700 0 0
"""

# The messages init/initramfs.c passes to error(), which the log prints after
# "Initramfs unpacking failed: ".
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

#: Bytes of the image fed to the machine at a time (the kernel hands it the whole image).
CHUNK = 1 << 20


def N_ALIGN(name_len: int) -> int:
    """``N_ALIGN``: the name's length padded so that header + name end on a multiple of 4."""
    return ((name_len + 1) & ~3) + 2


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
    """What an unpack did: entries applied and skipped, segments read, and the first error.

    ``looks_like_initrd`` is set when the kernel keeps the image as ``/initrd.image``
    (``CONFIG_BLK_DEV_RAM`` and an error).
    """

    entries: int
    skipped: int
    segments: int
    error: UnpackError | None
    looks_like_initrd: bool = False
    # Bytes the kernel's unpack holds in buffers at once: its own, and the largest member's
    # decompressor's (bootmem.kernel.workspace).
    workspace: int = UNPACK_BUFFERS


def kernel_message(exc: BaseException) -> str:
    """The message Linux would print for the failure ``exc`` describes."""
    if isinstance(exc, TmpfsNoSpaceError):
        return "write error"
    if isinstance(exc, DecompressorError):
        return exc.kernel_message  # the decompressor's own error(), e.g. gunzip's "read error"
    text = str(exc)
    for message in KERNEL_MESSAGES:
        if message in text:
            return message
    if isinstance(exc, (CompressionError, MissingCodecError, DecompressionBombError)):
        return "decompressor failed"
    return text


def strtoul16(field: bytes | bytearray | memoryview) -> int:
    """``simple_strtoul(field, NULL, 16)``: an optional ``0x``, then hex digits up to the first
    other byte; 0 when there are none.  It never fails.

    >>> strtoul16(b"000001ED"), strtoul16(b"0x1g000000"), strtoul16(b"zzzzzzzz")
    (493, 1, 0)
    """
    raw = bytes(field)
    if raw[:2] in (b"0x", b"0X"):
        raw = raw[2:]
    end = 0
    while end < len(raw) and raw[end] in _HEX:
        end += 1
    return int(raw[:end], 16) if end else 0


_HEX_DIGITS = b"0123456789abcdefABCDEF"
_HEX = frozenset(_HEX_DIGITS)


def _header_fields(header: bytes) -> list[int]:
    """The 13 fields of a 110-byte header, each by :func:`strtoul16`."""
    if not header[6:HEADER_SIZE].translate(None, _HEX_DIGITS):  # all hex digits: one C call
        return [int(header[i : i + 8], 16) for i in range(6, HEADER_SIZE, 8)]
    return [strtoul16(header[i : i + 8]) for i in range(6, HEADER_SIZE, 8)]


def kernel_rdev(major: int, minor: int) -> tuple[int, int]:
    """The device number ``init_mknod`` gets: ``new_encode_dev(MKDEV(major, minor))`` decoded,
    ``MKDEV`` being ``major << 20 | minor`` in a 32-bit ``dev_t``.

    >>> kernel_rdev(5, 1), kernel_rdev(0x80000000, 0xFFFFFFFF)
    ((5, 1), (4095, 1048575))
    """
    dev = ((major << 20) | minor) & 0xFFFFFFFF
    return dev >> 20, dev & 0xFFFFF


# --- the filesystem interface --------------------------------------------------------------


class Sink(Protocol):
    """A regular file opened by ``do_name``, written by ``do_copy``.

    ``kernel_opened`` is False for a file Linux's ``filp_open`` would not have opened (a host
    directory's target makes missing parents): its ``070702`` sum is then not checked, as Linux
    never reads its data.
    """

    kernel_opened: bool

    def write(self, data: memoryview) -> int:
        """Write ``data``; return the bytes written (fewer: "write error")."""
        ...

    def close(self, mtime: int | None) -> None:
        """``do_utime_path`` (unless ``mtime`` is None) then ``fput``."""
        ...


class Target(Protocol):
    """The filesystem calls init/initramfs.c makes, on one filesystem.

    Names are as archived (``dev/console``, ``/init``, ``./x``): all relative to the root.
    Failures the kernel ignores are the target's to ignore; a write error is a short write.
    :meth:`accept` comes first for every entry the kernel would create: it returns the entry
    to create (possibly changed) or ``None`` to drop it (its data, if any, is skipped).
    """

    def accept(self, entry: Entry) -> Entry | None: ...

    def clean_path(self, name: str, fmode: int) -> None:
        """Remove what is at ``name`` if its type differs from ``fmode``'s (0: whatever it is)."""
        ...

    def link(self, old: str, new: str) -> bool:
        """``init_link(old, new)``; True if it succeeded."""
        ...

    def open(self, entry: Entry, *, truncate: bool) -> Sink | None:
        """``filp_open(O_WRONLY|O_CREAT[|O_TRUNC])``, ``vfs_fchown``, ``vfs_fchmod`` and, when
        ``c_filesize`` is not 0, ``vfs_truncate`` to it; ``None`` if the open failed."""
        ...

    def mkdir(self, entry: Entry) -> None:
        """``init_mkdir``, ``init_chown``, ``init_chmod``."""
        ...

    def mknod(self, entry: Entry) -> None:
        """``init_mknod``, ``init_chown``, ``init_chmod``, ``do_utime``."""
        ...

    def symlink(self, entry: Entry) -> None:
        """``init_symlink(entry.linkname, name)``, ``init_chown(AT_SYMLINK_NOFOLLOW)``, ``do_utime``."""
        ...

    def utime(self, name: str, mtime: int) -> None:
        """``do_utime``: set ``mtime``, a final symlink not followed."""
        ...


def _is_node(mode: int) -> bool:
    return stat.S_ISBLK(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


# --- the entry loop --------------------------------------------------------------------------

Start, Collect, GotHeader, SkipIt, GotName, CopyFile, GotSymlink, Reset = range(8)


class UnpackStopped(Exception):
    """Raised by a target to stop the unpack at once (extraction's ``--strict``)."""


class Unpacker:
    """The state init/initramfs.c keeps across one ``unpack_to_rootfs``, and its actions.

    Feed it bytes with :meth:`write_buffer` (a raw archive) or :meth:`flush_buffer` (the
    output of a decompressor); :attr:`message` is the first error, ``None`` while all is well.
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        self.state = Start
        self.next_state = Start
        self.message: str | None = None
        self.detail: str | None = None
        self.this_header = 0
        self.next_header = 0
        self.buf = memoryview(b"")
        self.pos = 0  # victim: buf[pos:]
        self.collect = bytearray()
        self.remains = 0
        self.collected: memoryview | bytes = b""
        self.links: dict[tuple[int, int, int, int], str] = {}
        self.dirs: list[tuple[str, int]] = []
        self.sink: Sink | None = None
        self.entry: Entry | None = None
        self.csum_present = False
        self.io_csum = 0
        # The header's fields, as parse_header() leaves them.
        self.fmt: str = "newc"
        self.ino = self.mode = self.uid = self.gid = self.nlink = self.mtime = 0
        self.body_len = self.major = self.minor = self.rdevmajor = self.rdevminor = 0
        self.name_len = self.hdr_csum = 0
        # Figures.
        self.entries = 0
        self.skipped = 0
        self.segment = -1
        self.archive = 0
        self.workspace = 0  # the largest decompressor's buffers
        self.actions: tuple[Callable[[], bool], ...] = (
            self.do_start,
            self.do_collect,
            self.do_header,
            self.do_skip,
            self.do_name,
            self.do_copy,
            self.do_symlink,
            self.do_reset,
        )

    def error(self, message: str, detail: str | None = None) -> None:
        """``error()``: the first message wins."""
        if self.message is None:
            self.message = message
            self.detail = detail or message

    @property
    def byte_count(self) -> int:
        return len(self.buf) - self.pos

    def eat(self, n: int) -> None:
        self.pos += n
        self.this_header += n

    def read_into(self, size: int, next_state: int) -> None:
        if self.byte_count >= size:
            self.collected = self.buf[self.pos : self.pos + size]
            self.eat(size)
            self.state = next_state
        else:
            self.collect = bytearray()
            self.remains = size
            self.next_state = next_state
            self.state = Collect

    # Each action returns True to stop write_buffer (the C functions' return 1).

    def do_start(self) -> bool:
        self.read_into(HEADER_SIZE, GotHeader)
        return False

    def do_collect(self) -> bool:
        n = min(self.remains, self.byte_count)
        self.collect += self.buf[self.pos : self.pos + n]
        self.eat(n)
        self.remains -= n
        if self.remains:
            return True
        self.collected = bytes(self.collect)
        self.state = self.next_state
        return False

    def do_header(self) -> bool:
        h = bytes(self.collected[:HEADER_SIZE])
        magic = h[:6]
        if magic == b"070701":
            self.csum_present = False
        elif magic == b"070702":
            self.csum_present = True
        else:
            at = self.this_header - HEADER_SIZE
            if magic == b"070707":
                self.error(
                    "incorrect cpio method used: use -H newc option",
                    f"incorrect cpio method used: use -H newc option (at offset {at:#x}{self._where()})",
                )
            else:
                self.error("no cpio magic", f"no cpio magic at offset {at:#x}{self._where()}: {magic!r}")
            return True
        self.fmt = "crc" if self.csum_present else "newc"
        (
            self.ino,
            mode,
            self.uid,
            self.gid,
            self.nlink,
            self.mtime,
            self.body_len,
            self.major,
            self.minor,
            self.rdevmajor,
            self.rdevminor,
            self.name_len,
            self.hdr_csum,
        ) = _header_fields(h)
        self.mode = mode & 0xFFFF  # umode_t
        self.next_header = (self.this_header + N_ALIGN(self.name_len) + self.body_len + 3) & ~3
        self.state = SkipIt
        if self.name_len <= 0 or self.name_len > PATH_MAX:
            self.skipped += 1
            return False
        if stat.S_ISLNK(self.mode):
            if self.body_len > PATH_MAX:
                self.skipped += 1
                return False
            self.collect = bytearray()
            self.remains = N_ALIGN(self.name_len) + self.body_len
            self.next_state = GotSymlink
            self.state = Collect
            return False
        if stat.S_ISREG(self.mode) or not self.body_len:
            self.read_into(N_ALIGN(self.name_len), GotName)
        else:
            self.skipped += 1
        return False

    def do_skip(self) -> bool:
        if self.this_header + self.byte_count < self.next_header:
            self.eat(self.byte_count)
            return True
        self.eat(self.next_header - self.this_header)
        self.state = self.next_state
        return False

    def do_reset(self) -> bool:
        if self.byte_count and not self.buf[self.pos]:  # NULs to skip (the next header, mostly, is not)
            window = bytes(self.buf[self.pos : self.pos + 4096])
            run = len(window) - len(window.lstrip(b"\0"))
            while run == len(window) and self.pos + run < len(self.buf):
                window = bytes(self.buf[self.pos + run : self.pos + run + 65536])
                run += len(window) - len(window.lstrip(b"\0"))
            self.eat(run)
        if self.byte_count and self.this_header & 3:
            self.error("broken padding", f"broken padding at offset {self.this_header:#x}{self._where()}")
        return True

    def _name(self, raw: bytes | memoryview) -> str:
        # A C string: it ends at the first NUL.
        data = bytes(raw)
        end = data.find(b"\0")
        return (data if end < 0 else data[:end]).decode("utf-8", "surrogateescape")

    def _entry(self, name: str, linkname: str | None = None) -> Entry:
        return Entry(
            name=name,
            c_mode=self.mode,
            c_ino=self.ino,
            c_uid=self.uid,
            c_gid=self.gid,
            c_nlink=self.nlink,
            c_mtime=self.mtime,
            c_filesize=self.body_len,
            c_devmajor=self.major,
            c_devminor=self.minor,
            c_rdevmajor=self.rdevmajor,
            c_rdevminor=self.rdevminor,
            c_check=self.hdr_csum,
            format=self.fmt,  # type: ignore[arg-type]
            linkname=linkname,
            offset=self.next_header,
            segment=self.segment,
            archive=self.archive,
            c_namesize=self.name_len,
        )

    def _maybe_link(self, name: str) -> int:
        """``maybe_link``: 1 when linked to an earlier entry, 0 when not, -1 when the link failed."""
        if self.nlink >= 2:
            key = (self.major, self.minor, self.ino, stat.S_IFMT(self.mode))
            old = self.links.get(key)
            if old is None:
                self.links[key] = name
                return 0
            self.target.clean_path(name, 0)
            return 1 if self.target.link(old, name) else -1
        return 0

    def do_name(self) -> bool:
        self.state = SkipIt
        self.next_state = Reset
        name = self._name(self.collected)
        if name == TRAILER:
            self.links.clear()  # free_hash()
            self.archive += 1
            return False
        entry = self.target.accept(self._entry(name))
        if entry is None:
            return False
        self.entries += 1
        name = entry.name
        mode = entry.c_mode
        target = self.target
        target.clean_path(name, mode)
        if stat.S_ISREG(mode):
            ml = self._maybe_link(name)
            if ml >= 0:
                sink = target.open(entry, truncate=ml != 1)
                if sink is None:
                    return False
                self.sink, self.entry = sink, entry
                self.io_csum = 0
                self.state = CopyFile
        elif stat.S_ISDIR(mode):
            target.mkdir(entry)
            self.dirs.append((name, entry.c_mtime))
        elif _is_node(mode) and self._maybe_link(name) == 0:
            target.mknod(entry)
        return False

    def _write(self, n: int) -> None:
        assert self.sink is not None
        data = self.buf[self.pos : self.pos + n]
        written = self.sink.write(data) if n else 0
        if self.csum_present and written:
            self.io_csum = data_checksum(data[:written], self.io_csum)
        if written != n:
            assert self.entry is not None
            self.error("write error", f"write error: {self.entry.name!r}")

    def do_copy(self) -> bool:
        sink, entry = self.sink, self.entry
        assert sink is not None and entry is not None
        if self.byte_count >= self.body_len:
            self._write(self.body_len)
            self.sink = None
            sink.close(self.mtime)
            if self.csum_present and sink.kernel_opened and self.io_csum != self.hdr_csum:
                self.error(
                    "bad data checksum",
                    f"bad data checksum for {entry.name!r}{self._where()}: c_check {self.hdr_csum:#010x}, "
                    f"data sums to {self.io_csum:#010x}",
                )
            self.eat(self.body_len)
            self.state = SkipIt
            return False
        n = self.byte_count
        self._write(n)
        self.body_len -= n
        self.eat(n)
        return True

    def do_symlink(self) -> bool:
        off = N_ALIGN(self.name_len)
        name = self._name(self.collected[:off])
        target = self._name(self.collected[off : off + self.body_len])
        self.state = SkipIt
        self.next_state = Reset
        entry = self.target.accept(self._entry(name, target))
        if entry is not None:
            self.entries += 1
            self.target.clean_path(entry.name, 0)
            self.target.symlink(entry)
        return False

    def write_buffer(self, buf: memoryview) -> int:
        """``write_buffer``: run the actions over ``buf`` until one stops; bytes consumed."""
        self.buf, self.pos = buf, 0
        actions = self.actions
        while not actions[self.state]():
            pass
        return self.pos

    def flush_buffer(self, buf: memoryview) -> bool:
        """``flush_buffer``: a decompressor's output; False (the C -1) once an error is set."""
        if self.message is not None:
            return False
        while True:
            written = self.write_buffer(buf)
            if written >= len(buf) or self.message is not None:
                return True
            c = buf[written]
            if c == 0x30:  # '0'
                self.state = Start
            elif c == 0:
                self.state = Reset
            else:
                self.error(
                    "junk within compressed archive",
                    f"junk within compressed archive at offset {self.this_header:#x}{self._where()}: "
                    f"{bytes(buf[written : written + 8])!r}",
                )
                return True
            buf = buf[written:]

    def abandon(self) -> None:
        """Close a file left open when the input ends mid-data.  The kernel never closes it, so
        its mtime is never set (``do_utime_path`` runs only once its data is complete)."""
        if self.sink is not None:
            self.sink.close(None)
            self.sink = None

    def dir_utime(self) -> None:
        """``dir_utime``: directory mtimes, the newest entry first as the kernel's list runs."""
        for name, mtime in reversed(self.dirs):
            self.target.utime(name, mtime)
        self.dirs.clear()

    where = ""

    def _where(self) -> str:
        return self.where


# --- the image loop ------------------------------------------------------------------------


def unpack_image(
    source: Source | Image, target: Target, *, max_decompressed: int | None = None
) -> UnpackResult:
    """``unpack_to_rootfs``: unpack the image ``source`` into ``target``; never raises for bad input.

    ``source`` is what :func:`bootmem.initramfs.open` takes (a path, a binary file, bytes) or
    what it returned; it is read in chunks.  ``max_decompressed`` caps the bytes decompressed (default:
    see :class:`bootmem.initramfs.compress.Budget`).  The result carries the
    first error, if any; what was unpacked before it stays.
    """
    image, close = image_bytes(source)
    try:
        return _unpack(image, target, max_decompressed)
    finally:
        close()


def _unpack(image: ImageBytes, target: Target, max_decompressed: int | None) -> UnpackResult:
    m = Unpacker(target)
    size = image.size
    budget = Budget(max_decompressed)
    pos = 0
    raw = False  # inside one write_buffer() over raw bytes
    new_segment = True
    try:
        while m.message is None and pos < size:
            if raw:
                chunk = memoryview(image.read_at(pos, CHUNK))  # in place for an image in memory
                m.where = ""
                written = m.write_buffer(chunk)
                pos += written
                raw = written == len(chunk)
                if m.archive and m.state == Reset:
                    new_segment = True  # a trailer ends a segment (as bootmem.initramfs counts them)
                continue
            head = bytes(image.read_at(pos, 8))
            if head[:1] == b"0" and not m.this_header & 3:
                if new_segment:
                    m.segment += 1
                    m.archive = 0
                    new_segment = False
                m.state = Start
                raw = True
                continue
            if head[:1] == b"\0":
                window = bytes(image.read_at(pos, CHUNK))
                run = len(window) - len(window.lstrip(b"\0"))
                pos += run
                m.this_header += run
                continue
            saved = m.this_header
            m.this_header = 0
            m.segment += 1
            m.archive = 0
            new_segment = True
            inptr = _decompress(image, pos, head, m, budget)
            if m.state != Reset:
                m.error(
                    "junk at the end of compressed archive",
                    f"junk at the end of compressed archive at offset {pos:#x}: its cpio ends mid-entry",
                )
            m.this_header = saved + inptr
            pos += inptr
    except UnpackStopped:
        pass
    finally:
        m.abandon()
        m.dir_utime()
        m.buf, m.collected = memoryview(b""), b""  # no view of the image outlives the unpack
    error = None if m.message is None else UnpackError(m.message, m.detail or m.message)
    return UnpackResult(m.entries, m.skipped, m.segment + 1, error, workspace=UNPACK_BUFFERS + m.workspace)


def _decompress(image: ImageBytes, pos: int, head: bytes, m: Unpacker, budget: Budget) -> int:
    """``decompress(buf, len, NULL, flush_buffer, ...)``: the compressed bytes consumed."""
    name = decompress_method(head)  # two bytes; the decompressor refuses what only starts right
    if name is None:
        m.error(
            "invalid magic at start of compressed archive",
            f"invalid magic at start of compressed archive at offset {pos:#x}: {head!r}",
        )
        return 0
    m.where = f" of the {name} member at offset {pos:#x}"
    m.workspace = max(m.workspace, member_workspace(name, bytes(image.read_at(pos, 64))))
    try:
        member = MemberStream(name, image, pos, budget, kernel=True, segment=m.segment)
        with Prefetch(member, CHUNK) as chunks:
            while True:
                data = chunks.read()
                if not data:
                    return member.end - pos
                if not m.flush_buffer(memoryview(data)):
                    return image.size - pos  # the decompressor failed: nothing more is read
    except ImageError as exc:
        m.error(kernel_message(exc), str(exc))
        _forget(exc)  # its traceback (through Prefetch.read's frame, a cycle) holds views of the image
        return image.size - pos


# --- the modelled rootfs -------------------------------------------------------------------


class _TmpfsSink:
    """An open regular file of the model, already sized by ``vfs_truncate(body_len)``: a hole
    that takes pages only as data is written, so a file cut short (or short of room) keeps
    Linux's size and holds only the pages written."""

    __slots__ = ("out",)
    kernel_opened = True

    def __init__(self, out: OpenFile) -> None:
        self.out = out

    def write(self, data: memoryview) -> int:
        before = self.out.tell()
        try:
            return self.out.write(data)
        except TmpfsNoSpaceError as exc:
            _forget(exc)
            return self.out.tell() - before

    def close(self, mtime: int | None) -> None:
        if mtime is not None:
            self.out.utime(mtime)
        self.out.close()


def _forget(exc: BaseException | None) -> None:
    """Drop the tracebacks of an exception the kernel ignores, and of its causes.

    A traceback holds its frames, whose locals may be views of the initrd; a cycle through
    them (an exception kept as another's ``__cause__``) would keep the initrd's lease busy
    until a garbage collection, and its release would fail.
    """
    while exc is not None:
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


def _chown_id(new: int, old: int) -> int:
    """``chown``'s ``-1``: a uid or gid of 0xffffffff leaves the old one (``chown_common``)."""
    return old if new == 0xFFFFFFFF else new


class TmpfsTarget:
    """The modelled rootfs as the unpacker's target: every call the kernel makes, failures
    ignored as the kernel ignores them, a full tmpfs a short write ("write error")."""

    def __init__(self, fs: Tmpfs) -> None:
        self.fs = fs

    @staticmethod
    def path(name: str) -> str:
        return name if name.startswith("/") else "/" + name

    def accept(self, entry: Entry) -> Entry:
        return entry

    def clean_path(self, name: str, fmode: int) -> None:
        path = self.path(name)
        try:
            st = self.fs.find(path, follow_symlinks=False)
        except TmpfsError:
            return
        if st is not None and stat.S_IFMT(st.mode) != stat.S_IFMT(fmode):
            self._quietly(self.fs.rmdir if st.is_dir else self.fs.unlink, path)

    def link(self, old: str, new: str) -> bool:
        return self._quietly(self.fs.link, self.path(old), self.path(new))

    def _chown(self, path: str, entry: Entry, *, follow: bool = True) -> None:
        try:
            inode = self.fs.lookup(path, follow_symlinks=follow)
        except TmpfsError:
            return
        uid, gid = _chown_id(entry.c_uid, inode.uid), _chown_id(entry.c_gid, inode.gid)
        self._quietly(self.fs.chown, path, uid, gid, follow_symlinks=follow)

    def open(self, entry: Entry, *, truncate: bool) -> _TmpfsSink | None:
        path = self.path(entry.name)
        try:
            out = self.fs.create(path, entry.c_mode, truncate=truncate)
        except TmpfsNoSpaceError:
            return None
        except TmpfsError:
            return None  # filp_open failed: the kernel skips the data (state SkipIt)
        out.chown(_chown_id(entry.c_uid, out.inode.uid), _chown_id(entry.c_gid, out.inode.gid))
        out.chmod(entry.c_mode)
        if entry.c_filesize:
            # vfs_truncate(body_len) on the opened file: the promised size at once, as a hole
            # (a linked file longer than this entry's data is cut).
            self._quietly(out.truncate, entry.c_filesize, sparse=True)
        return _TmpfsSink(out)

    def mkdir(self, entry: Entry) -> None:
        path = self.path(entry.name)
        self._quietly(self.fs.mkdir, path, entry.c_mode)
        self._chown(path, entry)
        self._quietly(self.fs.chmod, path, entry.c_mode)

    def mknod(self, entry: Entry) -> None:
        path = self.path(entry.name)
        self._quietly(self.fs.mknod, path, entry.c_mode, kernel_rdev(entry.c_rdevmajor, entry.c_rdevminor))
        self._chown(path, entry)
        self._quietly(self.fs.chmod, path, entry.c_mode)
        self.utime(entry.name, entry.c_mtime)

    def symlink(self, entry: Entry) -> None:
        path = self.path(entry.name)
        self._quietly(self.fs.symlink, entry.linkname or "", path, allow_empty=True)
        self._chown(path, entry, follow=False)
        self.utime(entry.name, entry.c_mtime)

    def utime(self, name: str, mtime: int) -> None:
        self._quietly(self.fs.utime, self.path(name), mtime, follow_symlinks=False)

    @staticmethod
    def _quietly(call: Callable[..., object], *args: object, **kwargs: object) -> bool:
        """Run a filesystem call whose failure the kernel ignores; True if it succeeded."""
        try:
            call(*args, **kwargs)
        except TmpfsError as exc:
            _forget(exc)
            return False
        return True


def unpack_to_rootfs(data: Source, fs: Tmpfs, *, max_decompressed: int | None = None) -> UnpackResult:
    """Unpack the image ``data`` into the modelled rootfs ``fs`` (see :func:`unpack_image`)."""
    return unpack_image(data, TmpfsTarget(fs), max_decompressed=max_decompressed)


def unpack_builtin(data: bytes, fs: Tmpfs) -> UnpackError | None:
    """The built-in initramfs (``__initramfs_start``), unpacked before the initrd."""
    return unpack_to_rootfs(data, fs).error


def unpack_initrd(
    allocator: PageAllocator,
    start: int,
    end: int,
    fs: Tmpfs,
    *,
    blk_dev_ram: bool = False,
    builtin: bytes | None = None,
    max_decompressed: int | None = None,
) -> UnpackResult:
    """Unpack the initrd at ``[start, end)`` through a lease, closed before returning.

    ``blk_dev_ram`` is ``CONFIG_BLK_DEV_RAM`` (Debian: a module, so off).  With it, an unpack
    that fails is undone as ``populate_rootfs`` does (``clean_rootfs``: the root's entries
    removed, non-empty directories staying; ``builtin`` unpacked again) and the image kept as
    ``/initrd.image``; the result then says it looks like an initrd.  Without it the error is
    reported ("Initramfs unpacking failed") and what was unpacked stays.
    """
    lease = allocator.lease(start, end, owner="initramfs unpacker")
    try:
        view = lease.view
        try:
            cap = _cap(allocator) if max_decompressed is None else max_decompressed
            result = _unpack(_LeasedImage(lease, view), TmpfsTarget(fs), cap)
            if blk_dev_ram and result.error is not None:
                _clean_rootfs(fs)
                if builtin is not None:
                    unpack_to_rootfs(builtin, fs)
                _keep_initrd_image(fs, view)
                result = dataclasses.replace(result, looks_like_initrd=True)
        finally:
            view.release()
    except BaseException:
        # A host failure (MemoryError, ENOMEM from mmap) raised inside the unpack: its traceback's
        # frames hold slices of the view, so the lease cannot close yet; the failure is the error.
        with contextlib.suppress(RegionBusyError):
            lease.close()
        raise
    lease.close()
    return result


class _LeasedImage:
    """The initrd, read through its lease, whose host pages leave the process as the reader
    passes them: it holds a window of a few MiB of the initrd, not all of it (the bytes stay
    in modelled RAM, the memory file).

    The unpacker reads front to back: raw archives, and each member's compressed input as its
    decompressor pulls it (in the prefetch thread, never while this thread reads).  It never
    reads more than a decompressor's input chunk behind the furthest byte read (the start of
    what follows a member), so pages more than :attr:`LAG` behind the offset read are dropped,
    :attr:`STEP` at a time.  A read behind the dropped pages (zstd's walk of a frame's block
    headers comes first, then the frame from its start) starts the window there again.  A
    dropped page read again is only faulted in again, so this costs RSS, never correctness.
    """

    __slots__ = ("_lease", "_low", "_view", "size")

    LAG = 2 << 20
    STEP = 1 << 20

    def __init__(self, lease: Lease, view: memoryview) -> None:
        self._lease, self._view, self.size = lease, view, len(view)
        self._low = 0  # the pages below this offset are not mapped

    def read_at(self, offset: int, n: int) -> memoryview:
        if offset < self._low:
            self._low = offset
        elif offset - self.LAG >= self._low + self.STEP:
            self._lease.drop_pages(self._low, offset - self.LAG)
            self._low = offset - self.LAG
        return self._view[offset : offset + n]


def _cap(allocator: PageAllocator) -> int:
    # The rootfs cannot hold more than RAM; a stream that expands past twice that is a bomb.
    # Linux has no cap (RAM bounds what stays; NULs and skipped bodies only cost time), so the
    # model's is tied to RAM, not to the image's compressed size: any image whose files fit
    # unpacks as in Linux, and host time stays bounded.
    return 2 * allocator.size


def _clean_rootfs(fs: Tmpfs) -> None:
    """``clean_rootfs``: ``rmdir`` or ``unlink`` each entry of the root (non-empty directories stay)."""
    for name in fs.listdir("/"):
        path = "/" + name
        st = fs.find(path, follow_symlinks=False)
        try:
            if st is not None and st.is_dir:
                fs.rmdir(path)
            else:
                fs.unlink(path)
        except TmpfsError:
            pass


def _keep_initrd_image(fs: Tmpfs, view: memoryview) -> None:
    try:
        with fs.create("/initrd.image", 0o100700) as out:
            out.write(view)
    except TmpfsNoSpaceError:
        pass  # Linux: "/initrd.image: incomplete write", and boot goes on

"""The cpio formats the kernel unpacks: newc (``070701``) and crc (``070702``).

Layout (``Documentation/driver-api/early-userspace/buffer-format.rst``)::

    header   6-byte magic + 13 fields of 8 ASCII hex digits = 110 bytes
    name     c_namesize bytes including the terminating NUL, padded so that
             header + name ends on a multiple of 4
    data     c_filesize bytes (a symlink's data is its target), padded to 4

An archive ends with an entry named ``TRAILER!!!``.  The crc format is newc plus
``c_check``: the 32-bit sum of the bytes of a regular file's data (not a CRC at all).

This module reads and writes archives as streams; what an *image* is (several archives,
raw or compressed, with NUL padding between them) is :mod:`bootmem.initramfs.image`'s job.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO, Literal, Protocol

from bootmem.errors import ChecksumError, CpioError
from bootmem.filetypes import type_char
from bootmem.record import Record

MAGIC_NEWC = b"070701"
MAGIC_CRC = b"070702"
MAGIC_ODC = b"070707"  # old portable format: the kernel refuses it with its own message
TRAILER = "TRAILER!!!"
PATH_MAX = 4096  # include/uapi/linux/limits.h; init/initramfs.c skips names longer than this

HEADER_SIZE = 110
# The 13 fields after the magic, in order, with the kernel's names.
FIELDS = (
    "c_ino",
    "c_mode",
    "c_uid",
    "c_gid",
    "c_nlink",
    "c_mtime",
    "c_filesize",
    "c_devmajor",
    "c_devminor",
    "c_rdevmajor",
    "c_rdevminor",
    "c_namesize",
    "c_check",
)
HEADER = struct.Struct("6s" + "8s" * len(FIELDS))
assert HEADER.size == HEADER_SIZE
_WORDS = struct.Struct(f">{len(FIELDS)}I")  # the fields' hex digits as bytes.fromhex gives them

Format = Literal["newc", "crc"]
_MAGIC_OF: dict[str, bytes] = {"newc": MAGIC_NEWC, "crc": MAGIC_CRC}
_FORMAT_OF: dict[bytes, Format] = {MAGIC_NEWC: "newc", MAGIC_CRC: "crc"}
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_HEX = frozenset(_HEX_DIGITS)

# Entry types, as `ls -l` and `find -type` spell them.


def pad4(n: int) -> int:
    """Bytes of padding that bring ``n`` to a multiple of 4."""
    return -n & 3


def data_checksum(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """The crc format's ``c_check``: ``start`` plus the sum of ``data``'s bytes, modulo 2**32."""
    if not len(data):
        return start
    import numpy as np  # only crc archives need it; keeps `bootmem ls` start-up light

    total = int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64))
    return (start + total) & 0xFFFFFFFF


class Entry(Record):
    """One member of a cpio archive, with the header fields under the kernel's names.

    ``name`` is the name as stored (``os.fsdecode``: any bytes survive the round trip),
    without the terminating NUL.  ``linkname`` is a symlink's target (its data), else ``None``.
    ``offset`` is where the header starts in its segment's uncompressed stream; ``segment`` is
    the index of that segment in the image and ``archive`` counts the trailers seen before
    it in the segment (hardlinks are matched within one archive).

    Frozen, compared and hashed by value except ``c_namesize``, as a frozen dataclass would be;
    :meth:`replace` makes a changed copy (a filter's renamed member, tarfile's ``TarInfo.replace``).
    """

    _FIELDS = (
        "name", "c_mode", "c_ino", "c_uid", "c_gid", "c_nlink", "c_mtime", "c_filesize", "c_devmajor",
        "c_devminor", "c_rdevmajor", "c_rdevminor", "c_check", "format", "linkname", "offset", "segment",
        "archive", "c_namesize",
    )  # fmt: skip
    __slots__ = _FIELDS
    _NOT_COMPARED = frozenset({"c_namesize"})

    name: str
    c_mode: int
    c_ino: int
    c_uid: int
    c_gid: int
    c_nlink: int
    c_mtime: int
    c_filesize: int
    c_devmajor: int
    c_devminor: int
    c_rdevmajor: int
    c_rdevminor: int
    c_check: int
    format: Format
    linkname: str | None
    offset: int
    segment: int
    archive: int
    c_namesize: int

    def __init__(
        self, name: str, c_mode: int, c_ino: int = 0, c_uid: int = 0, c_gid: int = 0, c_nlink: int = 1,
        c_mtime: int = 0, c_filesize: int = 0, c_devmajor: int = 0, c_devminor: int = 0,
        c_rdevmajor: int = 0, c_rdevminor: int = 0, c_check: int = 0, format: Format = "newc",
        linkname: str | None = None, offset: int = 0, segment: int = 0, archive: int = 0,
        c_namesize: int = 0,
    ) -> None:  # fmt: skip
        self._fill(
            name, c_mode, c_ino, c_uid, c_gid, c_nlink, c_mtime, c_filesize, c_devmajor, c_devminor,
            c_rdevmajor, c_rdevminor, c_check, format, linkname, offset, segment, archive, c_namesize,
        )  # fmt: skip

    # tarfile's vocabulary, for readers who know it.
    @property
    def size(self) -> int:
        return self.c_filesize

    @property
    def mode(self) -> int:
        """Permission bits including setuid, setgid and sticky (``0o4755``)."""
        return stat.S_IMODE(self.c_mode)

    @property
    def mtime(self) -> int:
        return self.c_mtime

    @property
    def uid(self) -> int:
        return self.c_uid

    @property
    def gid(self) -> int:
        return self.c_gid

    @property
    def rdev(self) -> tuple[int, int]:
        return self.c_rdevmajor, self.c_rdevminor

    @property
    def type(self) -> str:
        """``d f l c b p s``, or ``?`` for a file type the kernel would not create."""
        return type_char(self.c_mode)

    def isreg(self) -> bool:
        return stat.S_ISREG(self.c_mode)

    def isdir(self) -> bool:
        return stat.S_ISDIR(self.c_mode)

    def issym(self) -> bool:
        return stat.S_ISLNK(self.c_mode)

    def ischr(self) -> bool:
        return stat.S_ISCHR(self.c_mode)

    def isblk(self) -> bool:
        return stat.S_ISBLK(self.c_mode)

    def isfifo(self) -> bool:
        return stat.S_ISFIFO(self.c_mode)

    def issock(self) -> bool:
        return stat.S_ISSOCK(self.c_mode)

    def isdev(self) -> bool:
        return self.ischr() or self.isblk() or self.isfifo() or self.issock()

    @property
    def link_key(self) -> tuple[int, int, int, int]:
        """What init/initramfs.c's ``find_link`` matches hardlinks on: (ino, major, minor, type)."""
        return self.c_ino, self.c_devmajor, self.c_devminor, stat.S_IFMT(self.c_mode)


def parse_header(raw: bytes, offset: int = 0, where: str = "") -> tuple[Format, dict[str, int]]:
    """Parse a 110-byte header into its format and its fields (``c_ino`` ...).

    Raises :class:`CpioError` naming ``offset`` (followed by ``where``, if given) for the
    ``070707`` format (with the kernel's "incorrect cpio method used" message), any other
    magic ("no cpio magic"), and a field that is not 8 hex digits.
    """
    if len(raw) < HEADER_SIZE:
        raise CpioError(
            f"truncated cpio header at offset {offset:#x}{where}: {len(raw)} of {HEADER_SIZE} bytes"
        )
    magic = bytes(raw[:6])
    fmt = _FORMAT_OF.get(magic)
    if fmt is None:
        if magic == MAGIC_ODC:
            raise CpioError(f"incorrect cpio method used: use -H newc option (at offset {offset:#x}{where})")
        raise CpioError(f"no cpio magic at offset {offset:#x}{where}: {magic!r}")
    digits = raw[6:HEADER_SIZE]
    if not digits.translate(None, _HEX_DIGITS):
        # The common case: every field 8 hex digits, read in three C calls (a quarter of the
        # time of 13 int(field, 16), some 4 us of every entry listed).
        return fmt, dict(zip(FIELDS, _WORDS.unpack(bytes.fromhex(digits.decode("ascii"))), strict=True))
    fields: dict[str, int] = {}
    _, *values = HEADER.unpack_from(raw)
    for i, (name, value) in enumerate(zip(FIELDS, values, strict=True)):
        if not _HEX.issuperset(value):
            at = offset + 6 + 8 * i
            raise CpioError(f"bad {name} {value!r} in cpio header at offset {at:#x}{where}: not 8 hex digits")
        fields[name] = int(value, 16)
    return fmt, fields


def pack_header(entry: Entry, *, namesize: int, filesize: int, check: int = 0) -> bytes:
    """The 110-byte header of ``entry`` with the given ``c_namesize``, ``c_filesize`` and ``c_check``.

    Every field must fit in 32 bits; :class:`CpioError` names the one that does not.
    """
    values = {f: getattr(entry, f) for f in FIELDS}
    values.update(c_namesize=namesize, c_filesize=filesize, c_check=check if entry.format == "crc" else 0)
    parts = [_MAGIC_OF[entry.format]]
    for name in FIELDS:
        value = values[name]
        if not 0 <= value <= 0xFFFFFFFF:
            raise CpioError(f"{name} {value} of {entry.name!r} does not fit in a cpio header")
        parts.append(b"%08X" % value)
    return b"".join(parts)


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _Source:
    """A byte stream with a small look-ahead buffer and a running position."""

    __slots__ = ("_buf", "_pos", "_skip", "_stream", "position")

    def __init__(self, stream: Readable, position: int = 0) -> None:
        self._stream = stream
        self._skip: Callable[[int], int] | None = getattr(stream, "skip", None)
        self._buf = b""
        self._pos = 0
        self.position = position

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the stream."""
        avail = len(self._buf) - self._pos
        if avail >= n:
            out = self._buf[self._pos : self._pos + n]
            self._pos += n
        else:
            head = self._buf[self._pos :]
            self._buf, self._pos = b"", 0
            out = head + self._read_fully(n - avail) if head else self._read_fully(n)
        self.position += len(out)
        return out

    def read_some(self, n: int) -> bytes:
        """Up to ``n`` bytes, fewer when that is what is at hand: the look-ahead if it holds any,
        else one read of the stream.  ``b""`` only at the end of the stream.  Nothing is joined."""
        avail = len(self._buf) - self._pos
        if avail:
            take = min(avail, n)
            out = self._buf[self._pos : self._pos + take]
            self._pos += take
        else:
            out = self._stream.read(n)
        self.position += len(out)
        return out

    def _read_fully(self, n: int) -> bytes:
        first = self._stream.read(n)
        if len(first) in (0, n):
            return first
        parts = [first]
        got = len(first)
        while got < n:
            more = self._stream.read(n - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def skip(self, n: int, chunk: int = 1 << 20) -> int:
        """Consume up to ``n`` bytes without joining them; return how many (fewer only at the end)."""
        done = min(len(self._buf) - self._pos, n)
        self._pos += done
        if done < n and self._skip is not None:  # the stream passes over bytes without copying them
            done += self._skip(n - done)
        while done < n:
            got = len(self._stream.read(min(n - done, chunk)))
            if not got:
                break
            done += got
        self.position += done
        return done

    def peek(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end of the stream), without consuming them."""
        if len(self._buf) - self._pos < n:
            rest = self._buf[self._pos :]
            self._buf = rest + self._read_fully(n - len(rest))
            self._pos = 0
        return self._buf[self._pos : self._pos + n]

    def skip_nuls(self, chunk: int = 1 << 16) -> int:
        """Consume NUL bytes; return how many."""
        skipped = 0
        while True:
            block = self.peek(chunk)
            if not block:
                return skipped
            run = len(block) - len(block.lstrip(b"\0"))
            self._pos += run
            self.position += run
            skipped += run
            if run < len(block):
                return skipped


class _Skipped:
    """Marks an entry the kernel skips (see ``CpioReader(strict=False)``)."""


_SKIPPED = _Skipped()


class CpioReader:
    """Streaming reader of the cpio archives in one segment of an image.

    Iterating yields every :class:`Entry` except the trailers.  After an entry is yielded
    its data may be taken with :meth:`read_data` or :meth:`iter_data`; whatever is not taken
    is skipped (read and dropped: a compressed stream cannot seek) before the next header.
    The crc format's checksum is verified for every regular file, taken or skipped.

    With ``multi_archive=False`` (a raw segment of an image) reading stops right after the
    first trailer's padding, so the image can look at what follows.  With ``True`` (the
    uncompressed stream of a compressed member), archives may follow one another separated
    by NULs, as ``flush_buffer`` in init/initramfs.c accepts; anything else after a trailer
    is "junk within compressed archive".

    ``max_entries``, when set, bounds the entries in the segment (a hostile archive of
    millions of empty entries is then a clean error).

    With ``strict=False`` the entries init/initramfs.c skips are skipped here too, and
    counted in :attr:`skipped`: a ``c_namesize`` of 0 or over ``PATH_MAX``, and a symlink
    whose target is over ``PATH_MAX`` bytes.  Strict (the default) raises instead.

    ``where``, when given, is appended to every offset in error messages (say
    ``" of the zstd member at offset 0x1000"``), for streams whose offsets are not the image's.
    """

    def __init__(
        self,
        stream: Readable,
        *,
        segment: int = 0,
        multi_archive: bool = False,
        base_offset: int = 0,
        max_entries: int | None = None,
        strict: bool = True,
        where: str = "",
    ) -> None:
        self._src = _Source(stream)
        self._strict = strict
        self.skipped = 0
        self._segment = segment
        self._multi = multi_archive
        self._base = base_offset
        self._max_entries = max_entries
        self._where_suffix = where
        self._pending = 0  # data bytes of the current entry not yet taken
        self._pending_pad = 0
        self._pending_sum: int | None = None  # running crc sum, None when not checked
        self._current: Entry | None = None
        self.archives = 0  # trailers seen so far
        self.entries = 0
        self.ended_cleanly = False  # a trailer was the last thing read

    @property
    def position(self) -> int:
        """Bytes consumed from the stream so far."""
        return self._src.position

    def _where(self, pos: int | None = None) -> str:
        at = self._src.position if pos is None else pos
        seg = f"segment {self._segment} " if self._segment else ""
        return f"{seg}offset {self._base + at:#x}{self._where_suffix}"

    def __iter__(self) -> Iterator[Entry]:
        while True:
            self._finish_current()
            entry = self._next_header()
            if entry is None:
                return
            if entry.name == TRAILER:
                # init/initramfs.c do_name: state SkipIt, so a trailer's body is skipped too.
                self._pending_sum = None
                self._finish_current()
                self.archives += 1
                self.ended_cleanly = True
                if not self._multi or not self._after_trailer():
                    return
                continue
            self.ended_cleanly = False
            self.entries += 1
            if self._max_entries is not None and self.entries > self._max_entries:
                raise CpioError(f"more than {self._max_entries} entries in {self._where()}")
            yield entry

    def _after_trailer(self) -> bool:
        """In a multi-archive stream: skip NULs; True when another archive follows."""
        self._src.skip_nuls()
        nxt = self._src.peek(1)
        if not nxt:
            return False
        if nxt != b"0":
            raise CpioError(f"junk within compressed archive at {self._where()}: {self._src.peek(8)!r}")
        if self._src.position & 3:
            raise CpioError(f"broken padding at {self._where()}")
        return True

    def _next_header(self) -> Entry | None:
        while True:
            entry = self._read_header()
            if not isinstance(entry, _Skipped):
                return entry
            self.skipped += 1

    def _skip_body(self, nbytes: int, start: int) -> _Skipped:
        # init/initramfs.c do_skip: the body is consumed as it streams by, never collected, so
        # a header claiming 4 GiB costs time, not memory.
        if self._src.skip(nbytes) < nbytes:
            raise CpioError(f"truncated entry at {self._where(start)}")
        return _SKIPPED

    def _read_header(self) -> Entry | _Skipped | None:
        start = self._src.position
        raw = self._src.read(HEADER_SIZE)
        if not raw:
            if self._multi or self.archives or self.entries:
                raise CpioError(f"truncated archive: no {TRAILER} before the end at {self._where()}")
            raise CpioError(f"empty archive at {self._where()}")
        if len(raw) < HEADER_SIZE:
            raise CpioError(
                f"truncated cpio header at {self._where(start)}: {len(raw)} of {HEADER_SIZE} bytes"
            )
        fmt, f = parse_header(raw, self._base + start, self._where_suffix)
        namesize = f["c_namesize"]
        filesize = f["c_filesize"]
        if (namesize == 0 or namesize > PATH_MAX) and not self._strict:
            return self._skip_body(namesize + pad4(HEADER_SIZE + namesize) + filesize + pad4(filesize), start)
        if namesize == 0 or namesize > PATH_MAX:
            raise CpioError(f"bad c_namesize {namesize} at {self._where(start)} (must be 1..{PATH_MAX})")
        name_raw = self._src.read(namesize + pad4(HEADER_SIZE + namesize))
        if len(name_raw) < namesize:
            raise CpioError(f"truncated name at {self._where(start)}: {len(name_raw)} of {namesize} bytes")
        if name_raw[namesize - 1] != 0:
            shown = name_raw[: min(namesize, 64)]
            raise CpioError(f"name without its NUL at {self._where(start)}: {shown!r}")
        # A C string, as init/initramfs.c and GNU cpio read it: it ends at the first NUL.
        name = os.fsdecode(name_raw[: name_raw.index(0)])
        linkname: str | None = None
        mode = f["c_mode"]
        if stat.S_ISLNK(mode) and name != TRAILER:
            if filesize > PATH_MAX and not self._strict:
                return self._skip_body(filesize + pad4(filesize), start)
            if filesize > PATH_MAX:
                raise CpioError(f"symlink target of {name!r} is {filesize} bytes at {self._where(start)}")
            target = self._src.read(filesize)
            if len(target) < filesize:
                raise CpioError(f"truncated data of {name!r} at {self._where(start)}")
            linkname = os.fsdecode(target.partition(b"\0")[0])  # do_symlink: a C string too
            self._discard(pad4(filesize), name)
            data_left = 0
        else:
            data_left = filesize
        entry = Entry(
            name=name,
            c_mode=mode,
            c_ino=f["c_ino"],
            c_uid=f["c_uid"],
            c_gid=f["c_gid"],
            c_nlink=f["c_nlink"],
            c_mtime=f["c_mtime"],
            c_filesize=filesize,
            c_devmajor=f["c_devmajor"],
            c_devminor=f["c_devminor"],
            c_rdevmajor=f["c_rdevmajor"],
            c_rdevminor=f["c_rdevminor"],
            c_check=f["c_check"],
            format=fmt,
            linkname=linkname,
            offset=self._base + start,
            segment=self._segment,
            archive=self.archives,
            c_namesize=namesize,
        )
        self._current = entry
        self._pending = data_left
        self._pending_pad = pad4(filesize) if data_left else 0
        self._pending_sum = 0 if fmt == "crc" and stat.S_ISREG(mode) else None
        return entry

    def iter_data(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The current entry's data not yet taken, in chunks of at most ``chunk_size`` bytes
        (as the stream hands them out: a chunk may be shorter than the data left)."""
        entry = self._current
        read_some = self._src.read_some
        while self._pending:
            chunk = read_some(min(chunk_size, self._pending))
            if not chunk:
                assert entry is not None
                raise CpioError(
                    f"truncated data of {entry.name!r}: {self._pending} bytes missing at {self._where()}"
                )
            self._pending -= len(chunk)
            if self._pending_sum is not None:
                self._pending_sum = data_checksum(chunk, self._pending_sum)
            yield chunk
        self._finish_data()

    def read_data(self) -> bytes:
        """The current entry's data not yet taken, as one bytes object."""
        return b"".join(self.iter_data(max(self._pending, 1)))

    def _finish_data(self) -> None:
        entry = self._current
        if entry is None:
            return
        if self._pending_pad:
            self._discard(self._pending_pad, entry.name)
            self._pending_pad = 0
        if self._pending_sum is not None and self._pending_sum != entry.c_check:
            got = self._pending_sum
            self._pending_sum = None
            raise ChecksumError(
                f"bad data checksum for {entry.name!r} at {self._where(entry.offset - self._base)}: "
                f"c_check {entry.c_check:#010x}, data sums to {got:#010x}"
            )
        self._pending_sum = None
        self._current = None

    def _finish_current(self) -> None:
        entry = self._current
        if entry is not None:
            if self._pending and self._pending_sum is None:
                # Data nobody took and no checksum to verify: drop it without copying it around.
                missing = self._pending - self._src.skip(self._pending)
                if missing:
                    self._pending = missing
                    raise CpioError(
                        f"truncated data of {entry.name!r}: {missing} bytes missing at {self._where()}"
                    )
                self._pending = 0
            for _ in self.iter_data():
                pass

    def _discard(self, n: int, name: str) -> None:
        if len(self._src.read(n)) < n:
            raise CpioError(f"truncated padding after {name!r} at {self._where()}")


class CpioWriter:
    """Writes one cpio archive (newc or crc) to a binary stream.

    ``add`` writes an entry with its data; ``close`` writes the trailer (and, with
    ``block_size``, NUL padding to a multiple of it, as GNU cpio pads to 512).  The writer
    counts the bytes it wrote in :attr:`position`.
    """

    def __init__(self, out: BinaryIO, *, format: Format = "newc", block_size: int = 0) -> None:
        if format not in _MAGIC_OF:
            raise CpioError(f"unknown cpio format {format!r} (newc or crc)")
        self._out = out
        self.format: Format = format
        self._block = block_size
        self.position = 0
        self.closed = False

    def add(self, entry: Entry, data: bytes | memoryview | None = None) -> None:
        """Write ``entry``; a symlink's data is its ``linkname``; regular files take ``data``.

        The entry's own ``format``, ``c_namesize``, ``c_filesize`` and ``c_check`` are ignored:
        the writer's format is used and the rest computed from the name and data.
        """
        if entry.issym():
            payload: bytes | memoryview = os.fsencode(entry.linkname or "")
        else:
            payload = data if data is not None else b""
        self._write_entry(entry, payload)

    def _write_entry(self, entry: Entry, payload: bytes | memoryview) -> None:
        name = os.fsencode(entry.name) + b"\0"
        entry = entry.replace(format=self.format)
        check = data_checksum(payload) if self.format == "crc" and entry.isreg() else 0
        header = pack_header(entry, namesize=len(name), filesize=len(payload), check=check)
        parts = [header, name, b"\0" * pad4(HEADER_SIZE + len(name))]
        self._write(b"".join(parts))
        if len(payload):
            self._write(payload)
            self._write(b"\0" * pad4(len(payload)))

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self.position += len(data)

    def close(self) -> None:
        """Write the trailer (once) and the block padding."""
        if self.closed:
            return
        self._write_entry(Entry(name=TRAILER, c_mode=0, c_nlink=1), b"")
        if self._block and self.position % self._block:
            self._write(b"\0" * (self._block - self.position % self._block))
        self.closed = True

    def __enter__(self) -> CpioWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()

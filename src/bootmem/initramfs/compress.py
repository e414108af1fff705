"""The compressions the kernel unpacks, found by magic; streaming decompressors and compressors.

Detection follows the table in ``lib/decompress.c`` (``compressed_formats[]``): each member of
an image is recognised by its first bytes.  Decompression is streaming and bounded: a member
is read from the image in chunks, its output handed out in chunks, the total checked against a
cap (:class:`~bootmem.errors.DecompressionBombError`), and when the member's compressed stream
ends the decompressor reports where, so the image continues right after it (the ``posp``
argument of the kernel's ``decompress_fn``, ``my_inptr`` in ``init/initramfs.c``).

Compressors (:func:`open_compressor`) produce what both the kernel and the command-line tools
accept: gzip, bzip2, xz with ``--check=crc32`` (the kernel's xz decoder knows no CRC64 or
SHA-256 by default), lzma "alone", the lzop file format, lz4's legacy format and zstd.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from bootmem.errors import CompressionError, DecompressionBombError, MissingCodecError, UsageError

#: Compressions that can be written, in the kernel's names (``CONFIG_RD_*``, ``compress_name``).
COMPRESSIONS: tuple[str, ...] = ("none", "gzip", "bzip2", "lzma", "xz", "lzo", "lz4", "zstd")

#: Compressions the kernel's initramfs unpacker knows.  ``lz4-frame`` (the lz4 tool's default
#: format) is read by bootmem for convenience but is *not* in ``lib/decompress.c``'s table.
KERNEL_COMPRESSIONS = frozenset(COMPRESSIONS)

# lib/decompress.c compressed_formats[]: magic -> name, longest first where prefixes overlap.
_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x89LZO\x00", "lzo"),
    (b"\x02\x21\x4c\x18", "lz4"),
    (b"\x04\x22\x4d\x18", "lz4-frame"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x5d\x00\x00", "lzma"),
    (b"BZh", "bzip2"),
    (b"\x1f\x8b", "gzip"),
    (b"\x1f\x9e", "gzip"),  # "old gzip": detected by the kernel, refused by its inflate
)

_CHUNK = 1 << 18  # compressed bytes fed to a decompressor at a time
_OUT_CHUNK = 1 << 16  # smallest output chunk asked of a decompressor
_MAX_OUT = 1 << 22  # largest output chunk asked of one: a read(4 GiB) is served in pieces


def detect(head: bytes | memoryview) -> str | None:
    """The compression whose magic ``head`` starts with (as ``lib/decompress.c``), or ``None``.

    >>> detect(b"\\x28\\xb5\\x2f\\xfd....")
    'zstd'
    >>> detect(b"070701") is None
    True
    """
    head = bytes(head[:8])
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    return None


# --- decompression ------------------------------------------------------------------------


class ImageBytes(Protocol):
    """Random access to an image's bytes (what :mod:`bootmem.initramfs.image` provides)."""

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, n: int) -> bytes | memoryview:
        """Up to ``n`` bytes at ``offset``; fewer only at the end of the image."""
        ...


class Budget:
    """The cap on decompressed bytes shared by all members of one image."""

    __slots__ = ("cap", "used")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0


class _Engine(Protocol):
    def produce(self, max_length: int) -> bytes:
        """Up to ``max_length`` (> 0) decompressed bytes; ``b""`` only at the member's end."""
        ...

    def end(self) -> int:
        """The image offset right after the member; valid once ``produce`` returned ``b""``."""
        ...


class MemberStream:
    """The decompressed bytes of the member that starts at ``offset`` of an image, as a stream.

    ``read(n)`` returns up to ``n`` bytes and ``b""`` once the member's compressed stream has
    ended; :attr:`end` is then the image offset right after the member.  Raises
    :class:`CompressionError` for corrupt or truncated data and :class:`DecompressionBombError`
    when the image's decompressed total passes ``budget.cap``; each message names the
    member's offset in hex.
    """

    __slots__ = ("_buf", "_done", "_end", "_engine", "_pos", "budget", "head", "name", "offset", "size")

    def __init__(self, name: str, image: ImageBytes, offset: int, budget: Budget) -> None:
        factory = _ENGINES.get(name)
        if factory is None:
            raise CompressionError(f"unknown compression {name!r} at offset {offset:#x}")
        self.name = name
        self.offset = offset
        self.budget = budget
        self.size = 0  # decompressed bytes produced so far
        self.head = b""  # the first bytes of the decompressed stream
        self._buf = b""
        self._pos = 0
        self._done = False
        self._end: int | None = None
        with self._errors():
            self._engine = factory(image, offset, name)

    @property
    def end(self) -> int:
        """The image offset right after the member (read the stream to its end first)."""
        if self._end is None:
            raise ValueError("the member's end is known only after its stream is read to the end")
        return self._end

    @property
    def eof(self) -> bool:
        return self._done and self._pos >= len(self._buf)

    def read(self, n: int = -1, /) -> bytes:
        if n < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        avail = len(self._buf) - self._pos
        if avail:
            out = self._buf if self._pos == 0 and n >= avail else self._buf[self._pos : self._pos + n]
            self._pos += len(out)
            if self._pos >= len(self._buf):
                self._buf, self._pos = b"", 0
            return out
        if self._done or n == 0:
            return b""
        chunk = self._produce(min(max(n, _OUT_CHUNK), _MAX_OUT))
        if len(chunk) <= n:
            return chunk
        self._buf, self._pos = chunk, n
        return chunk[:n]

    def _produce(self, max_length: int) -> bytes:
        budget = self.budget
        left = budget.cap - budget.used
        with self._errors():
            out = self._engine.produce(min(max_length, left + 1))
            if not out:
                self._done = True
                self._end = self._engine.end()
                return out
        if not self.head:
            self.head = out[:16]
        self.size += len(out)
        budget.used += len(out)
        if budget.used > budget.cap:
            raise DecompressionBombError(
                f"decompressed data passes the cap of {budget.cap} bytes in the {self.name} member "
                f"at offset {self.offset:#x}"
            )
        return out

    def _errors(self) -> _ErrorContext:
        return _ErrorContext(self.name, self.offset)


class _ErrorContext:
    """Turns a codec library's exception into :class:`CompressionError` naming the member."""

    __slots__ = ("name", "offset")

    def __init__(self, name: str, offset: int) -> None:
        self.name, self.offset = name, offset

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, CompressionError):
            return
        if isinstance(exc, (zlib.error, OSError, lzma.LZMAError, EOFError, RuntimeError, ValueError)) or (
            type(exc).__module__.split(".")[0] in ("zstandard", "lz4", "_block", "lzo")
        ):
            raise CompressionError(
                f"corrupt {self.name} data in the member at offset {self.offset:#x}: {exc}"
            ) from exc


def _truncated(name: str, offset: int, size: int) -> CompressionError:
    return CompressionError(
        f"truncated {name} member at offset {offset:#x}: the image ends at {size:#x} before the member does"
    )


class _Feed:
    """Compressed input of one member, handed out in chunks from the image."""

    __slots__ = ("fed", "image", "name", "offset", "pos")

    def __init__(self, image: ImageBytes, offset: int, name: str) -> None:
        self.image, self.offset, self.name = image, offset, name
        self.pos = offset
        self.fed = 0

    def next(self) -> bytes | memoryview:
        data = self.image.read_at(self.pos, _CHUNK)
        if not len(data):
            raise _truncated(self.name, self.offset, self.image.size)
        self.pos += len(data)
        return data


class _StdlibEngine:
    """bz2, lzma/xz and lz4 frames: decompressors with ``decompress(data, max_length)``,
    ``needs_input``, ``eof`` and ``unused_data``."""

    __slots__ = ("_d", "_feed")

    def __init__(self, d: Any, feed: _Feed) -> None:
        self._d, self._feed = d, feed

    def produce(self, max_length: int) -> bytes:
        d = self._d
        while not d.eof:
            data = self._feed.next() if d.needs_input else b""
            out: bytes = d.decompress(data, max_length)
            if out:
                return out
        return b""

    def end(self) -> int:
        return self._feed.pos - len(self._d.unused_data or b"")  # lz4.frame: None at an exact end


class _GzipEngine:
    """gzip via zlib (``lib/decompress_inflate.c``): one gzip member, CRC32 and ISIZE checked."""

    __slots__ = ("_d", "_feed")

    def __init__(self, image: ImageBytes, offset: int, name: str) -> None:
        head = bytes(image.read_at(offset, 3))
        if head[:2] != b"\x1f\x8b" or head[2:3] != b"\x08":
            # decompress_inflate.c accepts only 1f 8b 08 ("Not a gzip file").
            raise CompressionError(f"not a gzip file (magic {head!r}) at offset {offset:#x}")
        self._d = zlib.decompressobj(31)
        self._feed = _Feed(image, offset, name)

    def produce(self, max_length: int) -> bytes:
        d = self._d
        while True:
            if d.eof:  # a call past the end would append the leftover to unused_data again
                return b""
            # Pending output first (zlib may hold some after filling max_length), then input.
            out = d.decompress(d.unconsumed_tail, max_length)
            if out or d.eof:
                return out
            out = d.decompress(self._feed.next(), max_length)
            if out or d.eof:
                return out

    def end(self) -> int:
        # At the end of the stream unused_data holds the input left over (unconsumed_tail may
        # still show a stale copy of part of it).
        return self._feed.pos - len(self._d.unused_data)


class _ImageFile:
    """A read-only file over ``[start, stop)`` of an image, for codec libraries that pull."""

    __slots__ = ("image", "pos", "stop")

    def __init__(self, image: ImageBytes, start: int, stop: int) -> None:
        self.image, self.pos, self.stop = image, start, stop

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.stop - self.pos
        n = min(n, self.stop - self.pos)
        if n <= 0:
            return b""
        data = bytes(self.image.read_at(self.pos, n))
        self.pos += len(data)
        return data


def _zstd_frame_end(image: ImageBytes, offset: int) -> int:
    """The end of the zstd frame at ``offset``, by walking its block headers (RFC 8878 3.1.1)."""
    size = image.size
    head = bytes(image.read_at(offset, 5))
    if len(head) < 5:
        raise _truncated("zstd", offset, size)
    fhd = head[4]
    if fhd & 0x08:
        raise CompressionError(f"corrupt zstd data in the member at offset {offset:#x}: reserved bit set")
    single = (fhd >> 5) & 1
    fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
    pos = offset + 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
    while True:
        raw = bytes(image.read_at(pos, 3))
        if len(raw) < 3:
            raise _truncated("zstd", offset, size)
        header = raw[0] | raw[1] << 8 | raw[2] << 16
        kind = (header >> 1) & 3
        if kind == 3:
            raise CompressionError(
                f"corrupt zstd data in the member at offset {offset:#x}: reserved block type"
            )
        pos += 3 + (1 if kind == 1 else header >> 3)
        if header & 1:
            break
    if fhd & 0x04:
        pos += 4
    if pos > size:
        raise _truncated("zstd", offset, size)
    return pos


class _ZstdEngine:
    """zstd (``lib/decompress_unzstd.c``): one frame; the image continues after it."""

    __slots__ = ("_end", "_reader")

    def __init__(self, image: ImageBytes, offset: int, name: str) -> None:
        import zstandard

        self._end = _zstd_frame_end(image, offset)
        source = _ImageFile(image, offset, self._end)
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            cast(Any, source), read_size=_CHUNK, read_across_frames=False, closefd=False
        )

    def produce(self, max_length: int) -> bytes:
        out: bytes = self._reader.read(max_length)
        return out

    def end(self) -> int:
        return self._end


_LZ4_LEGACY_MAGIC = 0x184C2102
_LZ4_LEGACY_CHUNK = 8 << 20  # uncompressed bytes per block (lz4 -l, LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE)
_LZ4_MAX_BLOCK = _LZ4_LEGACY_CHUNK + _LZ4_LEGACY_CHUNK // 255 + 16  # LZ4_compressBound


class _Lz4LegacyEngine:
    """lz4's legacy format (``lib/decompress_unlz4.c``): the magic, then blocks of a 4-byte
    little-endian compressed size and an lz4 block of at most 8 MiB.

    There is no end marker: as in the kernel the member runs to the end of the image, to a
    zero size word (NUL padding: "correctly handle zero-padding around initrds"), and a
    repeated magic starts another run of blocks.
    """

    __slots__ = ("_block", "_image", "_offset", "_pos")

    def __init__(self, image: ImageBytes, offset: int, name: str) -> None:
        import lz4.block

        self._block = lz4.block
        self._image, self._offset = image, offset
        self._pos = offset + 4

    def produce(self, max_length: int) -> bytes:
        image = self._image
        while True:
            word = bytes(image.read_at(self._pos, 4))
            if len(word) < 4:
                self._pos += len(word)
                return b""
            (csize,) = struct.unpack("<I", word)
            if csize == 0:
                return b""
            if csize == _LZ4_LEGACY_MAGIC:
                self._pos += 4
                continue
            if csize > _LZ4_MAX_BLOCK:
                raise CompressionError(
                    f"corrupt lz4 data in the member at offset {self._offset:#x}: "
                    f"block of {csize} bytes at {self._pos:#x}"
                )
            block = image.read_at(self._pos + 4, csize)
            if len(block) < csize:
                raise _truncated("lz4", self._offset, image.size)
            self._pos += 4 + csize
            out: bytes = self._block.decompress(block, uncompressed_size=_LZ4_LEGACY_CHUNK)
            if out:
                return out

    def end(self) -> int:
        return self._pos


# lzop's header flags (lzop's conf.h); lib/decompress_unlzo.c reads the same header.
_LZOP_MAGIC = b"\x89LZO\x00\r\n\x1a\n"
_F_ADLER32_D = 0x00000001
_F_ADLER32_C = 0x00000002
_F_H_EXTRA_FIELD = 0x00000040
_F_CRC32_D = 0x00000100
_F_CRC32_C = 0x00000200
_F_H_FILTER = 0x00000800
_LZO_BLOCK_SIZE = 256 * 1024  # lib/decompress_unlzo.c LZO_BLOCK_SIZE
_F_OS_UNIX = 0x03000000


def _import_lzo(offset: int | None) -> Any:
    try:
        import lzo
    except ImportError as exc:
        where = f" at offset {offset:#x}" if offset is not None else ""
        raise MissingCodecError(
            f"lzo{where} needs the Python package 'python-lzo' (pip install 'bootmem[lzo]')"
        ) from exc
    return lzo


class _LzoEngine:
    """The lzop file format (``lib/decompress_unlzo.c``): a header, then blocks of
    uncompressed size, compressed size, checksums and lzo1x data; a zero size ends it."""

    __slots__ = ("_flags", "_image", "_lzo", "_offset", "_pos")

    def __init__(self, image: ImageBytes, offset: int, name: str) -> None:
        self._lzo = _import_lzo(offset)
        self._image, self._offset = image, offset
        head = bytes(image.read_at(offset, 64 + 255))
        if not head.startswith(_LZOP_MAGIC):
            raise CompressionError(f"corrupt lzo data in the member at offset {offset:#x}: bad magic")
        try:
            p = len(_LZOP_MAGIC)
            version, _lib = struct.unpack_from(">HH", head, p)
            p += 4
            if version >= 0x0940:
                p += 2  # version needed to extract
            method = head[p]
            p += 1
            if version >= 0x0940:
                p += 1  # level
            (flags,) = struct.unpack_from(">I", head, p)
            p += 4
            if flags & _F_H_FILTER:
                p += 4
            p += 8  # mode, mtime low
            if version >= 0x0940:
                p += 4  # mtime high
            p += 1 + head[p] + 4  # name, header checksum
            if flags & _F_H_EXTRA_FIELD:
                (extra,) = struct.unpack_from(">I", head, p)
                p += 4 + extra + 4
        except (IndexError, struct.error):
            raise _truncated("lzo", offset, image.size) from None
        if method not in (1, 2, 3):
            raise CompressionError(f"corrupt lzo data in the member at offset {offset:#x}: method {method}")
        self._flags = flags
        self._pos = offset + p

    def produce(self, max_length: int) -> bytes:
        image, offset, flags = self._image, self._offset, self._flags
        word = bytes(image.read_at(self._pos, 4))
        if len(word) < 4:
            raise _truncated("lzo", offset, image.size)
        (dst_len,) = struct.unpack(">I", word)
        if dst_len == 0:
            self._pos += 4
            return b""
        if dst_len > _LZO_BLOCK_SIZE:
            raise CompressionError(
                f"corrupt lzo data in the member at offset {offset:#x}: "
                f"dest len longer than block size at {self._pos:#x}"
            )
        n_dsum = 4 if flags & (_F_ADLER32_D | _F_CRC32_D) else 0
        fixed = bytes(image.read_at(self._pos + 4, 4 + n_dsum + 4))
        if len(fixed) < 4:
            raise _truncated("lzo", offset, image.size)
        (src_len,) = struct.unpack_from(">I", fixed)
        if src_len == 0 or src_len > dst_len:
            raise CompressionError(f"corrupt lzo data in the member at offset {offset:#x}: file corrupted")
        n_csum = 4 if src_len < dst_len and flags & (_F_ADLER32_C | _F_CRC32_C) else 0
        start = self._pos + 8 + n_dsum + n_csum
        block = image.read_at(start, src_len)
        if len(block) < src_len:
            raise _truncated("lzo", offset, image.size)
        self._pos = start + src_len
        out = bytes(block) if src_len == dst_len else self._lzo.decompress(bytes(block), False, dst_len)
        if len(out) != dst_len:
            raise CompressionError(f"corrupt lzo data in the member at offset {offset:#x}: short block")
        if n_dsum:
            (want,) = struct.unpack_from(">I", fixed, 4)
            got = zlib.adler32(out) if flags & _F_ADLER32_D else zlib.crc32(out)
            if got != want:
                raise CompressionError(
                    f"corrupt lzo data in the member at offset {offset:#x}: "
                    f"checksum of the block at {start:#x}"
                )
        return out

    def end(self) -> int:
        return self._pos


def _stdlib(make: Callable[[], Any]) -> Callable[[ImageBytes, int, str], _Engine]:
    def factory(image: ImageBytes, offset: int, name: str) -> _Engine:
        return _StdlibEngine(make(), _Feed(image, offset, name))

    return factory


def _lz4_frame() -> Any:
    import lz4.frame

    return lz4.frame.LZ4FrameDecompressor()


_ENGINES: dict[str, Callable[[ImageBytes, int, str], _Engine]] = {
    "gzip": _GzipEngine,
    "bzip2": _stdlib(bz2.BZ2Decompressor),
    "lzma": _stdlib(lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE)),
    "xz": _stdlib(lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)),
    "lzo": _LzoEngine,
    "lz4": _Lz4LegacyEngine,
    "lz4-frame": _stdlib(_lz4_frame),
    "zstd": _ZstdEngine,
}


# --- compression --------------------------------------------------------------------------


class Compressor(Protocol):
    """A streaming compressor: ``compress`` returns what is ready, ``flush`` the rest (once)."""

    def compress(self, data: bytes | memoryview, /) -> bytes: ...

    def flush(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class _Identity:
    def compress(self, data: bytes | memoryview, /) -> bytes:
        return bytes(data)

    def flush(self) -> bytes:
        return b""


class _ZstdCompressor:
    __slots__ = ("_c",)

    def __init__(self, level: int, threads: int = 0) -> None:
        import zstandard

        self._c = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True).compressobj()

    def compress(self, data: bytes | memoryview, /) -> bytes:
        out: bytes = self._c.compress(data)
        return out

    def flush(self) -> bytes:
        out: bytes = self._c.flush()
        return out


class _BlockCompressor:
    """Cuts the input into fixed-size blocks; ``_block`` encodes one."""

    __slots__ = ("_block_size", "_pending", "_started")

    def __init__(self, block_size: int) -> None:
        self._block_size = block_size
        self._pending = bytearray()
        self._started = False

    def _header(self) -> bytes:
        return b""

    def _trailer(self) -> bytes:
        return b""

    def _block(self, data: bytes) -> bytes:
        raise NotImplementedError

    def compress(self, data: bytes | memoryview, /) -> bytes:
        out = []
        if not self._started:
            self._started = True
            out.append(self._header())
        self._pending += data
        size = self._block_size
        done = 0
        while len(self._pending) - done >= size:
            out.append(self._block(bytes(self._pending[done : done + size])))
            done += size
        del self._pending[:done]
        return b"".join(out)

    def flush(self) -> bytes:
        out = [] if self._started else [self._header()]
        self._started = True
        if self._pending:
            out.append(self._block(bytes(self._pending)))
            self._pending.clear()
        out.append(self._trailer())
        return b"".join(out)


class _Lz4LegacyCompressor(_BlockCompressor):
    """``lz4 -l``: the legacy magic, then 8 MiB blocks, each a 4-byte LE size and an lz4 block."""

    __slots__ = ("_hc", "_mod")

    def __init__(self, level: int) -> None:
        import lz4.block

        super().__init__(_LZ4_LEGACY_CHUNK)
        self._mod = lz4.block
        self._hc = level

    def _header(self) -> bytes:
        return struct.pack("<I", _LZ4_LEGACY_MAGIC)

    def _block(self, data: bytes) -> bytes:
        comp: bytes
        if self._hc >= 3:
            comp = self._mod.compress(data, mode="high_compression", compression=self._hc, store_size=False)
        else:
            comp = self._mod.compress(data, store_size=False)
        return struct.pack("<I", len(comp)) + comp


class _LzopCompressor(_BlockCompressor):
    """The lzop file format with adler32 of the uncompressed blocks, as ``lzop`` writes it."""

    __slots__ = ("_level", "_lzo")

    def __init__(self, level: int) -> None:
        super().__init__(_LZO_BLOCK_SIZE)
        self._lzo = _import_lzo(None)
        self._level = level

    def _header(self) -> bytes:
        method = 3 if self._level >= 7 else 1  # M_LZO1X_999 or M_LZO1X_1
        body = struct.pack(
            ">HHHBBIIIIB", 0x1030, 0x2080, 0x0940, method, self._level, _F_ADLER32_D | _F_OS_UNIX,
            0o100644, 0, 0, 0,
        )  # fmt: skip
        return _LZOP_MAGIC + body + struct.pack(">I", zlib.adler32(body))

    def _block(self, data: bytes) -> bytes:
        comp: bytes = self._lzo.compress(data, 9 if self._level >= 7 else 1, False)
        if len(comp) >= len(data):
            comp = data
        return struct.pack(">III", len(data), len(comp), zlib.adler32(data)) + comp

    def _trailer(self) -> bytes:
        return b"\0\0\0\0"


_DEFAULT_LEVEL = {"gzip": 9, "bzip2": 9, "lzma": 6, "xz": 6, "lzo": 5, "lz4": 9, "zstd": 3}
_LEVELS = {
    "gzip": range(0, 10),
    "bzip2": range(1, 10),
    "lzma": range(0, 10),
    "xz": range(0, 10),
    "lzo": range(1, 10),
    "lz4": range(1, 13),
    "zstd": range(-7, 23),
}


def open_compressor(name: str, level: int | None = None, *, threads: int = 0) -> Compressor:
    """A compressor for ``name`` (one of :data:`COMPRESSIONS`) at ``level`` (its default if None).

    The output is one complete member that the kernel and the tool of the same name accept:
    gzip (zlib, mtime 0), bzip2, xz with CRC32 checks, lzma alone, lzop, ``lz4 -l`` legacy,
    zstd.  ``threads`` (zstd only) is libzstd's worker count: 0 compresses in the calling thread
    (``zstd --single-thread``); N >= 1 in N workers, whose output is the same bytes for every
    N >= 1 and differs from 0's.  Raises :class:`UsageError` for an unknown name, a level out of
    range or threads for another codec, :class:`MissingCodecError` for lzo without python-lzo.
    """
    if name not in COMPRESSIONS:
        raise UsageError(f"unknown compression {name!r} (one of {', '.join(COMPRESSIONS)})")
    if threads < 0 or (threads and name != "zstd"):
        raise UsageError(f"threads={threads} for {name}: only zstd compresses in threads (0 or more)")
    if name == "none":
        return _Identity()
    lvl = _DEFAULT_LEVEL[name] if level is None else level
    if lvl not in _LEVELS[name]:
        r = _LEVELS[name]
        raise UsageError(f"level {lvl} out of range for {name} ({r.start}..{r.stop - 1})")
    if name == "gzip":
        return zlib.compressobj(lvl, zlib.DEFLATED, 31)
    if name == "bzip2":
        return bz2.BZ2Compressor(lvl)
    if name == "xz":
        return lzma.LZMACompressor(lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=lvl)
    if name == "lzma":
        return lzma.LZMACompressor(lzma.FORMAT_ALONE, preset=lvl)
    if name == "zstd":
        return _ZstdCompressor(lvl, threads)
    if name == "lz4":
        return _Lz4LegacyCompressor(lvl)
    return _LzopCompressor(lvl)


def compress(data: bytes | memoryview, name: str, level: int | None = None) -> bytes:
    """``data`` as one complete member compressed with ``name`` (see :func:`open_compressor`)."""
    c = open_compressor(name, level)
    return c.compress(data) + c.flush()

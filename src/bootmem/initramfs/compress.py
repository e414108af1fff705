"""The compressions the kernel unpacks: one table, :data:`CODECS`, and everything built from it.

Each :class:`Codec` holds what bootmem knows of one compression: its two-byte entries in
``compressed_formats[]`` of Linux's ``lib/decompress.c`` (``kernel_magics``, what
:func:`decompress_method` reads, as the kernel does), the longer magic :func:`detect` requires
when bootmem reads an image strictly (``ls``, ``examine``), its streaming decompressor
(``engine``), its compressor, levels, whether the kernel knows it at all, and the messages its
kernel decompressor passes to ``error()`` (``lib/decompress_*.c``), which
``init/initramfs.c`` prints after "Initramfs unpacking failed: ".

Decompression is streaming and bounded: a member is read from the image in chunks, its output
handed out in chunks, the total checked against a cap (:class:`Budget`,
:class:`~bootmem.errors.DecompressionBombError`), and when the member's compressed stream ends
the decompressor reports where, so the image continues right after it (the ``posp`` argument
of the kernel's ``decompress_fn``, ``my_inptr`` in ``init/initramfs.c``).  A member the
decompressor refuses raises :class:`~bootmem.errors.DecompressorError`, whose
``kernel_message`` is the kernel decompressor's own for the same failure.  Only the exceptions
a codec library raises for bad data become that error; anything else (a bug) surfaces as itself.

With ``kernel=True`` a member is read as the kernel's decompressor reads it where the two
differ: gzip's header is 10 bytes and an optional name, the deflate stream is raw and the
8-byte trailer is skipped unread (``lib/decompress_inflate.c``: CRC32 and size are not
checked); lzop blocks carry exactly one 4-byte checksum, skipped unread
(``lib/decompress_unlzo.c``).  bzip2 is the exception among the messages: Linux's bunzip2
says "Data integrity error when decompressing." only for a CRC mismatch and nothing for other
damage ("decompressor failed"); Python's bz2 reports both alike, so bootmem always gives
"decompressor failed".

Compressors (:func:`open_compressor`) produce what both the kernel and the command-line tools
accept: gzip, bzip2, xz with ``--check=crc32`` (the kernel's xz decoder knows no CRC64 or
SHA-256 by default), lzma "alone", the lzop file format, lz4's legacy format and zstd.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

from bootmem.errors import (
    CompressionError,
    DecompressionBombError,
    DecompressorError,
    MissingCodecError,
    UsageError,
)
from bootmem.record import Record

_CHUNK = 1 << 18  # compressed bytes fed to a decompressor at a time
_OUT_CHUNK = 1 << 16  # smallest output chunk asked of a decompressor
_MAX_OUT = 1 << 22  # largest output chunk asked of one: a read(4 GiB) is served in pieces

#: The default cap on decompressed bytes is this many times the compressed bytes of the
#: image's members (NUL padding and raw archives do not count), and at least
#: :data:`DEFAULT_MIN_CAP`.  Real images expand far less: a Debian 12 zstd initramfs about
#: 4.3 times, xz of text about 10 times; only crafted data passes 64.
DEFAULT_RATIO = 64
DEFAULT_MIN_CAP = 256 << 20


# --- decompression ------------------------------------------------------------------------


class ImageBytes(Protocol):
    """Random access to an image's bytes (what :mod:`bootmem.initramfs.image` provides)."""

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, n: int) -> bytes | memoryview:
        """Up to ``n`` bytes at ``offset``; fewer only at the end of the image."""
        ...


class Budget:
    """The cap on decompressed bytes shared by all members of one image.

    ``cap`` is a number of bytes, or ``None`` for the default: :data:`DEFAULT_RATIO` times the
    compressed bytes of the members read so far (the member in progress counts what has been
    read of it), at least :data:`DEFAULT_MIN_CAP`.  NUL padding between members is never
    counted, so padding an image does not lift its cap.
    """

    __slots__ = ("cap", "compressed", "used")

    def __init__(self, cap: int | None = None) -> None:
        self.cap = cap
        self.used = 0  # decompressed bytes of all members so far
        self.compressed = 0  # compressed bytes of the members finished

    def limit(self, member: int = 0) -> int:
        """The cap now, with ``member`` compressed bytes read of the member in progress."""
        if self.cap is not None:
            return self.cap
        return max(DEFAULT_MIN_CAP, DEFAULT_RATIO * (self.compressed + member))

    def describe(self, member: int = 0) -> str:
        if self.cap is not None:
            return "the cap set by --max-size (max_decompressed=)"
        return (
            f"the default cap, {DEFAULT_RATIO} times the {self.compressed + member} compressed bytes read "
            f"and at least {DEFAULT_MIN_CAP >> 20} MiB; set another with --max-size"
        )


class _Engine(Protocol):
    #: The exceptions the engine's library raises for bad data (anything else is a bug).
    errors: tuple[type[BaseException], ...]

    def produce(self, max_length: int) -> bytes:
        """Up to ``max_length`` (> 0) decompressed bytes; ``b""`` only at the member's end."""
        ...

    def end(self) -> int:
        """The image offset right after the member; valid once ``produce`` returned ``b""``."""
        ...

    def read_to(self) -> int:
        """The image offset up to which compressed bytes have been read so far."""
        ...

    def kernel_message(self, exc: BaseException) -> str:
        """The kernel decompressor's message for the library's exception ``exc``."""
        ...


def _fail(name: str, kind: str, detail: str) -> DecompressorError:
    """A :class:`DecompressorError` with the message ``name``'s kernel decompressor gives for
    a failure of ``kind`` (a key of :attr:`Codec.messages`)."""
    return DecompressorError(detail, CODECS[name].messages.get(kind, "decompressor failed"))


def _truncated(name: str, offset: int, size: int) -> DecompressorError:
    return _fail(
        name,
        "truncated",
        f"truncated {name} member at offset {offset:#x}: the image ends at {size:#x} before the member does",
    )


def _corrupt(name: str, offset: int, what: str, kind: str = "corrupt") -> DecompressorError:
    return _fail(name, kind, f"corrupt {name} data in the member at offset {offset:#x}: {what}")


class MemberStream:
    """The decompressed bytes of the member that starts at ``offset`` of an image, as a stream.

    ``read(n)`` returns up to ``n`` bytes and ``b""`` once the member's compressed stream has
    ended; :attr:`end` is then the image offset right after the member.  Raises
    :class:`DecompressorError` for corrupt or truncated data and :class:`DecompressionBombError`
    when the image's decompressed total passes the budget's cap; each message names the
    member's offset in hex (and ``segment``, when given).  ``kernel=True`` reads the member as
    the kernel's decompressor does (see the module's description).
    """

    __slots__ = (
        "_buf",
        "_done",
        "_end",
        "_engine",
        "_pos",
        "budget",
        "head",
        "name",
        "offset",
        "segment",
        "size",
    )

    def __init__(
        self,
        name: str,
        image: ImageBytes,
        offset: int,
        budget: Budget,
        *,
        kernel: bool = False,
        segment: int | None = None,
    ) -> None:
        codec = CODECS.get(name)
        if codec is None or codec.engine is None:
            raise CompressionError(f"unknown compression {name!r} at offset {offset:#x}")
        self.name = name
        self.offset = offset
        self.budget = budget
        self.segment = segment
        self.size = 0  # decompressed bytes produced so far
        self.head = b""  # the first bytes of the decompressed stream
        self._buf = b""
        self._pos = 0
        self._done = False
        self._end: int | None = None
        self._engine = codec.engine(image, offset, name, kernel)

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

    def read_chunk(self, n: int) -> bytes:
        """About ``n`` bytes as the decompressor hands them out, never cut or copied: what is
        left of a chunk :meth:`read` cut, else one output of the decompressor (lz4's legacy
        blocks are 8 MiB whatever ``n`` is); ``b""`` once the member's stream has ended."""
        if self._pos < len(self._buf):
            out = self._buf[self._pos :] if self._pos else self._buf
            self._buf, self._pos = b"", 0
            return out
        if self._done or n <= 0:
            return b""
        return self._produce(min(max(n, _OUT_CHUNK), _MAX_OUT))

    def _produce(self, max_length: int) -> bytes:
        budget, engine = self.budget, self._engine
        left = budget.limit(engine.read_to() - self.offset) - budget.used
        try:
            out = engine.produce(min(max_length, max(left, 0) + 1))
        except engine.errors as exc:
            raise DecompressorError(
                f"corrupt {self.name} data in the member at offset {self.offset:#x}: {exc}",
                engine.kernel_message(exc),
            ) from exc
        if not out:
            self._done = True
            self._end = engine.end()
            budget.compressed += self._end - self.offset
            return out
        if not self.head:
            self.head = out[:16]
        self.size += len(out)
        budget.used += len(out)
        member = engine.read_to() - self.offset
        cap = budget.limit(member)
        if budget.used > cap:
            where = "" if self.segment is None else f" (segment {self.segment})"
            raise DecompressionBombError(
                f"decompressed data passes the cap of {cap} bytes in the {self.name} member "
                f"at offset {self.offset:#x}{where}: {budget.used} bytes reached; "
                f"{budget.describe(member)}"
            )
        return out


class Prefetch:
    """A member's decompressed chunks, produced by a thread up to :data:`AHEAD` chunks ahead.

    The decompressors release the GIL, so on two cores decompression overlaps with the work
    done on each chunk (parsing, writing files); memory stays bounded by ``AHEAD`` chunks of
    ``chunk`` bytes.  :meth:`read` hands out chunks in order, then ``b""`` at the member's end;
    the decompressor's error is raised by the call that would have returned its chunk.  Leaving
    the ``with`` block stops the thread and waits for it, so the image is read by nobody after
    it; the member's :attr:`~MemberStream.end`, ``size`` and ``head`` may be read once
    :meth:`read` has returned ``b""``.

    With ``views``, a decompressor's output is never cut by copying: chunks are read with
    :meth:`MemberStream.read_chunk`, and one longer than ``chunk`` (lz4's 8 MiB legacy blocks)
    is handed out as ``memoryview`` slices of it, so the output of a block is not copied again
    (nor faulted into fresh memory) on its way to a reader that mostly skips it.
    """

    AHEAD = 4

    def __init__(self, member: MemberStream, chunk: int = 1 << 20, *, views: bool = False) -> None:
        import queue  # here: listing a raw archive does not pay for the import
        import threading

        self._member, self._chunk, self._views = member, chunk, views
        self._queue: queue.Queue[bytes | memoryview | BaseException] = queue.Queue(self.AHEAD)
        self._empty = queue.Empty
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="bootmem-decompress", daemon=True)

    def __enter__(self) -> Prefetch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop = True
        while self._thread.is_alive():  # a producer blocked on a full queue is let through
            with contextlib.suppress(self._empty):
                self._queue.get(timeout=0.01)
        self._thread.join()
        self._member = None  # type: ignore[assignment]

    def _run(self) -> None:
        put, chunk = self._queue.put, self._chunk
        read = self._member.read_chunk if self._views else self._member.read
        try:
            while not self._stop:
                data = read(chunk)
                if len(data) > chunk:
                    # An output longer than a chunk (lz4's 8 MiB blocks) in views of it, not copies.
                    view = memoryview(data)
                    for at in range(0, len(data), chunk):
                        put(view[at : at + chunk])  # a reader that stopped drains the queue
                    continue
                put(data)
                if not data:
                    return
        except BaseException as exc:  # raised again in the reading thread
            put(exc)

    def read(self) -> bytes | memoryview:
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._stop = True
            raise item
        return item


class PrefetchedStream:
    """A :class:`Prefetch`'s chunks as a byte stream: ``read(n)`` returns up to ``n`` bytes,
    ``b""`` at the member's end (what :class:`~bootmem.initramfs.cpio.CpioReader` reads);
    ``skip(n)`` passes over bytes without copying them."""

    __slots__ = ("_buf", "_chunks", "_done", "_pos")

    def __init__(self, chunks: Prefetch) -> None:
        self._chunks = chunks
        self._buf: bytes | memoryview = b""
        self._pos = 0
        self._done = False

    @property
    def eof(self) -> bool:
        """Every byte of the member handed out."""
        return self._done and self._pos >= len(self._buf)

    def read(self, n: int = -1, /) -> bytes:
        if n < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        if self._pos >= len(self._buf):
            if self._done or n == 0:
                return b""
            self._buf, self._pos = self._chunks.read(), 0
            if not self._buf:
                self._done = True
                return b""
        pos, buf = self._pos, self._buf
        if pos == 0 and n >= len(buf):
            self._pos = len(buf)
            return buf if type(buf) is bytes else bytes(buf)
        out = buf[pos : pos + n]
        self._pos = pos + len(out)
        return out if type(out) is bytes else bytes(out)

    def skip(self, n: int, /) -> int:
        """Pass over up to ``n`` bytes without copying them; how many (fewer only at the end)."""
        done = 0
        while done < n:
            if self._pos >= len(self._buf):
                if self._done:
                    break
                self._buf, self._pos = self._chunks.read(), 0
                if not self._buf:
                    self._done = True
                    break
            take = min(n - done, len(self._buf) - self._pos)
            self._pos += take
            done += take
        return done


class _Feed:
    """Compressed input of one member, handed out in chunks from the image."""

    __slots__ = ("image", "name", "offset", "pos")

    def __init__(self, image: ImageBytes, offset: int, name: str, start: int | None = None) -> None:
        self.image, self.offset, self.name = image, offset, name
        self.pos = offset if start is None else start

    def next(self) -> bytes | memoryview:
        data = self.image.read_at(self.pos, _CHUNK)
        if not len(data):
            raise _truncated(self.name, self.offset, self.image.size)
        self.pos += len(data)
        return data


class _StdlibEngine:
    """bz2, lzma/xz and lz4 frames: decompressors with ``decompress(data, max_length)``,
    ``needs_input``, ``eof`` and ``unused_data``."""

    __slots__ = ("_classify", "_d", "_feed", "errors")

    def __init__(
        self,
        d: Any,
        feed: _Feed,
        errors: tuple[type[BaseException], ...],
        classify: Callable[[BaseException], str],
    ) -> None:
        self._d, self._feed, self.errors, self._classify = d, feed, errors, classify

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

    def read_to(self) -> int:
        return self._feed.pos

    def kernel_message(self, exc: BaseException) -> str:
        return self._classify(exc)


class _GzipEngine:
    """gzip via zlib (``lib/decompress_inflate.c``).

    Strictly: one gzip member, its header parsed whole, CRC32 and ISIZE checked.  As the
    kernel (``__gunzip``): the header is 10 bytes (``1f 8b 08``, else "Not a gzip file") and,
    with FNAME, a name up to a NUL ("header error" if none before the image ends); then raw
    deflate, and the member ends 8 bytes after the deflate stream, the trailer unread.
    """

    __slots__ = ("_d", "_feed", "_kernel", "errors")

    def __init__(self, image: ImageBytes, offset: int, name: str, kernel: bool) -> None:
        self.errors: tuple[type[BaseException], ...] = (zlib.error,)
        self._kernel = kernel
        head = bytes(image.read_at(offset, 10))
        if head[:3] != b"\x1f\x8b\x08" or (kernel and len(head) < 10):
            raise _fail("gzip", "magic", f"not a gzip file (magic {head[:3]!r}) at offset {offset:#x}")
        start = offset
        if kernel:
            start = offset + 10
            if head[3] & 0x08:  # FNAME: skip the name and its NUL
                start = _skip_name(image, start, offset)
        self._d = zlib.decompressobj(-15 if kernel else 31)
        self._feed = _Feed(image, offset, name, start)

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
        end = self._feed.pos - len(self._d.unused_data)
        if self._kernel:
            end = min(end + 8, self._feed.image.size)  # "add + 8 to skip over trailer"
        return end

    def read_to(self) -> int:
        return self._feed.pos

    def kernel_message(self, exc: BaseException) -> str:
        return CODECS["gzip"].messages["corrupt"]


def _skip_name(image: ImageBytes, pos: int, offset: int) -> int:
    """The offset after the NUL that ends a gzip member's name at ``pos``."""
    while True:
        block = bytes(image.read_at(pos, 1 << 16))
        if not block:
            raise _fail(
                "gzip", "header", f"gzip member at offset {offset:#x}: its name runs to the image's end"
            )
        nul = block.find(b"\0")
        if nul >= 0:
            return pos + nul + 1
        pos += len(block)


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


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _zstd_frame_end(image: ImageBytes, offset: int) -> int:
    """The end of the zstd frame at ``offset``, by walking its block headers (RFC 8878 3.1.1)."""
    size = image.size
    head = bytes(image.read_at(offset, 6))
    if head[:4] != _ZSTD_MAGIC:
        raise _fail("zstd", "magic", f"not a zstd frame (magic {head[:4]!r}) at offset {offset:#x}")
    if len(head) < 5:
        raise _fail("zstd", "header", f"truncated zstd frame header at offset {offset:#x}")
    fhd = head[4]
    if fhd & 0x08:
        raise _corrupt("zstd", offset, "reserved bit set", "parameters")
    single = (fhd >> 5) & 1
    fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
    pos = offset + 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
    if pos > size:
        raise _fail("zstd", "header", f"truncated zstd frame header at offset {offset:#x}")
    while True:
        raw = bytes(image.read_at(pos, 3))
        if len(raw) < 3:
            raise _truncated("zstd", offset, size)
        header = raw[0] | raw[1] << 8 | raw[2] << 16
        kind = (header >> 1) & 3
        if kind == 3:
            raise _corrupt("zstd", offset, "reserved block type")
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

    __slots__ = ("_end", "_reader", "errors")

    def __init__(self, image: ImageBytes, offset: int, name: str, kernel: bool) -> None:
        import zstandard

        self.errors: tuple[type[BaseException], ...] = (zstandard.ZstdError,)
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

    def read_to(self) -> int:
        return self._end  # the frame's extent is known before it is decompressed

    def kernel_message(self, exc: BaseException) -> str:
        return CODECS["zstd"].messages["corrupt"]


_LZ4_LEGACY_MAGIC = 0x184C2102
_LZ4_LEGACY_CHUNK = 8 << 20  # uncompressed bytes per block (lz4 -l, LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE)
_LZ4_MAX_BLOCK = _LZ4_LEGACY_CHUNK + _LZ4_LEGACY_CHUNK // 255 + 16  # LZ4_compressBound


def _lz4_length(block: bytes | memoryview, i: int, nibble: int) -> tuple[int, int] | None:
    """A literal or match length of an lz4 sequence: ``nibble`` from its token, and when that is
    15 the bytes from ``i`` on (255s, then the last); the length and where the sequence goes
    on, or ``None`` when the bytes run out first."""
    if nibble < 15:
        return nibble, i
    n = len(block)
    while i < n and block[i] == 255:
        nibble += 255
        i += 1
    if i == n:
        return None
    return nibble + block[i], i + 1


def _lz4_block_fails(block: bytes | memoryview) -> bool:
    """Whether ``LZ4_decompress_safe`` fails on these bytes before it needs more: a match offset
    of 0 or reaching before the output's start, or output past the 8 MiB a legacy block holds.
    False when the bytes run out first.

    >>> _lz4_block_fails(b"0100000001")  # a newc header read as a block: offset 0x3030 after 3 bytes
    True
    >>> _lz4_block_fails(b"\\x50hello")  # five literals and no match yet: it needs more bytes
    False
    """
    n, i, out = len(block), 0, 0
    while i < n:
        token = block[i]
        literals = _lz4_length(block, i + 1, token >> 4)
        if literals is None:
            return False
        count, i = literals
        i += count
        out += count
        if out > _LZ4_LEGACY_CHUNK:
            return True
        if i + 2 > n:
            return False
        offset = block[i] | block[i + 1] << 8
        if offset == 0 or offset > out:
            return True
        match = _lz4_length(block, i + 2, token & 15)
        if match is None:
            return False
        count, i = match
        out += count + 4
        if out > _LZ4_LEGACY_CHUNK:
            return True
    return False


class _Lz4LegacyEngine:
    """lz4's legacy format (``lib/decompress_unlz4.c``): the magic, then blocks of a 4-byte
    little-endian compressed size and an lz4 block of at most 8 MiB.

    There is no end marker: as in the kernel the member runs to the end of the image, to a
    zero size word (NUL padding: "correctly handle zero-padding around initrds"), and a
    repeated magic starts another run of blocks.  Strictly, a block size past
    ``LZ4_compressBound(8 MiB)`` is refused and 1 to 3 bytes left at the image's end belong
    to the member; the kernel's loop (given the whole image, no ``fill``) checks no bound
    and leaves those bytes to the image loop.
    """

    __slots__ = ("_block", "_image", "_kernel", "_offset", "_pos", "_readinto", "_scratch", "errors")

    def __init__(self, image: ImageBytes, offset: int, name: str, kernel: bool) -> None:
        import lz4.block

        self._block = lz4.block
        self.errors: tuple[type[BaseException], ...] = (lz4.block.LZ4BlockError,)
        head = bytes(image.read_at(offset, 4))
        if len(head) < 4 or struct.unpack("<I", head)[0] != _LZ4_LEGACY_MAGIC:
            raise _fail("lz4", "magic", f"not lz4 legacy data (magic {head!r}) at offset {offset:#x}")
        self._image, self._offset, self._kernel = image, offset, kernel
        self._pos = offset + 4
        # An image in a file reads each block into one buffer kept for the member: a new one
        # per block would be megabytes of fresh memory to fault in, 8 MiB of output at a time.
        self._readinto: Callable[[int, memoryview], int] | None = getattr(image, "readinto_at", None)
        self._scratch = bytearray()

    def _read(self, at: int, n: int) -> bytes | memoryview:
        """Up to ``n`` bytes at ``at``, fewer only at the end of the image; valid until the next call."""
        if self._readinto is None:
            return self._image.read_at(at, n)
        n = max(0, min(n, self._image.size - at))  # a size word may claim gigabytes
        if len(self._scratch) < n:
            self._scratch = bytearray(n)
        view = memoryview(self._scratch)[:n]
        return view[: self._readinto(at, view)]

    def produce(self, max_length: int) -> bytes:
        image = self._image
        while True:
            word = bytes(image.read_at(self._pos, 4))
            if len(word) < 4:
                if not self._kernel:
                    self._pos += len(word)
                return b""
            (csize,) = struct.unpack("<I", word)
            if csize == 0:
                return b""
            if csize == _LZ4_LEGACY_MAGIC:
                self._pos += 4
                continue
            if csize > _LZ4_MAX_BLOCK and not self._kernel:
                raise _corrupt("lz4", self._offset, f"block of {csize} bytes at {self._pos:#x}")
            block = self._read(self._pos + 4, csize)
            if len(block) < csize:
                # The kernel decodes the block past the initrd's end.  Bytes that are no lz4 block
                # (the next member's, when the member lacks its zero end word) fail it there,
                # "Decoding failed"; a block that decodes finds the size negative afterwards.
                if _lz4_block_fails(block):
                    where = f"no lz4 block at {self._pos + 4:#x} (its size word says {csize} bytes)"
                    raise _corrupt("lz4", self._offset, where)
                raise _truncated("lz4", self._offset, image.size)
            self._pos += 4 + csize
            out: bytes = self._block.decompress(block, uncompressed_size=_LZ4_LEGACY_CHUNK)
            if out:
                return out

    def end(self) -> int:
        return self._pos

    def read_to(self) -> int:
        return self._pos

    def kernel_message(self, exc: BaseException) -> str:
        return CODECS["lz4"].messages["corrupt"]


# lzop's header (lzop's conf.h; lib/decompress_unlzo.c reads the same).
_LZOP_MAGIC = b"\x89LZO\x00\r\n\x1a\n"
_F_ADLER32_D = 0x00000001
_F_ADLER32_C = 0x00000002
_F_H_EXTRA_FIELD = 0x00000040
_F_CRC32_D = 0x00000100
_F_CRC32_C = 0x00000200
_F_H_FILTER = 0x00000800
_F_OS_UNIX = 0x03000000
_LZOP_VERSION = 0x1030  # the lzop version written
_LZOP_LIB_VERSION = 0x2080
_LZOP_NEEDED = 0x0940  # version needed to extract; from it on, the header has level and mtime high
_LZO_BLOCK_SIZE = 256 * 1024  # lib/decompress_unlzo.c LZO_BLOCK_SIZE


class LzopHeader(Record):
    """The fields of an lzop header that reading needs, and its length."""

    _FIELDS = ("version", "method", "flags", "length")
    __slots__ = _FIELDS

    version: int
    method: int
    flags: int
    length: int

    def __init__(self, version: int, method: int, flags: int, length: int) -> None:
        self._fill(version, method, flags, length)

    @staticmethod
    def parse(head: bytes, *, kernel: bool = False) -> LzopHeader | None:
        """The header at the start of ``head``, or None if it is cut short or not lzop.

        ``kernel`` parses as ``parse_header`` of ``lib/decompress_unlzo.c``, which knows no
        extra field; else as lzop does.
        """
        if not head.startswith(_LZOP_MAGIC):
            return None
        try:
            p = len(_LZOP_MAGIC)
            version, _lib = struct.unpack_from(">HH", head, p)
            p += 4
            if version >= _LZOP_NEEDED:
                p += 2  # version needed to extract
            method = head[p]
            p += 1
            if version >= _LZOP_NEEDED:
                p += 1  # level
            (flags,) = struct.unpack_from(">I", head, p)
            p += 4
            if flags & _F_H_FILTER:
                p += 4
            p += 8  # mode, mtime low
            if version >= _LZOP_NEEDED:
                p += 4  # mtime high
            p += 1 + head[p] + 4  # name, header checksum
            if flags & _F_H_EXTRA_FIELD and not kernel:
                (extra,) = struct.unpack_from(">I", head, p)
                p += 4 + extra + 4
        except (IndexError, struct.error):
            return None
        if p > len(head):
            return None
        return LzopHeader(version, method, flags, p)

    @staticmethod
    def build(level: int) -> bytes:
        """The header ``lzop -<level>`` writes for standard input: adler32 of each block."""
        method = 3 if level >= 7 else 1  # M_LZO1X_999 or M_LZO1X_1
        body = struct.pack(
            ">HHHBBIIIIB", _LZOP_VERSION, _LZOP_LIB_VERSION, _LZOP_NEEDED, method, level,
            _F_ADLER32_D | _F_OS_UNIX, 0o100644, 0, 0, 0,
        )  # fmt: skip
        return _LZOP_MAGIC + body + struct.pack(">I", zlib.adler32(body))


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
    uncompressed size, compressed size, checksums and lzo1x data; a zero size ends it.

    Strictly, the checksums the header's flags announce are read and checked.  As the kernel,
    each block has exactly one 4-byte checksum, skipped unread, and the method is not checked.
    """

    __slots__ = ("_flags", "_image", "_kernel", "_lzo", "_offset", "_pos", "errors")

    def __init__(self, image: ImageBytes, offset: int, name: str, kernel: bool) -> None:
        self._lzo = _import_lzo(offset)
        self.errors: tuple[type[BaseException], ...] = (self._lzo.error,)
        self._image, self._offset, self._kernel = image, offset, kernel
        head = bytes(image.read_at(offset, 64 + 255))
        header = LzopHeader.parse(head, kernel=kernel)
        if header is None:
            if head.startswith(_LZOP_MAGIC) and not kernel:
                raise _truncated("lzo", offset, image.size)
            raise _fail("lzo", "header", f"not an lzop header at offset {offset:#x}: {head[:9]!r}")
        if header.method not in (1, 2, 3) and not kernel:
            raise _corrupt("lzo", offset, f"method {header.method}", "header")
        self._flags = header.flags
        self._pos = offset + header.length

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
            raise _corrupt("lzo", offset, f"dest len longer than block size at {self._pos:#x}", "block")
        if self._kernel:
            n_dsum, n_csum = 4, 0  # "skip block checksum info": one word
        else:
            n_dsum = 4 if flags & (_F_ADLER32_D | _F_CRC32_D) else 0
            n_csum = 4  # decided below, once the sizes are known
        fixed = bytes(image.read_at(self._pos + 4, 4 + n_dsum + 4))
        if len(fixed) < 4 + n_dsum:
            raise _truncated("lzo", offset, image.size)
        (src_len,) = struct.unpack_from(">I", fixed)
        if src_len == 0 or src_len > dst_len:
            raise _corrupt("lzo", offset, f"file corrupted: block of {src_len} bytes for {dst_len}", "sizes")
        if not self._kernel:
            n_csum = 4 if src_len < dst_len and flags & (_F_ADLER32_C | _F_CRC32_C) else 0
        start = self._pos + 8 + n_dsum + n_csum
        block = image.read_at(start, src_len)
        if len(block) < src_len:
            raise _truncated("lzo", offset, image.size)
        self._pos = start + src_len
        out = bytes(block) if src_len == dst_len else self._lzo.decompress(bytes(block), False, dst_len)
        if len(out) != dst_len:
            raise _corrupt("lzo", offset, "short block")
        if n_dsum and not self._kernel:
            (want,) = struct.unpack_from(">I", fixed, 4)
            got = zlib.adler32(out) if flags & _F_ADLER32_D else zlib.crc32(out)
            if got != want:
                raise _corrupt("lzo", offset, f"checksum of the block at {start:#x}")
        return out

    def end(self) -> int:
        return self._pos

    def read_to(self) -> int:
        return self._pos

    def kernel_message(self, exc: BaseException) -> str:
        return CODECS["lzo"].messages["corrupt"]


def _bzip2(image: ImageBytes, offset: int, name: str, kernel: bool) -> _Engine:
    import bz2

    # OSError ("Invalid data stream") for any damage; EOFError past the end.
    return _StdlibEngine(
        bz2.BZ2Decompressor(),
        _Feed(image, offset, name),
        (OSError, EOFError),
        lambda exc: "decompressor failed",
    )


def _lzma_message(name: str) -> Callable[[BaseException], str]:
    messages = CODECS_MESSAGES[name]

    def classify(exc: BaseException) -> str:
        text = str(exc)
        if "format not supported" in text:  # LZMA_FORMAT_ERROR
            return messages["magic"]
        if "unsupported" in text:  # LZMA_OPTIONS_ERROR, LZMA_UNSUPPORTED_CHECK
            return messages["options"]
        return messages["corrupt"]

    return classify


def _lzma(image: ImageBytes, offset: int, name: str, kernel: bool) -> _Engine:
    import lzma

    d = lzma.LZMADecompressor(lzma.FORMAT_ALONE)
    return _StdlibEngine(d, _Feed(image, offset, name), (lzma.LZMAError,), _lzma_message("lzma"))


def _xz(image: ImageBytes, offset: int, name: str, kernel: bool) -> _Engine:
    import lzma

    d = lzma.LZMADecompressor(lzma.FORMAT_XZ)
    return _StdlibEngine(d, _Feed(image, offset, name), (lzma.LZMAError,), _lzma_message("xz"))


def _lz4_frame(image: ImageBytes, offset: int, name: str, kernel: bool) -> _Engine:
    import lz4.frame

    # python-lz4's frame API reports bad data as RuntimeError ("LZ4F_decompress failed ...").
    d = lz4.frame.LZ4FrameDecompressor()
    return _StdlibEngine(d, _Feed(image, offset, name), (RuntimeError,), lambda exc: "decompressor failed")


# --- compression --------------------------------------------------------------------------


class Compressor(Protocol):
    """A streaming compressor: ``compress`` returns what is ready, ``flush`` the rest (once)."""

    def compress(self, data: bytes | memoryview, /) -> bytes: ...

    def flush(self) -> bytes: ...


class _Identity:
    __slots__ = ()

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
    """``lz4 -l``: the legacy magic, then 8 MiB blocks, each a 4-byte LE size and an lz4 block.

    The format has no end marker: the kernel's unlz4 reads size words until the image ends or
    one is zero, so whatever follows the member must start with a zero word (``open_ended``),
    else Linux reads it as one more block and fails with "Decoding failed".  The member itself
    does not end in one: ``lz4 -d`` fails on a zero word ("Corrupted input detected").
    """

    __slots__ = ("_hc", "_mod")
    open_ended = True

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
        return LzopHeader.build(self._level)

    def _block(self, data: bytes) -> bytes:
        comp: bytes = self._lzo.compress(data, 9 if self._level >= 7 else 1, False)
        if len(comp) >= len(data):
            comp = data
        return struct.pack(">III", len(data), len(comp), zlib.adler32(data)) + comp

    def _trailer(self) -> bytes:
        return b"\0\0\0\0"


# --- the table ----------------------------------------------------------------------------

EngineFactory = Callable[[ImageBytes, int, str, bool], _Engine]
CompressorFactory = Callable[[int, int], Compressor]


class Codec(Record):
    """One compression: how the kernel and bootmem find it, read it and write it.

    ``kernel_magics`` are its entries in ``compressed_formats[]`` of ``lib/decompress.c``
    (two bytes each; none if the kernel does not know it); ``magics`` the longer ones a strict
    reading requires.  ``engine`` makes its streaming decompressor (None: nothing to
    decompress), ``compressor`` its compressor from a level and a thread count (None: bootmem
    does not write it).  ``messages`` maps the failures bootmem tells apart to what the
    kernel's decompressor passes to ``error()`` for them; a failure it has no message for is
    "decompressor failed" (``init/initramfs.c``, when the decompressor returns non-zero).
    """

    _FIELDS = (
        "name", "kernel_magics", "magics", "engine", "compressor", "levels", "default_level", "kernel",
        "messages",
    )  # fmt: skip
    __slots__ = _FIELDS

    name: str
    kernel_magics: tuple[bytes, ...]
    magics: tuple[bytes, ...]
    engine: EngineFactory | None
    compressor: CompressorFactory | None
    levels: range
    default_level: int
    kernel: bool
    messages: Mapping[str, str]

    def __init__(
        self, name: str, kernel_magics: tuple[bytes, ...], magics: tuple[bytes, ...],
        engine: EngineFactory | None, compressor: CompressorFactory | None, levels: range = range(0),
        default_level: int = 0, kernel: bool = True, messages: Mapping[str, str] | None = None,
    ) -> None:  # fmt: skip
        messages = {} if messages is None else messages
        self._fill(name, kernel_magics, magics, engine, compressor, levels, default_level, kernel, messages)


CODECS_MESSAGES: Mapping[str, Mapping[str, str]] = {
    # lib/decompress_inflate.c __gunzip
    "gzip": {
        "magic": "Not a gzip file",
        "header": "header error",
        "corrupt": "uncompression error",
        "truncated": "read error",
    },
    # lib/decompress_bunzip2.c: error() only when the CRC does not match
    "bzip2": {"integrity": "Data integrity error when decompressing."},
    # lib/decompress_unlzma.c
    "lzma": {
        "magic": "bad header",
        "options": "bad header",
        "corrupt": "LZMA data is corrupt",
        "truncated": "unexpected EOF",
    },
    # lib/decompress_unxz.c (a truncated stream is XZ_BUF_ERROR, "corrupt" too)
    "xz": {
        "magic": "Input is not in the XZ format (wrong magic bytes)",
        "options": "Input was encoded with settings that are not supported by this XZ decoder",
        "corrupt": "XZ-compressed data is corrupt",
        "truncated": "XZ-compressed data is corrupt",
    },
    # lib/decompress_unlzo.c
    "lzo": {
        "magic": "invalid header",
        "header": "invalid header",
        "block": "dest len longer than block size",
        "sizes": "file corrupted",
        "truncated": "file corrupted",
        "corrupt": "Compressed data violation",
    },
    # lib/decompress_unlz4.c
    "lz4": {"magic": "invalid header", "corrupt": "Decoding failed", "truncated": "data corrupted"},
    # lib/decompress_unzstd.c handle_zstd_error and __unzstd
    "zstd": {
        "magic": "Input is not in the ZSTD format (wrong magic bytes)",
        "header": "ZSTD-compressed data has an incomplete frame header",
        "parameters": "ZSTD-compressed data is probably corrupt",
        "corrupt": "ZSTD-compressed data is corrupt",
        "truncated": "ZSTD-compressed data is truncated",
    },
}


# bz2 and lzma are imported when a member in them is read or written, not by every command.
def _bzip2_compressor(level: int, threads: int) -> Compressor:
    import bz2

    return bz2.BZ2Compressor(level)


def _lzma_compressor(level: int, threads: int) -> Compressor:
    import lzma

    return lzma.LZMACompressor(lzma.FORMAT_ALONE, preset=level)


def _xz_compressor(level: int, threads: int) -> Compressor:
    import lzma

    return lzma.LZMACompressor(lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=level)


#: Every compression bootmem knows, by name, in the order of ``lib/decompress.c``'s table.
CODECS: Mapping[str, Codec] = {
    codec.name: codec
    for codec in (
        Codec("none", (), (), None, lambda level, threads: _Identity()),
        Codec(
            "gzip", (b"\x1f\x8b", b"\x1f\x9e"), (b"\x1f\x8b", b"\x1f\x9e"), _GzipEngine,
            lambda level, threads: zlib.compressobj(level, zlib.DEFLATED, 31), range(0, 10), 9,
            messages=CODECS_MESSAGES["gzip"],
        ),
        Codec(
            "bzip2", (b"BZ",), (b"BZh",), _bzip2, _bzip2_compressor, range(1, 10), 9,
            messages=CODECS_MESSAGES["bzip2"],
        ),
        Codec(
            "lzma", (b"\x5d\x00",), (b"\x5d\x00\x00",), _lzma, _lzma_compressor, range(0, 10), 6,
            messages=CODECS_MESSAGES["lzma"],
        ),
        Codec(
            "xz", (b"\xfd\x37",), (b"\xfd7zXZ\x00",), _xz, _xz_compressor, range(0, 10), 6,
            messages=CODECS_MESSAGES["xz"],
        ),
        Codec(
            "lzo", (b"\x89\x4c",), (_LZOP_MAGIC[:5],), _LzoEngine,
            lambda level, threads: _LzopCompressor(level), range(1, 10), 5, messages=CODECS_MESSAGES["lzo"],
        ),
        Codec(
            "lz4", (b"\x02\x21",), (b"\x02\x21\x4c\x18",), _Lz4LegacyEngine,
            lambda level, threads: _Lz4LegacyCompressor(level), range(1, 13), 9,
            messages=CODECS_MESSAGES["lz4"],
        ),
        # The lz4 tool's default format: read by bootmem for convenience, unknown to the kernel.
        Codec("lz4-frame", (), (b"\x04\x22\x4d\x18",), _lz4_frame, None, kernel=False),
        Codec(
            "zstd", (b"\x28\xb5",), (_ZSTD_MAGIC,), _ZstdEngine, _ZstdCompressor, range(-7, 23), 3,
            messages=CODECS_MESSAGES["zstd"],
        ),
    )
}  # fmt: skip

#: Compressions that can be written, in the kernel's names (``CONFIG_RD_*``, ``compress_name``).
COMPRESSIONS: tuple[str, ...] = tuple(name for name, codec in CODECS.items() if codec.compressor is not None)

#: Compressions the kernel's initramfs unpacker knows (``none``: a raw archive).  ``lz4-frame``
#: is read by bootmem but is *not* in ``lib/decompress.c``'s table.
KERNEL_COMPRESSIONS = frozenset(name for name, codec in CODECS.items() if codec.kernel)


def decompress_method(head: bytes | memoryview) -> str | None:
    """The compression ``lib/decompress.c`` ``decompress_method()`` picks for bytes starting
    with ``head``: its first two bytes against ``compressed_formats[]``; None for fewer than
    two bytes or no match.  Bytes that only start like a format go to its decompressor, which
    then refuses them with its own message.

    >>> decompress_method(b"\\x5d\\x00junk"), decompress_method(b"\\x1f")
    ('lzma', None)
    >>> decompress_method(b"\\x04\\x22\\x4d\\x18") is None  # an lz4 frame
    True
    """
    if len(head) < 2:
        return None
    two = bytes(head[:2])
    for name, codec in CODECS.items():
        if two in codec.kernel_magics:
            return name
    return None


def detect(head: bytes | memoryview) -> str | None:
    """The compression whose full magic ``head`` starts with, or ``None`` (a strict reading).

    >>> detect(b"\\x28\\xb5\\x2f\\xfd....")
    'zstd'
    >>> detect(b"070701") is None
    True
    """
    head = bytes(head[:8])
    for name, codec in CODECS.items():
        if any(head.startswith(magic) for magic in codec.magics):
            return name
    return None


def open_compressor(name: str, level: int | None = None, *, threads: int = 0) -> Compressor:
    """A compressor for ``name`` (one of :data:`COMPRESSIONS`) at ``level`` (its default if None).

    The output is one complete member that the kernel and the tool of the same name accept:
    gzip (zlib, mtime 0), bzip2, xz with CRC32 checks, lzma alone, lzop, ``lz4 -l`` legacy,
    zstd.  ``threads`` (zstd only) is libzstd's worker count: 0 compresses in the calling thread
    (``zstd --single-thread``); N >= 1 in N workers, whose output is the same bytes for every
    N >= 1 and differs from 0's.  Raises :class:`UsageError` for an unknown name, a level out of
    range or threads for another codec, :class:`MissingCodecError` for lzo without python-lzo.
    """
    codec = CODECS.get(name)
    if codec is None or codec.compressor is None:
        raise UsageError(f"unknown compression {name!r} (one of {', '.join(COMPRESSIONS)})")
    if threads < 0 or (threads and name != "zstd"):
        raise UsageError(f"threads={threads} for {name}: only zstd compresses in threads (0 or more)")
    if not codec.levels:
        return codec.compressor(0, 0)
    lvl = codec.default_level if level is None else level
    if lvl not in codec.levels:
        r = codec.levels
        raise UsageError(f"level {lvl} out of range for {name} ({r.start}..{r.stop - 1})")
    return codec.compressor(lvl, threads)


def compress(data: bytes | memoryview, name: str, level: int | None = None) -> bytes:
    """``data`` as one complete member compressed with ``name`` (see :func:`open_compressor`)."""
    c = open_compressor(name, level)
    return c.compress(data) + c.flush()

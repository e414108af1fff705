"""A whole initramfs image: segments of cpio archives, raw or compressed, read in one pass.

The grammar is the kernel's (``init/initramfs.c`` ``unpack_to_rootfs``, and
``Documentation/driver-api/early-userspace/buffer-format.rst``):

- a ``0`` at a 4-aligned offset starts a raw cpio archive, read up to its trailer;
- NUL bytes between segments are skipped;
- anything else is a compressed member found by its magic (:mod:`.compress`); its
  decompressed stream holds one or more archives separated by NULs, and the image continues
  right after the member's end.  A member whose cpio does not end in a trailer is "junk at the
  end of compressed archive"; bytes with no known magic are "invalid magic at start of
  compressed archive".

Each such piece is a :class:`Segment`.  :func:`open` returns an :class:`Image` that speaks
tarfile's vocabulary (``getmembers``, ``getnames``, ``getmember``, ``extractfile``) and offers
:meth:`Image.stream`, the single streaming pass that everything else is built on.

Decompression is capped: the total decompressed bytes of an image's members may not pass
``max_decompressed`` or, by default, :data:`DEFAULT_RATIO` times the compressed bytes of its
members (NUL padding does not count), at least :data:`DEFAULT_MIN_CAP`; else
:class:`~bootmem.errors.DecompressionBombError`.  Every error names an offset in the image in hex.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import BinaryIO, Literal

from bootmem.errors import CompressionError, CpioError, ImageError
from bootmem.initramfs.compress import (
    DEFAULT_MIN_CAP,
    DEFAULT_RATIO,
    Budget,
    ImageBytes,
    MemberStream,
    Prefetch,
    PrefetchedStream,
    decompress_method,
    detect,
)
from bootmem.initramfs.cpio import HEADER_SIZE, MAGIC_CRC, MAGIC_NEWC, CpioReader, Entry, pad4
from bootmem.initramfs.uki import initrd_section
from bootmem.record import Record

#: The most bytes read from a source that cannot be seeked (a pipe) when ``max_decompressed``
#: is not given: they are copied to a temporary file, so host memory does not grow with them.
DEFAULT_PIPE_LIMIT = 4 << 30

SegmentFormat = Literal["newc", "crc", "mixed"]
Source = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO


class Segment(Record):
    """One raw archive or compressed member of an image, ``[offset, end)`` in the image.

    ``compression`` is ``"none"`` for a raw archive, else a name from :mod:`.compress`.
    ``format`` is the cpio format of its entries (``"mixed"`` when both occur).  A raw
    segment ends right after its trailer's padding (NULs after it belong to no segment); a
    compressed one where the compressed stream ends.  ``compressed_size`` is ``end - offset``,
    ``uncompressed_size`` the length of the cpio stream, ``entries`` the entries not counting
    trailers and ``archives`` the trailers seen.  Frozen and compared by value (:class:`Record`).
    """

    _FIELDS = (
        "index", "offset", "end", "compression", "format", "compressed_size", "uncompressed_size",
        "entries", "archives",
    )  # fmt: skip
    __slots__ = _FIELDS

    index: int
    offset: int
    end: int
    compression: str
    format: SegmentFormat
    compressed_size: int
    uncompressed_size: int
    entries: int
    archives: int

    def __init__(
        self, index: int, offset: int, end: int, compression: str, format: SegmentFormat,
        compressed_size: int, uncompressed_size: int, entries: int, archives: int,
    ) -> None:  # fmt: skip
        self._fill(
            index, offset, end, compression, format, compressed_size, uncompressed_size, entries, archives
        )


class _MemoryImage:
    """An image held in memory; reads are zero-copy slices of the caller's buffer."""

    __slots__ = ("_view", "size")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        self._view = view
        self.size = len(view)

    def read_at(self, offset: int, n: int) -> memoryview:
        return self._view[offset : offset + n]

    def window(self, start: int, size: int) -> None:
        """From now on, the image is ``[start, start + size)`` of what it was."""
        self._view = self._view[start : start + size]
        self.size = size

    def close(self) -> None:
        with contextlib.suppress(BufferError):  # a view handed out is alive; it keeps the buffer
            self._view.release()


class _FileImage:
    """An image in a seekable binary file, read with ``seek`` + ``read`` (never all at once).

    A file bootmem opened itself (``owned``) is read with ``os.pread``: one system call a read
    where ``tell``, ``seek`` and a buffered ``read`` take up to three (the zstd frame walk reads
    a block header every 128 KiB, a thousand of them in a 40 MB member).
    """

    __slots__ = ("_fd", "_file", "_owned", "_start", "size")

    def __init__(self, file: BinaryIO, *, owned: bool) -> None:
        self._file = file
        self._owned = owned
        self._start = file.tell()
        self.size = file.seek(0, io.SEEK_END) - self._start
        self._fd = file.fileno() if owned else -1

    def read_at(self, offset: int, n: int) -> bytes:
        where = self._start + offset
        n = max(0, min(n, self.size - offset))
        if self._fd >= 0:
            data = os.pread(self._fd, n, where)
            while 0 < len(data) < n and (more := os.pread(self._fd, n - len(data), where + len(data))):
                data += more  # a short read: past 2 GiB at once, or a signal
            return data
        f = self._file
        if f.tell() != where:
            f.seek(where)
        return f.read(n)

    def readinto_at(self, offset: int, buffer: memoryview) -> int:
        """The bytes at ``offset`` read into ``buffer``: how many, fewer only at the end of the
        image (a caller's buffer reused, where :meth:`read_at` makes a new one each time)."""
        where = self._start + offset
        buffer = buffer[: max(0, min(len(buffer), self.size - offset))]
        if self._fd >= 0:
            done = 0
            while done < len(buffer) and (more := os.preadv(self._fd, [buffer[done:]], where + done)):
                done += more
            return done
        f = self._file
        if f.tell() != where:
            f.seek(where)
        readinto = getattr(f, "readinto", None)
        if readinto is not None:
            got: int | None = readinto(buffer)
            return got or 0
        data = f.read(len(buffer))  # a caller's file object with read alone
        buffer[: len(data)] = data
        return len(data)

    def window(self, start: int, size: int) -> None:
        """From now on, the image is ``[start, start + size)`` of what it was."""
        self._start += start
        self.size = size

    def close(self) -> None:
        if self._owned:
            self._file.close()


class _RawStream:
    """The image's bytes from ``offset`` on, as a stream (a raw segment's cpio)."""

    __slots__ = ("_image", "pos")

    def __init__(self, image: ImageBytes, offset: int) -> None:
        self._image, self.pos = image, offset

    def read(self, n: int = -1, /) -> bytes:
        if n < 0:
            n = self._image.size - self.pos
        data = bytes(self._image.read_at(self.pos, n))
        self.pos += len(data)
        return data


class _EntryFile(io.RawIOBase):
    """The data of one entry: ``size`` bytes of a stream, from where it stands."""

    def __init__(self, stream: _RawStream | MemberStream, size: int) -> None:
        super().__init__()
        self._stream = stream
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left)
        if n == 0:
            return 0
        data = self._stream.read(n)
        if not data:
            raise CpioError(f"truncated data: {self._left} bytes missing")
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)


def _image_of(source: Source, limit: int | None = None) -> _MemoryImage | _FileImage:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _MemoryImage(source)
    if isinstance(source, (str, os.PathLike)):
        return _FileImage(builtins.open(os.fspath(source), "rb"), owned=True)
    if source.seekable():
        return _FileImage(source, owned=False)
    return _spool(source, DEFAULT_PIPE_LIMIT if limit is None else limit)


def _spool(source: BinaryIO, limit: int) -> _FileImage:
    """``source``'s bytes, copied to a temporary file; :class:`ImageError` past ``limit`` bytes
    (an endless pipe, ``/dev/zero``)."""

    def refuse() -> ImageError:
        name = _file_name(source)
        name = "standard input" if name in (None, "<stdin>") else repr(name)
        return ImageError(
            f"{name} is not seekable and passes {limit} bytes, the most read from a pipe "
            "(set another with --max-size, max_decompressed=)"
        )

    spooled, _size = spool(source, limit, refuse, prefix="bootmem-image-")
    return _FileImage(spooled, owned=True)


def spool(
    source: BinaryIO, limit: int, refuse: Callable[[], BaseException], *, prefix: str
) -> tuple[BinaryIO, int]:
    """``source``'s bytes copied in pieces to a temporary file named from ``prefix``, and how
    many: ``refuse()`` is raised once they pass ``limit``, so neither memory nor the file grows
    without bound.  The file is returned at its start, for the caller to close."""
    import tempfile  # here: an image read from a file or a buffer does not pay for the import

    spooled = tempfile.TemporaryFile(prefix=prefix)  # noqa: SIM115 - the caller owns it
    try:
        size = 0
        while piece := source.read(min(1 << 20, limit + 1 - size)):
            size += len(piece)
            if size > limit:
                raise refuse()
            spooled.write(piece)
        spooled.seek(0)
    except BaseException:
        spooled.close()
        raise
    return spooled, size


def _file_name(source: Source) -> str | None:
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else None


def image_bytes(source: Source | Image) -> tuple[ImageBytes, Callable[[], None]]:
    """The bytes of image ``source`` (what :func:`open` takes, or an opened :class:`Image`) for
    random access, and the function that releases them.  A seekable file is read in place."""
    if isinstance(source, Image):
        return source._image, _nothing
    image = _image_of(source)
    return image, image.close


def _nothing() -> None:
    pass


def _format_of(formats: set[str], head: bytes) -> SegmentFormat:
    if len(formats) > 1:
        return "mixed"
    if formats:
        return "crc" if "crc" in formats else "newc"
    return "crc" if head.startswith(MAGIC_CRC) else "newc"


class Image:
    """An initramfs image opened for reading (see :func:`open`).

    Iterating yields every :class:`Entry` of every segment in image order, with
    ``entry.segment`` set.  ``entry.offset`` is the header's offset in the image for a raw
    segment and in the member's decompressed stream for a compressed one.
    """

    def __init__(
        self,
        source: Source,
        *,
        max_decompressed: int | None = None,
        strict: bool = True,
        max_entries: int | None = None,
    ) -> None:
        self._image = _image_of(source, max_decompressed)
        self.name: str | None = (
            os.fspath(source) if isinstance(source, (str, os.PathLike)) else _file_name(source)
        )
        # A unified kernel image (PE/COFF) is read as the initrd in its .initrd section, as
        # systemd-stub hands it to the kernel; the kernel's own reading (strict=False) does not.
        section = initrd_section(self._image) if strict else None
        self.uki_section = section
        if section is not None:
            self._image.window(*section)
        self.size = self._image.size
        self.max_decompressed = max_decompressed
        self.strict = strict
        self.max_entries = max_entries
        self._segments: list[Segment] = []
        self._state: Literal["none", "running", "done", "failed"] = "none"
        self._members: list[Entry] | None = None

    # --- context manager ---------------------------------------------------------------

    def __enter__(self) -> Image:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the source (a path's file is closed; a caller's file or buffer is left alone)."""
        self._image.close()

    # --- the pass ------------------------------------------------------------------------

    def stream(self) -> Iterator[tuple[Entry, CpioReader]]:
        """One streaming pass over the image: each entry with the reader positioned at its data.

        The caller may take the data (``reader.iter_data()`` / ``reader.read_data()``) before
        advancing; what it leaves is skipped.  Peak memory does not grow with the image.  As the
        pass goes, ``entry.segment`` increments at each segment boundary and :attr:`segments`
        grows as segments complete.  Errors are raised where they are met; the segments
        completed before stay in :attr:`segments`.
        """
        publish = self._state != "done"
        segments: list[Segment] = []
        if publish:
            self._segments, self._state = segments, "running"
        try:
            yield from self._scan(segments)
        except GeneratorExit:
            if publish:
                self._state = "none"
            raise
        except BaseException:
            if publish:
                self._state = "failed"
            raise
        if publish:
            self._state = "done"

    def _scan(self, segments: list[Segment]) -> Iterator[tuple[Entry, CpioReader]]:
        image = self._image
        size = image.size
        budget = Budget(self.max_decompressed)
        pos = 0
        raw_end: int | None = None  # where the raw archive just read ended, if the last was raw
        while True:
            pos = self._skip_nuls(pos)
            if pos >= size:
                return
            if raw_end is not None and pos & 3:
                # init/initramfs.c do_reset(): after a raw archive's trailer, the NULs must bring
                # whatever follows to a 4-byte boundary.
                raise CpioError(
                    f"broken padding at offset {pos:#x}: {pos - raw_end} NUL bytes after the archive "
                    f"that ends at {raw_end:#x} (a multiple of 4 is needed)"
                )
            raw_end = None
            index = len(segments)
            head = bytes(image.read_at(pos, 8))
            formats: set[str] = set()
            if head[:1] == b"0" and not pos & 3:
                reader = CpioReader(
                    _RawStream(image, pos),
                    segment=index,
                    base_offset=pos,
                    max_entries=self.max_entries,
                    strict=self.strict,
                )
                for entry in reader:
                    formats.add(entry.format)
                    yield entry, reader
                end = raw_end = pos + reader.position
                segments.append(
                    Segment(
                        index,
                        pos,
                        end,
                        "none",
                        _format_of(formats, head[:6]),
                        end - pos,
                        end - pos,
                        reader.entries,
                        reader.archives,
                    )
                )
            else:
                # Read as the kernel does, two bytes pick the decompressor (lib/decompress.c).
                name = detect(head) if self.strict else decompress_method(head)
                if name is None:
                    raise CompressionError(
                        f"invalid magic at start of compressed archive at offset {pos:#x}: {head!r}"
                    )
                member = MemberStream(name, image, pos, budget, kernel=not self.strict, segment=index)
                # Decompressed by a thread of its own, ahead of the parsing (see Prefetch).
                with Prefetch(member, views=True) as chunks:
                    stream = PrefetchedStream(chunks)
                    reader = CpioReader(
                        stream,
                        segment=index,
                        multi_archive=True,
                        max_entries=self.max_entries,
                        strict=self.strict,
                        where=f" of the {name} member at offset {pos:#x}",
                    )
                    try:
                        for entry in reader:
                            formats.add(entry.format)
                            yield entry, reader
                    except CompressionError:
                        raise
                    except CpioError as exc:
                        if stream.eof and not reader.ended_cleanly:
                            # init/initramfs.c: the member ended with the cpio state machine not
                            # in Reset.
                            raise CpioError(
                                f"junk at the end of compressed archive at offset {pos:#x} ({name}): {exc}"
                            ) from exc
                        raise
                end = member.end
                segments.append(
                    Segment(
                        index,
                        pos,
                        end,
                        name,
                        _format_of(formats, member.head[:6]),
                        end - pos,
                        member.size,
                        reader.entries,
                        reader.archives,
                    )
                )
            pos = end

    def _skip_nuls(self, pos: int) -> int:
        image = self._image
        while pos < image.size:
            block = bytes(image.read_at(pos, 1 << 16))
            stripped = block.lstrip(b"\0")
            pos += len(block) - len(stripped)
            if stripped:
                break
        return pos

    # --- tarfile's vocabulary ------------------------------------------------------------

    @property
    def segments(self) -> list[Segment]:
        """The image's segments, found by one pass without data if none has run yet.

        While a :meth:`stream` is running this is the list of segments completed so far; after
        a pass that failed, the segments before the error.
        """
        if self._state == "none":
            for _ in self.stream():
                pass
        return self._segments

    def __iter__(self) -> Iterator[Entry]:
        if self._members is not None:
            yield from self._members
            return
        members: list[Entry] = []
        for entry, _reader in self.stream():
            members.append(entry)
            yield entry
        self._members = members

    def getmembers(self) -> list[Entry]:
        """Every entry of every segment, in image order (trailers excluded)."""
        if self._members is None:
            for _ in self:
                pass
        assert self._members is not None
        return list(self._members)

    def getnames(self) -> list[str]:
        """The names of :meth:`getmembers`, duplicates included."""
        return [m.name for m in self.getmembers()]

    def getmember(self, name: str) -> Entry:
        """The last entry named ``name`` (later entries replace earlier ones, as the kernel
        unpacks); :class:`KeyError` if there is none.  A leading ``./`` or ``/`` is ignored."""
        want = _normalise(name)
        for entry in reversed(self.getmembers()):
            if _normalise(entry.name) == want:
                return entry
        raise KeyError(f"no entry named {name!r} in the image")

    def extractfile(self, member: Entry | str) -> BinaryIO | None:
        """A file object reading the data of regular file ``member`` (``None`` if not regular).

        A raw segment's data is read in place; a compressed one is decompressed from the
        member's start up to the data, then streamed.
        """
        entry = self.getmember(member) if isinstance(member, str) else member
        if not entry.isreg():
            return None
        segment = self.segments[entry.segment]
        data_at = entry.offset + HEADER_SIZE + entry.c_namesize + pad4(HEADER_SIZE + entry.c_namesize)
        stream: _RawStream | MemberStream
        if segment.compression == "none":
            stream = _RawStream(self._image, data_at)
        else:
            stream = MemberStream(
                segment.compression,
                self._image,
                segment.offset,
                Budget(self.max_decompressed),
                kernel=not self.strict,
                segment=segment.index,
            )
            skip = data_at
            while skip:
                got = stream.read(min(skip, 1 << 20))
                if not got:
                    raise ImageError(f"entry {entry.name!r} lies past the end of segment {segment.index}")
                skip -= len(got)
        return io.BufferedReader(_EntryFile(stream, entry.c_filesize))


def _normalise(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/") or "."


def open(
    source: Source,
    *,
    max_decompressed: int | None = None,
    strict: bool = True,
    max_entries: int | None = None,
) -> Image:
    """Open an initramfs image for reading.

    ``source`` is a path, a binary file object (seekable ones are read in place from their
    current position; others, a pipe, are copied to a temporary file first, at most
    ``max_decompressed`` bytes or :data:`DEFAULT_PIPE_LIMIT`) or a bytes-like object (a
    ``memoryview`` is used
    without copying).  ``max_decompressed`` caps the decompressed bytes of the whole image
    (default: :data:`DEFAULT_RATIO` times its members' compressed bytes, at least
    :data:`DEFAULT_MIN_CAP`).  ``strict=False`` reads as init/initramfs.c does: entries it
    skips are skipped (see :class:`CpioReader`), two bytes pick a member's decompressor
    (``decompress_method``: an lz4 *frame*, which ``lib/decompress.c`` does not know, is
    "invalid magic") and each decompressor reads as the kernel's (see
    :mod:`bootmem.initramfs.compress`).  With ``strict`` (the
    default) a unified kernel image - a PE/COFF file with an ``.initrd`` section - is read as
    that section (:mod:`bootmem.initramfs.uki`).  Only headers are read until a pass runs.
    """
    return Image(source, max_decompressed=max_decompressed, strict=strict, max_entries=max_entries)


__all__ = [
    "DEFAULT_MIN_CAP",
    "DEFAULT_PIPE_LIMIT",
    "DEFAULT_RATIO",
    "MAGIC_CRC",
    "MAGIC_NEWC",
    "Image",
    "Segment",
    "image_bytes",
    "open",
    "spool",
]

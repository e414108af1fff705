"""Initramfs images from a directory or from a ``gen_init_cpio`` manifest, reproducibly.

An image is written as a stream: an optional uncompressed *early* segment (one newc/crc
archive per early directory, as distributions prepend CPU microcode), then the main archive,
raw or compressed with any compression of :mod:`bootmem.initramfs.compress`.  Nothing is built
in memory beyond a few buffers of :data:`CHUNK` bytes, filled from the files while a thread
compresses the previous ones.

Reproducibility: entries come in bytewise-sorted order of their names, inode numbers are
assigned in that order from 1 (a hardlink group shares its first member's), ``c_devmajor`` and
``c_devminor`` are 0, directory link counts are computed (2 + subdirectories) rather than taken
from the host, and ``SOURCE_DATE_EPOCH``, when set, clamps every mtime.  Hardlinks (same
``(st_dev, st_ino)``) are written as GNU cpio writes them for newc: every name of the group
with the shared ``c_ino`` and ``c_nlink``, data on the last name only, size 0 on the others;
init/initramfs.c (``maybe_link``) and ``cpio -i`` both rebuild one inode from that.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, NamedTuple, Protocol

from bootmem.errors import CpioError, UsageError
from bootmem.initramfs.cpio import (
    HEADER_SIZE,
    TRAILER,
    Entry,
    Format,
    data_checksum,
    pack_header,
    pad4,
)
from bootmem.initramfs.select import normalise

CHUNK = 1 << 20
_BUFFERS = 3  # of CHUNK bytes: one filling, one waiting, one being compressed
_NUL4 = b"\0\0\0\0"


# --- what to write --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """One entry to write: its header fields and, for a regular file with data, the host file.

    ``path`` is ``None`` for entries without data (directories, devices, the size-0 names of
    a hardlink group); a symlink's data is ``entry.linkname``.  ``line`` is the manifest line
    the entry comes from, if any.
    """

    entry: Entry
    path: str | None = None
    line: int | None = None


def source_date_epoch() -> int | None:
    """``SOURCE_DATE_EPOCH`` as an int, or ``None`` when unset (reproducible-builds.org)."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH is not an integer: {value!r}") from None


def scan_directory(root: str | os.PathLike[str]) -> list[Source]:
    """The entries for the tree under ``root`` (not ``root`` itself), sorted bytewise by name.

    Regular files, directories, symlinks, character and block devices (with ``rdev``), fifos
    and sockets are kept with their mode, uid and gid.  See the module's docstring for the
    inode numbers, hardlinks and ``SOURCE_DATE_EPOCH``.
    """
    top = os.fsencode(os.fspath(root))
    if not os.path.isdir(top):
        raise UsageError(f"not a directory: {os.fsdecode(top)!r}")
    found: list[tuple[bytes, os.stat_result]] = []
    stack = [b""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(top, rel) if rel else top) as it:
            for d in it:
                name = rel + b"/" + d.name if rel else d.name
                st = d.stat(follow_symlinks=False)
                found.append((name, st))
                if stat.S_ISDIR(st.st_mode):
                    stack.append(name)
    found.sort(key=lambda item: item[0])
    clamp = source_date_epoch()
    subdirs: dict[bytes, int] = {}
    for name, st in found:
        if stat.S_ISDIR(st.st_mode):
            parent = name.rpartition(b"/")[0]
            subdirs[parent] = subdirs.get(parent, 0) + 1
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (_, st) in enumerate(found):
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
            groups.setdefault((st.st_dev, st.st_ino), []).append(i)
    ino_of: dict[int, int] = {}
    nlink_of: dict[int, int] = {}
    last_of_group: set[int] = set()
    for members in groups.values():
        for i in members:
            ino_of[i] = members[0] + 1
            nlink_of[i] = len(members)
        last_of_group.add(members[-1])
    sources: list[Source] = []
    for i, (name, st) in enumerate(found):
        mode = st.st_mode
        mtime = int(st.st_mtime)
        if clamp is not None:
            mtime = min(mtime, clamp)
        host = os.path.join(top, name)
        linkname = None
        size = 0
        path: str | None = None
        nlink = 2 + subdirs.get(name, 0) if stat.S_ISDIR(mode) else nlink_of.get(i, 1)
        if stat.S_ISLNK(mode):
            linkname = os.fsdecode(os.readlink(host))
        elif stat.S_ISREG(mode) and (i in last_of_group or i not in ino_of):
            size = st.st_size
            path = os.fsdecode(host) if size else None
        rdev = (
            (os.major(st.st_rdev), os.minor(st.st_rdev))
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else (0, 0)
        )
        entry = Entry(
            name=os.fsdecode(name),
            c_mode=mode,
            c_ino=ino_of.get(i, i + 1),
            c_uid=st.st_uid,
            c_gid=st.st_gid,
            c_nlink=nlink,
            c_mtime=max(mtime, 0),
            c_filesize=size,
            c_rdevmajor=rdev[0],
            c_rdevminor=rdev[1],
            linkname=linkname,
        )
        sources.append(Source(entry, path))
    return sources


# --- gen_init_cpio manifests ------------------------------------------------------------------

_ENV = re.compile(r"\$\{([^}]+)\}")
_OVERRIDE = re.compile(r"^#\s*bootmem:\s*(.*)$")
_ARITY = {"file": (5, None), "dir": (4, 4), "nod": (7, 7), "slink": (5, 5), "pipe": (4, 4), "sock": (4, 4)}
_TYPE_BITS = {"dir": stat.S_IFDIR, "pipe": stat.S_IFIFO, "sock": stat.S_IFSOCK, "slink": stat.S_IFLNK}


def parse_manifest(lines: Iterable[str], *, where: str = "manifest", first_line: int = 1) -> list[Source]:
    """Entries from a manifest in the syntax of the kernel's ``usr/gen_init_cpio.c``::

        file <name> <location> <mode> <uid> <gid> [<hard links>]
        dir <name> <mode> <uid> <gid>
        nod <name> <mode> <uid> <gid> <dev_type> <maj> <min>
        slink <name> <target> <mode> <uid> <gid>
        pipe <name> <mode> <uid> <gid>
        sock <name> <mode> <uid> <gid>

    ``#`` starts a comment line; blank lines are ignored.  As in gen_init_cpio, one leading
    ``/`` of a name is dropped, ``<mode>`` is octal, ``${VAR}`` in a ``<location>`` is replaced
    from the environment, a relative location is relative to the current directory, entries
    keep the manifest's order, and a ``file`` with hard links is written once per name with the
    data on the last.  mtimes: a file's own (clamped by ``SOURCE_DATE_EPOCH``), else
    ``SOURCE_DATE_EPOCH`` or 0.  Errors are :class:`UsageError` naming ``where`` and the line.

    Every line gives its entry's owner and mode; gen_init_cpio has no field for an mtime, so a
    comment line ``#bootmem: mtime=SECONDS`` sets the mtime of the entry on the next line (all
    names of a ``file`` with hard links), as given, unclamped.  To gen_init_cpio it is a comment.
    """
    clamp = source_date_epoch()
    default_mtime = clamp if clamp is not None else 0
    sources: list[Source] = []
    ino = 0
    override: tuple[int, int] | None = None  # (line, mtime) for the next entry
    for lineno, raw in enumerate(lines, first_line):
        line = raw.strip()

        def fail(message: str, lineno: int = lineno) -> UsageError:
            return UsageError(f"{where}:{lineno}: {message}")

        if (directive := _OVERRIDE.match(line)) is not None:
            if override is not None:
                raise fail(f"a second '#bootmem:' line before an entry (the first is line {override[0]})")
            override = (lineno, _override_mtime(directive.group(1), fail))
            continue
        if not line or line.startswith("#"):
            continue

        words = line.split()  # gen_init_cpio reads fields with sscanf("%s"): no quoting
        kind, args = words[0], words[1:]
        if kind not in _ARITY:
            raise fail(f"unknown type {kind!r} (file, dir, nod, slink, pipe, sock)")
        low, high = _ARITY[kind]
        if len(args) < low or (high is not None and len(args) > high):
            raise fail(f"{kind} takes {low} fields, got {len(args)}: {line!r}")
        name = args[0][1:] if args[0].startswith("/") else args[0]

        def number(text: str, what: str, base: int = 10) -> int:
            try:
                value = int(text, base)
            except ValueError:
                raise fail(f"bad {what} {text!r}") from None
            if not 0 <= value <= 0xFFFFFFFF:
                raise fail(f"{what} {text!r} out of range")
            return value

        ino += 1
        mtime_override, override = (override[1] if override else None), None
        if kind == "file":
            location = _ENV.sub(lambda m: os.environ.get(m.group(1), ""), args[1])
            mode, uid, gid = number(args[2], "mode", 8), number(args[3], "uid"), number(args[4], "gid")
            try:
                st = os.stat(location)
            except OSError as exc:
                raise fail(f"cannot stat {location!r}: {exc.strerror}") from None
            if not stat.S_ISREG(st.st_mode):
                raise fail(f"{location!r} is not a regular file")
            mtime = int(st.st_mtime) if clamp is None else min(int(st.st_mtime), clamp)
            if mtime_override is not None:
                mtime = mtime_override
            names = [name] + [n[1:] if n.startswith("/") else n for n in args[5:]]
            for k, each in enumerate(names):
                last = k == len(names) - 1
                entry = Entry(
                    name=each,
                    c_mode=stat.S_IFREG | (mode & 0o7777),
                    c_ino=ino,
                    c_uid=uid,
                    c_gid=gid,
                    c_nlink=len(names),
                    c_mtime=max(mtime, 0),
                    c_filesize=st.st_size if last else 0,
                )
                sources.append(Source(entry, location if last and st.st_size else None, lineno))
            continue
        if kind == "slink":
            target = args[1]
            mode, uid, gid = number(args[2], "mode", 8), number(args[3], "uid"), number(args[4], "gid")
            entry = Entry(
                name, stat.S_IFLNK | (mode & 0o7777), ino, uid, gid, 1, default_mtime, linkname=target
            )
        elif kind == "nod":
            mode, uid, gid = number(args[1], "mode", 8), number(args[2], "uid"), number(args[3], "gid")
            dev_type = args[4]
            if dev_type not in ("b", "c"):
                raise fail(f"bad device type {dev_type!r} (b or c)")
            ftype = stat.S_IFBLK if dev_type == "b" else stat.S_IFCHR
            entry = Entry(
                name,
                ftype | (mode & 0o7777),
                ino,
                uid,
                gid,
                1,
                default_mtime,
                c_rdevmajor=number(args[5], "major"),
                c_rdevminor=number(args[6], "minor"),
            )
        else:
            mode, uid, gid = number(args[1], "mode", 8), number(args[2], "uid"), number(args[3], "gid")
            nlink = 2 if kind == "dir" else 1
            entry = Entry(name, _TYPE_BITS[kind] | (mode & 0o7777), ino, uid, gid, nlink, default_mtime)
        if mtime_override is not None:
            entry = entry.replace(c_mtime=mtime_override)
        sources.append(Source(entry, line=lineno))
    if override is not None:
        raise UsageError(f"{where}:{override[0]}: '#bootmem:' line with no entry after it")
    return sources


def _override_mtime(text: str, fail: Callable[[str], UsageError]) -> int:
    """The mtime a ``#bootmem: mtime=SECONDS`` line gives."""
    key, _, value = text.strip().partition("=")
    if key.strip() != "mtime" or not value.strip().isdigit() or " " in value.strip():
        raise fail(f"bad override {text.strip()!r} (#bootmem: mtime=SECONDS)")
    mtime = int(value)
    if mtime > 0xFFFFFFFF:
        raise fail(f"mtime {value.strip()!r} out of range")
    return mtime


def lint(sources: Iterable[Source], *, where: str = "manifest", existing: Iterable[str] = ()) -> list[str]:
    """Warnings for entries of ``sources`` the kernel will not make as written, in order:

    - an entry whose parent directory no earlier entry creates (nor ``existing``, the paths an
      image being appended to already makes): init/initramfs.c creates each entry by its path
      and a missing parent fails it without a message, so the entry is silently dropped;
    - a path named twice: the later entry replaces the earlier (``clean_path``).

    A symlink counts as a parent, since it may lead to a directory.  Each warning names
    ``where``, the manifest line (when known) and the path.
    """
    parents: set[str] = {"", *(normalise(p) for p in existing)}
    first: dict[str, int | None] = {}
    warnings: list[str] = []
    for src in sources:
        path = normalise(src.entry.name)
        at = f"{where}:{src.line}" if src.line is not None else where
        parent = path.rpartition("/")[0]
        if parent not in parents:
            warnings.append(f"{at}: {path!r}: its directory {parent!r} is not created before it, "
                            "so the kernel drops it silently")  # fmt: skip
        if path in first:
            line = first[path]
            earlier = f"line {line}" if line is not None else "an earlier entry"
            warnings.append(f"{at}: {path!r} again ({earlier}): the later entry replaces it")
        else:
            first[path] = src.line
        if src.entry.isdir() or src.entry.issym():
            parents.add(path)
    return warnings


@dataclass(frozen=True, slots=True)
class ManifestPart:
    """One archive of a multi-part manifest: its compression (``None``: the caller's default)
    and its lines, the first of which is line ``first_line`` of the manifest."""

    compression: str | None
    lines: list[str]
    first_line: int


_PART = re.compile(r"^#\s*cpio\b:?\s*(.*)$")


def split_manifest(lines: Iterable[str]) -> list[ManifestPart]:
    """The archives of a manifest: a line ``#cpio: NAME[:LEVEL]`` (or 3cpio's ``#cpio: NAME -LEVEL``)
    starts a new archive compressed with NAME (``none`` for a raw one); the lines before the first
    such line, if any hold an entry, are an archive of the default compression.  To
    ``gen_init_cpio`` these lines are comments, so the manifest still describes one archive.

    >>> [(p.compression, p.first_line) for p in split_manifest(
    ...     ["#cpio: none", "dir /kernel 755 0 0", "#cpio: zstd -19", "dir /bin 755 0 0"])]
    [('none', 2), ('zstd:19', 4)]
    """
    parts = [ManifestPart(None, [], 1)]
    for lineno, raw in enumerate(lines, 1):
        head = _PART.match(raw.strip())
        if head is None:
            parts[-1].lines.append(raw)
            continue
        spec = head.group(1).split()
        name = spec[0] if spec else "none"
        if len(spec) > 1 and spec[1].startswith("-") and spec[1][1:].isdigit():
            name += ":" + spec[1][1:]
        elif len(spec) > 1:
            raise UsageError(f"manifest:{lineno}: bad archive line {raw.strip()!r} (#cpio: NAME[:LEVEL])")
        parts.append(ManifestPart(name, [], lineno + 1))
    if not any(line.strip() and not line.strip().startswith("#") for line in parts[0].lines):
        parts.pop(0)
    return parts


# --- writing ----------------------------------------------------------------------------------


class _Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> Any: ...


class _Sink:
    """The archive's bytes packed into :data:`CHUNK`-sized buffers, each full buffer handed to a
    thread that compresses it while the next one fills (zlib, bz2, lzma, zstandard and lz4
    release the GIL while they compress); the archiving thread writes what comes back to ``out``,
    in order.  Without a compressor the bytes go out as they are.

    The uncompressed stream, and so the output, does not depend on where it is cut into buffers:
    the same bytes as compressing the whole archive in one call.  At most :data:`_BUFFERS`
    buffers exist, whatever the speed of either side.  Use as a context manager: leaving it
    normally writes the rest and the compressor's tail; leaving it by an exception stops the
    thread and drops what was not written.  An exception in the thread (a codec error, a
    :class:`MemoryError`) is raised again, the same object, by the next call into the sink.
    """

    def __init__(self, out: _Writable, compressor: Any | None) -> None:
        self._out = out
        self._comp = compressor
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        for _ in range(_BUFFERS - 1):
            self._free.put(memoryview(bytearray(CHUNK)))
        self._view = memoryview(bytearray(CHUNK))  # the buffer being filled, up to _fill
        self._fill = 0
        self._error: BaseException | None = None
        self._dropping = False
        self.position = 0  # uncompressed bytes accepted
        self.data_read = 0  # of them, bytes read from files
        self.on_data: Callable[[int], object] | None = None  # called with data_read as it grows
        self._thread = threading.Thread(target=self._run, name="bootmem-compress", daemon=True)
        self._thread.start()

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if kind is not None:
            self._dropping = True
        elif self._fill:
            self._full.put((self._view, self._fill))
        self._full.put(None)
        self._thread.join()
        if kind is None:
            self._check()
            self._write_done()
            tail = self._comp.flush() if self._comp is not None else b""
            if tail:
                self._out.write(tail)

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` (copied: the caller may reuse it)."""
        self.position += len(data)
        done = 0
        while done < len(data):
            n = min(CHUNK - self._fill, len(data) - done)
            self._view[self._fill : self._fill + n] = data[done : done + n]
            self._fill += n
            done += n
            if self._fill == CHUNK:
                self._hand_over()

    def write_file(self, path: str, size: int) -> None:
        """Append exactly ``size`` bytes of the file at ``path``, read straight into the buffers;
        :class:`CpioError` if it has fewer by now."""
        left = size
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            while left:
                n = os.readv(fd, [self._view[self._fill : self._fill + min(CHUNK - self._fill, left)]])
                if not n:
                    raise CpioError(f"{path!r} shrank while being archived: {left} of {size} bytes missing")
                self._fill += n
                self.position += n
                self.data_read += n
                left -= n
                if self.on_data is not None:
                    self.on_data(self.data_read)
                if self._fill == CHUNK:
                    self._hand_over()
        finally:
            os.close(fd)

    def _hand_over(self) -> None:
        self._check()
        self._full.put((self._view, self._fill))
        self._view = self._free.get()
        self._fill = 0
        self._write_done()

    def _write_done(self) -> None:
        """Write what the thread has compressed so far (here, off the thread's critical path)."""
        while True:
            try:
                out = self._done.get_nowait()
            except queue.Empty:
                return
            self._out.write(out)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._full.get()) is not None:
            view, n = item
            if self._error is None and not self._dropping:
                try:
                    out = bytes(view[:n]) if self._comp is None else self._comp.compress(view[:n])
                    if out:
                        self._done.put(out)
                except BaseException as exc:  # raised again in the archiving thread
                    self._error = exc
            self._free.put(view)


def write_archive(sink: _Sink, sources: Iterable[Source], format: Format) -> None:
    """One cpio archive of ``sources`` and its trailer, streamed into ``sink``.

    A source named ``TRAILER!!!`` is refused (:class:`UsageError`): every reader, GNU cpio's
    and bsdtar's among them, would take it for the end of the archive and drop what follows.
    """
    for src in sources:
        if src.entry.name == TRAILER:
            raise UsageError(
                f"cannot archive an entry named {TRAILER!r}: readers take it for the end of the archive"
            )
        _write_entry(sink, src, format)
    _write_entry(sink, Source(Entry(name=TRAILER, c_mode=0, c_nlink=1)), format)


def _write_entry(sink: _Sink, src: Source, format: Format) -> None:
    entry = src.entry
    name = os.fsencode(entry.name) + b"\0"
    if entry.format != format:
        entry = entry.replace(format=format)
    if entry.issym():
        payload = os.fsencode(entry.linkname or "")
        header = pack_header(entry, namesize=len(name), filesize=len(payload))
        sink.write(
            header + name + _NUL4[: pad4(HEADER_SIZE + len(name))] + payload + _NUL4[: pad4(len(payload))]
        )
        return
    size = entry.c_filesize if src.path is not None else 0
    check = 0
    if format == "crc" and src.path is not None:
        check = _sum_file(src.path, size)
    header = pack_header(entry, namesize=len(name), filesize=size, check=check)
    sink.write(header + name + _NUL4[: pad4(HEADER_SIZE + len(name))])
    if src.path is not None and size:
        sink.write_file(src.path, size)
        sink.write(_NUL4[: pad4(size)])


def _chunks(path: str, size: int) -> Iterator[bytes]:
    """Exactly ``size`` bytes of ``path``; :class:`CpioError` if it changed size meanwhile."""
    left = size
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while left:
            chunk = os.read(fd, min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        os.close(fd)
    if left:
        raise CpioError(f"{path!r} shrank while being archived: {left} of {size} bytes missing")


def _sum_file(path: str, size: int) -> int:
    total = 0
    for chunk in _chunks(path, size):
        total = data_checksum(chunk, total)
    return total


class Compression(NamedTuple):
    """A parsed ``--compress`` value: the codec's name, its level (``None``: the codec's
    default) and zstd's worker threads (``None``: one per core, see :func:`default_threads`)."""

    name: str
    level: int | None = None
    threads: int | None = None


def default_threads() -> int:
    """Threads zstd compresses in when not told: one per core this process may run on.

    Any count of 1 or more writes the same bytes (libzstd's multi-threaded format does not
    depend on it), so the default keeps images reproducible from one machine to the next."""
    return max(1, len(os.sched_getaffinity(0)))


def parse_compression(spec: str, level: int | None = None) -> Compression:
    """``"zstd:19,threads=4"`` -> ``Compression("zstd", 19, 4)``; ``level``, when given, wins
    over the suffix.  Raises :class:`UsageError` naming a bad level or option.

    >>> parse_compression("zstd:19,threads=0")
    Compression(name='zstd', level=19, threads=0)
    >>> parse_compression("gzip")
    Compression(name='gzip', level=None, threads=None)
    """
    head, *options = spec.split(",")
    name, sep, lvl = head.partition(":")
    if sep and level is None:
        try:
            level = int(lvl)
        except ValueError:
            raise UsageError(f"bad compression level {lvl!r} in {spec!r}") from None
    threads = None
    for option in options:
        key, _, value = option.partition("=")
        if key.strip() != "threads":
            raise UsageError(f"unknown compression option {option!r} in {spec!r} (threads=N)")
        try:
            threads = int(value)
        except ValueError:
            raise UsageError(f"bad thread count {value!r} in {spec!r}") from None
    return Compression(name.strip().lower() or "none", level, threads)


def create_image(
    out: BinaryIO | str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    manifest: str | os.PathLike[str] | Iterable[str] | None = None,
    format: Format = "newc",
    compression: str = "none",
    level: int | None = None,
    early: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    progress: Callable[[int, int], object] | None = None,
    append: bool = False,
    warn: Callable[[str], object] | None = None,
) -> int:
    """Write an initramfs image to ``out`` (a binary stream, or a path created or replaced).

    Exactly one of ``root`` (a directory, see :func:`scan_directory`) and ``manifest`` (a
    path, or the lines of a ``gen_init_cpio`` manifest, see :func:`parse_manifest`) gives the
    main archive, in ``format`` (``newc`` or ``crc``), compressed with ``compression`` at
    ``level``: ``"none"`` or a name from :mod:`bootmem.initramfs.compress`, optionally
    ``"name:level"``, and for zstd ``",threads=N"`` (see :func:`parse_compression`; by default
    one thread per core, and the bytes are the same for every N >= 1; ``threads=0`` compresses
    in a single thread, as ``zstd --single-thread``, and writes other bytes).  A manifest may
    hold several archives, each with its own compression (:func:`split_manifest`).  ``early``,
    a directory or several, is written first, each as its own uncompressed archive padded with
    NULs to 4 bytes, as distributions prepend microcode.  ``progress``, when given, is called
    as ``progress(done, total)`` while the archives' file data is read, in bytes.  ``warn``,
    when given, is called with each of a manifest's :func:`lint` warnings before writing.

    A path ``out`` is created with no more permission than its inputs have: when a regular file
    going into the image is not readable by group or others, neither is the image (an image
    holding ``etc/shadow`` of mode 0600 is not world-readable).  With ``append`` the archives
    are added to the end of the existing image ``out`` (NULs first: a zero word, which ends an
    lz4 legacy member as made by ``lz4 -l``, then to a 4-byte boundary, where a raw archive must
    start); the image is left as it was on error.

    Returns the bytes written.  Raises :class:`UsageError` for bad arguments or manifest lines,
    :class:`CpioError` for a value that does not fit a header; a path ``out`` is removed on error.
    """
    if (root is None) == (manifest is None):
        raise UsageError("give exactly one of a directory and a manifest")
    if format not in ("newc", "crc"):
        raise UsageError(f"unknown cpio format {format!r} (newc or crc)")
    default = parse_compression(compression, level)
    archives: list[tuple[list[Source], Compression]] = []
    if isinstance(early, (str, os.PathLike)):
        early = [early]
    for directory in early or ():
        archives.append((scan_directory(directory), Compression("none", None, None)))
    if root is not None:
        archives.append((scan_directory(root), default))
    else:
        if isinstance(manifest, (str, os.PathLike)):
            where = os.fspath(manifest)
            with open(manifest, encoding="utf-8", errors="surrogateescape") as f:
                lines = list(f)
        else:
            assert manifest is not None
            where, lines = "manifest", list(manifest)
        for part in split_manifest(lines):
            sources = parse_manifest(part.lines, where=where, first_line=part.first_line)
            spec = default if part.compression is None else parse_compression(part.compression)
            archives.append((sources, spec))
        if warn is not None:
            existing = _existing_paths(out) if append else ()
            for warning in lint(
                (s for sources, _ in archives for s in sources), where=where, existing=existing
            ):
                warn(warning)
    plan = [(sources, _compressor(spec)) for sources, spec in archives]

    if not isinstance(out, (str, os.PathLike)):
        return _write_image(out, plan, format, progress, start=0)
    if append:
        with open(out, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            try:
                return _write_image(f, plan, format, progress, start=size)
            except BaseException:
                f.truncate(size)
                raise
    mode = _image_mode([s for sources, _ in archives for s in sources])
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.fchmod(fd, mode & ~_umask())  # an existing file is narrowed too
        with open(fd, "wb") as f:
            return _write_image(f, plan, format, progress, start=0)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(out)
        raise


def _existing_paths(image: object) -> Iterable[str]:
    """The paths the image being appended to makes (none when it cannot be read)."""
    from bootmem.errors import BootmemError
    from bootmem.initramfs.diff import image_tree

    if not isinstance(image, (str, os.PathLike)):
        return ()
    try:
        return image_tree(image, digest=False).keys()
    except (BootmemError, OSError):
        return ()


def _compressor(spec: Compression) -> Any | None:
    if spec.name == "none":
        return None
    from bootmem.initramfs.compress import open_compressor

    threads = spec.threads
    if threads is None:
        threads = default_threads() if spec.name == "zstd" else 0
    return open_compressor(spec.name, spec.level, threads=threads)


def _image_mode(sources: list[Source]) -> int:
    """0644, less group and other read where any regular file going in lacks them (as 3cpio)."""
    mode = 0o644
    for src in sources:
        if src.entry.isreg():
            mode &= 0o600 | (src.entry.mode & 0o044)
    return mode


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_image(
    out: IO[bytes],
    archives: list[tuple[list[Source], Any | None]],
    format: Format,
    progress: Callable[[int, int], object] | None,
    *,
    start: int,
) -> int:
    counter = _Counting(out)
    counter.position = start
    total = sum(src.entry.c_filesize for sources, _ in archives for src in sources if src.path is not None)
    before = 0
    # The image appended to may end in an lz4 legacy member, which has no end marker: a zero
    # word ends it (lib/decompress_unlz4.c), and the image loop skips NULs.
    open_ended = start > 0
    for sources, compressor in archives:
        if open_ended:
            counter.write(_NUL4)
        open_ended = getattr(compressor, "open_ended", False)
        # A raw archive must start 4-aligned (init/initramfs.c: a "0" at a 4-aligned offset).
        counter.write(_NUL4[: pad4(counter.position)])
        with _Sink(counter, compressor) as sink:
            if progress is not None:
                sink.on_data = lambda done, report=progress, base=before: report(base + done, total)
            write_archive(sink, sources, format)
        before += sum(src.entry.c_filesize for src in sources if src.path is not None)
    return counter.position - start


class _Counting:
    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.position = 0

    def write(self, data: bytes | memoryview) -> int:
        self._out.write(data)
        self.position += len(data)
        return len(data)

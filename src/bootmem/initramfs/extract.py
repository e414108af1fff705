"""Extraction of an initramfs image to a host directory, with tarfile-style filters.

The vocabulary is PEP 706's (``tarfile.extractall(path, members=None, *, filter=...)``): a filter
is a plain function ``(member, dest_path) -> member | None`` found by name in :data:`FILTERS`
(``fully_trusted``, ``tar``, ``data``), ``data`` being the default.  A filter returns the member to
extract (possibly with a changed name or mode), ``None`` to skip it, or raises a
:class:`~bootmem.errors.FilterError` subclass carrying the member, which stops the extraction
(tarfile's ``errorlevel``): what was extracted before stays, as in the kernel, where the first
error wins.

What lands on disk follows ``init/initramfs.c`` (``do_name``, ``clean_path``, ``maybe_link``):

- later entries replace earlier ones: an existing path of another type is removed first
  (``clean_path``), an existing regular file is truncated and rewritten;
- hardlinks are entries with ``c_nlink >= 2`` sharing :attr:`Entry.link_key` within one archive
  (``find_link``; the table is reset at each ``TRAILER!!!``); a later link is linked to the first
  name and its data, if any, written into the shared inode.  GNU cpio puts the data on the last
  link and gives the earlier links size 0, which this reproduces exactly;
- directory modes and mtimes are applied last, deepest first (``dir_utime``; tarfile does the same).

Unlike the kernel (whose rootfs has no outside) and unlike tarfile's ``fully_trusted``, no filter
lets a write leave ``path``: names are always taken relative to it (a leading ``/`` or ``./`` is
dropped), a name whose ``..`` or whose parent symlinks resolve outside raises
:class:`OutsideDestinationError`, and the last component is opened with ``O_NOFOLLOW`` after any
existing entry at that path was removed, so a symlink is never written through (the
CVE-2015-1197 pattern).  Missing parent directories are created, as ``cpio -d`` and tarfile do.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from bootmem.errors import (
    AbsoluteLinkError,
    AbsolutePathError,
    ExtractError,
    LinkOutsideDestinationError,
    OutsideDestinationError,
    SpecialFileError,
)
from bootmem.initramfs.cpio import CpioReader, Entry

Filter = Callable[[Entry, str], Entry | None]
Progress = Callable[[Entry, int], None]


class DataReader(Protocol):
    """What ``Image.stream()`` pairs with each entry: its data, in chunks, before advancing."""

    def iter_data(self, chunk_size: int = ..., /) -> Iterator[bytes]: ...


# --- names ------------------------------------------------------------------------------------


def relative_name(name: str) -> str:
    """``name`` as a path relative to the root: leading ``/`` and ``./`` and trailing ``/`` dropped,
    ``.`` for the root.

    Only that text is removed; ``..`` components are kept for the caller to judge.

    >>> relative_name("/./usr//bin/")
    'usr//bin'
    >>> relative_name("./")
    '.'
    """
    while True:
        stripped = name.lstrip("/")
        if stripped.startswith("./"):
            stripped = stripped[2:]
        if stripped == name:
            break
        name = stripped
    return name.rstrip("/") or "."


def _inside(path: str, dest: str) -> bool:
    return path == dest or path.startswith(dest.rstrip("/") + "/")


# --- filters (PEP 706) ----------------------------------------------------------------------


def fully_trusted_filter(member: Entry, dest_path: str) -> Entry:
    """Every member as it is: modes with setuid/setgid, devices, any link target.

    Even so, nothing is written outside ``dest_path`` (see the module's docstring).
    """
    return member


def _landing(dest_path: str, name: str) -> str:
    """Where ``name`` lands: its parent resolved (``realpath``), its last component not, since
    whatever is there is replaced, never followed (init/initramfs.c ``clean_path``).  tarfile
    resolves the last component too, and so would refuse a file replacing a symlink to outside."""
    head, tail = os.path.split(os.path.join(dest_path, name))
    if tail in ("", ".", ".."):
        return os.path.realpath(os.path.join(head, tail))
    return os.path.join(os.path.realpath(head), tail)


def _filtered(member: Entry, dest_path: str, *, for_data: bool) -> Entry:
    """The checks of tarfile's ``_get_filtered_attrs``, for a cpio entry."""
    dest_path = os.path.realpath(dest_path)
    name = member.name
    if name.startswith("/"):
        name = name.lstrip("/")
    if os.path.isabs(name):
        raise AbsolutePathError(member, f"member {member.name!r} has an absolute path")
    target_path = _landing(dest_path, name)
    if not _inside(target_path, dest_path):
        raise OutsideDestinationError(
            member, f"{member.name!r} would be extracted to {target_path!r}, which is outside the destination"
        )
    ftype = stat.S_IFMT(member.c_mode)
    mode = member.mode & 0o755  # no setuid/setgid/sticky, no group/other write
    if for_data:
        if member.isreg():
            if not mode & 0o100:
                mode &= ~0o111
            mode |= 0o600
        elif member.isdir():
            # tarfile ignores a directory's mode under `data`; keeping it (owner rwx) keeps the
            # tree's shape and lets the user remove what was extracted.
            mode |= 0o700
        elif not member.issym():
            raise SpecialFileError(member, f"{member.name!r} is a special file")
        if member.issym():
            target = member.linkname or ""
            if os.path.isabs(target):
                raise AbsoluteLinkError(member, f"{member.name!r} is a link to an absolute path {target!r}")
            resolved = os.path.realpath(os.path.join(dest_path, os.path.dirname(name), target))
            if not _inside(resolved, dest_path):
                raise LinkOutsideDestinationError(
                    member, f"{member.name!r} would link to {resolved!r}, which is outside the destination"
                )
    changes: dict[str, Any] = {}
    if name != member.name:
        changes["name"] = name
    if ftype | mode != member.c_mode:
        changes["c_mode"] = ftype | mode
    return dataclasses.replace(member, **changes) if changes else member


def tar_filter(member: Entry, dest_path: str) -> Entry:
    """PEP 706 ``tar``: strip leading ``/``, refuse escapes, clear setuid/setgid and group/other write."""
    return _filtered(member, dest_path, for_data=False)


def data_filter(member: Entry, dest_path: str) -> Entry:
    """PEP 706 ``data``: ``tar``, plus: refuse device nodes, fifos and sockets
    (:class:`SpecialFileError`), absolute symlink targets (:class:`AbsoluteLinkError`) and
    symlinks resolving outside (:class:`LinkOutsideDestinationError`); regular files become
    owner-readable and -writable (and lose execute bits unless the owner had one); ownership is
    not restored.
    """
    return _filtered(member, dest_path, for_data=True)


FILTERS: dict[str, Filter] = {
    "fully_trusted": fully_trusted_filter,
    "tar": tar_filter,
    "data": data_filter,
}


def get_filter(filter: str | Filter) -> Filter:
    """The filter named ``filter`` (or ``filter`` itself when it is a function)."""
    if callable(filter):
        return filter
    try:
        return FILTERS[filter]
    except KeyError:
        raise ExtractError(f"unknown filter {filter!r} (choose from {', '.join(FILTERS)})") from None


# --- sources --------------------------------------------------------------------------------


def stream_members(source: Any) -> Iterator[tuple[Entry, DataReader]]:
    """``(entry, reader)`` pairs of ``source`` in archive order.

    ``source`` is an image (anything with ``stream()``, such as ``bootmem.initramfs.open``'s
    result), a :class:`CpioReader`, or what ``bootmem.initramfs.open`` accepts (a path, a binary
    file, bytes), which is then opened and closed here.
    """
    if isinstance(source, CpioReader):
        for entry in source:
            yield entry, source
        return
    if callable(getattr(source, "stream", None)):
        yield from source.stream()
        return
    from bootmem import initramfs

    image = initramfs.open(source)
    try:
        yield from image.stream()
    finally:
        close = getattr(image, "close", None)
        if close is not None:
            close()


# --- extraction -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Extraction:
    """What :func:`extractall` did: ``entries`` written, data ``bytes`` written, and the entries
    the kernel would also have dropped (``skipped``: ``(name, reason)``, for instance a name whose
    parent is a regular file, or a non-empty directory a later entry would replace).
    """

    entries: int = 0
    bytes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


class _Extractor:
    def __init__(self, dest: str, filt: Filter, progress: Progress | None) -> None:
        self.dest = dest
        self.filter = filt
        self.progress = progress
        self.owners = os.geteuid() == 0 and filt is not data_filter
        self.links: dict[tuple[int, int, int, int, int, int], str] = {}
        self.dirs: dict[str, Entry] = {}
        self.parents: dict[str, str] = {}  # relative parent -> verified real path
        self.entries = 0
        self.nbytes = 0
        self.skipped: list[tuple[str, str]] = []

    # paths

    def target(self, member: Entry, rel: str) -> str:
        """Absolute host path for ``rel``, its parent verified to resolve inside the destination."""
        parent, _, base = rel.rpartition("/")
        if base in ("..", ".") or not base:
            raise OutsideDestinationError(member, f"{member.name!r} names no path inside the destination")
        real = self.parents.get(parent)
        if real is None:
            real = os.path.realpath(os.path.join(self.dest, parent)) if parent else self.dest
            if not _inside(real, self.dest):
                raise OutsideDestinationError(
                    member,
                    f"{member.name!r} would be extracted under {real!r}, outside the destination",
                )
            if real != self.dest:
                try:
                    os.makedirs(real, exist_ok=True)
                except (FileExistsError, NotADirectoryError):
                    raise _Skip("a parent is not a directory") from None
            self.parents[parent] = real
        return os.path.join(real, base)

    def clean_path(self, path: str, ftype: int) -> int | None:
        """init/initramfs.c ``clean_path``: remove ``path`` if it exists with another type
        (``ftype`` 0: whatever it is).  Returns the type left at ``path``, or ``None``."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        existing = stat.S_IFMT(st.st_mode)
        if existing == ftype:
            return existing
        self.parents.clear()  # a removed directory may be the parent of cached paths
        if existing == stat.S_IFDIR:
            try:
                os.rmdir(path)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise _Skip("a non-empty directory is in the way") from None
                raise
        else:
            os.unlink(path)
        return None

    # members

    def extract(self, member: Entry, reader: DataReader) -> None:
        rel = relative_name(member.name)
        if rel == ".":
            if member.isdir():
                self.dirs[self.dest] = member
                self.entries += 1
            return
        path = self.target(member, rel)
        ftype = stat.S_IFMT(member.c_mode)
        if member.isreg():
            self.regular(member, path, reader)
        elif member.isdir():
            if self.clean_path(path, ftype) is None:
                os.mkdir(path, 0o700)
            self.dirs[path] = member
        elif member.issym():
            self.clean_path(path, 0)
            if not member.linkname:  # symlink(2) refuses an empty target (ENOENT); so does init_symlink
                raise _Skip("empty symlink target")
            os.symlink(member.linkname, path)
            self.attributes(member, path, symlink=True)
        elif member.isdev():
            existing = self.clean_path(path, ftype)
            if not self.link(member, path) and existing is None:
                try:
                    os.mknod(path, member.c_mode, os.makedev(*member.rdev))
                except OSError as exc:  # EPERM unprivileged, EINVAL for a device number mknod refuses
                    raise ExtractError(
                        f"cannot create {member.type} node {member.name!r} "
                        f"(rdev {member.c_rdevmajor}:{member.c_rdevminor}): {exc.strerror}"
                    ) from None
            self.attributes(member, path)
        else:
            raise _Skip(f"unknown file type {ftype:#o}")
        self.entries += 1

    def link_source(self, member: Entry) -> str | None:
        if member.c_nlink < 2:
            return None
        key = (member.segment, member.archive, *member.link_key)
        first = self.links.get(key)
        if first is None:
            self.links[key] = relative_name(member.name)
        return first

    def link(self, member: Entry, path: str) -> bool:
        """init/initramfs.c ``maybe_link``: link ``path`` to the first name of its group."""
        first = self.link_source(member)
        if first is None:
            return False
        try:
            source = self.target(member, first)
        except OutsideDestinationError as exc:
            raise LinkOutsideDestinationError(member, f"hardlink {member.name!r}: {exc}") from None
        try:
            st = os.lstat(source)
        except FileNotFoundError:
            raise _Skip(f"hardlink source {first!r} is gone") from None
        if stat.S_ISLNK(st.st_mode) and not member.issym():
            # The first name was replaced by a symlink: the kernel would link the symlink and
            # write through it.  Refuse when it leads outside; otherwise drop the entry.
            resolved = os.path.realpath(source)
            if not _inside(resolved, self.dest):
                raise LinkOutsideDestinationError(
                    member, f"hardlink {member.name!r} would reach {resolved!r}, outside the destination"
                )
            raise _Skip(f"hardlink source {first!r} is now a symlink")
        self.clean_path(path, 0)
        try:
            os.link(source, path, follow_symlinks=False)
        except FileNotFoundError:
            # The first name is gone (replaced, removed): the kernel's link fails and it skips.
            raise _Skip(f"hardlink source {first!r} is gone") from None
        return True

    def regular(self, member: Entry, path: str, reader: DataReader) -> None:
        self.clean_path(path, stat.S_IFREG)
        linked = self.link(member, path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        if not linked:
            flags |= os.O_TRUNC
        fd = os.open(path, flags, 0o600)
        try:
            written = 0
            write = os.write
            for chunk in reader.iter_data(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[write(fd, view) :]
                written += len(chunk)
            if linked and member.c_filesize:
                os.ftruncate(fd, member.c_filesize)  # vfs_truncate(body_len) in do_name
            self.nbytes += written
            self.attributes(member, fd)
        finally:
            os.close(fd)
        if self.progress is not None:
            self.progress(member, written)

    def attributes(self, member: Entry, target: int | str, *, symlink: bool = False) -> None:
        """Owner (as root, outside ``data``), mode, then mtime: the order tarfile uses."""
        if self.owners:
            os.chown(target, member.c_uid, member.c_gid, follow_symlinks=not symlink)
        if not symlink:
            os.chmod(target, member.mode)
        os.utime(target, (member.c_mtime, member.c_mtime), follow_symlinks=not symlink)

    def finish_dirs(self) -> None:
        """Directory attributes last, deepest first (init/initramfs.c ``dir_utime``)."""
        for path in sorted(self.dirs, reverse=True):
            member = self.dirs[path]
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue  # replaced by a later entry, or under a directory that was
            try:
                if _inside(os.path.realpath(path), self.dest):
                    self.attributes(member, fd)
            finally:
                os.close(fd)


class _Skip(Exception):
    """An entry the kernel would drop too; recorded in :attr:`Extraction.skipped`."""


def extractall(
    image_or_stream: Any,
    path: str | os.PathLike[str] = ".",
    *,
    members: Iterable[Entry | str] | None = None,
    filter: str | Filter = "data",
    segment: int | None = None,
    progress: Progress | None = None,
) -> Extraction:
    """Extract the entries of ``image_or_stream`` under ``path`` (created if missing).

    ``image_or_stream`` is what :func:`stream_members` takes.  ``members`` limits extraction
    to those entries (or names); ``segment`` to the entries of that segment.  ``filter`` is a
    name in :data:`FILTERS` or a function, applied to each member just before it is written,
    so its ``realpath`` checks see the tree as extracted so far (PEP 706).  ``progress``, when
    given, is called after each regular file with the entry and the data bytes written.

    Raises the filter's :class:`~bootmem.errors.FilterError` at the first refused member,
    :class:`OutsideDestinationError` for any write that would leave ``path`` whatever the
    filter, :class:`~bootmem.errors.ExtractError` when a device node cannot be created, and
    what the image raises for malformed input.  Ownership is restored only when running as
    root with a filter other than ``data`` (tarfile's behaviour).
    """
    filt = get_filter(filter)
    os.makedirs(path, exist_ok=True)
    dest = os.path.realpath(path)
    chosen = None if members is None else set(members)
    ex = _Extractor(dest, filt, progress)
    for entry, reader in stream_members(image_or_stream):
        if segment is not None and entry.segment != segment:
            continue
        if chosen is not None and entry not in chosen and entry.name not in chosen:
            continue
        member = filt(entry, dest)
        if member is None:
            continue
        try:
            ex.extract(member, reader)
        except _Skip as why:
            ex.skipped.append((member.name, str(why)))
    ex.finish_dirs()
    return Extraction(entries=ex.entries, bytes=ex.nbytes, skipped=ex.skipped)

"""Extraction of an initramfs image to a host directory, with tarfile-style filters.

What lands on disk is what Linux's rootfs would hold: the image is unpacked by
:mod:`bootmem.kernel.unpack`, the one copy of ``init/initramfs.c``'s rules (later entries
replace earlier ones, ``clean_path``, hardlinks within one archive, files sized to
``c_filesize`` first, directory attributes last), with a host directory as its target.

The vocabulary is PEP 706's (``tarfile.extractall(path, members=None, *, filter=...)``): a filter
is a plain function ``(member, dest_path) -> member | None`` found by name in :data:`FILTERS`.
It returns the member to extract (possibly changed: ``member.replace(name=...)``), ``None`` to skip it
quietly, or raises a :class:`~bootmem.errors.FilterError` subclass carrying the member.  A
refused member is skipped and recorded in :attr:`Extraction.skipped` with the reason, and
extraction goes on (``strict=True``: the refusal is raised and extraction stops there).

The default filter, ``rootfs``, is made for root filesystems: absolute symlinks are normal there
(``etc/mtab -> /proc/mounts``), so symlinks are created exactly as archived; device nodes and
special bits are created as the user's privileges allow (as root: all; otherwise character and
block devices are skipped and counted in :attr:`Extraction.nodes_skipped`).  ``data``, ``tar``
and ``fully_trusted`` keep PEP 706's meaning.

Whatever the filter, nothing is written outside ``path`` and no write goes through a symlink:

- names are taken relative to ``path``: a leading ``/`` and ``.`` components are dropped, a name
  with a ``..`` component is refused (:class:`OutsideDestinationError`);
- every call is relative to a descriptor of ``path`` and never follows a symlink: a parent
  directory is walked with ``lstat`` once and remembered (the memory is forgotten whenever a
  directory is removed), a symlink met on the way is refused, not followed; a file is opened
  with ``O_NOFOLLOW``, so a later entry that retargets a symlink, or a hardlink to one, cannot
  write through it (the CVE-2015-1197 pattern);
- missing parent directories are created, as ``cpio -d`` and tarfile do (the kernel would drop
  the entry).

A hardlink set of a newc archive carries its data on one name (GNU cpio and gen_init_cpio: the
last).  When a selection chooses a name of the set but not the one with the data, the chosen name
still gets the inode's data, as GNU ``cpio -i PATTERN`` gives it: the unchosen entry with the data
is unpacked under a private name, in a directory made in ``path`` for the time of the
extraction, so that the kernel's ``maybe_link`` joins it to the chosen name; the directory is
removed at the end.  Unlike GNU cpio, this works whichever of the set's names carries the data.

The checks cost a constant number of system calls per entry and no recursion, whatever the depth.
"""

from __future__ import annotations

import contextlib
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
    FilterError,
    LinkOutsideDestinationError,
    OutsideDestinationError,
    SpecialFileError,
)
from bootmem.initramfs.cpio import CpioReader, Entry
from bootmem.initramfs.image import Image, Source
from bootmem.initramfs.image import open as open_image
from bootmem.initramfs.select import Selection
from bootmem.kernel.unpack import UnpackError, kernel_rdev, unpack_image

Filter = Callable[[Entry, str], Entry | None]
Progress = Callable[[Entry, int], None]

#: A uid or gid of 0xffffffff is chown's -1: unchanged.
_UNCHANGED = 0xFFFFFFFF

_LinkKey = tuple[int, int, int, int, int, int]


def _link_key(entry: Entry) -> _LinkKey:
    """A hardlink set: ``find_link``'s key, within one archive of one segment."""
    return (entry.segment, entry.archive, *entry.link_key)


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


# --- filters (PEP 706, and one for root filesystems) ------------------------------------------


def fully_trusted_filter(member: Entry, dest_path: str) -> Entry:
    """Every member as it is: modes with setuid/setgid, devices, any link target.

    Even so, nothing is written outside ``dest_path`` (see the module's docstring).
    """
    return member


def rootfs_filter(member: Entry, dest_path: str) -> Entry:
    """The default, made for root filesystems: every member as archived, symlinks with absolute
    targets included; a name with a ``..`` component is refused (:class:`OutsideDestinationError`).

    Device nodes, ownership and special bits are then created as privileges allow (see the
    module's docstring).
    """
    if ".." in member.name.split("/"):
        raise OutsideDestinationError(member, f"{member.name!r} has a '..' component")
    return member


def _filtered(member: Entry, dest_path: str, *, for_data: bool) -> Entry:
    """The checks of tarfile's ``_get_filtered_attrs``, for a cpio entry."""
    name = member.name.lstrip("/")
    if os.path.isabs(name):
        raise AbsolutePathError(member, f"member {member.name!r} has an absolute path")
    if ".." in name.split("/"):
        raise OutsideDestinationError(member, f"{member.name!r} has a '..' component")
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
            dest_path = os.path.realpath(dest_path)
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
    return member.replace(**changes) if changes else member


def tar_filter(member: Entry, dest_path: str) -> Entry:
    """PEP 706 ``tar``: strip leading ``/``, refuse ``..``, clear setuid/setgid and group/other write."""
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
    "rootfs": rootfs_filter,
    "fully_trusted": fully_trusted_filter,
    "tar": tar_filter,
    "data": data_filter,
}
DEFAULT_FILTER = "rootfs"


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
    with open_image(source) as image:
        yield from image.stream()


# --- extraction -----------------------------------------------------------------------------


@dataclass(slots=True)
class Extraction:
    """What :func:`extractall` did.

    ``entries`` created and data ``bytes`` written; ``skipped``: ``(name, reason)`` of each entry
    not extracted (refused by the filter, or that the host would not create); ``nodes_skipped``:
    character and block devices not created for lack of privilege; ``kernel_skipped``: entries
    the kernel skips too (``c_namesize`` 0, a directory with a body ...); ``error``: the image's
    first error, as the kernel reports it, after which nothing was read.
    """

    entries: int = 0
    bytes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    nodes_skipped: int = 0
    kernel_skipped: int = 0
    segments: int = 0
    error: UnpackError | None = None


class _Skip(Exception):
    """An entry that is not extracted, and why."""


class _HostFile:
    """A regular file being written (``do_copy``)."""

    __slots__ = ("entry", "fd", "host", "kernel_opened", "stashed", "written")

    def __init__(
        self, host: _HostTarget, fd: int, entry: Entry, *, kernel_opened: bool, stashed: bool
    ) -> None:
        self.host, self.fd, self.entry = host, fd, entry
        self.kernel_opened = kernel_opened
        self.stashed = stashed  # the data of an unselected hardlink: not counted as extracted
        self.written = 0

    def write(self, data: memoryview) -> int:
        done = 0
        try:
            while done < len(data):
                done += os.write(self.fd, data[done:])
        except OSError as exc:
            self.host.skip(self.entry.name, f"write error: {exc.strerror}")
        self.written += done
        return done

    def close(self, mtime: int | None) -> None:
        try:
            if mtime is not None:
                os.utime(self.fd, (mtime, mtime))
        finally:
            os.close(self.fd)
        host = self.host
        if self.stashed:
            return
        host.result.bytes += self.written
        if host.progress is not None:
            host.progress(self.entry, self.written)


class _HostTarget:
    """A host directory as the unpacker's target (see the module's docstring for the rules)."""

    def __init__(
        self,
        dest: str,
        filt: Filter,
        *,
        members: set[Entry | str] | None,
        selection: Selection | None,
        progress: Progress | None,
        strict: bool,
    ) -> None:
        self.dest = dest
        self.fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.filter = filt
        self.members = members
        self.selection = selection
        self.progress = progress
        self.strict = strict
        self.root = os.geteuid() == 0
        self.owners = self.root and filt is not data_filter
        self.known: set[str] = {""}  # directories walked or made, with no symlink on the way
        self.made: set[str] = set()  # parents made here that the archive lacks: so does Linux
        self.archived: set[str] = set()  # directories the archive holds, extracted or not
        self.dirs: dict[str, Entry] = {}  # directory attributes, applied last
        self.dest_entry: Entry | None = None
        self.result = Extraction()
        # Hardlink sets (by _link_key) with a selected name, names seen per set, and the stash:
        # the private directory holding the data of unselected names (see the module's docstring).
        self.selected_links: set[_LinkKey] = set()
        self.link_names: dict[_LinkKey, int] = {}
        self.stash_dir: str | None = None
        self.stashed: dict[str, str] = {}  # private name -> the entry's own name
        self.stash_archive: tuple[int, int] | None = None  # (segment, archive) of the stashed names

    def close(self) -> None:
        os.close(self.fd)

    def skip(self, name: str, reason: str) -> None:
        if self.strict:
            raise ExtractError(f"{name!r}: {reason}")
        self.result.skipped.append((name, reason))

    # names

    def accept(self, entry: Entry) -> Entry | None:
        if entry.isdir():
            self.archived.add(relative_name(entry.name))  # Linux makes it, selected or not
        linked = entry.isreg() and entry.c_nlink >= 2
        key = _link_key(entry)
        if linked:
            self.link_names[key] = self.link_names.get(key, 0) + 1
        if (self.selection is not None and not self.selection.matches(entry)) or (
            self.members is not None and entry not in self.members and entry.name not in self.members
        ):
            return self._stash(entry, key) if linked and entry.c_filesize else None
        if self.stash_dir is not None and relative_name(entry.name).split("/")[0] == self.stash_dir:
            self.skip(entry.name, "names the directory extraction keeps hardlinks' data in")
            return None
        try:
            member = self.filter(entry, self.dest)
        except FilterError as exc:
            if self.strict:
                raise
            self.result.skipped.append((entry.name, str(exc)))
            return None
        if member is None:
            return None
        parts = [p for p in member.name.split("/") if p and p != "."]
        if ".." in parts:
            refused = OutsideDestinationError(entry, f"{entry.name!r} has a '..' component")
            if self.strict:
                raise refused
            self.result.skipped.append((entry.name, str(refused)))
            return None
        if not parts:
            if member.isdir():
                self.dest_entry = member  # mkdir(".") fails; chown and chmod apply to it
            else:
                self.skip(entry.name, "names the destination directory itself")
            return None
        rel = "/".join(parts)
        try:
            self._parent(rel.rpartition("/")[0])
        except _Skip as why:
            self.skip(entry.name, str(why))
            return None
        self.result.entries += 1
        if linked:
            self.selected_links.add(key)
        return member if rel == member.name else member.replace(name=rel)

    def _stash(self, entry: Entry, key: _LinkKey) -> Entry | None:
        """The unselected ``entry``, which carries a hardlink set's data, under a private name
        when a name of its set was selected or may still be; ``None`` otherwise.

        Without a selected name yet, the data is kept only while names of the set remain to
        come (fewer than ``c_nlink`` seen): with the data on the last name, as GNU cpio and
        gen_init_cpio write it, nothing unselected is written."""
        if key not in self.selected_links and self.link_names[key] >= entry.c_nlink:
            return None
        try:
            member = self.filter(entry, self.dest)  # the mode the selected names may take
        except FilterError:
            return None
        if member is None or not member.isreg():
            return None
        if self.stash_archive != key[:2]:
            self.remove_stash()  # the kernel's table of links is emptied at each trailer
            self.stash_archive = key[:2]
        if self.stash_dir is None:
            import tempfile  # rare: not worth its start-up (shutil, random, hashlib) on every extraction

            self.stash_dir = os.path.basename(tempfile.mkdtemp(prefix=".bootmem-links-", dir=self.dest))
            self.known.add(self.stash_dir)
        name = f"{self.stash_dir}/{len(self.stashed)}"
        self.stashed[name] = entry.name
        return member.replace(name=name)

    def remove_stash(self) -> None:
        """Remove the private directory and what it holds (selected names keep their links)."""
        if self.stash_dir is None:
            return
        for name in self.stashed:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self.fd)
        with contextlib.suppress(OSError):
            os.rmdir(self.stash_dir, dir_fd=self.fd)
        self.known.discard(self.stash_dir)
        self.stash_dir = None

    def _parent(self, parent: str) -> None:
        """Make sure directory ``parent`` exists with no symlink on the way: O(1) calls when known,
        else two calls per missing level, each relative to the level above (``mkdirat``, then
        ``openat`` with ``O_NOFOLLOW``), so a deep path costs time linear in its depth."""
        if parent in self.known:
            return
        cut = len(parent)
        while cut > 0 and parent[:cut] not in self.known:
            cut = parent.rfind("/", 0, cut)
        done = parent[:cut] if cut > 0 else ""
        # O_PATH: a directory without read permission is still walked, as lstat walked it.
        flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(done, flags, dir_fd=self.fd) if done else self.fd
        try:
            for part in parent[len(done) :].lstrip("/").split("/"):
                path = f"{done}/{part}" if done else part
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise _Skip(f"cannot make parent {path!r}: {exc.strerror}") from None
                else:
                    if path not in self.archived:
                        self.made.add(path)
                try:
                    below = os.open(part, flags, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise _Skip(f"cannot open parent {path!r}: {exc.strerror}") from None
                    if stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                        why = f"parent {path!r} is a symlink, which extraction does not follow"
                        raise _Skip(why) from None
                    raise _Skip(f"parent {path!r} is not a directory") from None
                if fd != self.fd:
                    os.close(fd)
                fd = below
                done = path
                self.known.add(path)
        finally:
            if fd != self.fd:
                os.close(fd)

    def _unaccept(self, name: str, reason: str) -> None:
        if name in self.stashed:
            self.skip(self.stashed[name], f"its data, for a selected hardlink, was not written: {reason}")
            return
        self.result.entries -= 1
        self.skip(name, reason)

    # the kernel's calls

    def clean_path(self, name: str, fmode: int) -> None:
        try:
            st = os.lstat(name, dir_fd=self.fd)
        except OSError:
            return
        if stat.S_IFMT(st.st_mode) == stat.S_IFMT(fmode):
            return
        try:
            if stat.S_ISDIR(st.st_mode):
                self.known = {""}  # a removed directory may be the parent of known ones
                self.dirs.pop(name, None)
                self.made.discard(name)
                os.rmdir(name, dir_fd=self.fd)
            else:
                os.unlink(name, dir_fd=self.fd)
        except OSError:
            pass  # the kernel ignores it; the call that follows fails and says so

    def link(self, old: str, new: str) -> bool:
        try:
            os.link(old, new, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
        except OSError as exc:
            self._unaccept(new, f"cannot link to {old!r}: {exc.strerror}")
            return False
        return True

    def _chown(self, target: int | str, entry: Entry, *, follow: bool = True) -> None:
        if not self.owners:
            return
        uid = -1 if entry.c_uid == _UNCHANGED else entry.c_uid
        gid = -1 if entry.c_gid == _UNCHANGED else entry.c_gid
        if isinstance(target, int):
            os.fchown(target, uid, gid)
        else:
            os.chown(target, uid, gid, dir_fd=self.fd, follow_symlinks=follow)

    def open(self, entry: Entry, *, truncate: bool) -> _HostFile | None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_TRUNC if truncate else 0)
        try:
            fd = os.open(entry.name, flags, 0o600, dir_fd=self.fd)
        except OSError as exc:
            reason = "a symlink is there, and is not followed" if exc.errno == errno.ELOOP else exc.strerror
            self._unaccept(entry.name, f"cannot open: {reason}")
            return None
        try:
            self._chown(fd, entry)
            os.fchmod(fd, entry.mode)
            if entry.c_filesize:
                os.ftruncate(fd, entry.c_filesize)  # vfs_truncate(body_len) in do_name
        except OSError as exc:
            os.close(fd)
            self._unaccept(entry.name, f"cannot size or set attributes: {exc.strerror}")
            return None
        stashed = entry.name in self.stashed
        return _HostFile(self, fd, entry, kernel_opened=not self._under_made(entry.name), stashed=stashed)

    def _under_made(self, name: str) -> bool:
        """Whether a parent of ``name`` was made here, not by an entry (Linux's open fails)."""
        if not self.made:
            return False
        parts = name.split("/")[:-1]
        return any("/".join(parts[:i]) in self.made for i in range(1, len(parts) + 1))

    def mkdir(self, entry: Entry) -> None:
        name = entry.name
        try:
            os.mkdir(name, 0o700, dir_fd=self.fd)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(name, dir_fd=self.fd).st_mode):
                self._unaccept(name, "a non-empty directory or another file is in the way")
                return
        except OSError as exc:
            self._unaccept(name, f"cannot make directory: {exc.strerror}")
            return
        self.known.add(name)
        self.made.discard(name)  # an entry made it: Linux has it too
        self.dirs[name] = entry  # owner, mode and mtime last, so that children can be made

    def mknod(self, entry: Entry) -> None:
        name = entry.name
        if (entry.ischr() or entry.isblk()) and not self.root:
            self.result.entries -= 1
            self.result.nodes_skipped += 1
            return
        try:
            os.mknod(
                name,
                entry.c_mode,
                os.makedev(*kernel_rdev(entry.c_rdevmajor, entry.c_rdevminor)),
                dir_fd=self.fd,
            )
        except FileExistsError:
            pass  # init_mknod fails; init_chown, init_chmod and do_utime still apply
        except OSError as exc:
            self._unaccept(name, f"cannot create {entry.type} node: {exc.strerror}")
            return
        try:
            self._chown(name, entry)
            os.chmod(name, entry.mode, dir_fd=self.fd)  # clean_path left this type there: no symlink
            os.utime(name, (entry.c_mtime, entry.c_mtime), dir_fd=self.fd, follow_symlinks=False)
        except OSError as exc:
            self._unaccept(name, f"cannot set attributes: {exc.strerror}")

    def symlink(self, entry: Entry) -> None:
        name, target = entry.name, entry.linkname or ""
        if not target:
            self._unaccept(name, "empty symlink target (Linux makes it; symlink(2) on the host refuses it)")
            return
        try:
            os.symlink(target, name, dir_fd=self.fd)
            self._chown(name, entry, follow=False)
            os.utime(name, (entry.c_mtime, entry.c_mtime), dir_fd=self.fd, follow_symlinks=False)
        except OSError as exc:
            self._unaccept(name, f"cannot make symlink: {exc.strerror}")

    def utime(self, name: str, mtime: int) -> None:
        """``dir_utime``: a directory's owner, mode and mtime, last."""
        entry = self.dirs.pop(name, None)
        if entry is None:
            return
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError:
            return  # replaced by a later entry
        try:
            self._attributes(fd, entry)
        finally:
            os.close(fd)

    def _attributes(self, fd: int, entry: Entry) -> None:
        try:
            self._chown(fd, entry)
            os.fchmod(fd, entry.mode)
            os.utime(fd, (entry.c_mtime, entry.c_mtime))
        except OSError as exc:
            self.skip(entry.name, f"cannot set attributes: {exc.strerror}")

    def finish(self) -> None:
        self.remove_stash()
        if self.dest_entry is not None:
            self._attributes(self.fd, self.dest_entry)


def extractall(
    image: Source | Image,
    path: str | os.PathLike[str] = ".",
    *,
    members: Iterable[Entry | str] | None = None,
    filter: str | Filter = DEFAULT_FILTER,
    selection: Selection | None = None,
    progress: Progress | None = None,
    strict: bool = False,
    max_decompressed: int | None = None,
) -> Extraction:
    """Extract ``image`` (a path, a binary file, bytes, or an opened image) under ``path``.

    ``path`` is created if missing.  ``members`` limits extraction to those entries (or names);
    ``selection`` to the entries it selects (patterns and segments; missing parent directories
    of a selected entry are made with mode 0755, as ``cpio -d`` makes them).  ``filter`` is a
    name in :data:`FILTERS` or a function, applied to each member just before it is written.
    ``progress``, when given, is called after each regular file with the entry and the data
    bytes written.
    ``max_decompressed`` caps the bytes decompressed (see :func:`bootmem.initramfs.open`).

    A member refused or that cannot be made is skipped and recorded in the result (see
    :class:`Extraction`); with ``strict`` the first refusal is raised instead (the filter's
    :class:`~bootmem.errors.FilterError`, or :class:`~bootmem.errors.ExtractError`), what was
    extracted before staying.  An error in the image ends extraction as it ends the kernel's
    unpacking and is the result's ``error``; :class:`~bootmem.errors.ExtractError` is raised after
    extraction, naming them, when patterns or segments of ``selection`` selected nothing.
    """
    filt = get_filter(filter)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ExtractError(f"cannot make the destination {os.fspath(path)!r}: {exc.strerror}") from None
    dest = os.path.realpath(path)
    chosen = None if members is None else set(members)
    # Opened as an Image, so that a unified kernel image is read as its .initrd section.
    opened = image if isinstance(image, Image) else open_image(image, max_decompressed=max_decompressed)
    if max_decompressed is None:
        max_decompressed = opened.max_decompressed
    host = _HostTarget(dest, filt, members=chosen, selection=selection, progress=progress, strict=strict)
    try:
        unpacked = unpack_image(opened, host, max_decompressed=max_decompressed)
    finally:
        try:
            host.finish()
        finally:
            host.close()
            if opened is not image:
                opened.close()
    result = host.result
    result.kernel_skipped = unpacked.skipped
    result.segments = unpacked.segments
    result.error = unpacked.error
    if result.error is None and selection is not None and (missing := selection.unmatched()):
        last = unpacked.segments - 1
        where = selection.scope("the image")
        raise ExtractError(f"nothing in {where} matches {', '.join(missing)} (it has segments 0 to {last})")
    return result

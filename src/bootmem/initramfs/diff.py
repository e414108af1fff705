"""Differences between the trees two initramfs images produce.

Each image is replayed, entry by entry, into a small model of the resulting tree under the
rules of ``init/initramfs.c``: later entries win (an existing path of another type is removed
first - a directory only when empty, as ``rmdir`` - and a regular file is truncated and
rewritten); hardlinks are matched by :attr:`Entry.link_key` within one archive and reset at each
``TRAILER!!!``, a later link sharing the first name's inode and its data, if any, replacing the
inode's; an existing device node of the same type is kept (``mknod`` fails with ``EEXIST``) while
its owner and mode are updated.  Names are taken relative to the root (leading ``/`` and ``./``
dropped, ``..`` clamped at the root, as in the kernel's rootfs); symlinks in parent components
are not followed, so paths are compared as the archives name them.

Content is compared by SHA-256, computed while the data streams; nothing is kept in memory but
one digest per file.
"""

from __future__ import annotations

import hashlib
import posixpath
import stat
from dataclasses import dataclass, field
from typing import Any

from bootmem.initramfs.cpio import Entry
from bootmem.initramfs.extract import DataReader, stream_members

_EMPTY = hashlib.sha256(b"").hexdigest()


@dataclass(slots=True)
class _Inode:
    ftype: int
    mode: int
    uid: int
    gid: int
    size: int = 0
    sha256: str | None = None
    linkname: str | None = None
    rdev: tuple[int, int] = (0, 0)
    mtime: int = 0


@dataclass(frozen=True, slots=True)
class Node:
    """What is at one path of the tree: ``type`` is ``d f l c b p s``; ``sha256`` (regular files)
    and ``linkname`` (symlinks) are ``None`` for other types."""

    type: str
    mode: int
    uid: int
    gid: int
    size: int
    sha256: str | None
    linkname: str | None
    rdev: tuple[int, int]
    mtime: int

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "mode": f"{self.mode:04o}",
            "uid": self.uid,
            "gid": self.gid,
            "size": self.size,
            "sha256": self.sha256,
            "linkname": self.linkname,
            "rdev": list(self.rdev),
            "mtime": self.mtime,
        }


_COMPARED = ("type", "content", "size", "mode", "uid", "gid", "linkname", "rdev")


@dataclass(frozen=True, slots=True)
class Change:
    """A path present in both trees that differs: ``fields`` names what changed, among
    ``type content size mode uid gid linkname rdev`` (mtimes are not compared)."""

    path: str
    fields: tuple[str, ...]
    a: Node
    b: Node

    def to_json(self) -> dict[str, Any]:
        ja, jb = self.a.to_json(), self.b.to_json()
        shown = {"content": "sha256"}
        return {
            "path": self.path,
            "fields": list(self.fields),
            "a": {f: ja[shown.get(f, f)] for f in self.fields},
            "b": {f: jb[shown.get(f, f)] for f in self.fields},
        }


@dataclass(frozen=True, slots=True)
class Diff:
    """Paths ``added`` (only in b), ``removed`` (only in a) and ``changed``, each sorted."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def __bool__(self) -> bool:
        """True when the trees differ, like a non-empty ``diff`` output."""
        return not self.identical

    def to_json(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": [c.to_json() for c in self.changed],
        }


def tree_path(name: str) -> str:
    """The path ``name`` creates in the kernel's rootfs, relative to its root (``""`` for it).

    >>> tree_path("./usr/../../bin//sh")
    'bin/sh'
    """
    path = posixpath.normpath("/" + name)
    return path.lstrip("/")


def image_tree(source: Any, *, digest: bool = True) -> dict[str, Node]:
    """The tree ``source`` (what :func:`~bootmem.initramfs.extract.stream_members` takes)
    produces under the kernel's rules, as path -> :class:`Node`, sorted by path.

    The paths of one hardlinked inode share one :class:`Node` object.  ``digest=False`` skips
    hashing the data (``sha256`` is then ``None`` for every file) when only sizes matter.
    """
    paths: dict[str, _Inode] = {}
    children: dict[str, int] = {}  # directory path -> number of entries directly under it
    links: dict[tuple[int, int, int, int, int, int], str] = {}

    def remove(path: str) -> bool:
        node = paths.get(path)
        if node is None:
            return True
        if node.ftype == stat.S_IFDIR and children.get(path):
            return False  # rmdir of a non-empty directory fails; so will the create
        del paths[path]
        parent = posixpath.dirname(path)
        children[parent] = children.get(parent, 1) - 1
        return True

    def add(path: str, node: _Inode) -> None:
        paths[path] = node
        parent = posixpath.dirname(path)
        children[parent] = children.get(parent, 0) + 1

    for entry, reader in stream_members(source):
        path = tree_path(entry.name)
        ftype = stat.S_IFMT(entry.c_mode)
        if not path:
            if ftype != stat.S_IFDIR:
                _drain(reader)
            continue
        existing = paths.get(path)
        if existing is not None and (existing.ftype != ftype or ftype == stat.S_IFLNK) and not remove(path):
            _drain(reader)
            continue
        existing = paths.get(path)
        first = None
        if entry.c_nlink >= 2 and ftype != stat.S_IFDIR and ftype != stat.S_IFLNK:
            key = (entry.segment, entry.archive, *entry.link_key)
            first = links.get(key)
            if first is None:
                links[key] = path
        shared = paths.get(first) if first is not None else None
        if shared is not None and shared.ftype == ftype:
            if existing is not None:
                remove(path)
            add(path, shared)
            node = shared
        elif existing is not None:
            node = existing
        else:
            node = _Inode(ftype, 0, 0, 0)
            add(path, node)
        node.mode, node.uid, node.gid, node.mtime = entry.mode, entry.c_uid, entry.c_gid, entry.c_mtime
        if ftype == stat.S_IFREG:
            if (shared is None or entry.c_filesize) and digest:
                node.size, node.sha256 = _digest(reader)
            elif shared is None or entry.c_filesize:
                node.size = entry.c_filesize
            else:
                _drain(reader)
        elif ftype == stat.S_IFLNK:
            node.linkname = entry.linkname
            node.size = entry.c_filesize
        elif ftype in (stat.S_IFCHR, stat.S_IFBLK) and existing is None and shared is None:
            node.rdev = entry.rdev
    frozen: dict[int, Node] = {}
    return {p: _freeze(paths[p], frozen, digest) for p in sorted(paths)}


def _digest(reader: DataReader) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    for chunk in reader.iter_data(1 << 20):
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()


def _drain(reader: DataReader) -> None:
    for _ in reader.iter_data(1 << 20):
        pass


def _freeze(node: _Inode, frozen: dict[int, Node], digest: bool) -> Node:
    done = frozen.get(id(node))
    if done is None:
        kind = Entry(name="", c_mode=node.ftype).type
        sha = (node.sha256 or _EMPTY) if node.ftype == stat.S_IFREG and digest else None
        done = Node(kind, node.mode, node.uid, node.gid, node.size, sha, node.linkname, node.rdev, node.mtime)
        frozen[id(node)] = done
    return done


def compare_trees(a: dict[str, Node], b: dict[str, Node]) -> Diff:
    """The :class:`Diff` from tree ``a`` to tree ``b``."""
    changed: list[Change] = []
    for path in sorted(a.keys() & b.keys()):
        na, nb = a[path], b[path]
        fields = tuple(f for f in _COMPARED if _value(na, f) != _value(nb, f))
        if fields:
            changed.append(Change(path, fields, na, nb))
    return Diff(
        added=sorted(b.keys() - a.keys()),
        removed=sorted(a.keys() - b.keys()),
        changed=changed,
    )


def _value(node: Node, what: str) -> object:
    return node.sha256 if what == "content" else getattr(node, what)


def diff_images(a: Any, b: Any) -> Diff:
    """Compare the trees images ``a`` and ``b`` produce (paths, images, files or bytes)."""
    return compare_trees(image_tree(a), image_tree(b))

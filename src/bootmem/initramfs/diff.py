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

Sizes answer "why did the image grow?": each added and removed path carries its size, each
changed one its size change, and :class:`SegmentChange` gives, for each segment index, the bytes
it takes in each image file and the bytes of file data whose last entry lies in it.
"""

from __future__ import annotations

import hashlib
import posixpath
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bootmem.initramfs.cpio import Entry
from bootmem.initramfs.extract import DataReader, stream_members
from bootmem.initramfs.image import Image, Segment
from bootmem.initramfs.image import open as open_image
from bootmem.initramfs.select import Selection

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
    segment: int = 0


@dataclass(frozen=True, slots=True)
class Node:
    """What is at one path of the tree: ``type`` is ``d f l c b p s``; ``sha256`` (regular files)
    and ``linkname`` (symlinks) are ``None`` for other types; ``segment`` is the segment of the
    path's last entry."""

    type: str
    mode: int
    uid: int
    gid: int
    size: int
    sha256: str | None
    linkname: str | None
    rdev: tuple[int, int]
    mtime: int
    segment: int

    @property
    def data_size(self) -> int:
        """Bytes of file data: ``size`` for a regular file, 0 for every other type."""
        return self.size if self.type == "f" else 0

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
            "segment": self.segment,
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
            "size_change": self.size_change,
        }

    @property
    def size_change(self) -> int:
        """Bytes of file data b holds at this path more than a (negative when fewer)."""
        return self.b.data_size - self.a.data_size


@dataclass(frozen=True, slots=True)
class Sizes:
    """Bytes in image a and in image b (``None`` where that image has no such thing)."""

    a: int | None
    b: int | None

    @property
    def change(self) -> int:
        return (self.b or 0) - (self.a or 0)

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "change": self.change}


@dataclass(frozen=True, slots=True)
class SegmentChange:
    """Segment ``index`` of both images: its ``compression`` in each (``None`` where the image has
    no such segment), the ``image`` bytes it takes in each file, and the bytes of ``file_data``
    of the compared tree whose last entry lies in it (a hardlinked file once)."""

    index: int
    compression: tuple[str | None, str | None]
    image: Sizes
    file_data: Sizes

    def to_json(self) -> dict[str, Any]:
        a, b = self.compression
        return {
            "index": self.index,
            "compression": {"a": a, "b": b},
            "image_bytes": self.image.to_json(),
            "file_bytes": self.file_data.to_json(),
        }


@dataclass(frozen=True, slots=True)
class Diff:
    """Paths ``added`` (only in b), ``removed`` (only in a) and ``changed``, each sorted;
    ``a`` and ``b`` are the trees compared, ``segments`` the sizes segment by segment."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    a: dict[str, Node] = field(default_factory=dict, repr=False)
    b: dict[str, Node] = field(default_factory=dict, repr=False)
    segments: list[SegmentChange] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def __bool__(self) -> bool:
        """True when the trees differ, like a non-empty ``diff`` output."""
        return not self.identical

    @property
    def added_bytes(self) -> int:
        """Bytes of file data of the added paths (a hardlinked file once)."""
        return _data_bytes(self.b[p] for p in self.added)

    @property
    def removed_bytes(self) -> int:
        """Bytes of file data of the removed paths (a hardlinked file once)."""
        return _data_bytes(self.a[p] for p in self.removed)

    @property
    def changed_bytes(self) -> int:
        """The net change in bytes of file data of the changed paths (a hardlinked file once)."""
        return _data_bytes(c.b for c in self.changed) - _data_bytes(c.a for c in self.changed)

    @property
    def image(self) -> Sizes:
        """Bytes of the compared segments in each image file (NUL padding between them aside)."""
        return Sizes(sum(s.image.a or 0 for s in self.segments), sum(s.image.b or 0 for s in self.segments))

    @property
    def file_data(self) -> Sizes:
        """Bytes of file data of each compared tree (a hardlinked file once)."""
        return Sizes(_data_bytes(self.a.values()), _data_bytes(self.b.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "added": [_path_json(p, self.b[p]) for p in self.added],
            "removed": [_path_json(p, self.a[p]) for p in self.removed],
            "changed": [c.to_json() for c in self.changed],
            "segments": [s.to_json() for s in self.segments],
            "total": {
                "image_bytes": self.image.to_json(),
                "file_bytes": self.file_data.to_json(),
                "added_bytes": self.added_bytes,
                "removed_bytes": self.removed_bytes,
                "changed_bytes": self.changed_bytes,
            },
        }


def _path_json(path: str, node: Node) -> dict[str, Any]:
    return {"path": path, "type": node.type, "size": node.data_size, "segment": node.segment}


def _data_bytes(nodes: Iterable[Node]) -> int:
    """Bytes of file data of ``nodes``, each hardlinked inode (one shared :class:`Node`) once."""
    return sum(node.data_size for node in {id(node): node for node in nodes}.values())


def tree_path(name: str) -> str:
    """The path ``name`` creates in the kernel's rootfs, relative to its root (``""`` for it).

    >>> tree_path("./usr/../../bin//sh")
    'bin/sh'
    """
    path = posixpath.normpath("/" + name)
    return path.lstrip("/")


def image_tree(source: Any, *, digest: bool = True, selection: Selection | None = None) -> dict[str, Node]:
    """The tree ``source`` (what :func:`~bootmem.initramfs.extract.stream_members` takes)
    produces under the kernel's rules, as path -> :class:`Node`, sorted by path.

    The paths of one hardlinked inode share one :class:`Node` object.  ``digest=False`` skips
    hashing the data (``sha256`` is then ``None`` for every file) when only sizes matter.
    ``selection``: only the entries of its segments are replayed, and only the paths its
    patterns choose are kept.
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
        if selection is not None and not selection.in_segments(entry):
            _drain(reader)
            continue
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
        node.segment = entry.segment
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
    kept = sorted(p for p in paths if selection is None or selection.matches_path(p))
    return {p: _freeze(paths[p], frozen, digest) for p in kept}


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
        done = Node(
            kind,
            node.mode,
            node.uid,
            node.gid,
            node.size,
            sha,
            node.linkname,
            node.rdev,
            node.mtime,
            node.segment,
        )
        frozen[id(node)] = done
    return done


def compare_trees(
    a: dict[str, Node], b: dict[str, Node], segments: list[SegmentChange] | None = None
) -> Diff:
    """The :class:`Diff` from tree ``a`` to tree ``b``; ``segments`` as :func:`segment_changes` says."""
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
        a=a,
        b=b,
        segments=segments or [],
    )


def _value(node: Node, what: str) -> object:
    return node.sha256 if what == "content" else getattr(node, what)


def segment_changes(
    a: list[Segment],
    b: list[Segment],
    tree_a: dict[str, Node],
    tree_b: dict[str, Node],
    selection: Selection | None = None,
) -> list[SegmentChange]:
    """Segment by segment index, what images ``a`` and ``b`` hold (:class:`SegmentChange`);
    only the segments ``selection`` chooses."""
    data_a, data_b = _data_by_segment(tree_a), _data_by_segment(tree_b)
    changes: list[SegmentChange] = []
    for index in range(max(len(a), len(b))):
        if selection is not None and selection.segments is not None and index not in selection.segments:
            continue
        sa, sb = (a[index] if index < len(a) else None), (b[index] if index < len(b) else None)
        changes.append(
            SegmentChange(
                index,
                (sa.compression if sa else None, sb.compression if sb else None),
                Sizes(sa.compressed_size if sa else None, sb.compressed_size if sb else None),
                Sizes(data_a.get(index, 0) if sa else None, data_b.get(index, 0) if sb else None),
            )
        )
    return changes


def _data_by_segment(tree: dict[str, Node]) -> dict[int, int]:
    """Bytes of file data whose last entry lies in each segment (a hardlinked file once)."""
    out: dict[int, int] = {}
    for node in {id(node): node for node in tree.values()}.values():
        out[node.segment] = out.get(node.segment, 0) + node.data_size
    return out


@contextmanager
def _opened(source: Any, max_decompressed: int | None) -> Iterator[Image]:
    if isinstance(source, Image):
        yield source
        return
    with open_image(source, max_decompressed=max_decompressed) as image:
        yield image


def diff_images(
    a: Any, b: Any, *, selection: Selection | None = None, max_decompressed: int | None = None
) -> Diff:
    """Compare the trees images ``a`` and ``b`` produce (paths, images, files or bytes), with
    their sizes segment by segment; ``selection`` (one for both images) limits both trees."""
    with _opened(a, max_decompressed) as image_a, _opened(b, max_decompressed) as image_b:
        tree_a = image_tree(image_a, selection=selection)
        tree_b = image_tree(image_b, selection=selection)
        segments = segment_changes(image_a.segments, image_b.segments, tree_a, tree_b, selection)
    return compare_trees(tree_a, tree_b, segments)

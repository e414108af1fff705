"""Differences between the trees two initramfs images produce.

Each image is replayed by :mod:`bootmem.kernel.unpack` (the one copy of ``init/initramfs.c``'s
entry rules, which the modelled rootfs and extraction use too) into a small model of the
resulting tree: later entries win (an existing path of another type is removed first - a
directory only when empty, as ``rmdir`` - and a regular file is truncated and rewritten);
hardlinks are matched by :attr:`Entry.link_key` within one archive and reset at each
``TRAILER!!!``, a later link sharing the first name's inode and its data, if any, replacing the
inode's; an existing device node of the same type is kept (``mknod`` fails with ``EEXIST``) while
its owner and mode are updated.  Names are looked up from the root as the kernel's calls look
them up (``..`` stops at the root, symlinks in parent components are followed), and an entry
whose parent is missing, or not a directory, when it comes is dropped, as Linux drops it: a
directory archived later does not bring it back.

Content is compared by SHA-256, computed while the data streams; nothing is kept in memory but
one digest per file.

Sizes answer "why did the image grow?": each added and removed path carries its size, each
changed one its size change, and :class:`SegmentChange` gives, for each segment index, the bytes
it takes in each image file and the bytes of file data whose last entry lies in it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bootmem.errors import ImageError
from bootmem.initramfs.cpio import Entry
from bootmem.initramfs.image import Image, Segment
from bootmem.initramfs.image import open as open_image
from bootmem.initramfs.select import Selection
from bootmem.kernel.unpack import kernel_rdev, unpack_image
from bootmem.units import PAGE_SIZE

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


def image_tree(
    source: Any, *, digest: bool = True, selection: Selection | None = None, strict: bool = True
) -> dict[str, Node]:
    """The tree ``source`` (an image, or what :func:`bootmem.initramfs.open` takes) produces
    under the kernel's rules, as path -> :class:`Node`, sorted by path (the root left out).

    The image goes through :mod:`bootmem.kernel.unpack`'s state machine, the one the modelled
    rootfs and extraction use, into a tree that keeps no data: so an entry the kernel skips or
    drops (its parent missing or not a directory, at the time it comes) is not in the tree.  An
    error in the image (the kernel's "Initramfs unpacking failed") is raised as an
    :class:`~bootmem.errors.ImageError`; with ``strict=False`` the tree is what the kernel keeps,
    everything unpacked before the error.

    The paths of one hardlinked inode share one :class:`Node` object.  ``digest=False`` skips
    hashing the data (``sha256`` is then ``None`` for every file) when only sizes matter.
    ``selection``: only the entries of its segments are replayed, and only the paths its
    patterns choose are kept.
    """
    target = _TreeTarget(digest=digest, selection=selection)
    opened = source if isinstance(source, Image) else open_image(source)
    try:
        result = unpack_image(opened, target, max_decompressed=opened.max_decompressed)
    finally:
        if opened is not source:
            opened.close()
    if strict and result.error is not None:
        raise ImageError(result.error.detail)
    paths = target.paths
    frozen: dict[int, Node] = {}
    kept = sorted(p for p in paths if selection is None or selection.matches_path(p))
    return {p: _freeze(paths[p], frozen, digest) for p in kept}


#: Symlinks followed in one lookup before giving up (Linux's MAXSYMLINKS).
_MAXSYMLINKS = 40


class _TreeSink:
    """A regular file of the tree being written: its data hashed, not kept."""

    kernel_opened = True

    def __init__(self, node: _Inode, *, digest: bool, replaces: bool) -> None:
        self.node = node
        self.hash = hashlib.sha256() if digest else None
        self.replaces = replaces  # the content is this entry's (truncated, or a body given)
        self.written = 0

    def write(self, data: memoryview) -> int:
        if self.hash is not None:
            self.hash.update(data)
        self.written += len(data)
        return len(data)

    def close(self, mtime: int | None) -> None:
        node = self.node
        if self.hash is not None and self.replaces:
            missing = node.size - self.written  # a body cut short: the rest of the size reads as zeros
            while missing > 0:
                self.hash.update(bytes(min(missing, 1 << 20)))
                missing -= 1 << 20
            node.sha256 = self.hash.hexdigest()
        if mtime is not None:
            node.mtime = mtime


class _TreeTarget:
    """The kernel's filesystem calls (:class:`bootmem.kernel.unpack.Target`) on a tree of paths
    without data, as Linux's rootfs takes them: a name is looked up component by component from
    the root, symlinks on the way followed, so a missing parent (or one that is not a
    directory) fails the call; ``rmdir`` fails on a non-empty directory; ``mkdir``, ``mknod``
    and ``symlink`` fail on an existing name; ``chown`` with ``-1`` leaves the id."""

    def __init__(self, *, digest: bool, selection: Selection | None) -> None:
        self.digest = digest
        self.selection = selection
        self.root = _Inode(stat.S_IFDIR, 0o755, 0, 0)
        self.paths: dict[str, _Inode] = {}
        self.children: dict[str, int] = {}  # directory path -> entries directly under it

    def _node(self, path: str) -> _Inode | None:
        return self.root if path == "" else self.paths.get(path)

    def _lookup(self, name: str, *, follow: bool) -> str | None:
        """The path ``name`` names (existing or not), its parent an existing directory; ``None``
        when the lookup fails (a missing or non-directory component, too many symlinks)."""
        parts = [p for p in name.split("/") if p and p != "."]
        parts.reverse()
        path, links = "", 0
        while parts:
            part = parts.pop()
            if part == "..":
                path = posixpath.dirname(path)
                continue
            here = f"{path}/{part}" if path else part
            node = self.paths.get(here)
            if node is not None and node.ftype == stat.S_IFLNK and (parts or follow):
                links += 1
                target = node.linkname or ""
                if links > _MAXSYMLINKS or not target:
                    return None
                if target.startswith("/"):
                    path = ""
                parts.extend(reversed([p for p in target.split("/") if p and p != "."]))
                continue
            if not parts:
                return here
            if node is None or node.ftype != stat.S_IFDIR:
                return None
            path = here
        return path

    def _new(self, name: str) -> str | None:
        """The path for a new ``name``: ``None`` when the lookup fails or the name exists."""
        path = self._lookup(name, follow=False)
        return None if path is None or self._node(path) is not None else path

    def _add(self, path: str, node: _Inode) -> None:
        self.paths[path] = node
        parent = posixpath.dirname(path)
        self.children[parent] = self.children.get(parent, 0) + 1

    def _attributes(self, node: _Inode, entry: Entry, *, mode: bool = True) -> None:
        if entry.c_uid != 0xFFFFFFFF:
            node.uid = entry.c_uid
        if entry.c_gid != 0xFFFFFFFF:
            node.gid = entry.c_gid
        if mode:
            node.mode = entry.mode
        node.segment = entry.segment

    def accept(self, entry: Entry) -> Entry | None:
        if self.selection is not None and not self.selection.in_segments(entry):
            return None
        return entry

    def clean_path(self, name: str, fmode: int) -> None:
        path = self._lookup(name, follow=False)
        node = None if path is None else self._node(path)
        if path and node is not None and node.ftype != stat.S_IFMT(fmode):
            if node.ftype == stat.S_IFDIR and self.children.get(path):
                return  # rmdir fails on a non-empty directory
            del self.paths[path]
            self.children.pop(path, None)
            parent = posixpath.dirname(path)
            self.children[parent] -= 1

    def link(self, old: str, new: str) -> bool:
        path = self._lookup(old, follow=False)
        node = None if path is None else self._node(path)
        target = self._new(new)
        if node is None or node.ftype == stat.S_IFDIR or target is None:
            return False
        self._add(target, node)
        return True

    def open(self, entry: Entry, *, truncate: bool) -> _TreeSink | None:
        path = self._lookup(entry.name, follow=True)
        if path is None:
            return None
        node = self._node(path)
        if node is None:
            node = _Inode(stat.S_IFREG, 0, 0, 0, sha256=_EMPTY)
            self._add(path, node)
        elif node.ftype != stat.S_IFREG:
            return None
        elif truncate:
            node.size, node.sha256 = 0, _EMPTY
        self._attributes(node, entry)
        if entry.c_filesize:
            node.size = entry.c_filesize
        return _TreeSink(node, digest=self.digest, replaces=truncate or bool(entry.c_filesize))

    def mkdir(self, entry: Entry) -> None:
        path = self._new(entry.name)
        if path is not None:
            self._add(path, _Inode(stat.S_IFDIR, 0, 0, 0))
        self._chown_chmod(entry)

    def _chown_chmod(self, entry: Entry) -> None:
        path = self._lookup(entry.name, follow=True)
        node = None if path is None else self._node(path)
        if node is not None:
            self._attributes(node, entry)

    def mknod(self, entry: Entry) -> None:
        path = self._new(entry.name)
        if path is not None:
            ftype = stat.S_IFMT(entry.c_mode)
            self._add(path, _Inode(ftype, 0, 0, 0, rdev=kernel_rdev(*entry.rdev)))
        self._chown_chmod(entry)
        self.utime(entry.name, entry.c_mtime)

    def symlink(self, entry: Entry) -> None:
        path = self._new(entry.name)
        if path is None or len(os.fsencode(entry.linkname or "")) + 1 > PAGE_SIZE:
            return  # shmem_symlink: ENAMETOOLONG (rootfs is tmpfs unless root= is given)
        node = _Inode(stat.S_IFLNK, 0o777, 0, 0, linkname=entry.linkname or "", size=entry.c_filesize)
        self._add(path, node)
        self._attributes(node, entry, mode=False)
        node.mtime = entry.c_mtime

    def utime(self, name: str, mtime: int) -> None:
        path = self._lookup(name, follow=False)
        node = None if path is None else self._node(path)
        if node is not None:
            node.mtime = mtime


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

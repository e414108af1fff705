"""Where the rootfs's memory goes, directory by directory: ``bootmem du``.

The tree is the one the kernel builds from the image (:func:`bootmem.initramfs.diff.image_tree`:
later entries win, hardlinks share one inode).  A regular file's data takes whole pages of tmpfs
(``shmem``), a hardlinked inode counted once, as ``du`` does; a symlink whose target is 128 bytes
or longer takes a page too (``shmem_symlink``: targets up to ``SHORT_SYMLINK_LEN`` including the
NUL live in the inode); directories and device nodes take no data pages.

>>> from bootmem.initramfs.diff import Node
>>> f = Node("f", 0o644, 0, 0, 5000, None, None, (0, 0), 0, 0)
>>> g = Node("f", 0o755, 0, 0, 100, None, None, (0, 0), 0, 0)
>>> d = Node("d", 0o755, 0, 0, 0, None, None, (0, 0), 0, 0)
>>> u = directory_usage({"bin": d, "bin/a": f, "bin/b": f, "init": g})  # bin/a, bin/b: hardlinks
>>> u["bin"].pages, u["bin"].bytes, u["."].pages, u["."].bytes, u["."].files, u["."].entries
(2, 5000, 3, 5100, 2, 4)
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from bootmem.initramfs.diff import Node
from bootmem.units import PAGE_SIZE, align_up

# mm/shmem.c: a symlink target of up to SHORT_SYMLINK_LEN bytes, NUL included, is kept in the inode.
SHORT_SYMLINK_LEN = 128


@dataclass(slots=True)
class Usage:
    """One directory's total, everything under it included: ``bytes`` of file data (apparent
    size), ``pages`` of tmpfs it takes, ``files`` (inodes with data pages) and ``entries`` (paths)."""

    bytes: int = 0
    pages: int = 0
    files: int = 0
    entries: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "pages": self.pages, "kib": self.pages * PAGE_SIZE // 1024,
                "files": self.files, "entries": self.entries}  # fmt: skip


def node_pages(node: Node) -> int:
    """The tmpfs pages one inode's data takes."""
    if node.type == "f":
        return align_up(node.size, PAGE_SIZE) // PAGE_SIZE
    if node.type == "l" and node.linkname is not None and len(node.linkname.encode()) + 1 > SHORT_SYMLINK_LEN:
        return 1
    return 0


def directory_usage(tree: dict[str, Node]) -> dict[str, Usage]:
    """Each directory of ``tree`` (``"."`` is the root) with the :class:`Usage` of everything
    under it; an inode shared by several paths (hardlinks) counts once, at the first of its
    paths in sorted order, as ``du`` counts it."""
    totals: dict[str, Usage] = {".": Usage()}
    seen: set[int] = set()  # inodes already counted (hardlinks), as du counts them once
    for path, node in tree.items():
        if node.type == "d":
            totals.setdefault(path, Usage())
        first = id(node) not in seen
        seen.add(id(node))
        pages = node_pages(node) if first else 0
        size = node.size if first and node.type == "f" else 0
        files = 1 if first and (pages or node.type == "f") else 0
        for where in _ancestors(posixpath.dirname(path) or "."):
            usage = totals.setdefault(where, Usage())
            usage.entries += 1
            usage.bytes += size
            usage.pages += pages
            usage.files += files
    return totals


def _ancestors(directory: str) -> list[str]:
    out = []
    while directory not in (".", ""):
        out.append(directory)
        directory = posixpath.dirname(directory)
    out.append(".")
    return out


__all__ = ["SHORT_SYMLINK_LEN", "Usage", "directory_usage", "node_pages"]

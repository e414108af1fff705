"""What a path of the unpacked image holds: the entry whose data the kernel leaves there.

The kernel unpacks every segment in order, so the last entry of a path wins; a hardlink of a
newc archive carries its data on one link only (GNU cpio: the last), and the others share it
(``find_link`` in init/initramfs.c matches them by (ino, major, minor, type) within one archive);
symlinks are followed inside the image, as a shell in the booted system would.

:func:`locate` finds, in one pass without data, the entry that holds each path's data;
:func:`locate_selected` finds every regular file a :class:`~bootmem.initramfs.select.Selection`
chooses; :func:`iter_data` and :func:`copy_data` stream their data.  Memory does not grow with
the image.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from bootmem.errors import ImageError
from bootmem.initramfs.cpio import Entry
from bootmem.initramfs.image import Image
from bootmem.initramfs.select import Selection, normalise

#: Symlinks followed before giving up, as Linux's MAXSYMLINKS.
MAX_SYMLINKS = 40


class NotInImageError(ImageError, FileNotFoundError):
    """A path the image does not create (or a symlink that leads out of it)."""


class NotAFileError(ImageError, IsADirectoryError):
    """A path the image creates, but not as a regular file."""


@dataclass(frozen=True, slots=True)
class Located:
    """Where ``path``'s data is: ``entry`` is the path's own (last) entry after symlinks,
    ``data`` the entry carrying the data (another link of the same inode, for a hardlink)."""

    path: str
    entry: Entry
    data: Entry


LinkKey = tuple[int, int, int, int, int, int]


def _key(entry: Entry) -> LinkKey:
    return (entry.segment, entry.archive, *entry.link_key)


def _final_entries(
    image: Image, selection: Selection | None = None
) -> tuple[dict[str, Entry], dict[LinkKey, Entry]]:
    """One pass without data: the last entry of each path (of those ``selection`` chooses, when
    given) and, by link key, the entry of each hardlinked inode that carries its data."""
    final: dict[str, Entry] = {}
    with_data: dict[LinkKey, Entry] = {}
    for entry, _reader in image.stream():
        if selection is None or selection.matches(entry):
            final[normalise(entry.name)] = entry
        if entry.isreg() and entry.c_nlink >= 2 and entry.c_filesize:
            with_data[_key(entry)] = entry
    return final, with_data


def _located(path: str, entry: Entry, with_data: dict[LinkKey, Entry]) -> Located:
    data = entry
    if entry.c_nlink >= 2 and not entry.c_filesize:
        data = with_data.get(_key(entry), entry)
    return Located(path, entry, data)


def locate(image: Image, paths: Iterable[str]) -> list[Located]:
    """The :class:`Located` of each of ``paths``, in order, found in one pass over ``image``.

    Raises :class:`NotInImageError` naming the first path the image does not create and
    :class:`NotAFileError` for one that is not a regular file.
    """
    final, with_data = _final_entries(image)
    found: list[Located] = []
    for path in paths:
        entry, where = follow(final, normalise(path), path)
        if not entry.isreg():
            raise NotAFileError(f"{path!r} is a {_kind(entry)} in the image, not a regular file")
        found.append(_located(where, entry, with_data))
    return found


def locate_selected(image: Image, selection: Selection) -> list[Located]:
    """The regular files ``selection`` chooses in the tree ``image`` unpacks to, one pass.

    A path's last entry among the selected segments wins; symlinks are not followed (as
    ``tar -xO``).  The files come in image order of the entries carrying their data, and the
    names of one hardlinked inode once, so their data is written once, as ``bsdtar -xO`` writes a
    newc archive's.  What selected nothing is left in ``selection.unmatched()``.
    """
    final, with_data = _final_entries(image, selection)
    found: dict[tuple[int, int], Located] = {}
    for path, entry in final.items():
        if entry.isreg():
            located = _located(path, entry, with_data)
            found.setdefault((located.data.segment, located.data.offset), located)
    return [found[k] for k in sorted(found)]


def follow(final: dict[str, Entry], path: str, asked: str) -> tuple[Entry, str]:
    """The entry at ``path`` with symlinks in every component followed, as path lookup does."""
    todo = [p for p in reversed(path.split("/")) if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        where = "/".join([*done, part])
        entry = final.get(where)
        if entry is None:
            via = "" if where == path else f" (followed to {where!r})"
            raise NotInImageError(f"{asked!r} is not in the image{via}")
        if entry.issym() and entry.linkname is not None:
            hops += 1
            if hops > MAX_SYMLINKS:
                raise NotInImageError(f"{asked!r}: too many levels of symbolic links")
            if entry.linkname.startswith("/"):
                done = []
            todo.extend(p for p in reversed(entry.linkname.split("/")) if p not in ("", "."))
            continue
        done.append(part)
    where = "/".join(done) or "."
    root = final.get(where)
    if root is None:  # the root itself, which no entry need name
        raise NotAFileError(f"{asked!r} is the root directory, not a regular file")
    return root, where


def _kind(entry: Entry) -> str:
    return {"d": "directory", "l": "symlink", "c": "character device", "b": "block device",
            "p": "fifo", "s": "socket"}.get(entry.type, "special file")  # fmt: skip


def iter_data(
    image: Image, entries: Iterable[Entry], chunk_size: int = 1 << 20
) -> Iterator[tuple[Entry, bytes]]:
    """``(entry, chunk)`` for the data of each of ``entries``, in image order, in one pass."""
    wanted = {(e.segment, e.offset) for e in entries}
    if not wanted:
        return
    for entry, reader in image.stream():
        if (entry.segment, entry.offset) in wanted:
            for chunk in reader.iter_data(chunk_size):
                yield entry, chunk
            wanted.discard((entry.segment, entry.offset))
            if not wanted:
                return


def copy_data(image: Image, found: list[Located], out: BinaryIO) -> None:
    """Write the data of each of ``found`` to ``out``, in that order, holding no file in memory:
    one pass when they come in image order, else a pass per file."""
    keys = [(f.data.segment, f.data.offset) for f in found]
    groups = [found] if keys == sorted(keys) and len(set(keys)) == len(keys) else [[f] for f in found]
    for group in groups:
        for _entry, chunk in iter_data(image, [f.data for f in group]):
            out.write(chunk)


__all__ = [
    "MAX_SYMLINKS",
    "Located",
    "NotAFileError",
    "NotInImageError",
    "copy_data",
    "follow",
    "iter_data",
    "locate",
    "locate_selected",
]

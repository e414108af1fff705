"""File types as ``find -type`` and ``ls -l`` spell them: one letter per ``S_IFMT`` value."""

from __future__ import annotations

import stat

TYPE_CHARS = {
    stat.S_IFDIR: "d",
    stat.S_IFREG: "f",
    stat.S_IFLNK: "l",
    stat.S_IFCHR: "c",
    stat.S_IFBLK: "b",
    stat.S_IFIFO: "p",
    stat.S_IFSOCK: "s",
}


def type_char(mode: int) -> str:
    """``d f l c b p s`` for the file type in ``mode``; ``?`` for one Linux does not create.

    >>> type_char(0o120777), type_char(0o060660), type_char(0o170000)
    ('l', 'b', '?')
    """
    return TYPE_CHARS.get(stat.S_IFMT(mode), "?")

"""Choosing entries of an image: by path pattern and by segment.

``ls``, ``extract`` and ``diff`` take the same selection: glob patterns over the entry's
path as the kernel creates it (a leading ``./`` or ``/`` is dropped), and segment numbers.

A pattern selects a path when it matches the whole path or one of the path's leading
directories, as tar's member arguments do: ``usr/lib`` selects ``usr/lib`` and everything under
it.  ``*`` and ``?`` stay within one path component, ``[...]`` is a character class, and ``**``
matches any number of components, so ``usr/lib/modules/**/*.ko`` is every kernel module.

>>> s = Selection(["usr/lib/modules/**/*.ko", "etc"])
>>> [s.matches_path(p) for p in ("usr/lib/modules/6.1/kernel/fs/ext4.ko", "etc/fstab", "bin/sh")]
[True, True, False]
>>> s.unmatched()
[]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cache

from bootmem.errors import UsageError
from bootmem.initramfs.cpio import Entry


def normalise(name: str) -> str:
    """``name`` as a path relative to the root: leading ``./`` and ``/`` dropped, ``"."`` for the root.

    >>> normalise("./usr/bin"), normalise("/init"), normalise("."), normalise("./")
    ('usr/bin', 'init', '.', '.')
    """
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/") or "."


@cache
def _compile(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (close := _class_end(pattern, i)) > 0:
            body = pattern[i + 1 : close]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = close + 1
        else:
            out.append(re.escape(c))
            i += 1
    # The pattern matches the path itself or one of its leading directories.
    return re.compile("(?s)" + "".join(out) + "(?:/.*)?")


def _class_end(pattern: str, at: int) -> int:
    """Where the character class opening at ``pattern[at]`` closes, or -1 (then ``[`` is literal)."""
    start = at + 1
    if pattern[start : start + 1] in ("!", "^"):
        start += 1
    return pattern.find("]", start + 1)  # a "]" right after "[" or "[!" belongs to the class


def parse_segments(text: str) -> frozenset[int]:
    """``"0,2"`` as ``{0, 2}``; :class:`UsageError` naming the bad word otherwise.

    >>> sorted(parse_segments("1,0"))
    [0, 1]
    """
    numbers: set[int] = set()
    for word in text.split(","):
        if not word.strip().isdigit():
            raise UsageError(f"bad segment number {word!r} in {text!r} (expected N or N,M,...)")
        numbers.add(int(word))
    return frozenset(numbers)


class Selection:
    """Which entries a command works on: ``patterns`` (all when empty) and ``segments`` (all when ``None``).

    :meth:`unmatched` names the patterns and segments that selected nothing, so a command can say so.
    """

    def __init__(self, patterns: Sequence[str] = (), segments: Iterable[int] | None = None) -> None:
        self.patterns = [normalise(p) for p in patterns]
        self.segments = frozenset(segments) if segments is not None else None
        self._regexes = [_compile(p) for p in self.patterns]
        self._hit_patterns = [False] * len(self.patterns)
        self._hit_segments: set[int] = set()

    @property
    def everything(self) -> bool:
        """Whether every entry is selected."""
        return not self.patterns and self.segments is None

    def matches_path(self, path: str) -> bool:
        """Whether normalised ``path`` is selected by the patterns (segments aside)."""
        if not self._regexes:
            return True
        hit = False
        for i, regex in enumerate(self._regexes):
            if regex.fullmatch(path):
                self._hit_patterns[i] = hit = True
        return hit

    def in_segments(self, entry: Entry) -> bool:
        """Whether ``entry``'s segment is selected (patterns aside)."""
        if self.segments is None:
            return True
        if entry.segment not in self.segments:
            return False
        self._hit_segments.add(entry.segment)
        return True

    def matches(self, entry: Entry) -> bool:
        """Whether ``entry`` is selected."""
        return self.in_segments(entry) and self.matches_path(normalise(entry.name))

    def scope(self, name: str) -> str:
        """Where the selection looks, for a message: ``name``, or ``segment 1 of name``.

        >>> Selection(["x"], [2, 0]).scope("'initrd.img'")
        "segments 0, 2 of 'initrd.img'"
        """
        if self.segments is None:
            return name
        which = ", ".join(str(n) for n in sorted(self.segments))
        return f"segment{'s' if len(self.segments) > 1 else ''} {which} of {name}"

    def unmatched(self) -> list[str]:
        """What selected nothing so far, as words for a message: ``'usr/x*'``, ``segment 9``."""
        missing = [repr(p) for p, hit in zip(self.patterns, self._hit_patterns, strict=True) if not hit]
        if self.segments is not None:
            missing += [f"segment {n}" for n in sorted(self.segments - self._hit_segments)]
        return missing


__all__ = ["Selection", "normalise", "parse_segments"]

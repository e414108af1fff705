"""Small multi-segment images for the stress tests, built in memory and fully known.

:func:`small_image` is what a distribution ships, in miniature: a raw early archive (CPU
microcode), NUL padding to a 4-byte boundary and beyond, then a compressed main archive with
directories, files of a few bytes to several pages, a hardlink pair and a symlink.
:data:`EARLY` and :data:`MAIN` list the entries, so tests can say what a correct (partial)
result is.
"""

from __future__ import annotations

import random
import stat

from bootmem.initramfs.compress import compress
from bootmem.initramfs.cpio import Entry
from tests.initramfs.corpus import MTIME, archive

_rng = random.Random(6)


def _data(n: int) -> bytes:
    word = _rng.randbytes(13)
    return (_rng.randbytes(n // 16) + word * n)[:n]


def _file(name: str, data: bytes, **fields: int) -> tuple[Entry, bytes]:
    return Entry(name, stat.S_IFREG | 0o644, c_mtime=MTIME, c_filesize=len(data), **fields), data


def _dir(name: str) -> tuple[Entry, bytes]:
    return Entry(name, stat.S_IFDIR | 0o755, c_nlink=2, c_mtime=MTIME), b""


BUSYBOX = _data(3 * 4096 + 100)
EARLY: list[tuple[Entry, bytes]] = [
    _dir("kernel"),
    _dir("kernel/x86"),
    _dir("kernel/x86/microcode"),
    _file("kernel/x86/microcode/GenuineIntel.bin", _data(700)),
]
MAIN: list[tuple[Entry, bytes]] = [
    _dir("bin"),
    _dir("etc"),
    _dir("lib"),
    _file("bin/busybox", BUSYBOX, c_ino=10, c_nlink=2),
    _file("bin/sh", BUSYBOX, c_ino=10, c_nlink=2),
    (Entry("init", stat.S_IFLNK | 0o777, c_mtime=MTIME, linkname="bin/sh"), b""),
    _file("etc/fstab", b"proc /proc proc defaults 0 0\n"),
    _file("etc/empty", b""),
    _file("lib/libc.so", _data(2 * 4096)),
    _file("lib/module.ko", _data(4096)),
    _file("lib/tiny", b"x"),
]
#: The regular files of the image and their final contents (later entries win).
FILES: dict[str, bytes] = {"/" + e.name: data for e, data in EARLY + MAIN if stat.S_ISREG(e.c_mode)}
#: Every path the image creates.
PATHS = {"/" + e.name for e, _ in EARLY + MAIN}


def small_image(compression: str = "gzip", *, padding: int = 12) -> bytes:
    """The raw early archive, ``padding`` NULs (keep it a multiple of 4), the compressed main one."""
    early = archive(*EARLY)
    return early + b"\0" * padding + compress(archive(*MAIN), compression)


def entry_names() -> list[str]:
    """The names :func:`small_image` lists, in order."""
    return [e.name for e, _ in EARLY + MAIN]


def is_partial(content: bytes, full: bytes) -> bool:
    """Whether ``content`` is what Linux leaves of a file ``full`` cut short: a prefix of its data,
    then zeros, no longer than ``full`` (do_name truncates to ``c_filesize`` before do_copy
    writes; the model fills the hole with zeros, or stays short when it has no room for them)."""
    if len(content) > len(full):
        return False
    same = 0
    while same < len(content) and content[same] == full[same]:
        same += 1
    return not content[same:].strip(b"\0")

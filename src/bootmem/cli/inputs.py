"""Where a command's IMAGE comes from: a path, or ``-`` for standard input."""

from __future__ import annotations

import argparse
import sys
from typing import BinaryIO

from bootmem.errors import UsageError
from bootmem.initramfs.select import Selection, parse_segments

IMAGE_HELP = "the image: a file, a unified kernel image (its .initrd), or '-' for standard input"


def image_source(name: str) -> str | BinaryIO:
    """``name`` as :func:`bootmem.initramfs.open` takes it: standard input's bytes for ``-``
    (a pipe is read once, as it comes; a redirected file is read in place), else the path."""
    return sys.stdin.buffer if name == "-" else name


MAX_SIZE_HELP = (
    "stop with an error once the image's compressed members decompress past SIZE bytes "
    "(default: 64 times their compressed size, at least 256M; NUL padding does not count), "
    "or once an image read from a pipe passes SIZE bytes (default 4G)"
)
BOOT_MAX_SIZE_HELP = (
    "stop the unpack ('decompressor failed') once the initrd's members decompress past SIZE bytes "
    "(default: twice the RAM, which no rootfs can pass)"
)


def add_max_size(parser: argparse.ArgumentParser, help: str = MAX_SIZE_HELP) -> None:
    """Add ``--max-size SIZE``, the cap on decompressed bytes, to a command that decompresses."""
    parser.add_argument("--max-size", metavar="SIZE", help=help)


def max_size(args: argparse.Namespace) -> int | None:
    """``--max-size`` in bytes, or None for the default; :class:`UsageError` naming a bad value."""
    text: str | None = getattr(args, "max_size", None)
    if text is None:
        return None
    from bootmem.units import parse_size  # here: only --max-size pays for its pattern

    size = parse_size(text)
    if size <= 0:
        raise UsageError(f"--max-size {text!r}: the cap must be more than 0 bytes")
    return size


PATTERN_HELP = "only paths matching these globs, or under them (`*` within a name, `**` across directories)"


def add_selection(parser: argparse.ArgumentParser, what: str = "entries") -> None:
    """Add ``PATTERN...`` (after the positionals added before) and ``--segment N[,M]``: the
    selection of :mod:`bootmem.initramfs.select` that ``ls``, ``extract`` and ``diff`` share."""
    parser.add_argument("patterns", metavar="PATTERN", nargs="*", help=PATTERN_HELP)
    parser.add_argument("--segment", metavar="N[,M]", help=f"only {what} of these segments (0 is the first)")


def selection(args: argparse.Namespace) -> Selection:
    """The :class:`Selection` that ``args.patterns`` and ``args.segment`` say."""
    return Selection(args.patterns, parse_segments(args.segment) if args.segment else None)

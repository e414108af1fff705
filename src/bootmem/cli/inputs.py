"""Where a command's IMAGE comes from: a path, or ``-`` for standard input."""

from __future__ import annotations

import sys
from typing import BinaryIO

IMAGE_HELP = "the image: a file, a unified kernel image (its .initrd), or '-' for standard input"


def image_source(name: str) -> str | BinaryIO:
    """``name`` as :func:`bootmem.initramfs.open` takes it: standard input's bytes for ``-``
    (a pipe is read once, as it comes; a redirected file is read in place), else the path."""
    return sys.stdin.buffer if name == "-" else name

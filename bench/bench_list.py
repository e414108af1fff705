"""Listing an image: ``bootmem ls`` side by side with bsdtar, GNU cpio, busybox cpio and
lsinitramfs, and the peak RSS of ``bootmem ls`` (it streams: it must not grow with the image).

bsdtar and both cpios stop at the first trailer, so they are given the compressed main member
alone (the work that dominates); the cpios cannot decompress zstd, xz or lz4 themselves, so the
member reaches them through the compressor's own ``-dc``.  ``bootmem ls`` and ``lsinitramfs``
are given the whole image and find the segments themselves.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from bench.images import DECOMPRESSORS, Image
from bench.timing import available, peak_rss_of_command

BOOTMEM = f"{sys.executable} -m bootmem"


def list_commands(image: Image, every_peer: bool = True) -> dict[str, str]:
    """The listing commands, ``bootmem ls`` first; without ``every_peer`` only bsdtar and GNU
    cpio beside it (busybox cpio and lsinitramfs take as long again and judge no goal)."""
    unpack = f"{DECOMPRESSORS[image.compression]} {image.member}"
    commands = {
        "bootmem ls": f"{BOOTMEM} ls {image.path}",
        "bsdtar -tf": f"bsdtar -tf {image.member}",
        "cpio -t": f"{unpack} | cpio -t --quiet",
        "busybox cpio -t": f"{unpack} | busybox cpio -t 2>/dev/null",
        "lsinitramfs": f"lsinitramfs {image.path}",
    }
    if not every_peer:
        del commands["busybox cpio -t"], commands["lsinitramfs"]
    return commands


def list_contenders(image: Image, every_peer: bool = True) -> dict[str, Callable[[], object]]:
    return available(list_commands(image, every_peer))


def ls_peak_rss(image: Image) -> int:
    """Peak RSS in bytes of ``bootmem ls`` on ``image``, in a fresh process."""
    return peak_rss_of_command(list_commands(image)["bootmem ls"])

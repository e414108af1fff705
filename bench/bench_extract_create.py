"""Extraction and creation side by side with the peers.

- ``bootmem extract`` (the whole image) against ``bsdtar -xf`` and ``cpio -idm`` (GNU and busybox)
  of the main member alone - they stop at the first trailer, so given the whole image they would
  extract only the early segment - and ``unmkinitramfs`` (the whole image);
- ``bootmem create --compress zstd:3`` of the image's main tree against ``find | cpio -o -H newc |
  zstd -3`` (GNU and busybox cpio) and ``bsdtar --format newc -cf - . | zstd -3``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from bench.bench_list import BOOTMEM
from bench.images import DECOMPRESSORS, Image
from bench.timing import available


def extract_contenders(image: Image, out: Path) -> dict[str, Callable[[], object]]:
    """Extraction of ``image`` into ``out`` (which must exist and be empty before each run)."""
    unpack = f"{DECOMPRESSORS[image.compression]} {image.member}"
    return available(
        {
            "bootmem extract": f"{BOOTMEM} extract {image.path} {out}",
            "bsdtar -xf": f"cd {out} && bsdtar -xf {image.member}",
            "cpio -idm": f"{unpack} | (cd {out} && cpio -idm --quiet)",
            "busybox cpio -idm": f"{unpack} | (cd {out} && busybox cpio -idm 2>/dev/null)",
            "unmkinitramfs": f"unmkinitramfs {image.path} {out}",
        }
    )


def create_contenders(tree: Path, out: Path) -> dict[str, Callable[[], object]]:
    """Archiving ``tree`` into a zstd -3 newc image at ``out``."""
    find = f"cd {tree} && find . -mindepth 1"
    return available(
        {
            "bootmem create": f"{BOOTMEM} create {tree} -o {out} --compress zstd:3",
            "find | cpio -o | zstd -3": f"{find} | cpio -o -H newc --quiet | zstd -3 -q -c > {out}",
            "find | busybox cpio -o | zstd -3": (
                f"{find} | busybox cpio -o -H newc 2>/dev/null | zstd -3 -q -c > {out}"
            ),
            "bsdtar --format newc | zstd -3": (
                f"cd {tree} && bsdtar --format newc -cf - . | zstd -3 -q -c > {out}"
            ),
        }
    )


def empty_dir(path: Path) -> Callable[[], None]:
    """A reset for :func:`bench.timing.alternate`: ``path`` removed and made again, empty."""

    def reset() -> None:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)

    return reset

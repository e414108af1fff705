"""Extraction and creation side by side with the peers.

- ``bootmem extract`` (the whole image) against ``bsdtar -xf`` and ``cpio -idm`` (GNU and busybox)
  of the main member alone - they stop at the first trailer, so given the whole image they would
  extract only the early segment - and ``unmkinitramfs`` (the whole image);
- ``bootmem create --compress zstd:3`` of the image's main tree against ``find | cpio -o -H newc |
  zstd -3`` (GNU and busybox cpio) and ``bsdtar --format newc -cf - . | zstd -3``;
- ``bootmem create --compress zstd:19`` (libzstd's threads, one per core) and ``zstd:19,threads=0``
  against ``bsdtar --format newc | zstd -19``, zstd's own single-threaded default, and ``zstd -19
  -T0``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from bench.bench_list import BOOTMEM
from bench.images import DECOMPRESSORS, Image
from bench.timing import available


def extract_contenders(
    image: Image, out: Path, every_peer: bool = True, filter: str | None = None
) -> dict[str, Callable[[], object]]:
    """Extraction of ``image`` into ``out`` (which must exist and be empty before each run), with
    the default filter or ``filter``; without ``every_peer`` only bsdtar and GNU cpio beside
    ``bootmem extract``."""
    unpack = f"{DECOMPRESSORS[image.compression]} {image.member}"
    ours = f"bootmem extract --filter {filter}" if filter else "bootmem extract"
    commands = {
        ours: f"{BOOTMEM} extract {image.path} {out}" + (f" --filter {filter}" if filter else ""),
        "bsdtar -xf": f"cd {out} && bsdtar -xf {image.member}",
        "cpio -idm": f"{unpack} | (cd {out} && cpio -idm --quiet)",
        "busybox cpio -idm": f"{unpack} | (cd {out} && busybox cpio -idm 2>/dev/null)",
        "unmkinitramfs": f"unmkinitramfs {image.path} {out}",
    }
    if not every_peer:
        del commands["busybox cpio -idm"], commands["unmkinitramfs"]
    return available(commands)


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


def create19_contenders(tree: Path, out: Path) -> dict[str, Callable[[], object]]:
    """Archiving ``tree`` into a zstd -19 newc image at ``out``, in threads and in one."""
    bsdtar = f"cd {tree} && bsdtar --format newc -cf - ."
    create = f"{BOOTMEM} create {tree} -o {out} --compress"
    return available(
        {
            "bootmem create zstd:19": f"{create} zstd:19",
            "bootmem create zstd:19,threads=0": f"{create} zstd:19,threads=0",
            "bsdtar | zstd -19": f"{bsdtar} | zstd -19 -q -c > {out}",
            "bsdtar | zstd -19 -T0": f"{bsdtar} | zstd -19 -T0 -q -c > {out}",
        }
    )


def empty_dir(path: Path) -> Callable[[], None]:
    """A reset for :func:`bench.timing.alternate`: ``path`` removed and made again, empty."""

    def reset() -> None:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)

    return reset

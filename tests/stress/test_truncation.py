"""Truncation at every byte offset of a small multi-segment image (raw early + compressed main).

For each prefix of the image:

- ``bootmem.initramfs`` lists a prefix of the image's entries with their exact data, then
  either stops cleanly (the prefix ends between segments) or raises a
  :class:`~bootmem.errors.BootmemError`;
- ``unpack_to_rootfs`` returns (it never raises), and the rootfs holds exactly the paths of
  the first k entries for some k, every file complete but possibly the last one written (a
  prefix of its data), with exact accounting: ``check_invariants`` and allocated pages ==
  rootfs pages.
"""

from __future__ import annotations

import os
import stat

import pytest

import bootmem.initramfs
from bootmem.errors import BootmemError
from bootmem.fs.tmpfs import Tmpfs
from bootmem.kernel.unpack import unpack_to_rootfs
from bootmem.mm import PageAllocator
from tests.initramfs.corpus import archive
from tests.stress.images import EARLY, FILES, MAIN, is_partial, small_image

COMPRESSIONS = ("gzip", "zstd", "xz", "lz4")
ENTRIES = EARLY + MAIN
PREFIX_PATHS = [{"/" + e.name for e, _ in ENTRIES[:k]} for k in range(len(ENTRIES) + 1)]


def _listed(data: bytes) -> tuple[list[tuple[str, bytes]], BootmemError | None]:
    got: list[tuple[str, bytes]] = []
    try:
        with bootmem.initramfs.open(data) as image:
            for entry, reader in image.stream():
                body = reader.read_data()
                got.append((entry.name, os.fsencode(entry.linkname) if entry.issym() else body))
    except BootmemError as exc:
        return got, exc
    return got, None


def _expected(entries: list[tuple[bootmem.initramfs.Entry, bytes]]) -> list[tuple[str, bytes]]:
    return [(e.name, os.fsencode(e.linkname) if e.issym() else data) for e, data in entries]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_listing_every_prefix(compression: str) -> None:
    image = small_image(compression)
    early_end = len(archive(*EARLY))
    full = _expected(ENTRIES)
    for n in range(len(image) + 1):
        got, error = _listed(image[:n])
        assert got == full[: len(got)], f"prefix {n}: entries differ from the image's"
        if error is None:
            # A clean end is the empty image, the early archive alone (its trailer's last padding
            # bytes may be missing: the kernel does not look for them either) or the whole image.
            if n == len(image):
                assert got == full
            elif n == 0:
                assert got == []
            else:
                assert n >= early_end - 3 and got == full[: len(EARLY)], f"prefix {n} listed cleanly"
        else:
            assert str(error) and "\n" not in str(error), repr(error)


def _main_offset(image: bytes) -> int:
    """Where the compressed main member starts: the first non-NUL byte after the early archive."""
    end = len(archive(*EARLY))
    while image[end] == 0:
        end += 1
    return end


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_unpack_every_prefix(compression: str) -> None:
    image = small_image(compression)
    main_start = _main_offset(image)
    for n in range(len(image) + 1):
        with PageAllocator(base=0x4000_0000, size=2 << 20, max_order=4) as pa:
            fs = Tmpfs(pa)
            result = unpack_to_rootfs(image[:n], fs)
            pa.check_invariants()
            assert pa.stats()["allocated"] == fs.used_pages, f"prefix {n}: pages leaked"
            paths = {path for path, _ in fs.walk()} - {"/"}
            assert paths in PREFIX_PATHS, f"prefix {n}: {sorted(paths)} is not a prefix of the entries"
            partial = set()
            for path, inode in fs.walk():
                if not stat.S_ISREG(inode.mode):
                    continue
                content = fs.read(path)
                if content != FILES[path]:
                    assert is_partial(content, FILES[path]), f"prefix {n}: {path} holds wrong data"
                    partial.add(inode.ino)
            assert len(partial) <= 1, f"prefix {n}: several files incomplete"
            if n == len(image):
                assert result.error is None and paths == PREFIX_PATHS[-1] and not partial
            elif result.error is None:
                # init/initramfs.c: a raw archive cut short is no error (write_buffer() consumes
                # what is there and unpack_to_rootfs() returns no message); a compressed member
                # cut short is "decompressor failed" or "junk at the end of compressed archive".
                # lib/decompress_unlz4.c: with the whole input given (no fill), fewer than 4
                # bytes where a block size should be is "empty or end-of-file", no error.
                lz4_magic_only = compression == "lz4" and main_start + 4 <= n < main_start + 8
                # lib/decompress_inflate.c skips gzip's 8-byte trailer unread ("add + 8 to skip
                # over trailer"): a member cut inside it unpacks whole.
                gzip_trailer = compression == "gzip" and n >= len(image) - 8
                assert n <= main_start or lz4_magic_only or gzip_trailer, (
                    f"prefix {n} cuts the compressed member, yet no error"
                )
                assert paths in PREFIX_PATHS[: len(EARLY) + 1] or (
                    gzip_trailer and paths == PREFIX_PATHS[-1]
                ), n

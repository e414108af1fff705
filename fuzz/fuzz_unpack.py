"""Fuzz unpacking into the model: ``unpack_to_rootfs`` into a small tmpfs on a small allocator.

``unpack_to_rootfs`` never raises for bad input (it returns the first error); any exception
is a crash.  After each unpack the allocator's books must be exact (``check_invariants``), the
pages the allocator says are allocated must be the tmpfs's pages and nothing else (each file
holding ``ceil(size / PAGE_SIZE)`` of them, but for the one file a failed write or the end of
a raw archive left short),
and removing the whole tree must give every page back.

    python -m fuzz.fuzz_unpack -atheris_runs=300000 -max_len=16384 fuzz/corpus/unpack
"""

from __future__ import annotations

from bootmem.fs.tmpfs import Tmpfs
from bootmem.kernel.unpack import unpack_to_rootfs
from bootmem.mm import PageAllocator
from bootmem.units import PAGE_SIZE
from fuzz.harness import fuzz

MAX_LEN = 16384
RAM_BASE = 0x4000_0000
RAM_SIZE = 4 << 20  # 1024 pages
ROOTFS_LIMIT = 1 << 20  # 256 pages: big images hit "write error"
MAX_DECOMPRESSED = 4 << 20


def TestOneInput(data: bytes) -> None:
    with PageAllocator(base=RAM_BASE, size=RAM_SIZE, max_order=4) as pa:
        fs = Tmpfs(pa, size_limit=ROOTFS_LIMIT)
        result = unpack_to_rootfs(data, fs, max_decompressed=MAX_DECOMPRESSED)
        assert result.error is None or result.error.message, result
        pa.check_invariants()
        stats = pa.stats()
        assert stats["allocated"] == fs.used_pages, (stats, fs.used_pages)
        assert pa.pages_by_owner().get(fs.owner, 0) == fs.used_pages, pa.pages_by_owner()
        assert fs.used_pages <= fs.limit_pages, (fs.used_pages, fs.limit_pages)
        files = {inode.ino: inode for _, inode in fs.walk() if inode.is_file}
        # do_copy() sizes a file with vfs_truncate before writing it: a write the tmpfs limit
        # stops, or a raw archive that ends inside the file's data (no error, as in Linux:
        # write_buffer() consumes what is there), leaves that one file short (a hole); every
        # other file holds all its pages.
        short = [inode for inode in files.values() if len(inode.pages) != -(-inode.size // PAGE_SIZE)]
        assert all(len(inode.pages) < -(-inode.size // PAGE_SIZE) for inode in short), short
        assert len(short) <= 1, (result, short)
        held = sum(len(inode.pages) for inode in files.values())
        assert held == fs.used_pages, (held, fs.used_pages)
        for name in fs.listdir("/"):
            fs.remove_path("/" + name)
        pa.check_invariants()
        assert pa.stats()["allocated"] == 0, pa.stats()
        assert fs.used_pages == 0, fs.used_pages


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()

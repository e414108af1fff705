"""Fuzz host extraction: ``extractall`` into a fresh directory under a fresh temporary parent.

The parent holds the destination, a sibling directory and a file outside the destination;
after each extraction (refused or not) the parent must hold exactly those, the sibling must be
empty and the file unchanged: nothing written outside the destination.  The ``data`` and
``tar`` filters are fuzzed (alternating with the input's length); ``fully_trusted`` is left
out so that a bug cannot reach the host, and its write checks are the same code.  Bad input
or a refused member must raise a :class:`~bootmem.errors.BootmemError`; anything else is a
crash.

    python -m fuzz.fuzz_extract -atheris_runs=100000 -max_len=8192 fuzz/corpus/extract
"""

from __future__ import annotations

import os
import tempfile

import bootmem.initramfs
from bootmem.errors import BootmemError
from bootmem.initramfs.extract import extractall
from fuzz.harness import fuzz

MAX_LEN = 8192
MAX_DECOMPRESSED = 1 << 20
FILTERS = ("rootfs", "data", "tar")
VICTIM = b"outside the destination\n"


def _layout(parent: str) -> set[str]:
    """Every path under ``parent`` but the destination's tree."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(parent):
        if dirpath == parent and "dest" in dirnames:
            dirnames.remove("dest")  # not walked: it may be deeper than the recursion limit
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), parent))
    return found


def TestOneInput(data: bytes) -> None:
    parent = tempfile.mkdtemp(prefix="bootmem-fuzz-")
    try:
        os.mkdir(os.path.join(parent, "sibling"))
        with open(os.path.join(parent, "victim"), "wb") as f:
            f.write(VICTIM)
        dest = os.path.join(parent, "dest")
        try:
            image = bootmem.initramfs.open(data, max_decompressed=MAX_DECOMPRESSED, max_entries=2000)
        except BootmemError:  # not an image: a PE file without an .initrd section, ...
            image = None
        if image is not None:
            try:
                extractall(image, dest, filter=FILTERS[len(data) % len(FILTERS)])
            except BootmemError:
                pass
            finally:
                image.close()
        assert _layout(parent) == {"sibling", "victim"}, _layout(parent)
        if image is not None:
            assert os.path.isdir(dest) and not os.path.islink(dest), dest
        with open(os.path.join(parent, "victim"), "rb") as f:
            assert f.read() == VICTIM
        assert os.stat(os.path.join(parent, "victim")).st_nlink == 1
    finally:
        _remove(parent)


def _remove(parent: str) -> None:
    """Remove ``parent``'s tree, however deep, relative to directory descriptors (an extracted
    path may be longer than PATH_MAX; shutil.rmtree recurses once per level).  Extracted
    directories may have lost their owner's write bit (the tar filter keeps 0o555)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    fds = [os.open(parent, flags)]
    names = [parent]
    while fds:
        fd = fds[-1]
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    os.chmod(entry.name, 0o700, dir_fd=fd)
                    fds.append(os.open(entry.name, flags, dir_fd=fd))
                    names.append(entry.name)
                    break
                os.unlink(entry.name, dir_fd=fd)
            else:
                os.close(fds.pop())
                name = names.pop()
                if fds:
                    os.rmdir(name, dir_fd=fds[-1])
    os.rmdir(parent)


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()

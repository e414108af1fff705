"""Host cost of reading, extracting and unpacking each image of a directory, one after another in
one interpreter: ``python -m tests.stress.bounds DIR`` prints one JSON line per file.

For each file (smallest first) the peak resident set is reset (``/proc/self/clear_refs``, 5),
then the image is listed with every entry's data read but the largest, extracted under a fresh
directory with the default filter, and unpacked by the kernel's rules into a tmpfs on a
machine of :data:`RAM_SIZE` (whose pages count toward the peak: at most that much).  The line
gives the file's size, the growth of the peak over the resident set before it (KiB,
``VmHWM - VmRSS``) and the CPU seconds, so a caller can check them against the file's size.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from fuzz.fuzz_extract import _remove

import bootmem.initramfs
from bootmem.errors import BootmemError
from bootmem.fs.tmpfs import Tmpfs
from bootmem.initramfs.extract import extractall
from bootmem.kernel.unpack import unpack_to_rootfs
from bootmem.mm import PageAllocator

RAM_SIZE = 16 << 20
#: The most data of one entry read into memory by the listing (a claimed 4 GiB body is skipped).
READ_LIMIT = 1 << 20


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def _list(path: Path) -> None:
    try:
        with bootmem.initramfs.open(path) as image:
            for entry, reader in image.stream():
                if entry.c_filesize <= READ_LIMIT:
                    reader.read_data()
    except BootmemError:
        pass


def _extract(path: Path) -> None:
    parent = tempfile.mkdtemp(prefix="bootmem-bounds-")
    try:
        extractall(path, os.path.join(parent, "dest"))
    except BootmemError:
        pass
    finally:
        _remove(parent)


def _unpack(path: Path) -> None:
    with PageAllocator(base=0x4000_0000, size=RAM_SIZE) as pa:
        fs = Tmpfs(pa, size_limit=RAM_SIZE // 2)
        unpack_to_rootfs(path.read_bytes(), fs)
        for name in fs.listdir("/"):
            fs.remove_path("/" + name)


def measure(path: Path) -> dict[str, object]:
    """The cost of one image (see the module's docstring)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status("VmRSS")
    cpu = time.process_time()
    _list(path)
    _extract(path)
    _unpack(path)
    return {
        "name": path.name,
        "size": path.stat().st_size,
        "growth_kib": _status("VmHWM") - before,
        "cpu": time.process_time() - cpu,
    }


def main(directory: str) -> int:
    for path in sorted(Path(directory).iterdir(), key=lambda p: (p.stat().st_size, p.name)):
        print(json.dumps(measure(path)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""Start-up of ``bootmem ls``: the interpreter, the imports, and the listing itself, beside bsdtar.

On a small image the listing is over in milliseconds and what remains is Python's start and the
imports of ``bootmem ls``; these figures say how much of each, and ``-X importtime`` which
modules cost the most.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from bench.bench_list import BOOTMEM
from bench.images import Image
from bench.timing import available

#: What ``bootmem ls`` imports before it reads a byte: its parser and the zstd codec.
LS_IMPORTS = "from bootmem.cli import build_parser; build_parser('ls'); import bootmem.initramfs, zstandard"


def startup_contenders(image: Image) -> dict[str, Callable[[], object]]:
    """``bootmem ls`` of ``image``; bare ``python``; ``python`` importing what ``ls`` imports;
    ``bsdtar -tf`` of its main member."""
    return available(
        {
            "bootmem ls": f"{BOOTMEM} ls {image.path}",
            "python -c pass": f"{sys.executable} -c pass",
            "python + ls's imports": f'{sys.executable} -c "{LS_IMPORTS}"',
            "bsdtar -tf": f"bsdtar -tf {image.member}",
        }
    )


def import_times(runs: int = 5, top: int = 12) -> list[str]:
    """The ``top`` modules by import time of their own (microseconds, the least of ``runs``
    runs of ``python -X importtime``), as lines: self, cumulative, module."""
    best: dict[str, tuple[int, int]] = {}
    total = []
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", LS_IMPORTS], capture_output=True, text=True, check=True
        ).stderr
        run_total = 0
        for line in err.splitlines()[1:]:
            own, cumulative, name = line.split("|")
            us, cum = int(own.split(":")[1]), int(cumulative)
            run_total += us
            key = name.strip()
            old = best.get(key)
            best[key] = (us, cum) if old is None else (min(old[0], us), min(old[1], cum))
        total.append(run_total)
    rows = sorted(best.items(), key=lambda item: item[1][0], reverse=True)[:top]
    lines = [f"{min(total) / 1e3:.1f} ms of imports in all; own time, cumulative time, module"]
    lines += [f"{us / 1e3:6.1f} ms {cum / 1e3:6.1f} ms  {name}" for name, (us, cum) in rows]
    return lines

"""`bootmem ls --json` streams: its memory does not grow with the number of entries."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from bootmem.initramfs.cpio import CpioWriter, Entry

# VmHWM, not ru_maxrss: the latter carries the forking parent's peak across exec.
_MEASURE = """
import sys
from bootmem.cli import main
status = main(sys.argv[1:])
sys.stdout.flush()
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(hwm.split()[1], file=sys.stderr)
sys.exit(status)
"""


def _image(path: Path, count: int) -> Path:
    with path.open("wb") as f, CpioWriter(f) as w:
        for i in range(count):
            w.add(Entry(name=f"d/{i:07d}", c_mode=stat.S_IFREG | 0o644, c_ino=i + 1), b"")
    return path


def _ls_json(image: Path) -> tuple[int, int]:
    """(entries listed, peak RSS in KiB) of `bootmem ls --json IMAGE` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, "ls", "--json", str(image)],
                          capture_output=True, check=True)  # fmt: skip
    return len(json.loads(done.stdout)["entries"]), int(done.stderr.split()[-1])


def test_ls_json_memory_does_not_grow_with_entries(tmp_path: Path) -> None:
    small, small_rss = _ls_json(_image(tmp_path / "small", 20_000))
    large, large_rss = _ls_json(_image(tmp_path / "large", 150_000))
    assert (small, large) == (20_000, 150_000)
    # 130,000 more entries: a list of their JSON objects would take over 100 MiB.
    assert large_rss - small_rss < 16 * 1024, (small_rss, large_rss)

"""Booting a distribution-shaped initramfs against the floor, and the host memory it takes.

Run ``python bench/bench_boot.py`` (``--quick`` for fewer repetitions, ``--profile`` to print
where a boot spends its time).  The image is generated in a temporary directory: about 1,500
files, about 130 MB unpacked, compressing about 2.5:1 with zstd, after a small raw early
segment holding CPU microcode, as dracut and initramfs-tools build them.

Printed, in one run and alternating so both sides see the same machine state:

* the floor: decompressing the same zstd member with the same library (``zstandard``) plus one
  copy of its bytes into a buffer that is already touched;
* ``boot()`` of the image on a 1 GiB machine (unpacking in the boot thread), and the ratio
  (goal, DESIGN.md: 1.3x);
* host peak RSS (``VmHWM``) of one boot in a fresh interpreter, against the modelled RAM the
  boot touched (pages of the rootfs and the initrd) plus 64 MB (goal: at most that); once with
  the image file mapped throughout, once with its pages dropped after the bootloader step has
  copied it into modelled RAM (the bootloader's buffer is not the kernel's memory).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zstandard

from bootmem.initramfs.cpio import CpioWriter, Entry
from bootmem.kernel.boot import Machine, boot
from bootmem.mm import PAGE_SIZE

MB = 1 << 20
MTIME = 1_700_000_000
MACHINE = Machine(ram_size=1 << 30)


def _content(rng: random.Random, size: int) -> bytes:
    """Bytes that compress about 2.5:1: runs of random bytes between runs of repeated text."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        n = min(left, rng.randint(512, 16 * 1024))
        if rng.random() < 0.4:
            parts.append(rng.randbytes(n))
        else:
            word = rng.randbytes(rng.randint(8, 64))
            parts.append((word * (n // len(word) + 1))[:n])
        left -= n
    return b"".join(parts)


def distro_image(files: int = 1_500, total: int = 130 * MB, seed: int = 7) -> tuple[bytes, int, int]:
    """``(image, offset of the zstd member, unpacked bytes)`` of a distribution-shaped image."""
    rng = random.Random(seed)
    early = io.BytesIO()
    with CpioWriter(early) as w:
        for name in ("kernel", "kernel/x86", "kernel/x86/microcode"):
            w.add(Entry(name, stat.S_IFDIR | 0o755, c_nlink=2, c_mtime=MTIME))
        microcode = Entry("kernel/x86/microcode/GenuineIntel.bin", stat.S_IFREG | 0o644, c_mtime=MTIME)
        w.add(microcode, rng.randbytes(96 << 10))
    head = early.getvalue()
    head += b"\0" * (-len(head) % 512)

    weights = [rng.paretovariate(1.1) for _ in range(files)]
    scale = total / sum(weights)
    sizes = [int(w * scale) if i % 12 else 0 for i, w in enumerate(weights)]
    sizes = [int(size * total / sum(sizes)) for size in sizes]  # the empty files leave the total
    dirs = [f"usr/lib/modules/6.8.0/kernel/drivers/d{i:02d}" for i in range(40)]
    dirs += ["usr/bin", "usr/sbin", "usr/lib/firmware", "etc/udev/rules.d", "usr/lib/x86_64-linux-gnu"]
    main = io.BytesIO()
    unpacked = 0
    with CpioWriter(main) as w:
        made: set[str] = set()
        ino = 1
        for d in dirs:
            parts = d.split("/")
            for i in range(1, len(parts) + 1):
                sub = "/".join(parts[:i])
                if sub not in made:
                    made.add(sub)
                    w.add(Entry(sub, stat.S_IFDIR | 0o755, c_ino=ino, c_nlink=2, c_mtime=MTIME))
                    ino += 1
        for i, size in enumerate(sizes):
            name = f"{dirs[i % len(dirs)]}/file{i:04d}.{('ko', 'so', 'bin')[i % 3]}"
            w.add(Entry(name, stat.S_IFREG | 0o644, c_ino=ino, c_mtime=MTIME), _content(rng, size))
            unpacked += size
            ino += 1
        for i in range(60):
            w.add(Entry(f"usr/bin/applet{i}", stat.S_IFLNK | 0o777, c_ino=ino, linkname="busybox"))
            ino += 1
    packed = zstandard.ZstdCompressor(level=3).compress(main.getvalue())
    return head + packed, len(head), unpacked + len(head)


def floor_seconds(member: bytes, out: bytearray) -> float:
    """Decompress ``member`` with zstandard and copy every byte into ``out`` (already touched)."""
    t0 = time.perf_counter()
    reader = zstandard.ZstdDecompressor().stream_reader(member)
    view = memoryview(out)
    pos = 0
    while chunk := reader.read(1 << 20):
        view[pos : pos + len(chunk)] = chunk
        pos += len(chunk)
    return time.perf_counter() - t0


def boot_seconds(image: bytes) -> float:
    t0 = time.perf_counter()
    report = boot(image, machine=MACHINE, cmdline="initramfs_async=0")
    elapsed = time.perf_counter() - t0
    assert report.ok, report.log
    if report.allocator is not None:
        report.allocator.close()
    return elapsed


_RSS_CHILD = """
import json, mmap, sys
from bootmem.kernel.boot import Machine, boot
with open(sys.argv[1], "rb") as f:
    image = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

def drop_source(pa):
    # The bootloader's copy is in modelled RAM now; with sys.argv[2] == "drop" the file's
    # pages leave this process, as a bootloader's buffer is not the kernel's memory.
    if sys.argv[2] == "drop":
        image.madvise(mmap.MADV_DONTNEED)

report = boot(memoryview(image), machine=Machine(ram_size=1 << 30), cmdline="initramfs_async=0",
              allocator_hook=drop_source)
assert report.ok
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
initrd = report.initrd
pages = report.rootfs_pages + -(-(initrd.end - initrd.start) // 4096)
print(json.dumps({"hwm_kb": hwm, "touched_pages": pages}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions instead of 7")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one boot")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        image, member_at, unpacked = distro_image()
        path = Path(tmp) / "initrd.img"
        path.write_bytes(image)
        print(
            f"image: {len(image) / MB:.1f} MB, {unpacked / MB:.1f} MB unpacked "
            f"(ratio {unpacked / len(image):.2f}), made in {time.perf_counter() - t0:.1f} s"
        )
        member = image[member_at:]
        out = bytearray(unpacked + MB)
        out[:] = b"\1" * len(out)  # touched
        floors, boots = [], []
        for _ in range(repeat):
            floors.append(floor_seconds(member, out))
            boots.append(boot_seconds(image))
        floor, booted = statistics.median(floors), statistics.median(boots)
        print(f"floor (zstandard + one copy)   {floor * 1000:8.1f} ms  (median of {repeat})")
        print(f"boot() on 1 GiB                {booted * 1000:8.1f} ms  (median of {repeat})")
        print(f"ratio                          {booted / floor:8.2f}x  (goal 1.3x)")

        for source in ("keep", "drop"):
            child = subprocess.run(
                [sys.executable, "-c", _RSS_CHILD, str(path), source],
                capture_output=True,
                text=True,
                check=True,
            )
            figures = json.loads(child.stdout)
            hwm = figures["hwm_kb"] * 1024
            touched = figures["touched_pages"] * PAGE_SIZE
            goal = touched + 64 * MB
            what = "image file mapped throughout" if source == "keep" else "image file dropped once loaded"
            print(
                f"host peak RSS {hwm / MB:8.1f} MB vs touched {touched / MB:.1f} MB + 64 MB "
                f"= {goal / MB:.1f} MB ({'ok' if hwm <= goal else 'over'}; {what})"
            )

        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            boot_seconds(image)
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()

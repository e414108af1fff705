"""Booting an image against the floor, and the host memory a boot takes.

* The floor: decompressing the image's main member with the library bootmem uses for it
  (``zstandard``, the standard library's ``lzma``, ``zlib`` and ``bz2``, ``lz4.block`` for lz4's
  legacy format) plus one copy of its bytes into a buffer that is already touched.
* The floor plus the memory file (a second reference, not the goal's): the same decompression
  with each chunk written with ``pwrite`` into a fresh memory file, as modelled RAM is written,
  so the host's first touch of those pages is in it; the part of the gap it shows is inherent
  to modelling RAM as a memory file.
* ``boot()`` of the whole image, unpacking in the boot thread (``initramfs_async=0``).
* Host peak memory of one boot in a fresh interpreter, against the modelled RAM the boot
  touched (pages of the rootfs and of the initrd) plus 32 MiB (goal: at most that).  Modelled
  RAM is a memory file written with ``pwrite``, so the process's ``VmHWM`` alone misses it, and
  the pages of it the process maps (the initrd, read through the unpacker's lease) would count
  twice in ``VmHWM`` plus the file's peak; so a thread samples, every 0.2 ms, the process's own
  pages (``RssAnon`` + ``RssFile``) plus the memory file's, and the figure is the largest
  sample (sampling every 1 ms reads about 2 MiB less on the 130 MB image).  The image
  file is mapped, and its pages dropped once the bootloader step has copied it into modelled
  RAM (the bootloader's buffer is not the kernel's memory); ``keep`` leaves them mapped.

``python -m bench.bench_boot [--quick] [--profile] [--mb 130]`` prints the figures for one zstd
image; ``python -m bench`` runs them for every image with the other benchmarks.
"""

from __future__ import annotations

import argparse
import bz2
import cProfile
import lzma
import os
import pstats
import statistics
import struct
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import lz4.block
import zstandard

if __package__ in (None, ""):  # run as a script: python bench/bench_boot.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.images import ImageSpec, generate
from bench.timing import run_python_child
from bootmem.kernel.boot import Machine, boot

MB = 1 << 20
CHUNK = 1 << 20


def _zstd_chunks(member: bytes) -> Iterator[bytes]:
    reader = zstandard.ZstdDecompressor().stream_reader(member)
    while chunk := reader.read(CHUNK):
        yield chunk


def _stdlib_chunks(
    member: bytes, d: lzma.LZMADecompressor | zlib._Decompress | bz2.BZ2Decompressor
) -> Iterator[bytes]:
    for at in range(0, len(member), CHUNK):
        yield d.decompress(member[at : at + CHUNK])


def _lz4_legacy_chunks(member: bytes) -> Iterator[bytes]:
    pos = 4  # the magic
    while pos + 4 <= len(member):
        (size,) = struct.unpack_from("<I", member, pos)
        if size == 0:
            break
        yield lz4.block.decompress(member[pos + 4 : pos + 4 + size], uncompressed_size=8 << 20)
        pos += 4 + size


def _chunks(member: bytes, compression: str) -> Iterator[bytes]:
    """``member`` decompressed with the library bootmem uses for ``compression``, in chunks."""
    if compression == "zstd":
        return _zstd_chunks(member)
    if compression == "xz":
        return _stdlib_chunks(member, lzma.LZMADecompressor())
    if compression == "gzip":
        return _stdlib_chunks(member, zlib.decompressobj(31))
    if compression == "bzip2":
        return _stdlib_chunks(member, bz2.BZ2Decompressor())
    if compression == "lzma":
        return _stdlib_chunks(member, lzma.LZMADecompressor(lzma.FORMAT_ALONE))
    return _lz4_legacy_chunks(member)


def floor_seconds(member: bytes, out: bytearray, compression: str = "zstd") -> float:
    """Decompress ``member`` with the library bootmem uses for ``compression`` and copy every
    byte into ``out`` (already touched, at least as large as the member's output)."""
    t0 = time.perf_counter()
    view = memoryview(out)
    pos = 0
    for chunk in _chunks(member, compression):
        view[pos : pos + len(chunk)] = chunk
        pos += len(chunk)
    return time.perf_counter() - t0


def floor_memory_file_seconds(member: bytes, size: int, compression: str = "zstd") -> float:
    """The floor with a memory file in place of the touched buffer: decompress ``member`` and
    ``pwrite`` every byte into a fresh memory file of ``size`` bytes, as
    :class:`~bootmem.mm.ram.PhysicalMemory` writes modelled RAM (its pages allocated by the host
    as they are first written).  What it adds to the floor is the cost of modelling RAM as a
    memory file, which no ``boot()`` avoids."""
    t0 = time.perf_counter()
    fd = os.memfd_create("bench-floor", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        pos = 0
        for chunk in _chunks(member, compression):
            data = memoryview(chunk)
            while len(data):
                written = os.pwrite(fd, data, pos)
                data = data[written:]
                pos += written
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def machine_for(unpacked: int, image_size: int) -> int:
    """The smallest power-of-two RAM, at least 1 GiB, that an image fits: its unpacked bytes
    within tmpfs's default half of RAM, with room for the initrd."""
    ram = 1 << 30
    while not fits(unpacked, image_size, ram):
        ram <<= 1
    return ram


def fits(unpacked: int, image_size: int, ram: int) -> bool:
    return 2 * (unpacked + image_size) + 64 * MB <= ram


def boot_seconds(image: bytes, ram: int = 1 << 30) -> float:
    """Seconds of one ``boot()`` of ``image`` on a machine of ``ram`` bytes (sync unpack)."""
    t0 = time.perf_counter()
    report = boot(image, machine=Machine(ram_size=ram), cmdline="initramfs_async=0")
    elapsed = time.perf_counter() - t0
    assert report.ok, report.log
    if report.allocator is not None:
        report.allocator.close()
    return elapsed


_BOOT_CHILD = """
import mmap, os, sys, threading, time
from bootmem.kernel.boot import Machine, boot
path, ram, source, every = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
with open(path, "rb") as f:
    image = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

memfd = []

def drop_source(pa):
    # The bootloader's copy is in modelled RAM now; with "drop" the file's pages leave this
    # process, as a bootloader's buffer is not the kernel's memory.
    memfd.append(pa.memory.fd)
    if source == "drop":
        image.madvise(mmap.MADV_DONTNEED)

status = os.open("/proc/self/status", os.O_RDONLY)

def host_bytes():
    # This process's own pages (RssShmem, the memory file's pages it maps, left out) plus the
    # memory file's: every page counted once.
    fields = dict(line.split(b":", 1) for line in os.pread(status, 8192, 0).splitlines())
    own = (int(fields[b"RssAnon"].split()[0]) + int(fields[b"RssFile"].split()[0])) * 1024
    return own + (os.fstat(memfd[0]).st_blocks * 512 if memfd else 0)

peak, shmem, running = [0], [0], [True]

def sample():
    while running[0]:
        peak[0] = max(peak[0], host_bytes())
        time.sleep(every)

sampler = threading.Thread(target=sample)
sampler.start()
t0 = time.perf_counter()
report = boot(memoryview(image), machine=Machine(ram_size=ram), cmdline="initramfs_async=0",
              allocator_hook=drop_source)
seconds = time.perf_counter() - t0
running[0] = False
sampler.join()
peak[0] = max(peak[0], host_bytes())
assert report.ok, report.log
initrd = report.initrd
pages = report.rootfs_pages + -(-(initrd.end - initrd.start) // 4096)
# The old upper bound: the memory file's peak (what it holds at the end plus the initrd pages
# the release punched out of it) on top of VmHWM, which counts the pages mapped from it again.
memfd_peak = os.fstat(memfd[0]).st_blocks * 512 + report.freed_pages * 4096
RESULT = {"seconds": seconds, "touched_bytes": pages * 4096, "host_peak_bytes": peak[0],
          "memfd_peak_bytes": memfd_peak}
"""


def boot_in_fresh_process(
    path: Path, ram: int, source: str = "drop", every: float = 0.0002
) -> dict[str, float]:
    """One boot of the image at ``path`` on ``ram`` bytes in a new interpreter: its
    ``seconds``, ``hwm_bytes`` (host peak memory: the most, over samples taken every ``every``
    seconds by a thread and once at the end, of the process's own resident pages - RssAnon and
    RssFile, leaving out the memory file's pages it maps - plus the pages of the memory file
    that holds modelled RAM; each page counted once), ``touched_bytes`` (modelled RAM used),
    ``process_hwm_bytes`` (the process's VmHWM) and ``upper_bound_bytes`` (VmHWM plus the memory
    file's peak: pages mapped from the file count twice)."""
    figures = run_python_child(_BOOT_CHILD, str(path), str(ram), source, str(every))
    figures["process_hwm_bytes"] = figures["hwm_bytes"]
    figures["upper_bound_bytes"] = figures["hwm_bytes"] + figures.pop("memfd_peak_bytes")
    figures["hwm_bytes"] = figures.pop("host_peak_bytes")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions instead of 7")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one boot")
    parser.add_argument("--mb", type=float, default=130, help="unpacked size of the image (MB)")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7

    image = generate(ImageSpec(args.mb, "zstd"))
    data = image.path.read_bytes()
    member = data[image.member_offset :]
    ram = machine_for(image.unpacked, len(data))
    print(f"image: {len(data) / 1e6:.1f} MB, {image.unpacked / 1e6:.1f} MB unpacked, RAM {ram >> 20} MiB")
    out = bytearray(b"\1" * (image.unpacked + 64 * MB))  # touched
    floors, files, boots = [], [], []
    for _ in range(repeat):
        floors.append(floor_seconds(member, out))
        files.append(floor_memory_file_seconds(member, ram))
        boots.append(boot_seconds(data, ram))
    floor, booted = statistics.median(floors), statistics.median(boots)
    file = statistics.median(files)
    print(f"floor (zstandard + one copy)   {floor * 1000:8.1f} ms  (median of {repeat})")
    print(f"floor + memory file            {file * 1000:8.1f} ms  ({file / floor:.2f}x the floor)")
    print(f"boot()                         {booted * 1000:8.1f} ms  (median of {repeat})")
    print(f"ratio                          {booted / floor:8.2f}x  (goal 1.3x)")
    for source in ("keep", "drop"):
        figures = boot_in_fresh_process(image.path, ram, source)
        hwm, touched = figures["hwm_bytes"], figures["touched_bytes"]
        goal = touched + 32 * MB
        print(
            f"host peak memory {hwm / MB:6.1f} MiB vs touched {touched / MB:.1f} MiB + 32 MiB "
            f"({'ok' if hwm <= goal else 'over'}; image file {source}; process VmHWM "
            f"{figures['process_hwm_bytes'] / MB:.1f} MiB, VmHWM + memory file's peak "
            f"{figures['upper_bound_bytes'] / MB:.1f} MiB)"
        )
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        boot_seconds(data, ram)
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()

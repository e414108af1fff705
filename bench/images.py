"""Distribution-shaped initramfs images for the benchmarks, generated once and cached.

An image is what dracut and initramfs-tools write: a small raw early cpio holding CPU
microcode, NUL padding to 512 bytes, then the compressed main cpio.  The main archive holds
about ``files`` entries totalling ``unpacked_mb`` MB of file data: directories shaped like
``/usr/lib/modules``, file sizes skewed as a real image's (many small files, a few multi-MB
ones, one in twelve empty), contents with the statistics of binaries (:class:`Content`: about
3:1 with zstd -3 and xz, 2:1 with gzip and lz4), and busybox-style symlinks.

The main member is compressed by the real tools with the settings distributions use
(:data:`COMPRESSORS`).  Everything is written under a cache directory keyed by the
parameters and :data:`VERSION` (``$BOOTMEM_BENCH_CACHE``, else ``bootmem-bench`` in the
temporary directory), so the slow xz of a 500 MB archive runs once; nothing is committed.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bootmem.initramfs.cpio import CpioWriter, Entry

VERSION = 2  # bump when the generator's output changes: it names the cache entries
MB = 1_000_000  # decimal, as the sizes are named (10, 130, 500 MB)
MTIME = 1_700_000_000

#: How each compression is produced: the settings of dracut and initramfs-tools, in the
#: formats the kernel reads (xz with CRC32 checks, lz4's legacy format).
COMPRESSORS: dict[str, list[str]] = {
    "zstd": ["zstd", "-q", "-3", "-T0", "-c"],
    "xz": ["xz", "-q", "--check=crc32", "--lzma2=dict=1MiB", "-T0", "-c"],
    "gzip": ["gzip", "-n", "-9", "-c"],
    "lz4": ["lz4", "-q", "-l", "-9", "-c"],
    "bzip2": ["bzip2", "-q", "-9", "-c"],
    "lzma": ["xz", "-q", "--format=lzma", "-6", "-c"],  # initramfs-tools' `lzma` with its default level
}

#: The command that writes a member's decompressed bytes to stdout, for peers that cannot.
DECOMPRESSORS: dict[str, str] = {
    "zstd": "zstd -dcq",
    "xz": "xz -dcq",
    "gzip": "gzip -dc",
    "lz4": "lz4 -dcq",
    "bzip2": "bzip2 -dcq",
    "lzma": "xz -dcq --format=lzma",
}


def cache_dir() -> Path:
    """Where generated images live: ``$BOOTMEM_BENCH_CACHE``, else a fixed temporary folder."""
    env = os.environ.get("BOOTMEM_BENCH_CACHE")
    path = Path(env) if env else Path(tempfile.gettempdir()) / "bootmem-bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def files_for(unpacked_mb: float) -> int:
    """A distribution's entry count for an image of ``unpacked_mb``: 1,500 at 130 MB, growing
    as the square root of the size (bigger images carry bigger firmware, not only more files)."""
    return max(50, round(1500 * (unpacked_mb / 130) ** 0.5))


@dataclass(frozen=True)
class ImageSpec:
    """The parameters of one generated image; equal specs give byte-identical images."""

    unpacked_mb: float
    compression: str = "zstd"
    files: int = 0  # 0: files_for(unpacked_mb)
    seed: int = 7

    @property
    def entries(self) -> int:
        return self.files or files_for(self.unpacked_mb)

    @property
    def key(self) -> str:
        """The cache name of the uncompressed archive (the compression is a suffix)."""
        return f"v{VERSION}-{self.unpacked_mb:g}mb-{self.entries}f-s{self.seed}"

    @property
    def label(self) -> str:
        return f"{self.unpacked_mb:g} MB {self.compression}"


@dataclass(frozen=True)
class Image:
    """An image on disk, generated or built by a distribution's tool.

    ``path`` is the whole image (early + padding + main member); ``member`` the compressed main
    member alone, for peers that stop at the first trailer; ``raw`` the uncompressed main cpio;
    ``member_offset`` where the member starts in ``path``; ``unpacked`` the bytes of file data in
    the image (early segment included); ``key`` names its files in the cache.
    """

    label: str
    compression: str
    entries: int
    key: str
    path: Path
    member: Path
    raw: Path
    member_offset: int
    unpacked: int

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def tree(self) -> Path:
        """The main archive unpacked into a directory (cached), for the ``create`` figures."""
        tree = cache_dir() / f"{self.key}.tree"
        done = tree.with_name(tree.name + ".complete")
        if not done.exists():
            shutil.rmtree(tree, ignore_errors=True)
            tree.mkdir()
            with self.raw.open("rb") as raw:
                subprocess.run(["cpio", "-idm", "--quiet"], cwd=tree, stdin=raw, check=True)
            done.touch()
        return tree


class Content:
    """File contents with the statistics of binaries and text: a stream of tokens, seven in ten a
    word of 4-24 bytes from a shared vocabulary (picked Zipf-like, so matches near and far), the
    rest 1-15 literal bytes from a skewed byte distribution (entropy coding has work to do).
    zstd -3 and xz reach about 3:1 on it, gzip and lz4 about 2:1, and decompressors run at the
    speeds they reach on real images (not on the memcpy of stored blocks)."""

    WIDTH = 24

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        weights = 1.0 / (np.arange(256) + 8.0) ** 1.2
        cdf = np.cumsum(weights / weights.sum())
        bytes_by_rank = self.rng.permutation(256).astype(np.uint8)
        # 65536 uniform codes -> skewed bytes: sampling by table lookup, not by a search each time
        self._byte_of = bytes_by_rank[np.searchsorted(cdf, (np.arange(65536) + 0.5) / 65536)]
        self._words = self._literals(4096)
        self._word_lens = self.rng.integers(4, self.WIDTH + 1, 4096)

    def _literals(self, rows: int) -> np.ndarray:
        codes = self.rng.integers(0, 65536, (rows, self.WIDTH), dtype=np.uint16)
        return self._byte_of[codes]

    def __call__(self, size: int) -> bytes:
        rng = self.rng
        tokens = size // 10 + 16
        is_word = rng.random(tokens) < 0.7
        which = (rng.zipf(1.2, tokens) - 1) % len(self._words)
        rows = self._words[which]
        lens = self._word_lens[which]
        literal = ~is_word
        rows[literal] = self._literals(int(literal.sum()))
        lens[literal] = rng.integers(1, 16, int(literal.sum()))
        out = rows[np.arange(self.WIDTH)[None, :] < lens[:, None]]
        while len(out) < size:  # rarely: the tokens came out short
            out = np.concatenate([out, out[: size - len(out)]])
        return out[:size].tobytes()


def file_sizes(rng: random.Random, files: int, total: int) -> list[int]:
    """``files`` sizes summing to about ``total``: Pareto-skewed, one in twelve empty, none over
    an eighth of the total or 32 MB (the largest firmware blobs)."""
    cap = max(64 << 10, min(total // 8, 32 * MB))
    weights = [rng.paretovariate(1.1) if i % 12 else 0.0 for i in range(files)]
    sizes = [0.0] * files
    left, free = float(total), [i for i in range(files) if weights[i]]
    while free and left > 1:
        scale = left / sum(weights[i] for i in free)
        clipped = [i for i in free if weights[i] * scale >= cap]
        if not clipped:
            for i in free:
                sizes[i] = weights[i] * scale
            break
        for i in clipped:
            sizes[i] = cap
            left -= cap
        free = [i for i in free if i not in set(clipped)]
    return [int(s) for s in sizes]


def _write_early(out: CpioWriter, rng: random.Random) -> int:
    for name in ("kernel", "kernel/x86", "kernel/x86/microcode"):
        out.add(Entry(name, stat.S_IFDIR | 0o755, c_nlink=2, c_mtime=MTIME))
    microcode = rng.randbytes(96 << 10)
    out.add(Entry("kernel/x86/microcode/GenuineIntel.bin", stat.S_IFREG | 0o644, c_mtime=MTIME), microcode)
    return len(microcode)


def _write_main(out: CpioWriter, spec: ImageSpec, rng: random.Random, content: Content) -> int:
    dirs = [f"usr/lib/modules/6.8.0/kernel/drivers/d{i:02d}" for i in range(40)]
    dirs += ["usr/bin", "usr/sbin", "usr/lib/firmware", "etc/udev/rules.d", "usr/lib/x86_64-linux-gnu"]
    ino = 1
    made: set[str] = set()
    for d in dirs:
        parts = d.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in made:
                made.add(sub)
                out.add(Entry(sub, stat.S_IFDIR | 0o755, c_ino=ino, c_nlink=2, c_mtime=MTIME))
                ino += 1
    links = min(60, spec.entries // 10)
    data = 0
    for i, size in enumerate(file_sizes(rng, spec.entries - ino - links, int(spec.unpacked_mb * MB))):
        name = f"{dirs[i % len(dirs)]}/file{i:04d}.{('ko', 'so', 'bin')[i % 3]}"
        entry = Entry(name, stat.S_IFREG | 0o644, c_ino=ino, c_mtime=MTIME)
        out.add(entry, content(size))
        data += size
        ino += 1
    for i in range(links):
        link = Entry(f"usr/bin/applet{i}", stat.S_IFLNK | 0o777, c_ino=ino, c_mtime=MTIME, linkname="busybox")
        out.add(link)
        ino += 1
    return data


def _atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Run ``write(file)`` into a temporary sibling, then rename it to ``path``."""
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as f:
        write(f)
    tmp.replace(path)


def _pipe(command: list[str], source: Path) -> Callable[[BinaryIO], object]:
    def write(out: BinaryIO) -> None:
        with source.open("rb") as f:
            subprocess.run(command, stdin=f, stdout=out, check=True)

    return write


def generate(spec: ImageSpec) -> Image:
    """The image of ``spec``, generated and compressed on first use, then read from the cache."""
    if spec.compression not in COMPRESSORS:
        raise ValueError(f"unknown compression {spec.compression!r} ({', '.join(COMPRESSORS)})")
    base = cache_dir()
    raw, early = base / f"{spec.key}.cpio", base / f"{spec.key}.early"
    sizes = base / f"{spec.key}.data"
    if not sizes.exists():
        rng = random.Random(spec.seed)
        counts: list[int] = []

        def write_early(f: BinaryIO) -> None:
            with CpioWriter(f) as w:
                counts.append(_write_early(w, rng))
            f.write(b"\0" * (-w.position % 512))

        def write_main(f: BinaryIO) -> None:
            with CpioWriter(f) as w:
                counts.append(_write_main(w, spec, rng, Content(spec.seed)))

        _atomic(early, write_early)
        _atomic(raw, write_main)
        sizes.write_text(str(sum(counts)))
    member = base / f"{spec.key}.cpio.{spec.compression}"
    if not member.exists():
        _atomic(member, _pipe(COMPRESSORS[spec.compression], raw))
    image = base / f"{spec.key}.{spec.compression}.img"
    if not image.exists():
        _atomic(image, lambda f: subprocess.run(["cat", str(early), str(member)], stdout=f, check=True))
    return Image(
        spec.label,
        spec.compression,
        spec.entries,
        spec.key,
        image,
        member,
        raw,
        early.stat().st_size,
        int(sizes.read_text()),
    )


# --- a real distribution image ----------------------------------------------------------------


def debian_image(compression: str = "zstd", kernel: Path | None = None) -> Image:
    """A Debian initramfs-tools image, built by Debian's ``mkinitramfs`` with ``compression``
    (:func:`bootmem.verify.images.mkinitramfs`) for the unpacked Debian kernel package at
    ``kernel``, by default Debian's current kernel, fetched once (:func:`bootmem.verify.kernel.
    debian_kernel`); built on first use, then read from the cache."""
    from bootmem import initramfs
    from bootmem.verify.images import mkinitramfs
    from bootmem.verify.kernel import debian_kernel, kernel_from_path

    found = kernel_from_path(kernel) if kernel is not None else debian_kernel()
    base = cache_dir()
    key = f"debian-{found.version}-{compression}"
    path = base / f"{key}.img"
    if not path.exists():
        _atomic(path, lambda f: f.write(mkinitramfs(found, compression)))
    with initramfs.open(path) as image:
        segments = image.segments
        entries = list(image)
    main = segments[-1]
    member = path
    if main.offset:
        member = base / f"{key}.member"
        if not member.exists():
            _atomic(member, lambda f: f.write(path.read_bytes()[main.offset : main.end]))
    raw = base / f"{key}.cpio"
    if not raw.exists():
        _atomic(raw, _pipe(DECOMPRESSORS[compression].split(), member))
    return Image(
        f"Debian {found.version} {compression}",
        compression,
        main.entries,
        key,
        path,
        member,
        raw,
        main.offset,
        sum(e.c_filesize for e in entries if e.isreg()),
    )

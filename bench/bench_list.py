"""Listing an initramfs image: `bootmem ls` side by side with bsdtar, GNU cpio and lsinitramfs.

Generates (in a temporary directory, nothing kept) an image shaped like a distribution's: a
small raw early segment with CPU microcode, NUL padding, and a zstd main archive of about
1,500 files and 130 MB with realistic compressibility (zstd about 2-3x).  Then, in one run,
alternating the tools, it times N listings of each and prints medians and ratios:

- ``bootmem ls IMAGE``: the whole image, every segment;
- ``bsdtar -tf MAIN``: libarchive stops at the first trailer, so it is given the zstd main
  member on its own (the work that dominates);
- ``zstd -dc MAIN | cpio -t``: GNU cpio cannot decompress zstd itself;
- ``lsinitramfs IMAGE``: initramfs-tools' lister, which splits the image itself.

Finally it measures the peak RSS of ``bootmem ls`` on the 130 MB image and on a 500 MB one:
``ls`` streams, so it must not grow with the image.

    python bench/bench_list.py [--runs 7] [--mb 130] [--big-mb 500] [--skip-big]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MTIME = 1_700_000_000


def _content(rng: np.random.Generator, size: int) -> bytes:
    """About 40% random bytes, the rest repeated short patterns: zstd -3 gives ~2.5x."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        n = min(left, int(rng.integers(4 << 10, 256 << 10)))
        if rng.random() < 0.4:
            parts.append(rng.bytes(n))
        else:
            word = rng.bytes(int(rng.integers(8, 200)))
            parts.append((word * (n // len(word) + 1))[:n])
        left -= n
    return b"".join(parts)


def build_tree(root: Path, *, total_mb: int, files: int = 1500, seed: int = 1) -> None:
    """``files`` files totalling about ``total_mb`` MB: many small ones, a few large (firmware,
    modules), in a tree shaped like /usr/lib/modules."""
    rng = np.random.default_rng(seed)
    dirs = [f"usr/lib/modules/6.1.0/kernel/drivers/{d}" for d in ("net", "gpu", "block", "scsi", "usb", "md")]
    dirs += ["usr/bin", "usr/sbin", "usr/lib/x86_64-linux-gnu", "usr/lib/firmware", "etc", "scripts"]
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    sizes = rng.pareto(1.1, files) + 1
    sizes = sizes / sizes.sum() * total_mb * (1 << 20)
    sizes = np.minimum(sizes, max(24 << 20, total_mb << 16)).astype(np.int64)
    sizes = (sizes * (total_mb * (1 << 20) / sizes.sum())).astype(np.int64)  # back to the total
    for i, size in enumerate(sizes):
        path = root / dirs[i % len(dirs)] / f"f{i:05d}.ko"
        path.write_bytes(_content(rng, int(size)))
    os.symlink("usr/bin", root / "bin")
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (MTIME, MTIME), follow_symlinks=False)


def cpio_of(tree: Path) -> bytes:
    names = subprocess.run(["find", ".", "-print0"], cwd=tree, capture_output=True, check=True).stdout
    names = b"\0".join(sorted(names.rstrip(b"\0").split(b"\0"))) + b"\0"
    return subprocess.run(
        ["cpio", "-o", "-H", "newc", "--null", "--quiet"],
        cwd=tree,
        input=names,
        capture_output=True,
        check=True,
    ).stdout


def build_image(workdir: Path, total_mb: int, name: str) -> tuple[Path, Path, int]:
    """Write ``name``.img (early + zstd main) and ``name``.main.zst; return them and the
    uncompressed size of the main archive."""
    tree = workdir / f"{name}-tree"
    build_tree(tree, total_mb=total_mb)
    early_tree = workdir / f"{name}-early"
    (early_tree / "kernel/x86/microcode").mkdir(parents=True)
    (early_tree / "kernel/x86/microcode/GenuineIntel.bin").write_bytes(os.urandom(3 << 20))
    early = cpio_of(early_tree)
    main = cpio_of(tree)
    shutil.rmtree(tree)
    packed = subprocess.run(
        ["zstd", "-q", "-3", "-T0", "-c"], input=main, capture_output=True, check=True
    ).stdout
    main_path = workdir / f"{name}.main.zst"
    main_path.write_bytes(packed)
    image = workdir / f"{name}.img"
    image.write_bytes(early + b"\0" * 512 + packed)
    return image, main_path, len(main)


def _timed(cmd: str) -> float:
    """Wall time of ``cmd`` run by the shell, output to /dev/null."""
    start = time.perf_counter()
    subprocess.run(["/bin/sh", "-c", cmd + " >/dev/null"], check=True)
    return time.perf_counter() - start


def bench(commands: dict[str, str], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(runs):
        for name, cmd in commands.items():  # alternate, so drift hits every tool alike
            times[name].append(_timed(cmd))
    return {k: statistics.median(v) for k, v in times.items()}


def peak_rss(cmd: str, runs: int = 3) -> int:
    """Peak RSS (KiB) of ``cmd`` under GNU time: a child forked from this (large) process would
    inherit its high-water mark, so the measurement runs from a small one."""
    best = 0
    for _ in range(runs):
        out = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "/bin/sh", "-c", cmd + " >/dev/null"],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        best = max(best, int(out.strip().splitlines()[-1]))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--mb", type=int, default=130)
    parser.add_argument("--big-mb", type=int, default=500)
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args()
    bootmem = f"{sys.executable} -m bootmem"
    with tempfile.TemporaryDirectory(prefix="bench-list-") as tmp:
        work = Path(tmp)
        image, main_zst, main_size = build_image(work, args.mb, "distro")
        print(
            f"image: {image.stat().st_size / 1e6:.1f} MB on disk, main archive {main_size / 1e6:.1f} MB "
            f"uncompressed ({main_size / main_zst.stat().st_size:.2f}x zstd)"
        )
        commands = {
            "bootmem ls": f"{bootmem} ls {image}",
            "bsdtar -tf": f"bsdtar -tf {main_zst}",
            "cpio -t": f"zstd -dc {main_zst} | cpio -t --quiet",
            "lsinitramfs": f"lsinitramfs {image}",
        }
        floor = {  # what bootmem ls cannot go below: decompression and the interpreter
            "zstd -dc": f"zstd -dc {main_zst}",
            "python -c pass": f"{sys.executable} -c pass",
            "import bootmem.cli": f"{sys.executable} -c 'import bootmem.cli'",
            "in-process pass": f"{sys.executable} -c 'import sys, bootmem.initramfs as i; "
            f"[0 for _ in i.open(sys.argv[1]).stream()]' {image}",
        }
        medians = bench({**commands, **floor}, args.runs)
        ref = medians["bootmem ls"]
        print(f"median of {args.runs} runs")
        for name, t in medians.items():
            print(f"  {name:16s} {t * 1000:8.1f} ms   bootmem ls / this = {ref / t:5.2f}")
        rss_small = peak_rss(commands["bootmem ls"])
        print(f"peak RSS of bootmem ls, {args.mb} MB image: {rss_small / 1024:.1f} MiB")
        if not args.skip_big:
            for p in work.iterdir():
                if p.is_file():
                    p.unlink()
            big, _, big_size = build_image(work, args.big_mb, "big")
            rss_big = peak_rss(f"{bootmem} ls {big}")
            print(
                f"peak RSS of bootmem ls, {big_size / 1e6:.0f} MB image: {rss_big / 1024:.1f} MiB "
                f"({rss_big / rss_small:.2f}x the small one)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

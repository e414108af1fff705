"""Extraction and creation of a distribution-shaped image, side by side with the peers.

Generates (in a temporary directory) a tree of about 1,500 files and 130 MB - kernel modules,
firmware, libraries, busybox-style hardlinks and symlinks - and an image of it shaped like a
distribution's: a raw early cpio with microcode, NUL padding, then the zstd main archive.  Then
times, alternating the tools on each round and reporting medians:

- ``bootmem extract`` (the whole image) vs ``bsdtar -xf`` and ``zstd -dc | cpio -idm`` of the main
  archive alone (both stop at the first trailer, so given the whole image they would extract only
  the early segment), and ``unmkinitramfs`` (the whole image);
- ``bootmem create --compress zstd:3`` vs ``find | cpio -o -H newc | zstd -3``.

Run: ``python bench/bench_extract_create.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BOOTMEM = [sys.executable, "-m", "bootmem"]


def build_tree(root: Path, *, files: int = 1500, total: int = 130 << 20, seed: int = 1) -> None:
    """About ``files`` files of ``total`` bytes, sizes skewed like an initramfs's (many small,
    a few multi-MB), half of them barely compressible (compressed modules, firmware)."""
    rng = random.Random(seed)
    modules = "usr/lib/modules/6.1.0/kernel/drivers"
    names = ("usr/bin", "usr/sbin", modules, "usr/lib/firmware", "usr/lib/x86_64-linux-gnu", "etc", "scripts")
    dirs = [root / d for d in names]
    for i in range(40):
        dirs.append(root / modules / f"sub{i}")
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    weights = [rng.paretovariate(1.2) for _ in range(files)]
    scale = total / sum(weights)
    noise = rng.randbytes(1 << 20)
    for i, w in enumerate(weights):
        size = int(w * scale)
        d = rng.choice(dirs)
        # every other file compressible, the rest not (compressed modules, firmware)
        data = (noise * (size // len(noise) + 1))[:size] if i % 2 else rng.randbytes(size)
        (d / f"f{i}.ko").write_bytes(data)
    busybox = root / "usr/bin/busybox"
    busybox.write_bytes(rng.randbytes(900_000))
    for applet in ("sh", "ls", "cat", "mount", "umount", "sleep"):
        os.link(busybox, root / "usr/bin" / applet)
    for link, target in (
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("init", "usr/bin/sh"),
    ):
        os.symlink(target, root / link)


def image_of(root: Path, early: Path, out: Path) -> None:
    early_raw = subprocess.run(_cpio_out(early), capture_output=True, check=True).stdout
    main_raw = subprocess.run(_cpio_out(root), capture_output=True, check=True).stdout
    main_zst = subprocess.run(
        ["zstd", "-3", "-c", "-q"], input=main_raw, capture_output=True, check=True
    ).stdout
    out.write_bytes(early_raw + b"\0" * (-len(early_raw) & 3) + main_zst)


def _cpio_out(root: Path) -> list[str]:
    return ["sh", "-c", f"cd '{root}' && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet"]


def timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def sh(command: str) -> Callable[[], None]:
    return lambda: subprocess.run(["sh", "-c", command], check=True, stdout=subprocess.DEVNULL)


def compare(
    title: str, contenders: dict[str, Callable[[], None]], rounds: int, reset: Callable[[], None]
) -> None:
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(rounds):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            reset()
            times[name].append(timed(contenders[name]))
    medians = {name: statistics.median(t) for name, t in times.items()}
    ours = medians[next(iter(contenders))]
    print(f"\n{title} (median of {rounds})")
    for name, m in medians.items():
        print(f"  {name:<40} {m * 1000:8.0f} ms   bootmem/this = {ours / m:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for tool in ("bsdtar", "cpio", "zstd", "unmkinitramfs"):
        if shutil.which(tool) is None:
            sys.exit(f"missing peer tool {tool}")
    with tempfile.TemporaryDirectory(prefix="bootmem-bench-") as tmp:
        base = Path(tmp)
        root, early = base / "tree", base / "early"
        build_tree(root)
        (early / "kernel/x86/microcode").mkdir(parents=True)
        (early / "kernel/x86/microcode/GenuineIntel.bin").write_bytes(random.Random(2).randbytes(3 << 20))
        img = base / "initrd.img"
        image_of(root, early, img)
        files = sum(1 for _ in root.rglob("*"))
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        print(
            f"image: {img.stat().st_size / 2**20:.1f} MiB on disk, {files} entries, "
            f"{size / 2**20:.0f} MiB of data"
        )
        out = base / "out"
        main_zst = base / "main.zst"
        skip = len(subprocess.run(_cpio_out(early), capture_output=True, check=True).stdout)
        with img.open("rb") as f:
            f.seek(skip + (-skip & 3))
            main_zst.write_bytes(f.read())

        def reset() -> None:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()

        compare(
            "extract",
            {
                "bootmem extract": sh(f"{' '.join(BOOTMEM)} extract '{img}' '{out}'"),
                "bsdtar -xf main.zst": sh(f"cd '{out}' && bsdtar -xf '{main_zst}'"),
                "zstd -dc main | cpio -idm": sh(f"cd '{out}' && zstd -dc '{main_zst}' | cpio -idm --quiet"),
                "unmkinitramfs": sh(f"unmkinitramfs '{img}' '{out}'"),
            },
            args.rounds,
            reset,
        )
        made = base / "made.img"
        compare(
            "create",
            {
                "bootmem create --compress zstd:3": sh(
                    f"{' '.join(BOOTMEM)} create '{root}' -o '{made}' --compress zstd:3"
                ),
                "find | cpio -o -H newc | zstd -3": sh(
                    f"cd '{root}' && find . | cpio -o -H newc --quiet | zstd -3 -q -c > '{made}'"
                ),
            },
            args.rounds,
            lambda: None,
        )


if __name__ == "__main__":
    main()

"""Where the time of ``bootmem ls``, ``bootmem extract`` and ``boot()`` goes, by cProfile.

    python -m bench.profile              # the Debian mkinitramfs zstd image
    python -m bench.profile 130 lz4      # a generated image: unpacked MB, compression

Each command runs once in this process under :mod:`cProfile` (which slows Python code, not
the codecs, so decompression's share reads low); the functions with the most time of their
own come first.  ``python -m bench`` puts these tables in BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/profile.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_boot import boot_seconds, machine_for
from bench.images import Image, debian_image
from bootmem.cli import main as bootmem_main

TOP = 12


def _short(path: str) -> str:
    """A function's file relative to the package or the standard library that holds it."""
    for marker in ("/src/bootmem/", "/site-packages/", "/lib/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return ("bootmem/" + tail) if marker == "/src/bootmem/" else tail.split("/", 1)[-1]
    return path


def profile_lines(run: Callable[[], object], top: int = TOP) -> list[str]:
    """Run ``run`` once under cProfile; the ``top`` functions by time of their own, as text."""
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    run()
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    lines = [f"{wall * 1e3:,.0f} ms under the profiler; own time, cumulative time, calls, function"]
    for (path, line, func), (_, calls, own, cumulative, _) in rows:
        where = f"{_short(path)}:{line}({func})" if path != "~" else func
        lines.append(f"{own * 1e3:8.1f} ms {cumulative * 1e3:8.1f} ms {calls:>8}  {where}")
    return lines


def _cli(*words: str) -> Callable[[], object]:
    def run() -> object:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            return bootmem_main(list(words))

    return run


def profiles(image: Image) -> dict[str, list[str]]:
    """The profile of ``bootmem ls``, ``bootmem extract`` (default filter) and ``boot()`` of
    ``image``: command -> lines."""
    out: dict[str, list[str]] = {}
    out[f"bootmem ls ({image.label})"] = profile_lines(_cli("ls", str(image.path)))
    with tempfile.TemporaryDirectory(prefix="bootmem-bench-profile-") as tmp:
        dest = Path(tmp) / "out"
        words = ["extract", str(image.path), str(dest)]
        if _cli(*words)() != 0:  # the default filter refuses an entry: the tar filter's profile
            shutil.rmtree(dest)
            words += ["--filter", "tar"]
        shutil.rmtree(dest, ignore_errors=True)
        out[f"bootmem {' '.join(w for w in words if '/' not in w)} ({image.label})"] = profile_lines(
            _cli(*words)
        )
    data = image.path.read_bytes()
    ram = machine_for(image.unpacked, len(data))
    out[f"boot() ({image.label}, {ram >> 30} GiB)"] = profile_lines(lambda: boot_seconds(data, ram))
    return out


def main() -> None:
    image = debian_image() if len(sys.argv) < 2 else None
    if image is None:
        from bench.images import ImageSpec, generate

        image = generate(ImageSpec(float(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "zstd"))
    for title, lines in profiles(image).items():
        print(f"\n{title}")
        print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Run every benchmark side by side with the peers and write docs/BENCHMARKS.md.

    python -m bench            # the full run: 10, 130 and 500 MB images, zstd xz gzip lz4
    python -m bench --quick    # small images, few runs: a smoke test of the runner

Each figure alternates its contenders in one loop and reports medians and ratios.  The
results are saved as JSON in the image cache; ``--render FILE`` writes the document again from them.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bootmem
from bench import bench_mm
from bench.bench_boot import boot_in_fresh_process, boot_seconds, fits, floor_seconds, machine_for
from bench.bench_extract_create import create_contenders, empty_dir, extract_contenders
from bench.bench_list import list_commands, list_contenders, ls_peak_rss
from bench.images import COMPRESSORS, Image, ImageSpec, cache_dir, generate
from bench.report import machine_and_tools, print_tables, write_document
from bench.timing import Comparison, alternate

GIB = 1 << 30
RAM_SIZES = (256 << 20, GIB, 16 * GIB, 256 * GIB, 1024 * GIB)
SECTIONS = ("list", "extract", "create", "boot", "scaling", "mm")
ROOT = Path(__file__).resolve().parent.parent


def runs_for(mb: float, quick: bool) -> int:
    if quick:
        return 2
    return 7 if mb <= 10 else 5 if mb <= 130 else 3


def _samples(c: Comparison) -> dict[str, Any]:
    return {"title": c.title, "samples": c.samples}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen sections; return every sample, JSON-able."""
    # An installed bootmem has its .pyc files (pip compiles them); an editable checkout under
    # PYTHONDONTWRITEBYTECODE=1 would recompile every module in every timed run instead.
    compileall.compile_dir(Path(bootmem.__file__).parent, quiet=1)
    results: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python -m bench" + (" --quick" if args.quick else ""),
            **machine_and_tools(),
        },
        "images": [],
    }
    t_start = time.perf_counter()
    images: dict[tuple[float, str], Image] = {}
    for mb in args.sizes:
        for compression in args.compressions:
            log(f"image {mb:g} MB {compression}")
            image = generate(ImageSpec(mb, compression))
            images[mb, compression] = image
            results["images"].append(
                {
                    "label": image.label,
                    "mb": mb,
                    "compression": compression,
                    "entries": image.entries,
                    "size": image.size,
                    "unpacked": image.unpacked,
                }
            )
    with tempfile.TemporaryDirectory(prefix="bootmem-bench-run-") as tmp:
        work = Path(tmp)
        out = work / "out"
        for key, image in images.items():
            runs = runs_for(key[0], args.quick)
            label = image.label
            if "list" in args.only:
                log(f"list {label}")
                results.setdefault("list", []).append(
                    _samples(alternate(label, list_contenders(image), runs))
                )
            if "extract" in args.only:
                log(f"extract {label}")
                c = alternate(label, extract_contenders(image, out), runs, reset=empty_dir(out))
                results.setdefault("extract", []).append(_samples(c))
            if "boot" in args.only:
                log(f"boot {label}")
                results.setdefault("boot", []).append(boot_figures(image, runs))
        for mb in args.sizes:
            image = images.get((mb, "zstd")) or images[mb, args.compressions[0]]
            runs = runs_for(mb, args.quick)
            if "create" in args.only:
                log(f"create {mb:g} MB")
                made = work / "made.img"
                c = alternate(image.label, create_contenders(image.tree(), made), runs)
                results.setdefault("create", []).append(_samples(c))
            if "list" in args.only:
                log(f"ls peak RSS {image.label}")
                rss = {"image": image.label, "bootmem ls": ls_peak_rss(image)}
                rss["bsdtar -tf"] = _peer_rss(list_commands(image)["bsdtar -tf"])
                results.setdefault("ls_rss", []).append(rss)
            if "scaling" in args.only:
                results.setdefault("scaling", []).extend(scaling(image, 1 if args.quick else 3))
    if "mm" in args.only:
        log("allocator")
        results["mm"] = bench_mm.figures(quick=args.quick)
    results["meta"]["seconds"] = time.perf_counter() - t_start
    return results


def _peer_rss(command: str) -> int | None:
    from bench.timing import peak_rss_of_command

    try:
        return peak_rss_of_command(command)
    except (OSError, ValueError):
        return None


def boot_figures(image: Image, runs: int) -> dict[str, Any]:
    """``boot()`` against the floor, alternating, in this process."""
    data = image.path.read_bytes()
    member = data[image.member_offset :]
    ram = machine_for(image.unpacked, len(data))
    out = bytearray(b"\1" * (image.unpacked + (64 << 20)))  # touched before the floor runs
    floors: list[float] = []
    boots: list[float] = []
    compression = image.compression
    c = alternate(
        image.label,
        {
            "boot()": lambda: boots.append(boot_seconds(data, ram)),
            "floor": lambda: floors.append(floor_seconds(member, out, compression)),
        },
        runs,
    )
    # The functions time themselves (without the list appends); their own figures are used.
    c.samples = {"boot()": boots, "floor": floors}
    return {**_samples(c), "ram": ram}


def scaling(image: Image, runs: int) -> list[dict[str, Any]]:
    """Boot seconds and host peak RSS, each boot in a fresh process, at every modelled RAM size
    the image fits."""
    rows = []
    for ram in RAM_SIZES:
        row: dict[str, Any] = {"image": image.label, "unpacked": image.unpacked, "ram": ram}
        if fits(image.unpacked, image.size, ram):
            log(f"scaling {image.label} on {ram >> 20} MiB")
            boots = [boot_in_fresh_process(image.path, ram) for _ in range(runs)]
            row["seconds"] = [b["seconds"] for b in boots]
            row["hwm"] = [b["hwm_bytes"] for b in boots]
            row["touched"] = boots[0]["touched_bytes"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images and few runs (a smoke test)")
    parser.add_argument("--sizes", type=lambda s: [float(x) for x in s.split(",")], help="unpacked MB")
    parser.add_argument("--compressions", type=lambda s: s.split(","), help=",".join(COMPRESSORS))
    parser.add_argument(
        "--only", type=lambda s: s.split(","), default=list(SECTIONS), help=",".join(SECTIONS)
    )
    parser.add_argument("--out", type=Path, help="where BENCHMARKS.md and the plot go (default docs/)")
    parser.add_argument("--render", type=Path, metavar="JSON", help="write the document from saved results")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = cache_dir() / "quick" if args.quick else ROOT / "docs"
    if args.render:
        results = json.loads(args.render.read_text())
    else:
        args.sizes = args.sizes or ([1, 4] if args.quick else [10, 130, 500])
        args.compressions = args.compressions or list(COMPRESSORS)
        unknown = set(args.only) - set(SECTIONS) | set(args.compressions) - set(COMPRESSORS)
        if unknown:
            parser.error(f"unknown: {', '.join(sorted(unknown))}")
        results = measure(args)
        saved = cache_dir() / f"results-{'quick' if args.quick else 'full'}.json"
        saved.write_text(json.dumps(results, indent=1))
        log(f"results saved in {saved}")
    print_tables(results)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = write_document(results, args.out)
    print(f"\nwrote {doc} and {doc.parent / 'bench-scaling.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark side by side with the peers and write docs/BENCHMARKS.md.

    python -m bench            # the full run: 10, 130 and 500 MB images in every kernel codec,
                               # and a Debian mkinitramfs image
    python -m bench --quick    # small images, few runs: a smoke test of the runner

Each figure alternates its contenders in one loop and reports medians and ratios.  The
results are saved as JSON in the image cache (``--save NAME``); ``--render FILE...`` writes the
document again from one or more saved runs (sections measured in separate runs side by side).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bootmem
from bench import bench_mm
from bench.bench_boot import (
    boot_in_fresh_process,
    boot_seconds,
    fits,
    floor_memory_file_seconds,
    floor_seconds,
    machine_for,
)
from bench.bench_extract_create import create19_contenders, create_contenders, empty_dir, extract_contenders
from bench.bench_list import list_commands, list_contenders, ls_peak_rss
from bench.images import COMPRESSORS, Image, ImageSpec, cache_dir, debian_image, generate
from bench.report import machine_and_tools, merge, print_tables, write_document
from bench.timing import Comparison, ContenderFailed, alternate

GIB = 1 << 30
RAM_SIZES = (256 << 20, GIB, 16 * GIB, 256 * GIB, 1024 * GIB)
SECTIONS = ("list", "startup", "extract", "create", "create19", "boot", "scaling", "mm", "profile")
ROOT = Path(__file__).resolve().parent.parent
#: Codecs whose 500 MB images are only listed in the full run: decompressing them takes tens of
#: seconds per contender and run, and extraction and boot() are judged on their smaller images.
#: Every 500 MB image is compared with bsdtar and GNU cpio only; ``--every-codec`` lifts both.
SLOW = ("xz", "bzip2", "lzma")


def runs_for(mb: float, quick: bool) -> int:
    if quick:
        return 2
    return 5 if mb <= 10 else 3


def _samples(c: Comparison) -> dict[str, Any]:
    return {"title": c.title, "samples": c.samples, "cpu": c.cpu}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip() or "?"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen sections; return every sample, JSON-able."""
    # An installed bootmem has its .pyc files (pip compiles them); an editable checkout under
    # PYTHONDONTWRITEBYTECODE=1 would recompile every module in every timed run instead.
    compileall.compile_dir(Path(bootmem.__file__).parent, quiet=1)
    results: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": args.command,
            "commit": _commit(),
            **machine_and_tools(),
        },
        "images": [],
    }
    results["meta"]["load"] = [os.getloadavg()[0]]
    results["meta"]["started"] = time.time()
    images: list[tuple[Image, float]] = []  # and its size in MB, for the number of runs
    for mb in args.sizes:
        for compression in args.compressions:
            log(f"image {mb:g} MB {compression}")
            images.append((generate(ImageSpec(mb, compression)), mb))
    for compression in args.real:
        log(f"image Debian mkinitramfs {compression}")
        image = debian_image(compression)
        images.append((image, 130))
    for image, _ in images:
        results["images"].append(
            {
                "label": image.label,
                "compression": image.compression,
                "entries": image.entries,
                "size": image.size,
                "unpacked": image.unpacked,
            }
        )
    by_label = {image.label: image for image, _ in images}
    with tempfile.TemporaryDirectory(prefix="bootmem-bench-run-") as tmp:
        work = Path(tmp)
        out = work / "out"
        # The Debian images first, then the generated ones in the order of --sizes; the results
        # so far are saved after each image, so a run cut short still leaves its figures.
        for image, mb in sorted(images, key=lambda im: not im[0].label.startswith("Debian")):
            checkpoint(args, results)
            runs = runs_for(mb, args.quick)
            label = image.label
            heavy = mb > 130 and image.compression in SLOW and not args.every_codec
            every_peer = mb <= 130 or args.every_codec
            if "list" in args.only:
                log(f"list {label}")
                with failures(results, "list", label):
                    c = alternate(label, list_contenders(image, every_peer), runs)
                    results.setdefault("list", []).append(_samples(c))
            if "extract" in args.only and not heavy:
                log(f"extract {label}")
                with failures(results, "extract", label):
                    try:
                        c = alternate(
                            label, extract_contenders(image, out, every_peer), runs, reset=empty_dir(out)
                        )
                    except ContenderFailed as refused:
                        # The default filter refused an entry: the refusal goes to the failures
                        # table, and the figures are those of the tar filter, a user's fallback.
                        log(f"failed: {refused}")
                        results.setdefault("failures", []).append(
                            {"section": "extract", "title": label, "error": str(refused)}
                        )
                        contenders = extract_contenders(image, out, every_peer, filter="tar")
                        c = alternate(label, contenders, runs, reset=empty_dir(out))
                    results.setdefault("extract", []).append(_samples(c))
            if "boot" in args.only and not heavy:
                log(f"boot {label}")
                results.setdefault("boot", []).append(boot_figures(image, runs))
        # Creation at 10 and 130 MB and of the Debian tree (500 MB says nothing more and takes minutes)
        trees = [by_label.get(f"{mb:g} MB zstd") or images[0][0] for mb in args.sizes if mb <= 130]
        trees += [image for image, _ in images if image.label.startswith("Debian")]
        for image in trees:
            runs = runs_for(image.unpacked / 1e6, args.quick)
            if "create" in args.only:
                log(f"create {image.label}")
                made = work / "made.img"
                with failures(results, "create", image.label):
                    c = alternate(image.label, create_contenders(image.tree(), made), runs)
                    results.setdefault("create", []).append(_samples(c))
        for image in [by_label[f"{mb:g} MB zstd"] for mb in args.sizes if f"{mb:g} MB zstd" in by_label]:
            if "list" in args.only:
                log(f"ls peak RSS {image.label}")
                rss = {"image": image.label, "bootmem ls": ls_peak_rss(image)}
                rss["bsdtar -tf"] = _peer_rss(list_commands(image)["bsdtar -tf"])
                results.setdefault("ls_rss", []).append(rss)
            if "scaling" in args.only:
                results.setdefault("scaling", []).extend(scaling(image, 1 if args.quick else 3))
        small = by_label.get(f"{min(args.sizes, default=10):g} MB zstd")
        if "startup" in args.only and small is not None:
            from bench.startup import import_times, startup_contenders

            log(f"start-up {small.label}")
            with failures(results, "startup", small.label):
                c = alternate(small.label, startup_contenders(small), runs_for(10, args.quick))
                results["startup"] = [_samples(c)]
            results["importtime"] = import_times(2 if args.quick else 5)
        if "create19" in args.only:
            image = by_label.get("130 MB zstd") or trees[0]
            log(f"create zstd:19 {image.label}")
            made = work / "made.img"
            with failures(results, "create19", image.label):
                c = alternate(image.label, create19_contenders(image.tree(), made), 2 if args.quick else 3)
                results["create19"] = [_samples(c)]
    if "mm" in args.only:
        log("allocator")
        results["mm"] = bench_mm.figures(quick=args.quick)
    if "profile" in args.only:
        from bench.profile import profiles

        image = next((i for i, _ in images if i.label.startswith("Debian")), images[-1][0])
        log(f"profiles {image.label}")
        results["profiles"] = profiles(image)
    checkpoint(args, results)
    return results


def checkpoint(args: argparse.Namespace, results: dict[str, Any]) -> Path:
    """Save ``results`` as they are (``results-NAME.json`` in the image cache); the path."""
    saved = cache_dir() / f"results-{args.save or ('quick' if args.quick else 'full')}.json"
    meta = results["meta"]
    meta["load"] = [meta["load"][0], os.getloadavg()[0]]
    meta["seconds"] = time.time() - meta["started"]
    saved.write_text(json.dumps(results, indent=1))
    return saved


@contextlib.contextmanager
def failures(results: dict[str, Any], section: str, title: str) -> Iterator[None]:
    """Record a contender that failed (``section``, ``title``, message) and go on with the run."""
    try:
        yield
    except ContenderFailed as exc:
        log(f"failed: {exc}")
        results.setdefault("failures", []).append({"section": section, "title": title, "error": str(exc)})


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
    files: list[float] = []
    boots: list[float] = []
    compression = image.compression
    c = alternate(
        image.label,
        {
            "boot()": lambda: boots.append(boot_seconds(data, ram)),
            "floor": lambda: floors.append(floor_seconds(member, out, compression)),
            "floor + memory file": lambda: files.append(floor_memory_file_seconds(member, ram, compression)),
        },
        runs,
    )
    # The functions time themselves (without the list appends); their own figures are used.
    c.samples = {"boot()": boots, "floor": floors, "floor + memory file": files}
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
    parser.add_argument("--sizes", type=lambda s: [float(x) for x in s.split(",") if x], help="unpacked MB")
    parser.add_argument("--compressions", type=lambda s: s.split(","), help=",".join(COMPRESSORS))
    parser.add_argument(
        "--real",
        type=lambda s: [x for x in s.split(",") if x],
        help="compressions of Debian mkinitramfs images to add (default: zstd; none with --quick)",
    )
    parser.add_argument(
        "--every-codec", action="store_true", help=f"extract and boot the 500 MB {', '.join(SLOW)} images too"
    )
    parser.add_argument(
        "--only", type=lambda s: s.split(","), default=list(SECTIONS), help=",".join(SECTIONS)
    )
    parser.add_argument("--out", type=Path, help="where BENCHMARKS.md and the plot go (default docs/)")
    parser.add_argument("--save", metavar="NAME", help="name of the saved results (default: full or quick)")
    parser.add_argument(
        "--render", type=Path, nargs="+", metavar="JSON", help="write the document from saved results"
    )
    args = parser.parse_args(argv)
    args.command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    if args.out is None:
        args.out = cache_dir() / "quick" if args.quick else ROOT / "docs"
    if args.render:
        results = merge([json.loads(path.read_text()) for path in args.render])
    else:
        args.sizes = args.sizes if args.sizes is not None else [1, 4] if args.quick else [10, 130, 500]
        args.compressions = args.compressions or list(COMPRESSORS)
        args.real = args.real if args.real is not None else [] if args.quick else ["zstd"]
        unknown = set(args.only) - set(SECTIONS) | set(args.compressions + args.real) - set(COMPRESSORS)
        if unknown:
            parser.error(f"unknown: {', '.join(sorted(unknown))}")
        results = measure(args)
        log(f"results saved in {checkpoint(args, results)}")
    print_tables(results)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = write_document(results, args.out)
    print(f"\nwrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

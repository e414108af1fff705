"""`bootmem cat` and `bootmem du`: what one file holds, and where the rootfs's memory goes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bootmem.cli.inputs import IMAGE_HELP, add_max_size, image_source, max_size
from bootmem.cli.output import print_json, printable
from bootmem.initramfs import open as open_image
from bootmem.units import PAGE_SIZE


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the `bootmem` parser."""
    cat = subparsers.add_parser(
        "cat",
        help="write files of an initramfs image to stdout",
        description=(
            "Write the data of each PATH, as the booted rootfs holds it, to stdout: the last entry of a "
            "path wins (later segments replace earlier ones), a hardlink gives its inode's data and a "
            "symlink is followed inside the image."
        ),
    )
    cat.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    cat.add_argument("paths", metavar="PATH", nargs="+")
    add_max_size(cat)
    cat.set_defaults(func=run_cat)

    du = subparsers.add_parser(
        "du",
        help="memory the unpacked rootfs takes, by directory",
        description=(
            "Show, for each directory of the tree IMAGE unpacks to, the tmpfs memory its files take "
            "(whole pages, a hardlinked file once), as du(1) shows disk usage."
        ),
    )
    du.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    du.add_argument("-d", "--depth", type=int, metavar="N", help="only directories at most N levels deep")
    du.add_argument(
        "-b", "--apparent-size", dest="apparent", action="store_true",
        help="bytes of file data instead of KiB of tmpfs pages",
    )  # fmt: skip
    du.add_argument("--sort", choices=("path", "size"), default="path", help="order of the rows")
    du.add_argument("--json", action="store_true", help='JSON on stdout: {"directories": [...]}')
    add_max_size(du)
    du.set_defaults(func=run_du)


def run_cat(args: argparse.Namespace) -> int:
    from bootmem.initramfs.contents import copy_data, locate

    out = sys.stdout.buffer
    with open_image(image_source(args.image), max_decompressed=max_size(args)) as img:
        copy_data(img, locate(img, args.paths), out)
    out.flush()
    return 0


def run_du(args: argparse.Namespace) -> int:
    from bootmem.initramfs.diff import image_tree
    from bootmem.report.usage import directory_usage

    with open_image(image_source(args.image), max_decompressed=max_size(args)) as img:
        usage = directory_usage(image_tree(img, digest=False))
    rows = [(path, u) for path, u in usage.items() if args.depth is None or _depth(path) <= args.depth]
    if args.sort == "size":
        rows.sort(key=lambda row: (-row[1].bytes if args.apparent else -row[1].pages, row[0]))
    else:
        # du's order: a directory after everything under it, siblings by name.
        rows.sort(key=lambda row: (*([] if row[0] == "." else row[0].split("/")), "\U0010ffff"))
    if args.json:
        print_json({"directories": [{"path": path, **u.to_json()} for path, u in rows]})
        return 0
    out = sys.stdout
    for path, u in rows:
        size = u.bytes if args.apparent else u.pages * PAGE_SIZE // 1024
        out.write(f"{size}\t{printable(path)}\n")
    out.flush()
    return 0


def _depth(path: str) -> int:
    return 0 if path == "." else path.count("/") + 1

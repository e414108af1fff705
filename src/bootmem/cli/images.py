"""`bootmem` subcommands: extract, create and diff."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from bootmem.cli.inputs import IMAGE_HELP, add_max_size, add_selection, image_source, max_size, selection
from bootmem.cli.output import print_json, printable
from bootmem.errors import BootmemError
from bootmem.initramfs.cpio import Entry
from bootmem.initramfs.extract import DEFAULT_FILTER, FILTERS
from bootmem.units import format_size

if TYPE_CHECKING:
    from bootmem.initramfs.diff import Change, Diff, Sizes


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the `bootmem` parser."""
    p = subparsers.add_parser(
        "extract",
        help="extract an image's files to a directory",
        description=(
            "Extract every entry of every segment of IMAGE under DIR, as the kernel unpacks it: later "
            "entries replace earlier ones, hardlinks are rebuilt, files are sized as their headers say, "
            "directory modes and times are set last. The default filter, 'rootfs', is made for root "
            "filesystems: symlinks are created exactly as archived (absolute targets too), device nodes "
            "and setuid/setgid bits as your privileges allow (not root: device nodes are skipped and "
            "counted), ownership is restored as root. Python's tarfile filters (PEP 706) remain: 'data' "
            "refuses device nodes, fifos, sockets and symlinks that point outside DIR and clears setuid, "
            "setgid and group/other write; 'tar' clears those mode bits; 'fully_trusted' keeps everything. "
            "Under every filter nothing is written outside DIR, a name with '..' is refused and no write "
            "or hardlink goes through a symlink. A refused entry is skipped with a one-line warning and "
            "extraction goes on; the exit status is then 1 (--strict stops at the first). An error in "
            "the image ends extraction where the kernel would stop, with exit status 1. PATTERNs and "
            "--segment choose what is written, as for `bootmem ls`: missing parent directories of a "
            "chosen entry are made with mode 0755. -O writes the data of the chosen regular files to "
            "stdout instead, as `tar -xO` does, and takes no DIR."
        ),
    )
    p.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    p.add_argument("dest", metavar="DIR", nargs="?", help="where to extract (not with -O)")
    add_selection(p)
    p.add_argument(
        "-O", "--to-stdout", action="store_true",
        help="write the chosen files' data to stdout (a path's last entry wins; symlinks are not followed)",
    )  # fmt: skip
    p.add_argument(
        "--filter",
        choices=list(FILTERS),
        default=DEFAULT_FILTER,
        help=f"extraction filter (default: {DEFAULT_FILTER})",
    )
    p.add_argument("--strict", action="store_true", help="stop at the first entry that cannot be extracted")
    add_max_size(p)
    p.set_defaults(func=cmd_extract)

    p = subparsers.add_parser(
        "create",
        help="create an image from a directory or a gen_init_cpio manifest",
        description=(
            "Write a reproducible initramfs image: sorted names, stable inode numbers, hardlinks kept, "
            "mtimes clamped by SOURCE_DATE_EPOCH. The main archive comes from DIR or from a manifest in "
            "the syntax of the kernel's usr/gen_init_cpio (file, dir, nod, slink, pipe, sock lines, each "
            "with its owner and mode; '#bootmem: mtime=SECONDS' before a line sets that entry's mtime); "
            "each --early DIR is written first as an uncompressed archive, as distributions prepend "
            "microcode. A manifest is checked first: an entry whose directory is not created before it "
            "(the kernel drops it silently) and a path named twice are warnings."
        ),
    )
    p.add_argument("root", metavar="DIR", nargs="?", help="directory to archive")
    p.add_argument(
        "--manifest", metavar="FILE",
        help="gen_init_cpio manifest instead of DIR ('-' for stdin); '#cpio: NAME[:LEVEL]' lines start "
        "further archives, each with its own compression",
    )  # fmt: skip
    p.add_argument("-o", "--output", metavar="IMAGE", required=True, help="image to write ('-' for stdout)")
    p.add_argument("--format", choices=["newc", "crc"], default="newc", help="cpio format (default: newc)")
    p.add_argument(
        "--compress",
        metavar="NAME[:LEVEL][,threads=N]",
        default="none",
        help=(
            "compression of the main archive: none, gzip, bzip2, lzma, xz, lzo, lz4, zstd (default: none); "
            "zstd compresses in one thread per core unless threads=N says otherwise: every N of 1 or more "
            "writes the same bytes, threads=0 (single-threaded, as zstd --single-thread) other ones"
        ),
    )
    p.add_argument("--early", metavar="DIR", action="append", help="uncompressed early archive (repeatable)")
    p.add_argument(
        "--append", action="store_true",
        help="add the archives to the end of the existing IMAGE instead of replacing it",
    )  # fmt: skip
    p.set_defaults(func=cmd_create)

    p = subparsers.add_parser(
        "diff",
        help="compare the trees two images produce",
        description=(
            "Compare the trees IMAGE_A and IMAGE_B produce when the kernel unpacks them: paths added, "
            "removed and changed (type, content, size, mode, owner, link target, device numbers), with "
            "the size of each file added or removed and the size change of each changed one; then, "
            "segment by segment and in total, the bytes each image takes and the bytes of file data "
            "the tree holds, and their change. PATTERNs and --segment limit both trees, as for "
            "`bootmem ls`. Exit status as diff(1): 0 when the trees are the same, 1 when they differ, "
            "2 on trouble."
        ),
    )
    p.add_argument("image_a", metavar="IMAGE_A", help=IMAGE_HELP)
    p.add_argument("image_b", metavar="IMAGE_B", help=IMAGE_HELP)
    add_selection(p, what="the entries")
    p.add_argument(
        "--sort", choices=("path", "size"), default="path",
        help="removed, added, changed by path (default), or one list by size change, largest first",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    add_max_size(p)
    p.set_defaults(func=cmd_diff)


# --- extract ------------------------------------------------------------------------------


def cmd_extract(args: argparse.Namespace) -> int:
    from bootmem.errors import UsageError
    from bootmem.initramfs.extract import extractall

    if args.to_stdout:
        # No DIR with -O: the first word after IMAGE is a pattern, as in `tar -xOf IMAGE PATTERN`.
        args.patterns = [args.dest, *args.patterns] if args.dest is not None else args.patterns
        return _extract_to_stdout(args)
    if args.dest is None:
        raise UsageError("extract needs a destination DIR (or -O to write to stdout)")
    with _progress() as progress:
        result = extractall(
            image_source(args.image),
            args.dest,
            filter=args.filter,
            selection=selection(args),
            progress=progress,
            strict=args.strict,
            max_decompressed=max_size(args),
        )
    warn = partial(print, file=sys.stderr)
    for name, reason in result.skipped:
        warn(f"bootmem: warning: skipped {printable(name)}: {reason}")  # reasons quote names with repr
    if result.nodes_skipped:
        warn(
            f"bootmem: warning: {result.nodes_skipped} character or block device node(s) not created: "
            "that needs root"
        )
    if result.kernel_skipped:
        warn(
            f"bootmem: warning: {result.kernel_skipped} entr{'y' if result.kernel_skipped == 1 else 'ies'} "
            "skipped as the kernel skips them (a name size of 0 or over 4096, a symlink target over 4096 "
            "bytes, a body on an entry that is neither a regular file nor a symlink)"
        )
    if result.error is not None:
        warn(f"bootmem: error: {printable(result.error.detail)}")
        return 1
    return 1 if result.skipped else 0


def _extract_to_stdout(args: argparse.Namespace) -> int:
    from bootmem.errors import UsageError
    from bootmem.initramfs import open as open_image
    from bootmem.initramfs.contents import copy_data, locate_selected

    chosen = selection(args)
    out = sys.stdout.buffer
    with open_image(image_source(args.image), max_decompressed=max_size(args)) as img:
        copy_data(img, locate_selected(img, chosen), out)
    out.flush()
    if missing := chosen.unmatched():
        raise UsageError(f"nothing in {chosen.scope(repr(args.image))} matches {', '.join(missing)}")
    return 0


@contextmanager
def _progress() -> Iterator[Callable[[Entry, int], None] | None]:
    """A progress bar on stderr when it is a terminal, and the totals when extraction ends."""
    from bootmem.cli.progress import is_terminal, progress_bar
    from bootmem.units import format_size

    # The total is unknown without a second pass over the (compressed) image: the bar counts
    # files and bytes written, and the totals are printed at the end.
    files, written = 0, 0
    with progress_bar("extracting", unit="bytes") as bar:

        def advance(entry: Entry, nbytes: int) -> None:
            nonlocal files, written
            files += 1
            written += nbytes
            bar.update(description=f"extracting: {files} files")
            bar.advance(nbytes)

        yield advance
    if is_terminal():
        print(f"bootmem: extracted {files} files, {format_size(written)}", file=sys.stderr)


# --- create -------------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    from bootmem.cli.progress import progress_bar
    from bootmem.errors import UsageError
    from bootmem.initramfs.create import create_image

    if (args.root is None) == (args.manifest is None):
        raise UsageError("give a directory or --manifest FILE, not both")
    options: dict[str, Any] = {
        "root": args.root,
        "manifest": sys.stdin if args.manifest == "-" else args.manifest,
        "format": args.format,
        "compression": args.compress,
        "early": args.early,
        "append": args.append,
        "warn": lambda message: print(f"bootmem: warning: {printable(message)}", file=sys.stderr),
    }
    if args.output == "-" and args.append:
        raise UsageError("--append needs an image file, not '-'")
    with progress_bar("archiving", unit="bytes") as bar:
        options["progress"] = lambda done, total: bar.update(completed=done, total=total)
        if args.output == "-":
            create_image(sys.stdout.buffer, **options)
            sys.stdout.buffer.flush()
        else:
            create_image(args.output, **options)
    return 0


# --- diff ---------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    from bootmem.initramfs.diff import diff_images

    try:
        chosen = selection(args)
        sources = image_source(args.image_a), image_source(args.image_b)
        result = diff_images(*sources, selection=chosen, max_decompressed=max_size(args))
        if missing := chosen.unmatched():
            raise BootmemError(f"nothing in {chosen.scope('either image')} matches {', '.join(missing)}")
    except (BootmemError, OSError) as exc:
        where = f": {exc.filename!r}" if isinstance(exc, OSError) and exc.filename is not None else ""
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"bootmem: error: {message}{where}", file=sys.stderr)
        return 2
    if args.json:
        print_json(result.to_json())
    else:
        _print_diff(result, by_size=args.sort == "size")
    return 1 if result else 0


def _print_diff(result: Diff, *, by_size: bool) -> None:
    """The differences, one line per path, then the sizes segment by segment and in total
    (printed when anything differs, the trees or the images' sizes)."""
    rows = [(-result.a[p].data_size, f"- {printable(p)}{_size(result.a[p].data_size, result.a[p].type)}")
            for p in result.removed]  # fmt: skip
    rows += [(result.b[p].data_size, f"+ {printable(p)}{_size(result.b[p].data_size, result.b[p].type)}")
             for p in result.added]  # fmt: skip
    rows += [(c.size_change, f"~ {printable(c.path)}: {', '.join(_describe(c, f) for f in c.fields)}")
             for c in result.changed]  # fmt: skip
    if by_size:
        rows.sort(key=lambda row: -abs(row[0]))  # stable: path order among equal changes
    for _change, line in rows:
        print(line)
    if result.identical and all(not s.image.change for s in result.segments):
        return
    for seg in result.segments:
        a, b = seg.compression
        compression = a if a == b else f"{a or 'absent'} -> {b or 'absent'}"
        print(f"segment {seg.index} ({compression}): image {_sizes(seg.image)}, "
              f"files {_sizes(seg.file_data)}")  # fmt: skip
    print(
        f"total: image {_sizes(result.image)}, files {_sizes(result.file_data)}: "
        f"added {format_size(result.added_bytes)}, removed {format_size(result.removed_bytes)}, "
        f"changed {_signed(result.changed_bytes)}"
    )


def _size(nbytes: int, kind: str) -> str:
    return f" ({format_size(nbytes)})" if kind == "f" else ""


def _sizes(sizes: Sizes) -> str:
    a = "absent" if sizes.a is None else format_size(sizes.a)
    b = "absent" if sizes.b is None else format_size(sizes.b)
    return f"{a} -> {b} ({_signed(sizes.change)})"


def _signed(nbytes: int) -> str:
    return ("-" if nbytes < 0 else "+") + format_size(abs(nbytes))


def _describe(change: Change, what: str) -> str:
    a, b = change.a, change.b
    if what == "content":
        return "content"
    if what == "size":
        return f"size {a.size} -> {b.size} ({_signed(b.size - a.size)})"
    if what == "mode":
        return f"mode {a.mode:04o} -> {b.mode:04o}"
    if what == "linkname":
        return f"target {printable(a.linkname or '')} -> {printable(b.linkname or '')}"
    if what == "rdev":
        return f"rdev {a.rdev[0]},{a.rdev[1]} -> {b.rdev[0]},{b.rdev[1]}"
    return f"{what} {getattr(a, what)} -> {getattr(b, what)}"

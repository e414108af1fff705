"""The ``bootmem`` command line.

Each group of subcommands lives in a module of its own with a ``register(subparsers)``
function; this module assembles them and turns errors into one line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from bootmem import __version__
from bootmem.errors import BootmemError

Command = Callable[[argparse.Namespace], int]

# Subcommand -> the module under bootmem.cli that registers it, in the order --help lists them.
# Only the module a command needs is imported, so `bootmem ls` does not pay for the boot model.
COMMANDS = {
    "ls": "listing",
    "examine": "listing",
    "cat": "contents",
    "du": "contents",
    "extract": "images",
    "create": "images",
    "diff": "images",
    "boot": "boot",
    "budget": "budget",
    "verify": "verify",
    "completion": "manual",
    "man": "manual",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``bootmem`` parser: every subcommand, or only the module that registers ``command``."""
    parser = argparse.ArgumentParser(
        prog="bootmem",
        description=(
            "The memory lifecycle of a kernel's initial RAM filesystem: boot an initrd on a modelled "
            "machine and see where its memory goes, and list, examine, extract, create and compare "
            "initramfs images."
        ),
    )
    parser.add_argument("--version", action="version", version=f"bootmem {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in names:
        importlib.import_module(f"bootmem.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bootmem`` with ``argv``; return the exit status (0 ok, 1 bad input, 2 usage)."""
    words = list(sys.argv[1:] if argv is None else argv)
    first = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(first)
    args = parser.parse_args(words)
    command: Command | None = getattr(args, "func", None)
    if command is None:
        parser.print_help()
        return 2
    try:
        return command(args)
    except BootmemError as exc:
        _error(str(exc))
        return 1
    except OSError as exc:
        # Host-side failures (a missing input file, a full disk): one line, no traceback.
        if isinstance(exc, BrokenPipeError):
            _quiet_broken_pipe()
            return 0
        where = f": {exc.filename!r}" if exc.filename is not None else ""
        _error(f"{exc.strerror or exc}{where}")
        return 1
    except KeyboardInterrupt:
        return 130


def _error(message: str) -> None:
    print(f"bootmem: error: {message}", file=sys.stderr)


def _quiet_broken_pipe() -> None:
    # `bootmem ls big.img | head`: the reader went away; stop without a second traceback.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())

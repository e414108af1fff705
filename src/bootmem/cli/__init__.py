"""The ``bootmem`` command line.

Each group of subcommands lives in a module of its own with a ``register(subparsers)``
function; this module assembles them and turns errors into one line and a non-zero exit.

Manners every command shares:

- an error is one line on stderr, ``bootmem: error: ...``, and exit status 1 (``diff``: 2, as
  ``diff(1)`` says "trouble"), never a traceback;
- a failed write to stdout (``> /dev/full``) is an error too: ``bootmem: error: write error: ...``;
- a reader that goes away (``bootmem boot | head -2``) is not: the command runs to its end with
  the rest of its output discarded and exits with the status it would have had;
- ``--color=auto|always|never`` and ``NO_COLOR`` decide all styling (:mod:`bootmem.cli.output`).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bootmem import __version__
from bootmem.cli.output import COLOR_MODES, StdoutGuard, set_color
from bootmem.errors import BootmemError, WriteError

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

# Exit status of a command that could not do its work ("trouble"): diff(1) and cmp(1) say 2,
# since 1 means "the inputs differ".
_TROUBLE = {"diff": 2}


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it: ``COLUMNS`` if a positive
    number, else the width of the terminal on stdout, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        return os.get_terminal_size(stdout.fileno()).columns or 80 if stdout is not None else 80
    except (AttributeError, ValueError, OSError):  # closed, detached, not a terminal
        return 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, its width found without ``import shutil``: argparse makes one at
    every ``add_argument`` (to check the metavar), so ``shutil`` and the compression modules
    it imports would be loaded by every command, ``bootmem ls`` of a small image included."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        width = _columns() - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with :class:`_HelpFormatter` (subcommands' parsers too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``bootmem`` parser: every subcommand, or only the module that registers ``command``."""
    parser = _Parser(
        prog="bootmem",
        description=(
            "The memory lifecycle of a kernel's initial RAM filesystem: boot an initrd on a modelled "
            "machine and see where its memory goes, and list, examine, extract, create and compare "
            "initramfs images."
        ),
    )
    parser.add_argument("--version", action="version", version=f"bootmem {__version__}")
    color_help = "style output: auto (on a terminal, unless NO_COLOR is set; default), always or never"
    parser.add_argument("--color", choices=COLOR_MODES, default="auto", help=color_help)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in names:
        importlib.import_module(f"bootmem.cli.{name}").register(subparsers)
    for sub in subparsers.choices.values():
        # Also after the command; SUPPRESS keeps a --color given before it.
        sub.add_argument("--color", choices=COLOR_MODES, default=argparse.SUPPRESS, help=color_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bootmem`` with ``argv``; return the exit status (0 ok, 1 bad input, 2 usage).

    ``--help``, ``--version`` and usage errors raise ``SystemExit`` as argparse does.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    first = next((w for w in words if not w.startswith("-")), None)
    trouble = _TROUBLE.get(first or "", 1)
    with StdoutGuard() as stdout:
        args: argparse.Namespace | None = None
        try:
            args = _parse(words, first)
            command: Command | None = getattr(args, "func", None)
            status = command(args) if command is not None else 2
            stdout.flush()
        except SystemExit:
            # --help and --version print, then exit: their output must have been written too.
            try:
                stdout.flush()
            except WriteError as error:
                _error(str(error))
                raise SystemExit(trouble) from None
            raise
        except BootmemError as exc:
            _error(str(exc))
            return trouble
        except OSError as exc:
            # Host-side failures (a missing input file, a full disk): one line, no traceback.
            _error(_describe_os_error(exc, getattr(args, "image", None)))
            return trouble
        except MemoryError:
            # The host ran out (an address-space limit, a machine without swap): one line.
            _error(f"out of host memory in {first or 'bootmem'}")
            return trouble
        except KeyboardInterrupt:
            return 130
    return status


def _parse(words: list[str], first: str | None) -> argparse.Namespace:
    parser = build_parser(first)
    args, extra = parser.parse_known_args(words)
    sub = _subparser(parser, args.command) if args.command else None
    if extra and sub is not None:
        # Positionals after options (`bootmem ls IMG --sort size 'usr/**'`): parse the words after
        # the command again, intermixed, as a user expects.
        redo, extra = sub.parse_known_intermixed_args(words[words.index(args.command) + 1 :])
        vars(args).update(vars(redo))
    if extra:
        # The subcommand's usage, not the top level's, for `bootmem ls IMG --bogus`.
        (sub or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    set_color(args.color)
    if getattr(args, "func", None) is None:
        parser.print_help()
    return args


def _describe_os_error(exc: OSError, image: object) -> str:
    """One line for ``exc``, naming the file: its own, else the command's input image."""
    filename = exc.filename if exc.filename is not None else image
    message = exc.strerror or str(exc)
    if filename is None:
        return message
    if exc.errno == errno.ESPIPE:
        name = os.fsdecode(str(filename))
        return f"{name!r}: {message}: not a seekable file ('-' reads an image from a pipe)"
    return f"{message}: {os.fsdecode(str(filename))!r}"


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser | None = action.choices.get(name)
            return found
    return None


def _error(message: str) -> None:
    print(f"bootmem: error: {message}", file=sys.stderr)

"""What the command line prints: names made safe for a terminal, JSON on stdout, styling, and
stdout's manners (write errors reported, a reader that went away tolerated)."""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, TextIO, cast

from bootmem.errors import WriteError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["COLOR_MODES", "StdoutGuard", "console", "print_json", "printable", "set_color", "styled"]

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}

ColorMode = Literal["auto", "always", "never"]
COLOR_MODES: tuple[ColorMode, ...] = ("auto", "always", "never")
_color: ColorMode = "auto"


def printable(name: str) -> str:
    """``name`` with control characters, backslashes and undecodable bytes escaped.

    A name is printed on one line and cannot move the cursor or recolour the terminal:
    ``"a\\nb"`` prints as ``a\\nb``, ``"\\x1b[31m"`` as ``\\x1b[31m``, and a byte that is not
    UTF-8 (kept by ``os.fsdecode`` as a lone surrogate) as ``\\xNN``.

    >>> printable("ok/name")
    'ok/name'
    >>> printable("evil\\x1b[2Jname")
    'evil\\\\x1b[2Jname'
    """
    if name.isprintable() and "\\" not in name:
        return name
    out = []
    for ch in name:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # surrogateescape: a raw byte that is not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif not ch.isprintable():
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def print_json(document: Any) -> None:
    """``document`` as indented JSON on stdout, names kept lossless (lone surrogates as escapes)."""
    import json  # here, not at the top: only --json pays for it (3 ms of every command's start)

    json.dump(document, sys.stdout, indent=2, ensure_ascii=True)
    sys.stdout.write("\n")


# --- styling ----------------------------------------------------------------------------------


def set_color(mode: str) -> None:
    """Set ``--color``: ``auto`` (style a terminal unless ``NO_COLOR`` is set), ``always``, ``never``."""
    global _color
    if mode not in COLOR_MODES:
        raise ValueError(f"color mode {mode!r} is not one of {', '.join(COLOR_MODES)}")
    _color = mode


def styled(stream: IO[Any] | None = None) -> bool:
    """Whether output to ``stream`` (default stdout) is styled: colour, bold, dim, anything.

    ``--color=always`` styles everything and ``never`` nothing; ``auto`` styles a terminal unless
    the ``NO_COLOR`` environment variable is set and not empty (https://no-color.org).
    """
    if _color != "auto":
        return _color == "always"
    if os.environ.get("NO_COLOR"):
        return False
    stream = stream if stream is not None else sys.stdout
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def console(stream: TextIO | None = None) -> Console:
    """A rich ``Console`` on ``stream`` (default stdout) that styles exactly when :func:`styled` says.

    Unstyled, it writes plain text: no colour and no bold (rich's ``no_color`` would keep bold).
    """
    from rich.console import Console

    stream = stream if stream is not None else sys.stdout
    if styled(stream):
        return Console(file=stream, highlight=False, force_terminal=True)
    return Console(file=stream, highlight=False, color_system=None, force_terminal=False)


# --- stdout's manners -------------------------------------------------------------------------


class _Guarded:
    """A stream whose writes raise :class:`WriteError`, or on a broken pipe go quietly nowhere."""

    def __init__(self, stream: Any, guard: StdoutGuard) -> None:
        self._stream = stream
        self._guard = guard

    def write(self, data: Any) -> int:
        if self._guard.broken:
            return len(data)
        try:
            written: int = self._stream.write(data)
        except OSError as exc:
            self._guard.failed(exc)
            return len(data)
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._guard.broken:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            self._guard.failed(exc)

    @property
    def buffer(self) -> _Guarded:
        return _Guarded(self._stream.buffer, self._guard)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class StdoutGuard:
    """While active, ``sys.stdout`` reports a failed write as :class:`WriteError` and survives a
    reader that went away.

    On ``EPIPE`` (``bootmem boot | head -2``) the rest of the output is discarded (stdout is
    pointed at ``/dev/null``) and the command carries on to its own exit status; any other write
    error (``ENOSPC`` from ``/dev/full``) raises :class:`WriteError`, ``"write error: <reason>"``.
    ``sys.stdout.buffer`` is guarded the same way.  Leaving restores ``sys.stdout``.
    """

    def __init__(self) -> None:
        self.broken = False
        self.error: WriteError | None = None
        self._saved: TextIO | None = None

    def __enter__(self) -> StdoutGuard:
        self._saved = sys.stdout
        sys.stdout = cast(TextIO, _Guarded(sys.stdout, self))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._saved is not None
        sys.stdout = self._saved

    def flush(self) -> None:
        """Flush stdout; :class:`WriteError` if it fails or an earlier write failed (argparse's
        ``--help`` and ``--version`` swallow the error of their own write)."""
        sys.stdout.flush()
        if self.error is not None:
            raise self.error

    def failed(self, exc: OSError) -> None:
        """Handle a failed write: quiet for a broken pipe, else raise :class:`WriteError`."""
        self.broken = True
        self._discard()
        if isinstance(exc, BrokenPipeError):
            return
        self.error = WriteError(f"write error: {exc.strerror or exc}")
        raise self.error from None

    def _discard(self) -> None:
        # What is still buffered, and what the interpreter flushes at exit, goes to /dev/null.
        assert self._saved is not None
        try:
            fd = self._saved.fileno()
        except (OSError, ValueError):
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)

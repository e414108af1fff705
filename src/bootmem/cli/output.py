"""What the command line prints: names made safe for a terminal, JSON on stdout."""

from __future__ import annotations

import sys
from typing import Any

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


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

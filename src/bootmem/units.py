"""Sizes and alignment, in the units Linux prints.

``K`` is KiB, as in "Freeing initrd memory: 30436K".  Every range is half-open ``[start, end)``.
"""

from __future__ import annotations

import re

from bootmem.errors import UsageError

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

_SUFFIX = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SIZE_RE = re.compile(r"^\s*(0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*$", re.IGNORECASE)


def align_down(value: int, alignment: int) -> int:
    """The largest multiple of ``alignment`` (a power of two) not above ``value``.

    >>> align_down(0x1fff, 0x1000)
    4096
    """
    return value & ~(alignment - 1)


def align_up(value: int, alignment: int) -> int:
    """The smallest multiple of ``alignment`` (a power of two) not below ``value``.

    >>> hex(align_up(0x1001, 0x1000))
    '0x2000'
    """
    return (value + alignment - 1) & ~(alignment - 1)


def parse_size(text: str) -> int:
    """Bytes from ``"256M"``, ``"1G"``, ``"4096"``, ``"0x8000000"``, ``"1.5G"`` or ``"64KiB"``.

    Suffixes are binary (K = 1024), as in the kernel's ``memparse``.

    >>> parse_size("256M")
    268435456
    >>> parse_size("0x1000")
    4096
    """
    m = _SIZE_RE.match(text)
    if m is None:
        raise UsageError(f"not a size: {text!r} (try 256M, 1G, 0x8000000)")
    number, suffix = m.group(1), m.group(2).upper()
    value = int(number, 16) if number.lower().startswith("0x") else float(number)
    result = int(value * _SUFFIX[suffix])
    if result < 0:
        raise UsageError(f"not a size: {text!r}")
    return result


def parse_size_or_share(text: str) -> tuple[float | None, int | None]:
    """``"50%"`` as ``(0.5, None)``, a size as ``(None, bytes)``: a limit given either way.

    >>> parse_size_or_share("50%"), parse_size_or_share("64M")
    ((0.5, None), (None, 67108864))
    """
    text = text.strip()
    if not text.endswith("%"):
        return None, parse_size(text)
    try:
        pct = float(text[:-1])
    except ValueError:
        raise UsageError(f"not a percentage: {text!r}") from None
    if not 0 < pct <= 100:
        raise UsageError(f"{text!r} must be between 0% and 100%")
    return pct / 100, None


def parse_address(text: str) -> int:
    """An address: hex with ``0x`` or decimal, with an optional size suffix (``"2G"``)."""
    return parse_size(text)


def format_k(nbytes: int) -> str:
    """Bytes as Linux prints them in the boot log: ``"30436K"`` (KiB, rounded down)."""
    return f"{nbytes >> 10}K"


def format_size(nbytes: int) -> str:
    """Bytes for people: ``"128.7 MiB"``, ``"4.0 KiB"``, ``"512 B"``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")

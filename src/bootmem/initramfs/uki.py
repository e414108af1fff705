"""Unified kernel images: a PE/COFF EFI program (systemd-stub, ``ukify``) that carries the
initrd in a section named ``.initrd``.

:func:`initrd_section` finds where that section's bytes lie in the file, reading only the
headers (the PE/COFF specification: the MS-DOS stub's ``e_lfanew`` at 0x3c, the ``PE\\0\\0``
signature, the COFF file header, then 40-byte section headers).  The section's size is its
``VirtualSize`` when set (``SizeOfRawData`` is rounded up to the file alignment), bounded by
the raw data, as ``objcopy -O binary --only-section=.initrd`` takes it.
"""

from __future__ import annotations

import struct
from typing import Protocol

from bootmem.errors import ImageError

# Machine, NumberOfSections, TimeDateStamp, PointerToSymbolTable, NumberOfSymbols,
# SizeOfOptionalHeader, Characteristics
_COFF = struct.Struct("<HHIIIHH")
_SECTION = struct.Struct("<8sIIII")  # Name, VirtualSize, VirtualAddress, SizeOfRawData, PointerToRawData
_SECTION_SIZE = 40
MAX_SECTIONS = 96  # the PE/COFF loader's own limit


class ReadAt(Protocol):
    size: int

    def read_at(self, offset: int, n: int, /) -> bytes | memoryview: ...


def is_pe(head: bytes | memoryview) -> bool:
    """Whether ``head`` starts like a PE/COFF file (``MZ``)."""
    return bytes(head[:2]) == b"MZ"


def initrd_section(image: ReadAt) -> tuple[int, int] | None:
    """``(offset, size)`` of the ``.initrd`` section of the PE file ``image``, or ``None`` when
    ``image`` is not a PE file.  :class:`ImageError` for a PE file with no ``.initrd`` section
    or with headers or a section that lie outside the file."""
    if not is_pe(image.read_at(0, 2)):
        return None
    head = bytes(image.read_at(0, 0x40))
    if len(head) < 0x40:
        raise ImageError(f"PE file of {image.size} bytes is too short for an MS-DOS header")
    (pe,) = struct.unpack_from("<I", head, 0x3C)
    signature = bytes(image.read_at(pe, 4 + _COFF.size))
    if len(signature) < 4 + _COFF.size or signature[:4] != b"PE\0\0":
        raise ImageError(f"not a PE/COFF image: no 'PE\\0\\0' signature at e_lfanew {pe:#x}")
    _machine, count, _time, _symbols, _nsymbols, optional, _flags = _COFF.unpack_from(signature, 4)
    if count > MAX_SECTIONS:
        raise ImageError(f"PE image declares {count} sections (at most {MAX_SECTIONS})")
    table = pe + 4 + 20 + optional
    raw = bytes(image.read_at(table, count * _SECTION_SIZE))
    if len(raw) < count * _SECTION_SIZE:
        raise ImageError(f"PE section table at {table:#x} lies past the end of the file")
    names = []
    for i in range(count):
        name, vsize, _vaddr, rawsize, pointer = _SECTION.unpack_from(raw, i * _SECTION_SIZE)
        names.append(name.rstrip(b"\0").decode("ascii", "replace"))
        if names[-1] != ".initrd":
            continue
        size = min(vsize, rawsize) if vsize else rawsize
        if pointer + size > image.size:
            raise ImageError(
                f"PE section .initrd [{pointer:#x}, {pointer + size:#x}) lies past the end of the "
                f"{image.size}-byte file"
            )
        return pointer, size
    raise ImageError(f"PE image without an .initrd section (sections: {', '.join(names) or 'none'})")


__all__ = ["initrd_section", "is_pe"]

"""Regressions found by fuzzing the device tree reader (fuzz/fuzz_fdt.py).

Each test names the bug; the input is the smallest blob that showed it.
"""

from __future__ import annotations

import struct

import pytest

from bootmem.errors import FdtError
from bootmem.fdt import FDT_MAGIC, DeviceTree

FDT_END = 9


def _blob(structure: bytes) -> bytes:
    """A version-17 header, an empty memory-reservation block and ``structure``, no strings."""
    rsvmap, off_struct = 0x28, 0x38
    total = off_struct + len(structure)
    header = struct.pack(">10I", FDT_MAGIC, total, off_struct, total, rsvmap, 17, 16, 0, 0, len(structure))
    return header + bytes(16) + structure


def test_structure_block_without_a_root_node_is_an_fdt_error() -> None:
    # fdt_check_full accepts a structure block that is only FDT_END; every accessor then hit
    # libfdt's FDT_ERR_BADOFFSET at the root and raised libfdt.FdtException.
    with pytest.raises(FdtError, match=r"FDT_END at 0x38 before the root node closed"):
        DeviceTree.from_bytes(_blob(struct.pack(">I", FDT_END)))

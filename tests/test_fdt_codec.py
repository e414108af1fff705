"""bootmem.fdt's own codec: every offset and length checked before use, errors naming the place.

Each broken blob is made from a well-formed one by changing one field, so each test checks one
rule of the Devicetree Specification v0.4 chapter 5.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from bootmem.errors import FdtError
from bootmem.fdt import MAX_TOTALSIZE, DeviceTree, Node, Tree, parse, read_blob

FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_NOP, FDT_END = 1, 2, 3, 4, 9


def blob_of(structure: bytes, strings: bytes = b"", *, memreserve: bytes = bytes(16)) -> bytes:
    """A version-17 DTB of the given blocks, laid out as dtc does."""
    off_rsv = 0x28
    off_struct = off_rsv + len(memreserve)
    off_strings = off_struct + len(structure)
    total = off_strings + len(strings)
    header = struct.pack(
        ">10I", 0xD00DFEED, total, off_struct, off_strings, off_rsv, 17, 16, 0, len(strings), len(structure)
    )
    return header + memreserve + structure + strings


def words(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def node(name: bytes) -> bytes:
    raw = name + b"\0"
    return words(FDT_BEGIN_NODE) + raw + bytes(-len(raw) % 4)


def prop(nameoff: int, value: bytes) -> bytes:
    return words(FDT_PROP, len(value), nameoff) + value + bytes(-len(value) % 4)


def with_header(blob: bytes, **fields: int) -> bytes:
    names = [
        *("magic", "totalsize", "off_dt_struct", "off_dt_strings", "off_mem_rsvmap", "version"),
        *("last_comp_version", "boot_cpuid_phys", "size_dt_strings", "size_dt_struct"),
    ]
    values = dict(zip(names, struct.unpack_from(">10I", blob), strict=True)) | fields
    return struct.pack(">10I", *values.values()) + blob[40:]


ROOT = node(b"")
CLOSE2 = words(FDT_END_NODE, FDT_END_NODE, FDT_END)
GOOD = blob_of(
    ROOT + prop(0, b"\0\0\0\2") + node(b"chosen") + prop(15, b"quiet\0") + words(FDT_NOP, FDT_END_NODE)
    + words(FDT_END_NODE, FDT_END),
    b"#address-cells\0bootargs\0",
)  # fmt: skip


def error(blob: bytes) -> str:
    with pytest.raises(FdtError) as excinfo:
        parse(blob)
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_the_good_blob_parses_and_rebuilds_without_its_nop() -> None:
    tree = parse(GOOD)
    assert tree == Tree(Node("", {"#address-cells": b"\0\0\0\2"}, [Node("chosen", {"bootargs": b"quiet\0"})]))
    assert DeviceTree.from_bytes(GOOD).bootargs == "quiet"
    rebuilt = tree.to_bytes()
    assert len(rebuilt) == len(GOOD) - 4
    assert parse(rebuilt) == tree


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"totalsize": 0x20}, "totalsize 0x20 is smaller than the header"),
        ({"totalsize": MAX_TOTALSIZE + 1}, f"totalsize {MAX_TOTALSIZE + 1:#x} is larger than the 16 MiB"),
        ({"totalsize": 0xFFFFFFFF}, "totalsize 0xffffffff"),
        ({"version": 15, "last_comp_version": 2}, "unsupported device tree version 15"),
        ({"version": 17, "last_comp_version": 18}, "last compatible 18"),
        ({"off_dt_struct": 0x10}, "structure block [0x10,"),
        ({"off_dt_struct": 0xFFFFFF00}, "structure block [0xffffff00,"),
        ({"size_dt_struct": 0x1000}, "is outside the blob's [0x28,"),
        ({"off_dt_strings": 0x7FFFFFFF}, "strings block [0x7fffffff,"),
        ({"off_mem_rsvmap": 0x2C}, "memory reservation block at 0x2c is not 8-byte aligned"),
        ({"off_dt_struct": 0x3A}, "structure block at 0x3a is not 4-byte aligned"),
    ],
)
def test_header_fields_are_checked_against_the_blob(fields: dict[str, int], fragment: str) -> None:
    assert fragment in error(with_header(GOOD, **fields))


def test_totalsize_past_the_bytes_names_both() -> None:
    assert f"totalsize {len(GOOD):#x} but only {len(GOOD) - 1:#x} bytes" in error(GOOD[:-1])


def test_memreserve_block_without_its_terminator() -> None:
    blob = blob_of(b"", b"", memreserve=struct.pack(">QQ", 0x1000, 0x1000))
    assert "memory reservation block runs past" in error(with_header(blob, off_dt_struct=0x38))


@pytest.mark.parametrize(
    ("structure", "strings", "fragment"),
    [
        (words(FDT_END), b"", "FDT_END at 0x38 before the root node closed"),
        (ROOT + words(FDT_END), b"", "/: FDT_END at 0x40 before the root node closed"),
        (ROOT + words(0x77), b"", "/: unknown token 0x77 at 0x40"),
        (node(b""), b"", "/: token at 0x40 runs past the structure block"),
        (words(FDT_BEGIN_NODE) + b"abc", b"", "node name at 0x3c is not NUL-terminated"),
        (node(b"root") + words(FDT_END_NODE, FDT_END), b"", "the root node is named 'root'"),
        (ROOT + node(b"a/b") + CLOSE2, b"", "node '/a/b'"),
        (ROOT + ROOT + CLOSE2, b"", "node '/'"),
        (ROOT + node(b"\xff") + CLOSE2, b"", "is not UTF-8"),
        (ROOT + node(b"cpu") + words(FDT_END_NODE) + node(b"cpu") + CLOSE2, b"", "two nodes named '/cpu'"),
        (ROOT + CLOSE2, b"", "FDT_END_NODE at 0x44 outside any node"),
        (ROOT + words(FDT_END_NODE) + node(b""), b"", "a second root node at 0x44"),
        (words(FDT_PROP, 0, 0), b"x\0", "FDT_PROP at 0x38 outside any node"),
        (ROOT + node(b"chosen") + prop(9, b"") + CLOSE2, b"bootargs\0",
         "/chosen: property at 0x4c names string 0x9, outside the 0x9-byte strings block"),
        (ROOT + node(b"chosen") + prop(0, b"") + CLOSE2, b"bootargs",
         "string 0x0, outside the 0x8-byte strings block or not NUL-terminated"),
        (ROOT + node(b"chosen") + words(FDT_PROP, 0x7FFFFFF0, 0) + CLOSE2,
         b"bootargs\0", "/chosen property 'bootargs': 0x7ffffff0 bytes at 0x58 run past the structure block"),
        (ROOT + node(b"chosen") + prop(0, b"a\0") + prop(0, b"b\0") + CLOSE2,
         b"bootargs\0", "/chosen has two properties named 'bootargs'"),
        (ROOT + prop(0, b"") + words(FDT_END_NODE, FDT_END), b"\0", "/: property at 0x40 has an empty name"),
        (ROOT + node(b"a") + words(FDT_END_NODE) + prop(0, b"") + words(FDT_END_NODE, FDT_END), b"x\0",
         "/: a property at 0x4c after a child node"),
    ],
)  # fmt: skip
def test_structure_block_errors_name_the_node_and_property(
    structure: bytes, strings: bytes, fragment: str
) -> None:
    assert fragment in error(blob_of(structure, strings))


def test_nothing_past_the_structure_block_is_read_as_tokens() -> None:
    # size_dt_struct ends the block before FDT_END, although the bytes are there.
    blob = with_header(GOOD, size_dt_struct=struct.unpack_from(">I", GOOD, 36)[0] - 4)
    assert "token at" in error(blob) and "runs past the structure block" in error(blob)


def test_version_16_reads_without_size_dt_struct() -> None:
    assert parse(with_header(GOOD, version=16, size_dt_struct=0)) == parse(GOOD)


def test_deep_nesting_needs_no_recursion() -> None:
    depth = 5000
    structure = ROOT + node(b"n") * depth + words(FDT_END_NODE) * (depth + 1) + words(FDT_END)
    tree = parse(blob_of(structure))
    assert tree.to_bytes() == blob_of(structure)


def test_to_bytes_refuses_names_it_cannot_write() -> None:
    with pytest.raises(FdtError, match=r"node '/a/b/' has a name"):
        Tree(Node("", children=[Node("a", children=[Node("b/")])])).to_bytes()
    with pytest.raises(FdtError, match=r"/a property '' has a name"):
        Tree(Node("", children=[Node("a", {"": b""})])).to_bytes()
    with pytest.raises(FdtError, match=r"memreserve entry \(0x10000000000000000, 0x1\)"):
        Tree(Node(""), [(1 << 64, 1)]).to_bytes()
    with pytest.raises(FdtError, match=r"memreserve entry \(0x1000, 0x0\) is empty"):
        Tree(Node(""), [(0x1000, 0)]).to_bytes()


def test_memreserve_block_ends_at_the_first_size_0_as_libfdt_and_linux_read_it() -> None:
    # Found by the mutation test against libfdt: fdt_num_mem_rsv stops at size 0, whatever the
    # address, and so does Linux's early_init_fdt_scan_reserved_mem.
    entries = struct.pack(">QQQQQQ", 0x1000, 0x1000, 0x8F000000, 0, 0x2000, 0x1000)
    blob = blob_of(ROOT + words(FDT_END_NODE, FDT_END), memreserve=entries + bytes(16))
    assert parse(blob).memreserve == [(0x1000, 0x1000)]


def test_memreserve_past_2_to_the_64_is_an_error_from_the_accessor() -> None:
    blob = Tree(Node(""), [((1 << 64) - 0x1000, 0x2000)]).to_bytes()
    with pytest.raises(FdtError, match=r"memreserve entry \(0xfffffffffffff000, 0x2000\) runs past 2\^64"):
        _ = DeviceTree.from_bytes(blob).memreserve


# --- files: the header first, then totalsize bytes, whatever the file -----------------------------


def test_read_blob_of_dev_zero_stops_at_the_header() -> None:
    started = time.monotonic()
    with pytest.raises(FdtError, match="bad magic 00000000"):
        read_blob("/dev/zero")
    assert time.monotonic() - started < 5


def test_read_blob_refuses_an_absurd_totalsize_before_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.dtb"
    with open(path, "wb") as f:
        f.write(with_header(GOOD, totalsize=0xFFFFFFF0))
        f.truncate(1 << 33)  # sparse 8 GiB: read whole it would not fit
    with pytest.raises(FdtError, match="totalsize 0xfffffff0 is larger than the 16 MiB"):
        read_blob(path)


def test_read_blob_of_a_truncated_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "short.dtb"
    path.write_bytes(GOOD[:-8])
    with pytest.raises(FdtError, match=rf"truncated device tree '{os.fspath(path)}': totalsize"):
        read_blob(path)


def test_read_blob_of_a_padded_file_reads_totalsize_bytes(tmp_path: Path) -> None:
    path = tmp_path / "padded.dtb"
    path.write_bytes(GOOD + b"\xff" * (1 << 20))
    assert read_blob(path) == GOOD
    assert DeviceTree.from_file(path).totalsize == len(GOOD)

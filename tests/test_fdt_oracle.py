"""bootmem.fdt's codec against the real libfdt (pylibfdt), dtc and QEMU's own device trees.

libfdt and dtc are the oracle: every blob they write, bootmem parses to the tree libfdt walks;
every blob bootmem writes, libfdt walks to the tree bootmem meant and dtc rewrites byte for byte.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootmem.errors import FdtError
from bootmem.fdt import DeviceTree, MemoryRange, Node, Tree, parse, read_blob
from tests.conftest import require_module, require_tool
from tests.test_fdt import ARM32_BOARD, QEMU_ARM64_VIRT, QEMU_RISCV_VIRT, dtc


def libfdt_tree(blob: bytes) -> Tree:
    """``blob`` as libfdt walks it: every node, every property in offset order, every memreserve."""
    libfdt: Any = require_module("libfdt")
    quiet = (libfdt.NOTFOUND,)
    fdt = libfdt.Fdt(blob)

    def node(offset: int) -> Node:
        result = Node(fdt.get_name(offset))
        prop = fdt.first_property_offset(offset, quiet)
        while prop >= 0:
            p = fdt.get_property_by_offset(prop)
            result.properties[p.name] = bytes(p)
            prop = fdt.next_property_offset(prop, quiet)
        child = fdt.first_subnode(offset, quiet)
        while child >= 0:
            result.children.append(node(child))
            child = fdt.next_subnode(child, quiet)
        return result

    memreserve = [tuple(fdt.get_mem_rsv(i))[-2:] for i in range(fdt.num_mem_rsv())]
    return Tree(node(0), [(int(a), int(s)) for a, s in memreserve], fdt.boot_cpuid_phys())


def libfdt_accepts(blob: bytes) -> bool:
    libfdt: Any = require_module("libfdt")
    return int(libfdt.fdt_check_full(bytearray(blob), len(blob))) == 0


# --- trees dtc writes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source", [QEMU_RISCV_VIRT, QEMU_ARM64_VIRT, ARM32_BOARD], ids=["riscv", "arm64", "arm32"]
)
def test_dtc_blobs_parse_as_libfdt_walks_them_and_rebuild_byte_for_byte(source: str) -> None:
    blob = dtc(source)
    tree = parse(blob)
    assert tree == libfdt_tree(blob)
    assert tree.to_bytes() == blob


def test_padded_dtc_blob_and_its_padding_ignored(tmp_path: Path) -> None:
    # dtc -p pads inside totalsize (free space after the strings); -S sets totalsize.
    padded = subprocess.run(
        [require_tool("dtc"), "-q", "-I", "dts", "-O", "dtb", "-p", "4096", "-o", "-", "-"],
        input=QEMU_RISCV_VIRT.encode(),
        capture_output=True,
        check=True,
    ).stdout
    assert parse(padded) == libfdt_tree(padded) == parse(dtc(QEMU_RISCV_VIRT))
    path = tmp_path / "padded.dtb"
    path.write_bytes(padded + bytes(1 << 20))
    assert read_blob(path) == padded


# --- trees QEMU writes --------------------------------------------------------------------------


QEMU_MACHINES = {
    # system emulator, machine, -m, the RAM it declares, where the initrd goes
    "riscv64": ("qemu-system-riscv64", "virt", "256M", MemoryRange(0x80000000, 0x90000000)),
    "aarch64": ("qemu-system-aarch64", "virt", "512M", MemoryRange(0x40000000, 0x60000000)),
}


@pytest.mark.parametrize("arch", sorted(QEMU_MACHINES))
def test_qemu_dumpdtb_parses_as_libfdt_walks_it(arch: str, tmp_path: Path) -> None:
    qemu, machine, mem, ram = QEMU_MACHINES[arch]
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"0707010000" * 100)
    dump = tmp_path / "virt.dtb"
    subprocess.run(
        [require_tool(qemu), "-machine", f"{machine},dumpdtb={dump}", "-m", mem, "-display", "none",
         "-kernel", str(initrd), "-initrd", str(initrd), "-append", "console=ttyS0 quiet"],
        capture_output=True,
        check=True,
        timeout=120,
    )  # fmt: skip
    blob = read_blob(dump)
    assert len(blob) <= dump.stat().st_size
    tree = parse(blob)
    assert tree == libfdt_tree(blob)
    dt = DeviceTree.from_bytes(blob)
    assert dt.memory == [ram]
    assert dt.bootargs == "console=ttyS0 quiet"
    assert dt.initrd is not None and dt.initrd.size == 1000
    # What bootmem writes back, dtc decompiles to the same source as QEMU's own blob.
    dts = [dtc(b, to="dts") for b in (blob, tree.to_bytes())]
    assert dts[0] == dts[1]


# --- trees bootmem writes -------------------------------------------------------------------------

_names = st.text("abcdefghijklmnopqrstuvwxyz0123456789,._+-", min_size=1, max_size=12)
_props = st.dictionaries(
    st.text("abcdefghijklmnopqrstuvwxyz#,._+-", min_size=1, max_size=16).filter(lambda n: n != "name"),
    st.binary(max_size=24),
    max_size=5,
)


def _nodes(children: st.SearchStrategy[list[Node]]) -> st.SearchStrategy[Node]:
    return st.builds(Node, _names, _props, children)


_unique_children = st.lists(
    st.recursive(
        st.builds(Node, _names, _props),
        lambda c: _nodes(st.lists(c, max_size=3, unique_by=lambda n: n.name)),
        max_leaves=12,
    ),
    max_size=4,
    unique_by=lambda n: n.name,
)
trees = st.builds(
    Tree,
    st.builds(Node, st.just(""), _props, _unique_children),
    st.lists(st.tuples(st.integers(0, (1 << 64) - 1), st.integers(1, (1 << 64) - 1)), max_size=3),
    st.integers(0, 7),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_what_bootmem_writes_libfdt_walks_and_dtc_rewrites_byte_for_byte(tree: Tree) -> None:
    blob = tree.to_bytes()
    assert libfdt_accepts(blob)
    assert libfdt_tree(blob) == tree == parse(blob)
    again = subprocess.run(
        [require_tool("dtc"), "-q", "-I", "dtb", "-O", "dtb", "-o", "-", "-"], input=blob, capture_output=True
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == blob


# --- broken blobs: what bootmem accepts, libfdt accepts and walks the same -------------------------


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_blob_is_refused_or_read_as_libfdt_reads_it(data: st.DataObject) -> None:
    blob = bytearray(DeviceTree.build(
        memory=[(0x80000000, 0x90000000)],
        initrd=(0x88000000, 0x88100000),
        bootargs="console=ttyS0",
        memreserve=[(0x8F000000, 0x8F001000)],
        reserved_memory=[("fw", 0x80000000, 0x80040000)],
    ))  # fmt: skip
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.sampled_from([0, 1, 2, 3, 4, 9, 0x7F, 0xFF, blob[at] ^ 0x10]))
    try:
        tree = parse(bytes(blob))
    except FdtError as exc:
        assert "\n" not in str(exc)
        return
    # Accepted: then libfdt accepts it too and sees the same tree.
    assert libfdt_accepts(bytes(blob))
    assert libfdt_tree(bytes(blob)) == tree

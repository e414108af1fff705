"""bootmem.fdt against trees that dtc compiles, and against dtc's reading of the trees bootmem writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootmem.errors import FdtError
from bootmem.fdt import DeviceTree, InitrdRange, MemoryRange, ReservedRegion
from tests.conftest import require_tool


def dtc(source: str | bytes, *, to: str = "dtb") -> bytes:
    """Compile (``to="dtb"``) or decompile (``to="dts"``) with the real dtc."""
    path = require_tool("dtc")
    if isinstance(source, str):
        source = source.encode()
    fmt_in = "dts" if to == "dtb" else "dtb"
    proc = subprocess.run(
        [path, "-q", "-I", fmt_in, "-O", to, "-o", "-", "-"], input=source, capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def one_line_error(excinfo: pytest.ExceptionInfo[FdtError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- real trees, compiled by dtc -----------------------------------------------------------

# Shaped like `qemu-system-riscv64 -M virt,dumpdtb=...` from QEMU 8.x after OpenSBI's fixups:
# 32-bit initrd cells, a no-map reservation for the firmware.
QEMU_RISCV_VIRT = """
/dts-v1/;
/ {
    #address-cells = <0x02>;
    #size-cells = <0x02>;
    compatible = "riscv-virtio";
    model = "riscv-virtio,qemu";

    chosen {
        linux,initrd-end = <0x88b9e5a1>;
        linux,initrd-start = <0x88200000>;
        bootargs = "console=ttyS0 rdinit=/sbin/init";
        stdout-path = "/soc/serial@10000000";
    };

    memory@80000000 {
        device_type = "memory";
        reg = <0x00 0x80000000 0x00 0x10000000>;
    };

    reserved-memory {
        #address-cells = <0x02>;
        #size-cells = <0x02>;
        ranges;

        mmode_resv0@80000000 {
            reg = <0x00 0x80000000 0x00 0x40000>;
            no-map;
        };
    };

    cpus {
        #address-cells = <0x01>;
        #size-cells = <0x00>;
        timebase-frequency = <0x989680>;

        cpu@0 {
            device_type = "cpu";
            reg = <0x00>;
            compatible = "riscv";
        };
    };
};
"""

# Shaped like `qemu-system-aarch64 -M virt` with two NUMA nodes: 64-bit initrd cells, two
# /memory nodes, the second above 4 GiB, written in reverse address order.
QEMU_ARM64_VIRT = """
/dts-v1/;
/ {
    #address-cells = <0x02>;
    #size-cells = <0x02>;
    interrupt-parent = <0x8002>;
    model = "linux,dummy-virt";
    compatible = "linux,dummy-virt";

    chosen {
        linux,initrd-end = <0x00 0x49a3c000>;
        linux,initrd-start = <0x00 0x48000000>;
        bootargs = "console=ttyAMA0 root=/dev/ram0";
    };

    memory@140000000 {
        numa-node-id = <0x01>;
        reg = <0x01 0x40000000 0x01 0x00>;
        device_type = "memory";
    };

    memory@40000000 {
        numa-node-id = <0x00>;
        reg = <0x00 0x40000000 0x01 0x00>;
        device_type = "memory";
    };
};
"""

# A 32-bit board: one cell each, memreserve entries, two ranges in one node, a memory node
# recognised only by device_type, a disabled bank, and /reserved-memory with static,
# dynamic and disabled children.
ARM32_BOARD = """
/dts-v1/;
/memreserve/ 0x60000000 0x1000;
/memreserve/ 0x7ff00000 0x100000;
/ {
    #address-cells = <1>;
    #size-cells = <1>;
    model = "vendor,board";
    compatible = "vendor,board";

    chosen {
        bootargs = "";
    };

    memory@60000000 {
        device_type = "memory";
        reg = <0x60000000 0x10000000 0x80000000 0x8000000>;
    };

    sdram@a0000000 {
        device_type = "memory";
        reg = <0xa0000000 0x1000000>;
    };

    memory@c0000000 {
        device_type = "memory";
        reg = <0xc0000000 0x1000000>;
        status = "disabled";
    };

    reserved-memory {
        #address-cells = <1>;
        #size-cells = <1>;
        ranges;

        ramoops@6f000000 {
            compatible = "ramoops";
            reg = <0x6f000000 0x100000>;
        };

        linux,cma {
            compatible = "shared-dma-pool";
            reusable;
            size = <0x4000000>;
            alignment = <0x2000>;
            linux,cma-default;
        };

        gap@65000000 {
            reg = <0x65000000 0x1000 0x66000000 0x2000>;
            no-map;
        };

        off@6e000000 {
            reg = <0x6e000000 0x1000>;
            status = "disabled";
        };
    };
};
"""


def test_qemu_riscv_virt_32bit_initrd_cells() -> None:
    dt = DeviceTree.from_bytes(dtc(QEMU_RISCV_VIRT))
    assert dt.memory == [MemoryRange(0x80000000, 0x90000000)]
    assert dt.initrd == InitrdRange(0x88200000, 0x88B9E5A1)
    assert dt.initrd.size == 0x99E5A1
    assert dt.bootargs == "console=ttyS0 rdinit=/sbin/init"
    assert dt.memreserve == []
    assert dt.reserved_memory == [ReservedRegion("mmode_resv0@80000000", 0x80000000, 0x80040000)]


def test_qemu_arm64_virt_64bit_initrd_cells_two_memory_nodes() -> None:
    blob = dtc(QEMU_ARM64_VIRT)
    dt = DeviceTree.from_bytes(blob)
    assert dt.memory == [MemoryRange(0x40000000, 0x140000000), MemoryRange(0x140000000, 0x240000000)]
    assert sum(r.size for r in dt.memory) == 8 << 30
    assert dt.initrd == InitrdRange(0x48000000, 0x49A3C000)
    assert dt.bootargs == "console=ttyAMA0 root=/dev/ram0"
    assert dt.memreserve == []
    assert dt.reserved_memory == []
    assert dt.totalsize == len(blob)


def test_one_cell_board_with_memreserve_and_reserved_memory() -> None:
    dt = DeviceTree.from_bytes(dtc(ARM32_BOARD))
    # Two entries of memory@60000000, sdram@a0000000 by device_type; memory@c0000000 is disabled.
    assert dt.memory == [
        MemoryRange(0x60000000, 0x70000000),
        MemoryRange(0x80000000, 0x88000000),
        MemoryRange(0xA0000000, 0xA1000000),
    ]
    assert dt.initrd is None
    assert dt.bootargs == ""
    assert dt.memreserve == [
        ReservedRegion("memreserve", 0x60000000, 0x60001000),
        ReservedRegion("memreserve", 0x7FF00000, 0x80000000),
    ]
    # linux,cma has only a size (dynamic) and off@6e000000 is disabled: both ignored.
    assert dt.reserved_memory == [
        ReservedRegion("ramoops@6f000000", 0x6F000000, 0x6F100000),
        ReservedRegion("gap@65000000", 0x65000000, 0x65001000),
        ReservedRegion("gap@65000000", 0x66000000, 0x66002000),
    ]


def test_root_cells_default_to_two_and_one() -> None:
    # Devicetree Specification 2.3.5: absent #address-cells is 2, absent #size-cells is 1.
    dt = DeviceTree.from_bytes(
        dtc('/dts-v1/; / { memory { device_type = "memory"; reg = <0 0x1000 0x2000>; }; };')
    )
    assert dt.memory == [MemoryRange(0x1000, 0x3000)]


def test_memory_node_named_memory_without_device_type_and_zero_sizes_skipped() -> None:
    source = """/dts-v1/; / { #address-cells = <1>; #size-cells = <1>;
        memory { reg = <0x1000 0x1000 0x5000 0>; };
        memoryless@0 { reg = <0x9000 0x1000>; };
    };"""
    assert DeviceTree.from_bytes(dtc(source)).memory == [MemoryRange(0x1000, 0x2000)]


def test_reserved_memory_uses_its_own_cells() -> None:
    source = """/dts-v1/; / { #address-cells = <1>; #size-cells = <1>;
        reserved-memory { #address-cells = <2>; #size-cells = <1>; ranges;
            fw@100000000 { reg = <0x1 0x0 0x20000>; };
        };
    };"""
    assert DeviceTree.from_bytes(dtc(source)).reserved_memory == [
        ReservedRegion("fw@100000000", 0x100000000, 0x100020000)
    ]


def test_no_chosen_means_no_initrd_and_no_bootargs() -> None:
    dt = DeviceTree.from_bytes(dtc("/dts-v1/; / { };"))
    assert (dt.initrd, dt.bootargs, dt.memory, dt.memreserve, dt.reserved_memory) == (None, None, [], [], [])


def test_chosen_at_0_is_read_as_linux_does() -> None:
    dt = DeviceTree.from_bytes(dtc('/dts-v1/; / { chosen@0 { bootargs = "quiet"; }; };'))
    assert dt.bootargs == "quiet"


def test_empty_initrd_is_returned_with_size_zero() -> None:
    source = "/dts-v1/; / { chosen { linux,initrd-start = <0x1000>; linux,initrd-end = <0x1000>; }; };"
    assert DeviceTree.from_bytes(dtc(source)).initrd == InitrdRange(0x1000, 0x1000)


def test_mixed_initrd_cell_widths() -> None:
    source = "/dts-v1/; / { chosen { linux,initrd-start = <0x1000>; linux,initrd-end = <0x1 0x0>; }; };"
    assert DeviceTree.from_bytes(dtc(source)).initrd == InitrdRange(0x1000, 0x100000000)


def test_from_file_and_bytes_past_totalsize(tmp_path: Path) -> None:
    blob = dtc(QEMU_RISCV_VIRT)
    path = tmp_path / "virt.dtb"
    path.write_bytes(blob + b"\xff" * 64)
    dt = DeviceTree.from_file(path)
    assert dt.totalsize == len(blob)
    assert dt.initrd == InitrdRange(0x88200000, 0x88B9E5A1)


# --- writing ---------------------------------------------------------------------------------


def build_machine() -> bytes:
    """A riscv-virt-like machine with every field bootmem writes."""
    return DeviceTree.build(
        memory=[(0x80000000, 0xC0000000), (0x100000000, 0x140000000)],
        initrd=(0xBE000000, 0xBF9D3A11),
        bootargs="console=ttyS0 rdinit=/sbin/init",
        memreserve=[(0xBFE00000, 0xBFE10000)],
        reserved_memory=[("opensbi@80000000", 0x80000000, 0x80040000), ("kernel", 0x80200000, 0x81200000)],
    )


def test_build_round_trip_gives_back_every_field() -> None:
    blob = build_machine()
    dt = DeviceTree.from_bytes(blob)
    assert dt.memory == [MemoryRange(0x80000000, 0xC0000000), MemoryRange(0x100000000, 0x140000000)]
    assert dt.initrd == InitrdRange(0xBE000000, 0xBF9D3A11)
    assert dt.bootargs == "console=ttyS0 rdinit=/sbin/init"
    assert dt.memreserve == [ReservedRegion("memreserve", 0xBFE00000, 0xBFE10000)]
    # A name without a unit address gets one, as the spec asks of a node with reg.
    assert dt.reserved_memory == [
        ReservedRegion("opensbi@80000000", 0x80000000, 0x80040000),
        ReservedRegion("kernel@80200000", 0x80200000, 0x81200000),
    ]
    assert dt.totalsize == len(blob)


def test_build_decompiles_with_dtc_to_the_expected_properties() -> None:
    blob = build_machine()
    path = require_tool("dtc")
    proc = subprocess.run([path, "-I", "dtb", "-O", "dts", "-o", "-", "-"], input=blob, capture_output=True)
    assert proc.returncode == 0
    assert proc.stderr == b"", proc.stderr.decode()  # no dtc warnings either
    text = proc.stdout.decode()
    for line in [
        "/memreserve/\t0x00000000bfe00000 0x0000000000010000;",
        "#address-cells = <0x02>;",
        "#size-cells = <0x02>;",
        'model = "bootmem,virt";',
        'bootargs = "console=ttyS0 rdinit=/sbin/init";',
        "linux,initrd-start = <0x00 0xbe000000>;",
        "linux,initrd-end = <0x00 0xbf9d3a11>;",
        "memory@80000000 {",
        "memory@100000000 {",
        'device_type = "memory";',
        "reg = <0x00 0x80000000 0x00 0x40000000>;",
        "reg = <0x01 0x00 0x00 0x40000000>;",
        "reserved-memory {",
        "opensbi@80000000 {",
        "kernel@80200000 {",
        "reg = <0x00 0x80200000 0x00 0x1000000>;",
    ]:
        assert line in text, line
    # And dtc's source, compiled again by dtc, reads the same.
    again = DeviceTree.from_bytes(dtc(text))
    dt = DeviceTree.from_bytes(blob)
    assert (again.memory, again.initrd, again.bootargs, again.memreserve, again.reserved_memory) == (
        dt.memory,
        dt.initrd,
        dt.bootargs,
        dt.memreserve,
        dt.reserved_memory,
    )


def test_build_32bit_cells_like_old_qemu_riscv() -> None:
    blob = DeviceTree.build(
        memory=[(0x80000000, 0x90000000)],
        initrd=(0x88200000, 0x88B9E5A1),
        address_cells=1,
        size_cells=1,
        initrd_cells=1,
    )
    text = dtc(blob, to="dts").decode()
    assert "linux,initrd-start = <0x88200000>;" in text
    assert "reg = <0x80000000 0x10000000>;" in text
    dt = DeviceTree.from_bytes(blob)
    assert dt.memory == [MemoryRange(0x80000000, 0x90000000)]
    assert dt.initrd == InitrdRange(0x88200000, 0x88B9E5A1)
    assert dt.bootargs is None


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"memory": [(0x2000, 0x1000)]}, "[0x2000, 0x1000)"),
        ({"memory": [(0x1000, 0x1000)]}, "[0x1000, 0x1000)"),
        ({"memory": [(0x100000000, 0x100001000)], "address_cells": 1}, "0x100000000 does not fit in 1 cell"),
        ({"initrd": (0x1000, 0x100000000), "initrd_cells": 1}, "initrd end 0x100000000"),
        ({"initrd": (0x2000, 0x1000)}, "initrd end 0x1000 is below its start 0x2000"),
        ({"memreserve": [(0x3000, 0x2000)]}, "memreserve [0x3000, 0x2000)"),
        ({"reserved_memory": [("a/b", 0, 0x1000)]}, "'a/b@0'"),
        ({"reserved_memory": [("fw", 0, 0x1000), ("fw@0", 0, 0x1000)]}, "'fw@0'"),
        ({"memory": [(0, 0x1000), (0, 0x2000)]}, "'memory@0'"),
        ({"initrd_cells": 3}, "initrd_cells 3"),
    ],
)
def test_build_refuses_what_it_cannot_write(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(FdtError) as excinfo:
        DeviceTree.build(**kwargs)  # type: ignore[arg-type]
    assert fragment in one_line_error(excinfo)


# --- bad input --------------------------------------------------------------------------------


def test_not_a_dtb_names_the_magic() -> None:
    with pytest.raises(FdtError) as excinfo:
        DeviceTree.from_bytes(b"\x7fELF" + bytes(60))
    assert "bad magic 7f454c46" in one_line_error(excinfo)


def test_too_short_for_the_magic() -> None:
    with pytest.raises(FdtError, match="2 bytes"):
        DeviceTree.from_bytes(b"\xd0\x0d")


def test_truncated_blob_names_totalsize_and_length() -> None:
    blob = build_machine()
    with pytest.raises(FdtError) as excinfo:
        DeviceTree.from_bytes(blob[:-8])
    assert f"totalsize {len(blob):#x} but only {len(blob) - 8:#x} bytes" in one_line_error(excinfo)
    with pytest.raises(FdtError, match="shorter than the 40-byte header"):
        DeviceTree.from_bytes(blob[:20])


def test_broken_structure_names_the_token_and_its_offset() -> None:
    blob = bytearray(build_machine())
    off_dt_struct = int.from_bytes(blob[8:12], "big")
    blob[off_dt_struct : off_dt_struct + 4] = (0x77).to_bytes(4, "big")  # not FDT_BEGIN_NODE
    with pytest.raises(FdtError) as excinfo:
        DeviceTree.from_bytes(bytes(blob))
    assert f"unknown token 0x77 at {off_dt_struct:#x}" in one_line_error(excinfo)


def test_bad_version_names_it() -> None:
    blob = bytearray(build_machine())
    blob[20:24] = (99).to_bytes(4, "big")  # version
    blob[24:28] = (99).to_bytes(4, "big")  # last_comp_version
    with pytest.raises(FdtError, match=r"unsupported device tree version 99 \(last compatible 99\)"):
        DeviceTree.from_bytes(bytes(blob))


@pytest.mark.parametrize(
    ("chosen", "fragment"),
    [
        ("linux,initrd-start = <0x1000>;", "linux,initrd-start but no linux,initrd-end"),
        ("linux,initrd-end = <0x1000>;", "linux,initrd-end but no linux,initrd-start"),
        (
            "linux,initrd-start = [00 00 10]; linux,initrd-end = <0x2000>;",
            "linux,initrd-start is 3 bytes (000010)",
        ),
        ("linux,initrd-start = <0x1000>; linux,initrd-end = <0 0 0x2000>;", "linux,initrd-end is 12 bytes"),
        (
            "linux,initrd-start = <0x2000>; linux,initrd-end = <0x1000>;",
            "linux,initrd-end 0x1000 is below linux,initrd-start 0x2000",
        ),
    ],
)
def test_bad_initrd_properties(chosen: str, fragment: str) -> None:
    dt = DeviceTree.from_bytes(dtc(f"/dts-v1/; / {{ chosen {{ {chosen} }}; }};"))
    with pytest.raises(FdtError) as excinfo:
        _ = dt.initrd
    assert fragment in one_line_error(excinfo)


def test_reg_not_a_multiple_of_the_entry_size() -> None:
    source = """/dts-v1/; / { #address-cells = <2>; #size-cells = <2>;
        memory@80000000 { device_type = "memory"; reg = <0 0x80000000 0x1000>; };
        reserved-memory { #address-cells = <1>; #size-cells = <1>; ranges;
            fw@0 { reg = <0 0x1000 0x2000>; };
        };
    };"""
    dt = DeviceTree.from_bytes(dtc(source))
    with pytest.raises(FdtError) as excinfo:
        _ = dt.memory
    message = one_line_error(excinfo)
    assert "/memory@80000000 reg is 12 bytes, not a multiple of 16" in message
    with pytest.raises(FdtError) as excinfo:
        _ = dt.reserved_memory
    assert "/reserved-memory/fw@0 reg is 12 bytes, not a multiple of 8" in one_line_error(excinfo)


@pytest.mark.parametrize(
    ("root", "fragment"),
    [
        ("#address-cells = <0>;", "/ #address-cells is 0"),
        ("#size-cells = <5>;", "/ #size-cells is 5"),
        ("#size-cells = [01];", "/ #size-cells is 1 bytes (01)"),
    ],
)
def test_bad_cell_counts(root: str, fragment: str) -> None:
    dt = DeviceTree.from_bytes(dtc(f"/dts-v1/; / {{ {root} }};"))
    with pytest.raises(FdtError) as excinfo:
        _ = dt.memory
    assert fragment in one_line_error(excinfo)


def test_bootargs_that_is_not_a_string() -> None:
    dt = DeviceTree.from_bytes(dtc("/dts-v1/; / { chosen { bootargs = <0x41424344>; }; };"))
    with pytest.raises(FdtError) as excinfo:
        _ = dt.bootargs
    assert "/chosen bootargs is not a NUL-terminated string: b'ABCD'" in one_line_error(excinfo)


def test_fdt_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        DeviceTree.from_bytes(b"not a device tree")


# --- property ----------------------------------------------------------------------------------


@st.composite
def machines(draw: st.DrawFn) -> tuple[list[tuple[int, int]], tuple[int, int], int, int, int]:
    """Disjoint memory ranges, an initrd inside one of them, and cell counts that can hold them."""
    address_cells = draw(st.sampled_from([1, 2]))
    size_cells = draw(st.sampled_from([1, 2]))
    initrd_cells = draw(st.sampled_from([1, 2]))
    limit = 1 << 32 if 1 in (address_cells, size_cells, initrd_cells) else 1 << 64
    bounds = draw(st.lists(st.integers(0, limit - 1), min_size=2, max_size=16, unique=True))
    bounds.sort()
    if len(bounds) % 2:
        bounds.pop()
    memory = list(zip(bounds[::2], bounds[1::2], strict=True))
    start, end = draw(st.sampled_from(memory))
    initrd = tuple(sorted(draw(st.lists(st.integers(start, end), min_size=2, max_size=2))))
    ranges = draw(st.permutations(memory))
    return ranges, (initrd[0], initrd[1]), address_cells, size_cells, initrd_cells


@given(machines())
def test_disjoint_memory_and_an_initrd_inside_survive_build_and_parse(
    machine: tuple[list[tuple[int, int]], tuple[int, int], int, int, int],
) -> None:
    memory, initrd, address_cells, size_cells, initrd_cells = machine
    blob = DeviceTree.build(
        memory=memory,
        initrd=initrd,
        address_cells=address_cells,
        size_cells=size_cells,
        initrd_cells=initrd_cells,
    )
    dt = DeviceTree.from_bytes(blob)
    assert dt.memory == [MemoryRange(s, e) for s, e in sorted(memory)]
    assert dt.initrd == InitrdRange(*initrd)
    assert dt.totalsize == len(blob)

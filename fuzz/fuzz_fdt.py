"""Fuzz the device tree reader: ``DeviceTree.from_bytes`` and every accessor.

An input that starts with the DTB magic is parsed as it is.  libfdt's C checks are not
instrumented, so most mutated blobs stop there; an input without the magic is therefore cut
at ``\xff\xfe`` into property values (``#address-cells``, ``/memory`` ``reg`` and ``status``,
``/chosen`` ``linux,initrd-start`` ...) written by libfdt's sequential writer into a well-formed
tree, so that the accessors see arbitrary values.

Each accessor is called on its own: a malformed ``/chosen`` must not hide ``/memory``, so one
accessor raising :class:`~bootmem.errors.FdtError` does not stop the others.  Any exception
that is not a :class:`~bootmem.errors.BootmemError` is a crash.

    python -m fuzz.fuzz_fdt -atheris_runs=300000 -max_len=4096 fuzz/corpus/fdt
"""

from __future__ import annotations

import struct

import libfdt

from bootmem.errors import BootmemError
from bootmem.fdt import DeviceTree
from fuzz.harness import fuzz

MAX_LEN = 4096
ACCESSORS = ("totalsize", "memory", "initrd", "bootargs", "memreserve", "reserved_memory")


# Where each piece of a magic-less input goes: (node path components, property name).
PROPERTIES = (
    ((), "#address-cells"),
    ((), "#size-cells"),
    (("memory@40000000",), "reg"),
    (("memory@40000000",), "status"),
    (("memory@40000000",), "device_type"),
    (("chosen",), "linux,initrd-start"),
    (("chosen",), "linux,initrd-end"),
    (("chosen",), "bootargs"),
    (("reserved-memory",), "#address-cells"),
    (("reserved-memory",), "#size-cells"),
    (("reserved-memory", "fw@0"), "reg"),
    (("reserved-memory", "fw@0"), "status"),
    (("mem",), "device_type"),
    (("mem",), "reg"),
)


def tree_from_values(data: bytes) -> bytes:
    """A well-formed DTB whose properties are the pieces of ``data`` (see the module's docstring)."""
    values = data.split(b"\xff\xfe")
    sw = libfdt.FdtSw()
    for i in range(0, len(values[-1]) - 15, 16):
        address, size = struct.unpack_from(">QQ", values[-1], i)
        sw.add_reservemap_entry(address, size)
    sw.finish_reservemap()
    props: dict[tuple[str, ...], list[tuple[str, bytes]]] = {}
    for (path, name), value in zip(PROPERTIES, values[:-1], strict=False):
        props.setdefault(path, []).append((name, value))
    with sw.add_node(""):
        for name, value in props.get((), []):
            sw.property(name, value)
        for top in ("memory@40000000", "chosen", "reserved-memory", "mem"):
            with sw.add_node(top):
                for name, value in props.get((top,), []):
                    sw.property(name, value)
                if top == "reserved-memory":
                    with sw.add_node("fw@0"):
                        for name, value in props.get((top, "fw@0"), []):
                            sw.property(name, value)
    fdt = sw.as_fdt()
    return bytes(fdt.as_bytearray()[: fdt.totalsize()])


def TestOneInput(data: bytes) -> None:
    if not data.startswith(b"\xd0\x0d\xfe\xed"):
        try:
            data = tree_from_values(data)
        except libfdt.FdtException:
            return  # the writer's own limits (FDT_ERR_NOSPACE): not bootmem's input
    try:
        tree = DeviceTree.from_bytes(data)
    except BootmemError:
        return
    assert tree.totalsize <= len(data)
    repr(tree)
    for name in ACCESSORS:
        try:
            value = getattr(tree, name)
        except BootmemError:
            continue
        if name == "memory":
            assert all(r.start < r.end for r in value), value
            assert value == sorted(value, key=lambda r: (r.start, r.end)), value
        elif name in ("memreserve", "reserved_memory"):
            assert all(r.start < r.end for r in value), value
        elif name == "initrd" and value is not None:
            assert value.start <= value.end, value
        repr(value)


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()

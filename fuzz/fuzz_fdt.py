"""Fuzz the device tree reader: ``DeviceTree.from_bytes`` and every accessor.

An input that starts with the DTB magic is parsed as it is (the codec is Python, so its checks
are instrumented too); an input without the magic is cut
at ``\xff\xfe`` into property values (``#address-cells``, ``/memory`` ``reg`` and ``status``,
``/chosen`` ``linux,initrd-start`` ...) written by bootmem's own writer into a well-formed
tree, so that the accessors see arbitrary values.

Each accessor is called on its own: a malformed ``/chosen`` must not hide ``/memory``, so one
accessor raising :class:`~bootmem.errors.FdtError` does not stop the others.  Any exception
that is not a :class:`~bootmem.errors.BootmemError` is a crash.

    python -m fuzz.fuzz_fdt -atheris_runs=300000 -max_len=4096 fuzz/corpus/fdt
"""

from __future__ import annotations

import itertools
import struct

from bootmem.errors import BootmemError
from bootmem.fdt import DeviceTree, Node, Tree
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
    entries = [struct.unpack_from(">QQ", values[-1], i) for i in range(0, len(values[-1]) - 15, 16)]
    # As in a blob, the first entry of size 0 ends the block.
    memreserve = list(itertools.takewhile(lambda entry: entry[1] != 0, entries))
    root = Node("", children=[Node(top) for top in ("memory@40000000", "chosen", "reserved-memory", "mem")])
    fw = Node("fw@0")
    root.children[2].children.append(fw)
    nodes = {(): root, **{(child.name,): child for child in root.children}, ("reserved-memory", "fw@0"): fw}
    for (path, name), value in zip(PROPERTIES, values[:-1], strict=False):
        nodes[path].properties[name] = value
    return Tree(root, memreserve).to_bytes()


def TestOneInput(data: bytes) -> None:
    if not data.startswith(b"\xd0\x0d\xfe\xed"):
        data = tree_from_values(data)
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

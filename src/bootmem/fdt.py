"""The device tree handoff: reading what a bootloader passes, and writing it for built machines.

A flattened device tree (DTB, Devicetree Specification v0.4 chapter 5) is read and written with
pylibfdt, the Python binding of the real libfdt.  bootmem needs from it what Linux's early boot
code needs (``drivers/of/fdt.c``):

- every ``/memory`` node's ``reg`` entries (``early_init_dt_scan_memory``);
- ``/chosen`` ``linux,initrd-start`` and ``linux,initrd-end`` (``early_init_dt_check_for_initrd``),
  each one or two cells; the end is exclusive, as in Linux;
- ``/chosen`` ``bootargs``;
- the memory-reservation block (``/memreserve/``) and the static ``/reserved-memory`` children
  (``early_init_fdt_scan_reserved_mem``).

Every address and size is in bytes; every range is half-open ``[start, end)``.  Accessors return
``None`` or ``[]`` for what is absent and raise :class:`~bootmem.errors.FdtError` for what is
malformed, naming the node, the property and the value at fault.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import libfdt

from bootmem.errors import FdtError

__all__ = ["DeviceTree", "InitrdRange", "MemoryRange", "ReservedRegion"]

# struct fdt_header (Devicetree Specification 5.2): ten big-endian u32 fields.
_HEADER = struct.Struct(">10I")
FDT_MAGIC = 0xD00DFEED
_CELL = 4
# libfdt's FDT_MAX_NCELLS: no address or size is wider than four cells.
_MAX_NCELLS = 4
# Devicetree Specification 2.2.1: node-name characters, then an optional @unit-address.
_NODE_NAME = re.compile(r"^[0-9A-Za-z,._+-]{1,31}(@[0-9A-Za-z,._+-]+)?$")
_NOTFOUND = (libfdt.NOTFOUND,)


@dataclass(frozen=True, slots=True, repr=False)
class _Range:
    """Bytes ``[start, end)``, printed in hex."""

    start: int
    end: int

    @property
    def size(self) -> int:
        """Bytes in the range."""
        return self.end - self.start

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.start:#x}, {self.end:#x})"


@dataclass(frozen=True, slots=True, repr=False)
class MemoryRange(_Range):
    """RAM the device tree declares: bytes ``[start, end)`` from one ``/memory`` ``reg`` entry."""


@dataclass(frozen=True, slots=True, repr=False)
class InitrdRange(_Range):
    """Where the bootloader put the initrd: bytes ``[start, end)``, from ``/chosen``.

    ``size`` is 0 when start equals end: Linux then has no initrd.
    """


@dataclass(frozen=True, slots=True, repr=False)
class ReservedRegion:
    """Memory the kernel must not allocate: bytes ``[start, end)``.

    ``name`` is ``"memreserve"`` for an entry of the memory-reservation block, else the full name
    of the ``/reserved-memory`` child (``"mmode_resv0@80000000"``), as Linux prints it.
    """

    name: str
    start: int
    end: int

    @property
    def size(self) -> int:
        """Bytes in the region."""
        return self.end - self.start

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.start:#x}, {self.end:#x})"


class DeviceTree:
    """A parsed device tree blob.  Build one with :meth:`from_bytes` or :meth:`from_file`.

    The blob is checked whole on construction (header, truncation, structure); each accessor then
    checks only the properties it reads, so a malformed ``/chosen`` does not hide ``/memory``.
    """

    __slots__ = ("_blob", "_fdt")

    def __init__(self, blob: bytes, fdt: libfdt.Fdt) -> None:
        """Internal: use :meth:`from_bytes`."""
        self._blob = blob
        self._fdt = fdt

    # --- reading ---------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, blob: bytes | bytearray | memoryview) -> DeviceTree:
        """Parse a DTB.  Bytes past the header's ``totalsize`` are ignored.

        Raises :class:`FdtError` for bad magic (naming the four bytes), a blob shorter than its
        ``totalsize``, and any structural error libfdt's ``fdt_check_full`` finds (with libfdt's
        error string).
        """
        data = bytes(blob)
        if len(data) < 4:
            raise FdtError(f"not a device tree blob: {len(data)} bytes, too short for the magic")
        magic = data[:4]
        if int.from_bytes(magic, "big") != FDT_MAGIC:
            raise FdtError(f"not a device tree blob: bad magic {magic.hex()} (expected {FDT_MAGIC:08x})")
        if len(data) < _HEADER.size:
            raise FdtError(
                f"truncated device tree: {len(data)} bytes, shorter than the {_HEADER.size}-byte header"
            )
        totalsize = _HEADER.unpack_from(data)[1]
        if totalsize > len(data):
            raise FdtError(f"truncated device tree: totalsize {totalsize:#x} but only {len(data):#x} bytes")
        data = data[:totalsize]
        # pylibfdt's SWIG wrapper takes a bytearray (not bytes) for a const buffer.
        err = libfdt.fdt_check_full(bytearray(data), totalsize)
        if err < 0:
            raise FdtError(f"bad device tree: {libfdt.fdt_strerror(err)}")
        try:
            fdt = libfdt.Fdt(data)
        except libfdt.FdtException as exc:
            raise FdtError(f"bad device tree: {libfdt.fdt_strerror(exc.err)}") from None
        # fdt_check_full accepts a structure block without any node, but every accessor starts
        # at the root, which libfdt (and drivers/of/fdt.c) expect as FDT_BEGIN_NODE at offset 0.
        try:
            fdt.get_name(0)
        except libfdt.FdtException as exc:
            off_struct = _HEADER.unpack_from(data)[2]
            raise FdtError(
                f"bad device tree: no root node at the structure block's start {off_struct:#x} "
                f"({libfdt.fdt_strerror(exc.err)})"
            ) from None
        return cls(data, fdt)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> DeviceTree:
        """Parse the DTB in file ``path`` (``OSError`` if it cannot be read; see :meth:`from_bytes`)."""
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    @property
    def totalsize(self) -> int:
        """Bytes of the blob (the header's ``totalsize``): what the bootloader reserves for the DTB."""
        return len(self._blob)

    @property
    def memory(self) -> list[MemoryRange]:
        """Every ``reg`` entry of every memory node, sorted by address.

        A memory node is a child of the root named ``memory`` or ``memory@...``, or with
        ``device_type = "memory"``.  Entries are decoded with the root's ``#address-cells`` and
        ``#size-cells`` (2 and 1 when absent, Devicetree Specification 2.3.5).  As in Linux's
        ``early_init_dt_scan_memory``, nodes whose ``status`` is not ``"okay"`` and entries of size 0
        are skipped.  Overlapping entries are returned as they are, not merged.
        """
        address_cells, size_cells = self._cells(0, "/")
        ranges: list[MemoryRange] = []
        for node, name in self._children(0):
            if not (_is_memory_node(name) or self._string(node, "device_type") == "memory"):
                continue
            if not self._available(node):
                continue
            for start, size in self._reg(node, address_cells, size_cells):
                if size:
                    ranges.append(MemoryRange(start, start + size))
        ranges.sort(key=lambda r: (r.start, r.end))
        return ranges

    @property
    def initrd(self) -> InitrdRange | None:
        """``/chosen`` ``linux,initrd-start`` and ``linux,initrd-end`` (exclusive), or ``None``.

        Each is one cell (4 bytes, as QEMU up to 9.0 writes for riscv virt) or two (8 bytes).
        Raises :class:`FdtError` if only one is present, either has another length, or the end is
        below the start.
        """
        chosen = self._chosen()
        if chosen is None:
            return None
        start = self._prop(chosen, "linux,initrd-start")
        end = self._prop(chosen, "linux,initrd-end")
        if start is None and end is None:
            return None
        if start is None or end is None:
            have, lack = ("start", "end") if end is None else ("end", "start")
            raise FdtError(f"/chosen has linux,initrd-{have} but no linux,initrd-{lack}")
        start_addr = _initrd_cell(start, "linux,initrd-start")
        end_addr = _initrd_cell(end, "linux,initrd-end")
        if end_addr < start_addr:
            raise FdtError(
                f"/chosen linux,initrd-end {end_addr:#x} is below linux,initrd-start {start_addr:#x}"
            )
        return InitrdRange(start_addr, end_addr)

    @property
    def bootargs(self) -> str | None:
        """``/chosen`` ``bootargs`` (the kernel command line), or ``None`` when absent."""
        chosen = self._chosen()
        return None if chosen is None else self._string(chosen, "bootargs")

    @property
    def memreserve(self) -> list[ReservedRegion]:
        """The memory-reservation block's entries, in blob order, named ``"memreserve"``.

        Entries of size 0 are skipped.
        """
        regions = []
        for index in range(self._fdt.num_mem_rsv()):
            address, size = self._fdt.get_mem_rsv(index)
            if size:
                regions.append(ReservedRegion("memreserve", address, address + size))
        return regions

    @property
    def reserved_memory(self) -> list[ReservedRegion]:
        """Static ``/reserved-memory`` regions, in tree order, named after their node.

        Each child with a ``reg`` gives one region per entry, decoded with ``/reserved-memory``'s
        own ``#address-cells`` and ``#size-cells``.  Children with only ``size`` (dynamic
        allocations the kernel places itself) and children whose ``status`` is not ``"okay"`` are
        ignored, as in Linux's ``fdt_scan_reserved_mem``.
        """
        parent = self._fdt.path_offset("/reserved-memory", _NOTFOUND)
        if parent < 0:
            return []
        address_cells, size_cells = self._cells(parent, "/reserved-memory")
        regions = []
        for node, name in self._children(parent):
            if not self._available(node) or self._prop(node, "reg") is None:
                continue
            for start, size in self._reg(node, address_cells, size_cells):
                if size:
                    regions.append(ReservedRegion(name, start, start + size))
        return regions

    def __repr__(self) -> str:
        return f"<DeviceTree totalsize={self.totalsize:#x}>"

    # --- helpers over libfdt ---------------------------------------------------------------

    def _children(self, parent: int) -> Iterator[tuple[int, str]]:
        node = self._fdt.first_subnode(parent, _NOTFOUND)
        while node >= 0:
            yield node, self._fdt.get_name(node)
            node = self._fdt.next_subnode(node, _NOTFOUND)

    def _prop(self, node: int, name: str) -> bytes | None:
        value = self._fdt.getprop(node, name, _NOTFOUND)
        return None if isinstance(value, int) else bytes(value)

    def _path(self, node: int) -> str:
        path: str = self._fdt.get_path(node)
        return path

    def _string(self, node: int, name: str) -> str | None:
        value = self._prop(node, name)
        if value is None:
            return None
        # Devicetree Specification 2.2.4: a <string> is NUL-terminated.
        if not value.endswith(b"\0") or b"\0" in value[:-1]:
            raise FdtError(f"{self._path(node)} {name} is not a NUL-terminated string: {value!r}")
        try:
            return value[:-1].decode()
        except UnicodeDecodeError:
            raise FdtError(f"{self._path(node)} {name} is not UTF-8: {value!r}") from None

    def _available(self, node: int) -> bool:
        # drivers/of/fdt.c of_fdt_device_is_available: no status, "okay" or "ok".
        value = self._prop(node, "status")
        return value is None or value.rstrip(b"\0") in (b"okay", b"ok")

    def _cells(self, node: int, path: str) -> tuple[int, int]:
        """``#address-cells`` and ``#size-cells`` for the children of ``node`` (default 2 and 1)."""
        address_cells = self._ncells(node, path, "#address-cells", default=2, least=1)
        size_cells = self._ncells(node, path, "#size-cells", default=1, least=0)
        return address_cells, size_cells

    def _ncells(self, node: int, path: str, name: str, *, default: int, least: int) -> int:
        value = self._prop(node, name)
        if value is None:
            return default
        if len(value) != _CELL:
            raise FdtError(f"{path} {name} is {len(value)} bytes ({value.hex()}); expected 4")
        cells = int.from_bytes(value, "big")
        if not least <= cells <= _MAX_NCELLS:
            raise FdtError(f"{path} {name} is {cells}; expected {least} to {_MAX_NCELLS}")
        return cells

    def _reg(self, node: int, address_cells: int, size_cells: int) -> list[tuple[int, int]]:
        """The ``(address, size)`` entries of ``node``'s ``reg``; ``[]`` when it has none."""
        value = self._prop(node, "reg")
        if value is None:
            return []
        entry = (address_cells + size_cells) * _CELL
        if len(value) % entry:
            raise FdtError(
                f"{self._path(node)} reg is {len(value)} bytes, not a multiple of {entry} "
                f"(#address-cells {address_cells} + #size-cells {size_cells})"
            )
        split = address_cells * _CELL
        return [
            (int.from_bytes(value[i : i + split], "big"), int.from_bytes(value[i + split : i + entry], "big"))
            for i in range(0, len(value), entry)
        ]

    def _chosen(self) -> int | None:
        # drivers/of/fdt.c early_init_dt_scan_chosen: "/chosen", else "/chosen@0".
        for path in ("/chosen", "/chosen@0"):
            node: int = self._fdt.path_offset(path, _NOTFOUND)
            if node >= 0:
                return node
        return None

    # --- writing ---------------------------------------------------------------------------

    @staticmethod
    def build(
        memory: Iterable[tuple[int, int]] = (),
        initrd: tuple[int, int] | None = None,
        bootargs: str | None = None,
        memreserve: Iterable[tuple[int, int]] = (),
        reserved_memory: Iterable[tuple[str, int, int]] = (),
        *,
        address_cells: int = 2,
        size_cells: int = 2,
        initrd_cells: int = 2,
        model: str = "bootmem,virt",
    ) -> bytes:
        """A DTB describing a machine bootmem builds, written with libfdt's sequential writer.

        - ``memory``: ``(start, end)`` ranges of RAM, one ``/memory@<start>`` node each
          (``device_type = "memory"``);
        - ``initrd``: ``(start, end)``, end exclusive, written to ``/chosen`` in ``initrd_cells``
          cells each (1 as QEMU up to 9.0 for riscv virt, 2 as later versions);
        - ``bootargs``: the command line, in ``/chosen``;
        - ``memreserve``: ``(start, end)`` entries of the memory-reservation block;
        - ``reserved_memory``: ``(name, start, end)`` static ``/reserved-memory`` children; a name
          without a unit address gets ``@<start in hex>`` appended, as the spec asks of a node with
          ``reg``;
        - ``address_cells`` / ``size_cells``: the root's (and ``/reserved-memory``'s) cell counts;
        - ``model``: the root's ``model`` and ``compatible``.

        Raises :class:`FdtError` for a range with ``end <= start``, a value that does not fit its
        cells, a bad node name or two nodes with the same name.  ``dtc -I dtb`` decompiles the
        result without warnings.
        """
        for what, cells, most in (
            ("address_cells", address_cells, _MAX_NCELLS),
            ("size_cells", size_cells, _MAX_NCELLS),
            ("initrd_cells", initrd_cells, 2),
        ):
            if not 1 <= cells <= most:
                raise FdtError(f"{what} {cells} is out of range (1 to {most})")

        def reg(start: int, end: int, what: str) -> bytes:
            if end <= start or start < 0:
                raise FdtError(f"{what} [{start:#x}, {end:#x}) is empty or negative")
            return _encode(start, address_cells, f"{what} start") + _encode(
                end - start, size_cells, f"{what} size"
            )

        sw = libfdt.FdtSw()
        for start, end in memreserve:
            if end <= start or start < 0 or end > 1 << 64:
                raise FdtError(f"memreserve [{start:#x}, {end:#x}) is empty or outside 64 bits")
            sw.add_reservemap_entry(start, end - start)
        sw.finish_reservemap()
        with sw.add_node(""):
            sw.property_u32("#address-cells", address_cells)
            sw.property_u32("#size-cells", size_cells)
            sw.property_string("model", model)
            sw.property_string("compatible", model)

            with sw.add_node("chosen"):
                if bootargs is not None:
                    sw.property_string("bootargs", bootargs)
                if initrd is not None:
                    start, end = initrd
                    if end < start:
                        raise FdtError(f"initrd end {end:#x} is below its start {start:#x}")
                    sw.property("linux,initrd-start", _encode(start, initrd_cells, "initrd start"))
                    sw.property("linux,initrd-end", _encode(end, initrd_cells, "initrd end"))

            names: set[str] = set()
            for start, end in sorted(memory):
                name = _unique(f"memory@{start:x}", names)
                with sw.add_node(name):
                    sw.property_string("device_type", "memory")
                    sw.property("reg", reg(start, end, f"memory {name}"))

            regions = list(reserved_memory)
            if regions:
                with sw.add_node("reserved-memory"):
                    sw.property_u32("#address-cells", address_cells)
                    sw.property_u32("#size-cells", size_cells)
                    sw.property("ranges", b"")
                    names = set()
                    for name, start, end in regions:
                        full = name if "@" in name else f"{name}@{start:x}"
                        if not _NODE_NAME.match(full):
                            raise FdtError(f"reserved-memory node name {full!r} is not a valid node name")
                        with sw.add_node(_unique(full, names)):
                            sw.property("reg", reg(start, end, f"reserved-memory {full}"))
        # The writer's buffer is larger than the tree; fdt_finish set totalsize to the tree's end.
        fdt = sw.as_fdt()
        return bytes(fdt.as_bytearray()[: fdt.totalsize()])


def _is_memory_node(name: str) -> bool:
    return name == "memory" or name.startswith("memory@")


def _initrd_cell(value: bytes, name: str) -> int:
    # Linux reads either width with of_read_number(prop, len / 4); bootmem accepts the two
    # widths bootloaders write.
    if len(value) not in (4, 8):
        raise FdtError(f"/chosen {name} is {len(value)} bytes ({value.hex()}); expected 4 or 8")
    return int.from_bytes(value, "big")


def _encode(value: int, cells: int, what: str) -> bytes:
    if not 0 <= value < 1 << (32 * cells):
        raise FdtError(f"{what} {value:#x} does not fit in {cells} cell{'s' if cells > 1 else ''}")
    return value.to_bytes(cells * _CELL, "big")


def _unique(name: str, seen: set[str]) -> str:
    if name in seen:
        raise FdtError(f"two device tree nodes named {name!r}")
    seen.add(name)
    return name

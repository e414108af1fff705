"""The device tree handoff: reading what a bootloader passes, and writing it for built machines.

A flattened device tree (DTB) is parsed and built here, following the Devicetree Specification
v0.4 chapter 5 ("Flattened Devicetree (DTB) Format"): a 40-byte header, the memory-reservation
block, the structure block (tokens ``FDT_BEGIN_NODE``, ``FDT_END_NODE``, ``FDT_PROP``, ``FDT_NOP``,
``FDT_END``) and the strings block.  :func:`parse` gives a :class:`Tree` and :meth:`Tree.to_bytes`
writes one back in dtc's layout, so ``parse(blob).to_bytes() == blob`` for what ``dtc -O dtb``
writes.  libfdt and dtc are the test oracle, not a dependency.

Every length and offset is checked against the blob before it is read: a blob of ``totalsize``
bytes costs ``O(totalsize)`` time and memory, and :func:`read_blob` reads a file's header before
its body, so ``--dtb /dev/zero`` is refused after 40 bytes.

On top of the tree, :class:`DeviceTree` gives what Linux's early boot code needs from it
(``drivers/of/fdt.c``):

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
from dataclasses import dataclass, field

from bootmem.errors import FdtError

__all__ = [
    "MAX_TOTALSIZE",
    "DeviceTree",
    "InitrdRange",
    "MemoryRange",
    "Node",
    "ReservedRegion",
    "Tree",
    "parse",
    "read_blob",
]

# struct fdt_header (Devicetree Specification 5.2): ten big-endian u32 fields.
_HEADER = struct.Struct(">10I")
FDT_MAGIC = 0xD00DFEED
# The version this module writes, and the oldest whose header it reads (v16 lacks size_dt_struct).
FDT_VERSION = 17
FDT_LAST_COMP_VERSION = 16
# Structure block tokens (Devicetree Specification 5.4.1).
FDT_BEGIN_NODE = 0x1
FDT_END_NODE = 0x2
FDT_PROP = 0x3
FDT_NOP = 0x4
FDT_END = 0x9
_U32 = struct.Struct(">I")
_PROP = struct.Struct(">II")  # struct { len; nameoff; } after FDT_PROP
_RESERVE = struct.Struct(">QQ")  # struct fdt_reserve_entry { address; size; }
_CELL = 4
# libfdt's FDT_MAX_NCELLS: no address or size is wider than four cells.
_MAX_NCELLS = 4
# Devicetree Specification 2.2.1: node-name characters, then an optional @unit-address.
_NODE_NAME = re.compile(r"^[0-9A-Za-z,._+-]{1,31}(@[0-9A-Za-z,._+-]+)?$")

#: The largest ``totalsize`` bootmem reads: 16 MiB, eight times arm64 Linux's ``MAX_FDT_SIZE``
#: (QEMU pads its blobs to 1 MiB).  A header claiming more is refused before anything is read.
MAX_TOTALSIZE = 16 << 20


# --- the tree --------------------------------------------------------------------------------


@dataclass(slots=True)
class Node:
    """A device tree node: its name (``""`` for the root), properties in blob order, children."""

    name: str
    properties: dict[str, bytes] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)

    def child(self, name: str) -> Node | None:
        """The first child called ``name``, or ``None``.

        As libfdt's ``fdt_subnode_offset``, a name without a unit address also matches a child
        that has one: ``child("chosen")`` finds ``chosen@0``.

        >>> Node("", children=[Node("chosen@0")]).child("chosen")
        Node(name='chosen@0', properties={}, children=[])
        """
        for node in self.children:
            if node.name == name or ("@" not in name and node.name.partition("@")[0] == name):
                return node
        return None


@dataclass(slots=True)
class Tree:
    """A whole flattened device tree: the root node and the memory-reservation block.

    ``memreserve`` holds ``(address, size)`` entries in blob order, as the block stores them;
    no size is 0 (a size of 0 ends the block).
    """

    root: Node
    memreserve: list[tuple[int, int]] = field(default_factory=list)
    boot_cpuid_phys: int = 0

    def to_bytes(self) -> bytes:
        """The DTB, version 17, in dtc's layout: header, memory-reservation block, structure block,
        strings block, no padding; property names are stored once each, in order of first use,
        sharing a tail with a longer name already stored (as dtc's ``stringtable_insert``).

        Raises :class:`FdtError` for a name that cannot be written (empty, or holding ``/`` or
        NUL), a reservation outside 64 bits, or a blob larger than :data:`MAX_TOTALSIZE`.
        """
        rsvmap = bytearray()
        for address, size in self.memreserve:
            if not (0 <= address < 1 << 64 and 0 < size < 1 << 64):
                raise FdtError(f"memreserve entry ({address:#x}, {size:#x}) is empty or outside 64 bits")
            rsvmap += _RESERVE.pack(address, size)
        rsvmap += _RESERVE.pack(0, 0)

        strings = bytearray()
        offsets: dict[str, int] = {}

        def string_offset(name: str) -> int:
            if name not in offsets:
                encoded = name.encode() + b"\0"
                at = strings.find(encoded)
                if at < 0:
                    at = len(strings)
                    strings.extend(encoded)
                offsets[name] = at
            return offsets[name]

        structure = bytearray()
        # Depth-first, without recursion: (node, path) to open, or None to close the last one.
        todo: list[tuple[Node, str] | None] = [(self.root, "/")]
        while todo:
            item = todo.pop()
            if item is None:
                structure += _U32.pack(FDT_END_NODE)
                continue
            node, path = item
            if path != "/" and not _valid_name(node.name):
                raise FdtError(f"node {path!r} has a name that cannot be written")
            structure += _U32.pack(FDT_BEGIN_NODE) + _padded(node.name.encode() + b"\0")
            for name, value in node.properties.items():
                if not _valid_name(name):
                    raise FdtError(f"{path} property {name!r} has a name that cannot be written")
                structure += _U32.pack(FDT_PROP) + _PROP.pack(len(value), string_offset(name))
                structure += _padded(bytes(value))
            todo.append(None)
            base = path.rstrip("/")
            todo.extend((child, f"{base}/{child.name}") for child in reversed(node.children))
        structure += _U32.pack(FDT_END)

        off_mem_rsvmap = _HEADER.size  # 40: already 8-aligned, as the block must be
        off_dt_struct = off_mem_rsvmap + len(rsvmap)
        off_dt_strings = off_dt_struct + len(structure)
        totalsize = off_dt_strings + len(strings)
        if totalsize > MAX_TOTALSIZE:
            raise FdtError(f"device tree of {totalsize:#x} bytes is larger than {MAX_TOTALSIZE:#x}")
        header = _HEADER.pack(
            FDT_MAGIC,
            totalsize,
            off_dt_struct,
            off_dt_strings,
            off_mem_rsvmap,
            FDT_VERSION,
            FDT_LAST_COMP_VERSION,
            self.boot_cpuid_phys,
            len(strings),
            len(structure),
        )
        return header + bytes(rsvmap) + bytes(structure) + bytes(strings)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _valid_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\0" not in name


# --- parsing ----------------------------------------------------------------------------------


def check_header(header: bytes | bytearray | memoryview) -> int:
    """Check the first 40 bytes of a DTB and return its ``totalsize``.

    Raises :class:`FdtError` naming the value at fault for bad magic, an unsupported version,
    and a ``totalsize`` smaller than the header or larger than :data:`MAX_TOTALSIZE`.
    """
    if len(header) < 4:
        raise FdtError(f"not a device tree blob: {len(header)} bytes, too short for the magic")
    magic = bytes(header[:4])
    if int.from_bytes(magic, "big") != FDT_MAGIC:
        raise FdtError(f"not a device tree blob: bad magic {magic.hex()} (expected {FDT_MAGIC:08x})")
    if len(header) < _HEADER.size:
        raise FdtError(
            f"truncated device tree: {len(header)} bytes, shorter than the {_HEADER.size}-byte header"
        )
    _, totalsize, _, _, _, version, last_comp_version, *_ = _HEADER.unpack_from(header)
    # libfdt's fdt_check_header: a blob this reader understands claims compatibility with 17 or less.
    if version < FDT_LAST_COMP_VERSION or last_comp_version > FDT_VERSION or version < last_comp_version:
        raise FdtError(
            f"unsupported device tree version {version} (last compatible {last_comp_version}); "
            f"bootmem reads versions {FDT_LAST_COMP_VERSION} and {FDT_VERSION}"
        )
    if totalsize < _HEADER.size:
        raise FdtError(f"bad device tree: totalsize {totalsize:#x} is smaller than the header")
    if totalsize > MAX_TOTALSIZE:
        raise FdtError(
            f"device tree totalsize {totalsize:#x} is larger than the {MAX_TOTALSIZE >> 20} MiB bootmem reads"
        )
    return int(totalsize)


def read_blob(path: str | os.PathLike[str]) -> bytes:
    """The DTB at the start of file ``path``: its 40-byte header is read and checked first, then
    only ``totalsize`` bytes, so a padded blob, or a device that never ends, costs its totalsize.

    Raises :class:`FdtError` (see :func:`check_header`; a file shorter than its totalsize names
    both) and ``OSError`` if the file cannot be read.
    """
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        totalsize = check_header(head)
        body = f.read(totalsize - len(head))
    blob = head + body
    if len(blob) < totalsize:
        raise FdtError(
            f"truncated device tree {os.fsdecode(path)!r}: totalsize {totalsize:#x} but only "
            f"{len(blob):#x} bytes"
        )
    return blob


def parse(blob: bytes | bytearray | memoryview) -> Tree:
    """Parse a DTB into a :class:`Tree`.  Bytes past the header's ``totalsize`` are ignored.

    Checked before use: the header (:func:`check_header`), that ``totalsize`` bytes are there,
    every block inside ``totalsize`` and aligned (memory reservations to 8, structure to 4), every
    token, name and value inside the structure block, every property name inside the strings
    block and NUL-terminated, one root node named ``""`` and ``FDT_END`` as the last token, and no
    two properties or sibling nodes with one name.  Each violation raises :class:`FdtError`
    naming the node, the property and the offset at fault.
    """
    data = bytes(blob[: MAX_TOTALSIZE + 1])
    totalsize = check_header(data)
    if totalsize > len(data):
        raise FdtError(f"truncated device tree: totalsize {totalsize:#x} but only {len(data):#x} bytes")
    data = data[:totalsize]
    (_, _, off_dt_struct, off_dt_strings, off_mem_rsvmap, version, _, boot_cpuid_phys, size_dt_strings,
     size_dt_struct) = _HEADER.unpack_from(data)  # fmt: skip
    if version < 17:
        # Version 16 has no size_dt_struct: the structure block runs at most to the end.
        size_dt_struct = totalsize - min(off_dt_struct, totalsize)
    _block(totalsize, "memory reservation block", off_mem_rsvmap, 0, align=8)
    _block(totalsize, "structure block", off_dt_struct, size_dt_struct, align=4)
    _block(totalsize, "strings block", off_dt_strings, size_dt_strings, align=1)
    memreserve = _parse_memreserve(data, off_mem_rsvmap, totalsize)
    strings = data[off_dt_strings : off_dt_strings + size_dt_strings]
    root = _parse_structure(data, off_dt_struct, off_dt_struct + size_dt_struct, strings)
    return Tree(root, memreserve, boot_cpuid_phys)


def _block(totalsize: int, what: str, offset: int, size: int, *, align: int) -> None:
    if offset < _HEADER.size or offset + size > totalsize:
        raise FdtError(
            f"bad device tree: {what} [{offset:#x}, {offset + size:#x}) is outside the blob's "
            f"[{_HEADER.size:#x}, {totalsize:#x})"
        )
    if offset % align:
        raise FdtError(f"bad device tree: {what} at {offset:#x} is not {align}-byte aligned")


def _parse_memreserve(data: bytes, offset: int, end: int) -> list[tuple[int, int]]:
    # Devicetree Specification 5.3: (address, size) pairs up to a pair of zeros.  As libfdt's
    # fdt_num_mem_rsv and Linux's early_init_fdt_scan_reserved_mem, the first size 0 ends it.
    entries: list[tuple[int, int]] = []
    while True:
        if offset + _RESERVE.size > end:
            raise FdtError(f"bad device tree: memory reservation block runs past {end:#x} without its end")
        address, size = _RESERVE.unpack_from(data, offset)
        if size == 0:
            return entries
        entries.append((address, size))
        offset += _RESERVE.size


def _parse_structure(data: bytes, offset: int, end: int, strings: bytes) -> Node:
    stack: list[tuple[Node, str]] = []  # open nodes with their paths
    root: Node | None = None

    def where() -> str:
        return stack[-1][1] if stack else "the structure block"

    def word(at: int, what: str) -> int:
        if at + 4 > end:
            raise FdtError(f"bad device tree: {where()}: {what} at {at:#x} runs past the structure block")
        value: int = _U32.unpack_from(data, at)[0]
        return value

    while True:
        token = word(offset, "token")
        at = offset
        offset += 4
        if token == FDT_BEGIN_NODE:
            if root is not None and not stack:
                raise FdtError(f"bad device tree: a second root node at {at:#x}")
            stop = data.find(b"\0", offset, end)
            if stop < 0:
                raise FdtError(f"bad device tree: {where()}: node name at {offset:#x} is not NUL-terminated")
            name = _decode(data[offset:stop], f"{where()}: node name at {offset:#x}")
            offset = stop + 1 + (-(stop + 1 - at) % 4)
            if stack:
                parent, parent_path = stack[-1]
                path = f"{parent_path.rstrip('/')}/{name}"
                if not _valid_name(name):
                    raise FdtError(f"bad device tree: node {path!r} at {at:#x} has an invalid name")
                if any(child.name == name for child in parent.children):
                    raise FdtError(f"bad device tree: two nodes named {path!r}")
                node = Node(name)
                parent.children.append(node)
            else:
                if name:
                    raise FdtError(f"bad device tree: the root node is named {name!r}, not ''")
                path = "/"
                node = root = Node("")
            stack.append((node, path))
        elif token == FDT_END_NODE:
            if not stack:
                raise FdtError(f"bad device tree: FDT_END_NODE at {at:#x} outside any node")
            stack.pop()
        elif token == FDT_PROP:
            if not stack:
                raise FdtError(f"bad device tree: FDT_PROP at {at:#x} outside any node")
            node, path = stack[-1]
            if node.children:
                raise FdtError(f"bad device tree: {path}: a property at {at:#x} after a child node")
            length, nameoff = word(offset, "property length"), word(offset + 4, "property name offset")
            stop = strings.find(b"\0", nameoff) if nameoff < len(strings) else -1
            if stop < 0:
                raise FdtError(
                    f"bad device tree: {path}: property at {at:#x} names string {nameoff:#x}, outside "
                    f"the {len(strings):#x}-byte strings block or not NUL-terminated"
                )
            name = _decode(strings[nameoff:stop], f"{path}: property name at string {nameoff:#x}")
            value_at = offset + _PROP.size
            if value_at + length > end:
                raise FdtError(
                    f"bad device tree: {path} property {name!r}: {length:#x} bytes at {value_at:#x} "
                    f"run past the structure block's end {end:#x}"
                )
            if not name:
                raise FdtError(f"bad device tree: {path}: property at {at:#x} has an empty name")
            if name in node.properties:
                raise FdtError(f"bad device tree: {path} has two properties named {name!r}")
            node.properties[name] = data[value_at : value_at + length]
            offset = value_at + length + (-length % 4)
        elif token == FDT_NOP:
            pass
        elif token == FDT_END:
            if root is None or stack:
                raise FdtError(f"bad device tree: {where()}: FDT_END at {at:#x} before the root node closed")
            return root
        else:
            raise FdtError(f"bad device tree: {where()}: unknown token {token:#x} at {at:#x}")


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise FdtError(f"bad device tree: {what} is not UTF-8: {raw!r}") from None


# --- the handoff -------------------------------------------------------------------------------


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

    The blob is checked whole on construction (header, truncation, structure: see :func:`parse`);
    each accessor then checks only the properties it reads, so a malformed ``/chosen`` does not
    hide ``/memory``.
    """

    __slots__ = ("_totalsize", "tree")

    def __init__(self, tree: Tree, totalsize: int) -> None:
        """Internal: use :meth:`from_bytes`."""
        self.tree = tree
        self._totalsize = totalsize

    # --- reading ---------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, blob: bytes | bytearray | memoryview) -> DeviceTree:
        """Parse a DTB (see :func:`parse`).  Bytes past the header's ``totalsize`` are ignored."""
        tree = parse(blob)
        return cls(tree, _HEADER.unpack_from(blob)[1])

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> DeviceTree:
        """Parse the DTB in file ``path``, reading no more than its totalsize (see :func:`read_blob`)."""
        return cls.from_bytes(read_blob(path))

    @property
    def totalsize(self) -> int:
        """Bytes of the blob (the header's ``totalsize``): what the bootloader reserves for the DTB."""
        return self._totalsize

    @property
    def memory(self) -> list[MemoryRange]:
        """Every ``reg`` entry of every memory node, sorted by address.

        A memory node is a child of the root named ``memory`` or ``memory@...``, or with
        ``device_type = "memory"``.  Entries are decoded with the root's ``#address-cells`` and
        ``#size-cells`` (2 and 1 when absent, Devicetree Specification 2.3.5).  As in Linux's
        ``early_init_dt_scan_memory``, nodes whose ``status`` is not ``"okay"`` and entries of size 0
        are skipped.  Overlapping entries are returned as they are, not merged.
        """
        root = self.tree.root
        address_cells, size_cells = _cells(root, "/")
        ranges: list[MemoryRange] = []
        for node, path in _children(root, ""):
            if not (_is_memory_node(node.name) or _string(node, path, "device_type") == "memory"):
                continue
            if not _available(node):
                continue
            for start, size in _reg(node, path, address_cells, size_cells):
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
        start = chosen.properties.get("linux,initrd-start")
        end = chosen.properties.get("linux,initrd-end")
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
        return None if chosen is None else _string(chosen, "/chosen", "bootargs")

    @property
    def memreserve(self) -> list[ReservedRegion]:
        """The memory-reservation block's entries, in blob order, named ``"memreserve"``.

        The block ends at the first entry of size 0; an entry that runs past 2^64 raises
        :class:`FdtError`.
        """
        regions = []
        for address, size in self.tree.memreserve:
            if address + size > 1 << 64:
                raise FdtError(f"memreserve entry ({address:#x}, {size:#x}) runs past 2^64")
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
        parent = self.tree.root.child("reserved-memory")
        if parent is None:
            return []
        parent_path = f"/{parent.name}"
        address_cells, size_cells = _cells(parent, parent_path)
        regions = []
        for node, path in _children(parent, parent_path):
            if not _available(node) or "reg" not in node.properties:
                continue
            for start, size in _reg(node, path, address_cells, size_cells):
                if size:
                    regions.append(ReservedRegion(node.name, start, start + size))
        return regions

    def __repr__(self) -> str:
        return f"<DeviceTree totalsize={self.totalsize:#x}>"

    def _chosen(self) -> Node | None:
        # drivers/of/fdt.c early_init_dt_scan_chosen: "/chosen", else "/chosen@0"; libfdt's
        # name match finds a unit address too, so child("chosen") covers both.
        return self.tree.root.child("chosen")

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
        """A DTB describing a machine bootmem builds (see :meth:`Tree.to_bytes`).

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

        reservations = []
        for start, end in memreserve:
            if end <= start or start < 0 or end > 1 << 64:
                raise FdtError(f"memreserve [{start:#x}, {end:#x}) is empty or outside 64 bits")
            reservations.append((start, end - start))

        cell_counts = {"#address-cells": _U32.pack(address_cells), "#size-cells": _U32.pack(size_cells)}
        root = Node("", {**cell_counts, "model": _string_value(model), "compatible": _string_value(model)})
        chosen = Node("chosen")
        root.children.append(chosen)
        if bootargs is not None:
            chosen.properties["bootargs"] = _string_value(bootargs)
        if initrd is not None:
            start, end = initrd
            if end < start:
                raise FdtError(f"initrd end {end:#x} is below its start {start:#x}")
            chosen.properties["linux,initrd-start"] = _encode(start, initrd_cells, "initrd start")
            chosen.properties["linux,initrd-end"] = _encode(end, initrd_cells, "initrd end")

        names: set[str] = set()
        for start, end in sorted(memory):
            name = _unique(f"memory@{start:x}", names)
            properties = {"device_type": _string_value("memory"), "reg": reg(start, end, f"memory {name}")}
            root.children.append(Node(name, properties))

        regions = list(reserved_memory)
        if regions:
            parent = Node("reserved-memory", {**cell_counts, "ranges": b""})
            root.children.append(parent)
            names = set()
            for name, start, end in regions:
                full = name if "@" in name else f"{name}@{start:x}"
                if not _NODE_NAME.match(full):
                    raise FdtError(f"reserved-memory node name {full!r} is not a valid node name")
                value = reg(start, end, f"reserved-memory {full}")
                parent.children.append(Node(_unique(full, names), {"reg": value}))
        return Tree(root, reservations).to_bytes()


def _children(parent: Node, parent_path: str) -> Iterator[tuple[Node, str]]:
    for node in parent.children:
        yield node, f"{parent_path}/{node.name}"


def _string(node: Node, path: str, name: str) -> str | None:
    value = node.properties.get(name)
    if value is None:
        return None
    # Devicetree Specification 2.2.4: a <string> is NUL-terminated.
    if not value.endswith(b"\0") or b"\0" in value[:-1]:
        raise FdtError(f"{path} {name} is not a NUL-terminated string: {value!r}")
    try:
        return value[:-1].decode()
    except UnicodeDecodeError:
        raise FdtError(f"{path} {name} is not UTF-8: {value!r}") from None


def _string_value(text: str) -> bytes:
    if "\0" in text:
        raise FdtError(f"string {text!r} holds a NUL")
    return text.encode() + b"\0"


def _available(node: Node) -> bool:
    # drivers/of/fdt.c of_fdt_device_is_available: no status, "okay" or "ok".
    value = node.properties.get("status")
    return value is None or value.rstrip(b"\0") in (b"okay", b"ok")


def _cells(node: Node, path: str) -> tuple[int, int]:
    """``#address-cells`` and ``#size-cells`` for the children of ``node`` (default 2 and 1)."""
    address_cells = _ncells(node, path, "#address-cells", default=2, least=1)
    size_cells = _ncells(node, path, "#size-cells", default=1, least=0)
    return address_cells, size_cells


def _ncells(node: Node, path: str, name: str, *, default: int, least: int) -> int:
    value = node.properties.get(name)
    if value is None:
        return default
    if len(value) != _CELL:
        raise FdtError(f"{path} {name} is {len(value)} bytes ({value.hex()}); expected 4")
    cells = int.from_bytes(value, "big")
    if not least <= cells <= _MAX_NCELLS:
        raise FdtError(f"{path} {name} is {cells}; expected {least} to {_MAX_NCELLS}")
    return cells


def _reg(node: Node, path: str, address_cells: int, size_cells: int) -> list[tuple[int, int]]:
    """The ``(address, size)`` entries of ``node``'s ``reg``; ``[]`` when it has none."""
    value = node.properties.get("reg")
    if value is None:
        return []
    entry = (address_cells + size_cells) * _CELL
    if len(value) % entry:
        raise FdtError(
            f"{path} reg is {len(value)} bytes, not a multiple of {entry} "
            f"(#address-cells {address_cells} + #size-cells {size_cells})"
        )
    split = address_cells * _CELL
    return [
        (int.from_bytes(value[i : i + split], "big"), int.from_bytes(value[i + split : i + entry], "big"))
        for i in range(0, len(value), entry)
    ]


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

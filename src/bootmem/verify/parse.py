"""What a real kernel said on its console, and the rootfs its probe saw.

:func:`parse_console` reads the lines of the boot that matter to bootmem (Linux 6.1's wording,
``init/initramfs.c`` and ``mm/page_alloc.c``) and the probe's report between its marker
lines, turning the probe's ``stat``/``sha256sum``/``readlink`` records into the same
tab-separated columns as ``bootmem boot --tree`` (:meth:`bootmem.fs.tmpfs.Tmpfs.tree`).
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from typing import Any

from bootmem.filetypes import type_char
from bootmem.verify.images import BEGIN, END

_STAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
_MEMORY = re.compile(r"Memory: (\d+)K/(\d+)K available \(.*?(\d+)K reserved")
_RAMDISK = re.compile(r"RAMDISK: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]")
_FREED = re.compile(r"Freeing initrd memory: (\d+)K")
# free_init_pages() before rootfs is mounted (x86 on one CPU: the SMP alternatives).
_FREED_EARLY = re.compile(r"Freeing (SMP alternatives) memory: (\d+)K")
# mnt_init() prints this just before init_mount_tree() mounts rootfs.
_MOUNT_CACHE = "Mount-cache hash table entries"
_FAILED = re.compile(r"Initramfs unpacking failed: (.*)$")
_TRYING = "Trying to unpack rootfs image as initramfs..."
_NOT_INITRAMFS = "rootfs image is not initramfs"


@dataclass(slots=True)
class KernelReport:
    """The figures and messages of one real boot; sizes in KiB as Linux prints them.

    ``tree`` is ``None`` when the probe never printed a complete report (the kernel panicked
    before init, or the boot timed out).
    """

    lines: list[str]
    memory_line: str | None = None
    available_k: int | None = None
    total_k: int | None = None
    reserved_k: int | None = None
    ramdisk: tuple[int, int] | None = None  # [start, end) as Linux printed [start, last]
    tried_initramfs: bool = False
    unpack_error: str | None = None
    not_initramfs: bool = False
    freed_k: int | None = None
    #: Parts of the kernel image freed before rootfs was mounted, (name, KiB): tmpfs's limit
    #: counts them (``totalram_pages()`` at the mount).
    freed_early: list[tuple[str, int]] = field(default_factory=list)
    tree: list[str] | None = None
    panic: str | None = None
    messages: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "memory_line": self.memory_line,
            "available_k": self.available_k,
            "total_k": self.total_k,
            "reserved_k": self.reserved_k,
            "ramdisk": list(self.ramdisk) if self.ramdisk else None,
            "tried_initramfs": self.tried_initramfs,
            "unpack_error": self.unpack_error,
            "not_initramfs": self.not_initramfs,
            "freed_k": self.freed_k,
            "freed_early_k": dict(self.freed_early),
            "panic": self.panic,
            "paths": len(self.tree) if self.tree is not None else None,
        }


def strip_stamp(line: str) -> str:
    """A kernel log line without its ``[    0.000000] `` timestamp."""
    return _STAMP.sub("", line.rstrip())


def parse_console(text: str) -> KernelReport:
    """The :class:`KernelReport` of a serial console's text."""
    raw = text.splitlines()
    report = KernelReport(lines=[line.rstrip() for line in raw])
    probe: list[str] | None = None
    mounted = False
    for line in raw:
        line = line.rstrip()
        if line == BEGIN:
            probe = []
            continue
        if line == END and probe is not None:
            report.tree = manifest_tree(probe)
            probe = None
            continue
        if probe is not None:
            probe.append(line)
            continue
        message = strip_stamp(line)
        report.messages.append(message)
        if (m := _MEMORY.search(message)) is not None:
            report.memory_line = message
            report.available_k, report.total_k, report.reserved_k = (int(g) for g in m.groups())
        elif (m := _RAMDISK.search(message)) is not None:
            report.ramdisk = (int(m.group(1), 16), int(m.group(2), 16) + 1)
        elif _TRYING in message:
            report.tried_initramfs = True
        elif (m := _FAILED.search(message)) is not None:
            report.unpack_error = m.group(1).strip()
        elif _NOT_INITRAMFS in message:
            report.not_initramfs = True
        elif (m := _FREED.search(message)) is not None:
            report.freed_k = int(m.group(1))
        elif _MOUNT_CACHE in message:
            mounted = True
        elif not mounted and (m := _FREED_EARLY.search(message)) is not None:
            report.freed_early.append((m.group(1), int(m.group(2))))
        elif "Kernel panic - not syncing:" in message and report.panic is None:
            report.panic = message.split("Kernel panic - not syncing:", 1)[1].strip()
    return report


def manifest_tree(records: list[str]) -> list[str]:
    """The probe's records as ``Tmpfs.tree()`` lines, sorted by path.

    Records: ``S mode_hex uid gid size nlink mtime major_hex minor_hex path``,
    ``H sha256 path`` (sha256sum's two spaces before the path), ``L target path``; fields are
    tab separated.  Lines of anything else (a stray kernel message) are ignored.
    """
    stats: dict[str, list[str]] = {}
    data: dict[str, str] = {}
    for record in records:
        kind, _, rest = record.partition("\t")
        if kind == "S":
            fields = rest.split("\t", 8)
            if len(fields) == 9:
                stats[fields[8]] = fields[:8]
        elif kind == "H":
            digest, _, path = rest.partition("  ")
            if path:
                data[path] = digest
        elif kind == "L":
            target, _, path = rest.partition("\t")
            if path:
                data[path] = target
    lines = []
    for path in sorted(stats):
        mode_hex, uid, gid, size, nlink, mtime, major, minor = stats[path]
        mode = int(mode_hex, 16)
        kind = type_char(mode)
        rdev = f"{int(major, 16)}:{int(minor, 16)}" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "-"
        lines.append(
            f"{path}\t{kind}\t{stat.S_IMODE(mode):04o}\t{uid}\t{gid}\t{size}\t{nlink}\t{mtime}\t{rdev}"
            f"\t{data.get(path, '-')}"
        )
    return lines

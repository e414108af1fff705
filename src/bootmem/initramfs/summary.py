"""What an image holds, in the terms people ask about: ``bootmem examine --contents``.

The questions ``lsinitcpio -a`` and ``lsinitrd`` answer: which kernel version(s) the modules
are for, how many modules and how large (by the directory under ``kernel/``), firmware, the CPU
microcode of the early segment and for which vendors, the program that runs as init and its
interpreter (``#!`` line or the ELF ``PT_INTERP``), busybox applets against real binaries, and
the compression of each segment.

One pass over the image: paths resolve as the kernel's unpack leaves them (the last entry
wins), and only the first 4 KiB of executables is kept (at most :data:`HEAD_BUDGET` bytes in all),
so memory stays small for any image.
"""

from __future__ import annotations

import posixpath
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bootmem.initramfs.contents import NotAFileError, NotInImageError, follow
from bootmem.initramfs.cpio import Entry
from bootmem.initramfs.image import Image
from bootmem.initramfs.select import normalise

HEAD_SIZE = 4096
HEAD_BUDGET = 16 << 20
# init/main.c kernel_init(): rdinit= aside, the ramdisk's /init, then the usual fallbacks.
INIT_CANDIDATES = ("init", "sbin/init", "etc/init", "bin/init", "bin/sh")
_MODULE = re.compile(r"^(?:usr/)?lib/modules/([^/]+)/(.+\.ko(?:\.(?:gz|xz|zst))?)$")
_FIRMWARE = re.compile(r"^(?:usr/)?lib/firmware/(.+)$")
_MICROCODE = re.compile(r"^kernel/x86/microcode/(GenuineIntel|AuthenticAMD)\.bin$")
_BIN_DIRS = frozenset({"bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin"})


@dataclass(slots=True)
class Tally:
    """``count`` files of ``bytes`` bytes."""

    count: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.bytes += size

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "bytes": self.bytes}


@dataclass(slots=True)
class Summary:
    """What :func:`summarise` found.  ``modules`` maps ``kernel/<dir>`` (or ``other``) to a
    :class:`Tally`; ``init`` is the path init would run (after symlinks) and ``interpreter``
    what runs it; ``applets`` counts busybox's names, ``binaries`` other executables in bin dirs."""

    segments: list[dict[str, Any]] = field(default_factory=list)
    kernel_versions: list[str] = field(default_factory=list)
    modules: dict[str, Tally] = field(default_factory=dict)
    firmware: Tally = field(default_factory=Tally)
    microcode: dict[str, int] = field(default_factory=dict)
    init: str | None = None
    interpreter: str | None = None
    busybox: str | None = None
    applets: int = 0
    binaries: int = 0

    @property
    def module_total(self) -> Tally:
        total = Tally()
        for tally in self.modules.values():
            total.count += tally.count
            total.bytes += tally.bytes
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "kernel_versions": self.kernel_versions,
            "modules": {"total": self.module_total.to_json(),
                        "by_directory": {k: v.to_json() for k, v in self.modules.items()}},
            "firmware": self.firmware.to_json(),
            "microcode": self.microcode,
            "init": self.init,
            "interpreter": self.interpreter,
            "busybox": self.busybox,
            "applets": self.applets,
            "binaries": self.binaries,
        }  # fmt: skip


def summarise(image: Image) -> Summary:
    """The :class:`Summary` of ``image``, from one pass."""
    final: dict[str, Entry] = {}
    heads: dict[tuple[int, int], bytes] = {}
    kept = 0
    for entry, reader in image.stream():
        final[normalise(entry.name)] = entry
        if entry.isreg() and entry.mode & 0o111 and entry.c_filesize and kept < HEAD_BUDGET:
            head = b""
            for chunk in reader.iter_data(HEAD_SIZE):
                head = bytes(chunk[:HEAD_SIZE])
                break
            heads[(entry.segment, entry.offset)] = head
            kept += len(head)
    summary = Summary(segments=[
        {"index": s.index, "compression": s.compression, "format": s.format, "entries": s.entries}
        for s in image.segments
    ])  # fmt: skip
    versions: set[str] = set()
    counted: set[str] = set()  # the files modules resolve to, each counted once
    for path, entry in final.items():
        module = _MODULE.match(path)
        if module and entry.issym():
            # A module may be a symlink to a file elsewhere in the image, as modprobe follows
            # one: Debian's mkinitramfs makes such links when /lib/modules/VERSION is a symlink.
            try:
                entry, resolved = follow(final, path, path)
            except (NotInImageError, NotAFileError):
                continue
        else:
            resolved = path
        if not entry.isreg():
            continue
        if module:
            if resolved in counted:
                continue
            counted.add(resolved)
            versions.add(module.group(1))
            top = module.group(2).split("/")
            where = "/".join(top[:2]) if top[0] == "kernel" and len(top) > 2 else "other"
            summary.modules.setdefault(where, Tally()).add(entry.c_filesize)
        elif _FIRMWARE.match(path):
            summary.firmware.add(entry.c_filesize)
        elif vendor := _MICROCODE.match(path):
            summary.microcode[vendor.group(1)] = entry.c_filesize
    summary.kernel_versions = sorted(versions)
    summary.modules = dict(sorted(summary.modules.items(), key=lambda kv: -kv[1].bytes))
    _find_init(summary, final, heads)
    _count_binaries(summary, final)
    return summary


def _find_init(summary: Summary, final: dict[str, Entry], heads: dict[tuple[int, int], bytes]) -> None:
    for candidate in INIT_CANDIDATES:
        try:
            entry, path = follow(final, candidate, candidate)
        except NotInImageError:
            continue
        if entry.isreg():
            summary.init = "/" + path
            summary.interpreter = interpreter(heads.get((entry.segment, entry.offset), b""))
            return


def interpreter(head: bytes) -> str | None:
    """What runs a program starting with ``head``: the ``#!`` line's command, an ELF's
    ``PT_INTERP`` (``None`` for a static ELF), or ``None``.

    >>> interpreter(b"#!/bin/sh -e\\nexec /sbin/init\\n")
    '/bin/sh -e'
    """
    if head.startswith(b"#!"):
        return head[2:].split(b"\n", 1)[0].decode(errors="replace").strip()
    if not head.startswith(b"\x7fELF") or len(head) < 64:
        return None
    wide, little = head[4] == 2, head[5] == 1
    order = "<" if little else ">"
    if wide:
        (phoff,) = struct.unpack_from(order + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
    else:
        (phoff,) = struct.unpack_from(order + "I", head, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + phentsize > len(head) or phentsize < (56 if wide else 32):
            break
        (p_type,) = struct.unpack_from(order + "I", head, at)
        if p_type != 3:  # PT_INTERP
            continue
        if wide:
            (offset,) = struct.unpack_from(order + "Q", head, at + 8)
            (size,) = struct.unpack_from(order + "Q", head, at + 32)
        else:
            (offset,) = struct.unpack_from(order + "I", head, at + 4)
            (size,) = struct.unpack_from(order + "I", head, at + 16)
        return head[offset : offset + size].split(b"\0", 1)[0].decode(errors="replace") or None
    return None


def _count_binaries(summary: Summary, final: dict[str, Entry]) -> None:
    busybox = next((p for p in ("bin/busybox", "usr/bin/busybox", "sbin/busybox") if p in final
                    and final[p].isreg()), None)  # fmt: skip
    summary.busybox = "/" + busybox if busybox else None
    inode = Counter[tuple[int, int, int, int, int, int]]()
    if busybox:
        b = final[busybox]
        inode[(b.segment, b.archive, *b.link_key)] += 1
    for path, entry in final.items():
        if posixpath.dirname(path) not in _BIN_DIRS or path == busybox:
            continue
        if entry.issym() and entry.linkname is not None:
            if posixpath.basename(entry.linkname) == "busybox":
                summary.applets += 1
        elif entry.isreg() and entry.mode & 0o111:
            if busybox and (entry.segment, entry.archive, *entry.link_key) in inode and entry.c_nlink > 1:
                summary.applets += 1
            else:
                summary.binaries += 1


__all__ = ["Summary", "Tally", "interpreter", "summarise"]

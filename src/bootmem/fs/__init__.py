"""Filesystems of the boot model: :mod:`bootmem.fs.tmpfs`, the rootfs the initramfs unpacks into."""

from __future__ import annotations

from bootmem.fs.tmpfs import MAXSYMLINKS, Inode, OpenFile, Stat, Tmpfs

__all__ = ["MAXSYMLINKS", "Inode", "OpenFile", "Stat", "Tmpfs"]

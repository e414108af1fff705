"""bootmem: the memory lifecycle of a kernel's initial RAM filesystem.

An executable model of what a kernel does with an initrd - reserve its frames, unpack the
initramfs into a page-backed tmpfs, give the frames back - and the tools to read, write,
extract and compare initramfs images.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]

"""A real Linux kernel in the loop: fetch a kernel, compose a probe, boot under QEMU, compare.

``bootmem verify`` boots an image under Linux in QEMU with a probe segment prepended, reads the
kernel's messages and the rootfs the probe saw, boots the very same composed image in the model
calibrated from that kernel's own ``Memory:`` line, and reports every difference.
"""

from __future__ import annotations

from bootmem.verify.images import PROBE_CMDLINE, compose, mkinitramfs, probe_segment
from bootmem.verify.kernel import Kernel, cache_dir, debian_kernel, find_kernel, kernel_from_path

__all__ = [
    "PROBE_CMDLINE",
    "Kernel",
    "cache_dir",
    "compose",
    "debian_kernel",
    "find_kernel",
    "kernel_from_path",
    "mkinitramfs",
    "probe_segment",
]

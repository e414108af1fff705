"""Initramfs images: cpio archives (newc, crc), raw or compressed, concatenated.

``bootmem.initramfs.open(path_or_file_or_bytes)`` reads a whole image in tarfile's vocabulary;
see :mod:`bootmem.initramfs.image`.  :mod:`.cpio` holds the archive format and
:mod:`.compress` the kernel's compressions.
"""

from __future__ import annotations

from bootmem.initramfs.compress import COMPRESSIONS, KERNEL_COMPRESSIONS, Compressor, detect, open_compressor
from bootmem.initramfs.cpio import CpioReader, CpioWriter, Entry
from bootmem.initramfs.image import Image, Segment, open

__all__ = [
    "COMPRESSIONS",
    "KERNEL_COMPRESSIONS",
    "Compressor",
    "CpioReader",
    "CpioWriter",
    "Entry",
    "Image",
    "Segment",
    "detect",
    "open",
    "open_compressor",
]

"""Small images for the report tests: an /init and a few files, raw or gzip-compressed."""

from __future__ import annotations

import io
import stat

from bootmem.initramfs.compress import open_compressor
from bootmem.initramfs.cpio import CpioWriter, Entry


def make_image(files: dict[str, bytes], *, compression: str | None = None) -> bytes:
    """An initramfs with ``/init`` and ``files`` (name -> data) in one archive."""
    out = io.BytesIO()
    with CpioWriter(out) as w:
        w.add(Entry("init", stat.S_IFREG | 0o755, c_ino=1), b"#!/bin/sh\nexec sh\n")
        for ino, (name, data) in enumerate(sorted(files.items()), start=2):
            w.add(Entry(name, stat.S_IFREG | 0o644, c_ino=ino), data)
    raw = out.getvalue()
    if compression is None:
        return raw
    compressor = open_compressor(compression)
    return compressor.compress(raw) + compressor.flush()

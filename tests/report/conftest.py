"""Small images for the report tests: an /init and a few files, raw or compressed."""

from __future__ import annotations

import stat

from bootmem.initramfs.compress import compress
from bootmem.initramfs.cpio import Entry
from tests.initramfs.corpus import archive


def make_image(files: dict[str, bytes], *, compression: str | None = None) -> bytes:
    """An initramfs with ``/init`` and ``files`` (name -> data) in one archive."""
    raw = archive(
        (Entry("init", stat.S_IFREG | 0o755, c_ino=1), b"#!/bin/sh\nexec sh\n"),
        *(
            (Entry(name, stat.S_IFREG | 0o644, c_ino=ino), data)
            for ino, (name, data) in enumerate(sorted(files.items()), start=2)
        ),
    )
    return raw if compression is None else compress(raw, compression)

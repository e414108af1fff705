"""Fuzz the image reader: segmenter, every decompressor and the cpio reader.

One execution opens the input with ``bootmem.initramfs.open`` and runs ``stream()`` to the
end, reading the data of two entries in three (the third is left for the reader to skip) and
checking that it is ``c_filesize`` bytes (a symlink's is its target), then checks the
segments it reports (in order, disjoint, inside the image).  Bad input must raise a
:class:`~bootmem.errors.BootmemError`; any other exception is a crash.

    python -m fuzz.fuzz_image -atheris_runs=300000 -max_len=16384 fuzz/corpus/image
"""

from __future__ import annotations

import bootmem.initramfs
from bootmem.errors import BootmemError
from fuzz.harness import fuzz

#: Cap on decompressed bytes per input: big enough for every seed, small enough to stay fast.
MAX_DECOMPRESSED = 4 << 20
MAX_LEN = 16384


def TestOneInput(data: bytes) -> None:
    try:
        image = bootmem.initramfs.open(data, max_decompressed=MAX_DECOMPRESSED, max_entries=10_000)
    except BootmemError:  # not an image: a PE file without an .initrd section, ...
        return
    try:
        for n, (entry, reader) in enumerate(image.stream()):
            entry.type  # noqa: B018 - the accessors must not raise
            if n % 3 == 2:
                continue  # left for the reader to skip
            body = reader.read_data()
            want = 0 if entry.issym() else entry.c_filesize
            assert len(body) == want, (entry, len(body))
    except BootmemError:
        return
    finally:
        image.close()
    # A unified kernel image's segments are offsets in its .initrd section.
    start, size = image.uki_section or (0, len(data))
    initrd = data[start : start + size]
    end = 0
    for segment in image.segments:
        assert end <= segment.offset < segment.end <= len(initrd), (segment, end, len(initrd))
        assert segment.compressed_size == segment.end - segment.offset, segment
        end = segment.end
    assert not initrd[end:].strip(b"\0"), (end, len(initrd))


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()

"""The memory Linux's decompressors hold while an initramfs member unpacks.

``unpack_to_rootfs`` (``init/initramfs.c``) hands each compressed member to its decompressor
with the whole member in memory (the initrd itself) and a flush callback, so no decompressor
copies its input; each allocates an output buffer and its own state with ``large_malloc``
(``vmalloc``: whole pages) or ``malloc`` (``kmalloc``), and frees them when the member ends.
Those buffers are held at the unpack's peak, while the initrd and the rootfs written so far
are, so they count against the RAM an image needs.  The sizes follow Linux 6.1's
``lib/decompress_*.c``; some depend on the member's header (a dictionary or window size):

=========  ====================================================================================
gzip       ``GZIP_IOBUF_SIZE`` (16 KiB) output + ``zlib_inflate_workspacesize()`` (state + 32 KiB window)
bzip2      ``struct bunzip_data`` + ``dbuf``: 100,000 ``int`` per block-size level (``BZh1``-``BZh9``)
lzma       ``min(dst_size, dict_size)`` output window from the header + the probabilities
xz         the LZMA2 dictionary from the block header (``XZ_DYNALLOC``) + the decoder's state
lzo        ``LZO_BLOCK_SIZE`` (256 KiB) output
lz4        ``LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE`` (8 MiB) output
zstd       ``ZSTD_IOBUF_SIZE`` (128 KiB) output + ``zstd_dstream_workspace_bound(window)``
=========  ====================================================================================

Besides, ``unpack_to_rootfs`` keeps its own ``header_buf``, ``symlink_buf`` and ``name_buf``
(:data:`UNPACK_BUFFERS`) for the whole image.
"""

from __future__ import annotations

import struct

from bootmem.units import PAGE_SIZE, align_up

#: ``unpack_to_rootfs``'s ``header_buf`` (110 bytes), ``symlink_buf`` (``PATH_MAX`` +
#: ``N_ALIGN(PATH_MAX)`` + 1: a 16 KiB slab object) and ``name_buf`` (``N_ALIGN(PATH_MAX)``).
UNPACK_BUFFERS = (16 << 10) + 2 * PAGE_SIZE

_GZIP = (16 << 10) + align_up(7 * 1024 + (32 << 10), PAGE_SIZE)
_BZIP2_STATE = align_up(40 << 10, PAGE_SIZE) + PAGE_SIZE  # struct bunzip_data, BZIP2_IOBUF_SIZE output
_LZO = 256 << 10
_LZ4 = 8 << 20
_XZ_STATE = align_up(28 << 10, PAGE_SIZE) + PAGE_SIZE  # struct xz_dec_lzma2 and friends, XZ_IOBUF_SIZE
_ZSTD_IOBUF = 128 << 10
_ZSTD_DCTX = 96 << 10  # sizeof(ZSTD_DCtx) in zstd 1.5: entropy tables and a 64 KiB literal buffer
_ZSTD_BLOCK_MAX = 128 << 10
_ZSTD_MAGIC = 0xFD2FB528


def member_workspace(compression: str, head: bytes) -> int:
    """Bytes the decompressor of one member holds, from the member's first bytes ``head``.

    ``compression`` is a name of :mod:`bootmem.initramfs.compress` (``"none"``: 0).  A header
    too short or malformed to read the size it carries gives the decompressor's smallest.
    """
    if compression == "gzip":
        return _GZIP
    if compression == "bzip2":
        level = head[3] - ord("0") if len(head) > 3 and 0x31 <= head[3] <= 0x39 else 1
        return _BZIP2_STATE + align_up(100_000 * level * 4, PAGE_SIZE)
    if compression == "lzma":
        return _lzma(head)
    if compression == "xz":
        return _XZ_STATE + align_up(_xz_dict(head), PAGE_SIZE)
    if compression == "lzo":
        return _LZO
    if compression == "lz4":
        return _LZ4
    if compression == "zstd":
        window = _zstd_window(head)
        block = min(window, _ZSTD_BLOCK_MAX)
        return _ZSTD_IOBUF + align_up(_ZSTD_DCTX + block + window + block + 64, PAGE_SIZE)
    return 0


def _lzma(head: bytes) -> int:
    # props (lc, lp, pb), dict_size (le32), dst_size (le64): decompress_unlzma.c's header.
    if len(head) < 13:
        return PAGE_SIZE
    props, dict_size, dst_size = struct.unpack_from("<BIQ", head)
    lc, lp = props % 9, props // 9 % 5
    probs = (1846 + (0x300 << (lc + lp))) * 2
    window = max(1, min(dst_size, dict_size))
    return align_up(window, PAGE_SIZE) + align_up(probs, PAGE_SIZE)


def _xz_dict(head: bytes) -> int:
    """The LZMA2 dictionary size in the first block header of an xz stream (0 when unreadable)."""
    # Stream header: 6 magic, 2 flags, 4 CRC32; then the block header (xz-file-format.txt 3.1).
    pos = 12
    if len(head) <= pos + 1 or head[pos] == 0:
        return 0
    flags = head[pos + 1]
    pos += 2
    for present in (flags & 0x40, flags & 0x80):
        if present:
            pos = _skip_varint(head, pos)
    for _ in range((flags & 3) + 1):
        if pos >= len(head):
            return 0
        filter_id, pos = _varint(head, pos)
        size, pos = _varint(head, pos)
        props = head[pos : pos + size]
        pos += size
        if filter_id == 0x21 and len(props) == 1 and props[0] <= 40:
            bits = props[0]
            return (2 | (bits & 1)) << (bits // 2 + 11)
    return 0


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return value, pos


def _skip_varint(data: bytes, pos: int) -> int:
    return _varint(data, pos)[1]


def _zstd_window(head: bytes) -> int:
    """The window size a zstd frame header asks for (RFC 8878 3.1.1.1), 1 KiB when unreadable."""
    if len(head) < 6 or struct.unpack_from("<I", head)[0] != _ZSTD_MAGIC:
        return 1 << 10
    descriptor = head[4]
    single_segment = descriptor >> 5 & 1
    if not single_segment:
        wd = head[5]
        base = 1 << (10 + (wd >> 3))
        return base + base // 8 * (wd & 7)
    pos = 5 + (0, 1, 2, 4)[descriptor & 3]
    fcs_size = (1, 2, 4, 8)[descriptor >> 6]
    if len(head) < pos + fcs_size:
        return 1 << 10
    size = int.from_bytes(head[pos : pos + fcs_size], "little")
    return size + 256 if fcs_size == 2 else max(size, 1 << 10)

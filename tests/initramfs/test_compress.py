"""bootmem.initramfs.compress: magic detection, bounded streaming decompression, writers.

Each compression is checked both ways against its real command-line tool: what the tool writes
bootmem reads (and finds the member's end), what bootmem writes the tool reads.
"""

from __future__ import annotations

import random
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import bootmem.initramfs
import bootmem.initramfs.compress as compress_module
from bootmem.errors import (
    CompressionError,
    DecompressionBombError,
    DecompressorError,
    MissingCodecError,
    UsageError,
)
from bootmem.initramfs.compress import (
    _LZO_BLOCK_SIZE as _LZO_BLOCK,
)
from bootmem.initramfs.compress import (
    CODECS as CODECS_TABLE,
)
from bootmem.initramfs.compress import (
    COMPRESSIONS,
    KERNEL_COMPRESSIONS,
    Budget,
    LzopHeader,
    MemberStream,
    Prefetch,
    PrefetchedStream,
    compress,
    decompress_method,
    detect,
    open_compressor,
)
from bootmem.initramfs.cpio import Entry
from bootmem.initramfs.image import _FileImage, _MemoryImage
from bootmem.kernel.boot import Machine, boot
from tests.conftest import require_tool
from tests.initramfs.corpus import PEER_COMPRESSORS, _content, archive, f, peer_compress

CODECS = tuple(PEER_COMPRESSORS)  # every kernel compression but "none"
DATA = _content(random.Random(7), 1 << 20)  # several lzo and zstd blocks


def _stream(data: bytes, name: str, offset: int = 0, cap: int = 1 << 40) -> MemberStream:
    return MemberStream(name, _MemoryImage(data), offset, Budget(cap))


def _decompress_cli(data: bytes, name: str) -> bytes:
    cmd = PEER_COMPRESSORS[name]
    exe = require_tool(cmd[0])
    return subprocess.run(
        [exe, "-d", "-c", *(["-q"] if name != "bzip2" else [])], input=data, capture_output=True, check=True
    ).stdout


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"\x1f\x9e", "gzip"),
        (b"BZh91AY", "bzip2"),
        (b"\x5d\x00\x00\x80\x00", "lzma"),
        (b"\xfd7zXZ\x00\x00", "xz"),
        (b"\x89LZO\x00\r\n\x1a\n", "lzo"),
        (b"\x02\x21\x4c\x18", "lz4"),
        (b"\x04\x22\x4d\x18", "lz4-frame"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"070701", None),
        (b"", None),
        (b"\x5d\x00\x01", None),
        (b"junk", None),
    ],
)
def test_detect_follows_lib_decompress_table(head: bytes, name: str | None) -> None:
    assert detect(head) == name


@pytest.mark.peer
@pytest.mark.parametrize("name", CODECS)
def test_reads_the_tool_output_and_finds_the_member_end(name: str) -> None:
    packed = peer_compress(DATA, name)
    # The member sits at an offset, with a different member after it: the end must be exact.
    image = b"\0" * 12 + packed + b"\0\0\0\0" + b"\x1f\x8b\x08rest"
    stream = _stream(image, name, offset=12)
    out = b"".join(iter(lambda: stream.read(100_003), b""))
    assert out == DATA
    assert stream.end == 12 + len(packed)
    assert stream.size == len(DATA)


@pytest.mark.peer
@pytest.mark.parametrize("name", CODECS)
def test_the_tool_reads_what_we_write(name: str) -> None:
    assert _decompress_cli(compress(DATA, name), name) == DATA


@pytest.mark.peer
def test_xz_is_written_with_crc32_checks_as_the_kernel_needs(tmp_path: Path) -> None:
    path = tmp_path / "a.xz"
    path.write_bytes(compress(b"x" * 1000, "xz"))
    info = subprocess.run(
        [require_tool("xz"), "--robot", "--list", str(path)], capture_output=True, check=True
    )
    assert "CRC32" in info.stdout.decode()


def test_xz_check_field_is_crc32() -> None:
    # Stream header: magic (6), flags (2): second flag byte is the check type, 0x01 = CRC32.
    assert compress(b"x", "xz")[6:8] == b"\x00\x01"


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("size", [1, 110, 4096, 1 << 20])
def test_small_and_large_reads_give_the_same_bytes(name: str, size: int) -> None:
    data = DATA[: 1 << 16] if size == 1 else DATA
    stream = _stream(compress(data, name, 1), name)
    assert b"".join(iter(lambda: stream.read(size), b"")) == data


@pytest.mark.parametrize("name", CODECS)
def test_empty_input_round_trips(name: str) -> None:
    stream = _stream(compress(b"", name), name)
    assert stream.read() == b""
    assert stream.end == len(compress(b"", name))


@pytest.mark.parametrize("name", CODECS)
def test_truncated_member_names_its_offset(name: str) -> None:
    packed = compress(DATA, name, 1)
    image = b"\0" * 0x40 + packed[: len(packed) // 2]
    with pytest.raises(CompressionError, match=r"truncated .* at offset 0x40"):
        _stream(image, name, offset=0x40).read()


@pytest.mark.parametrize("name", ["gzip", "bzip2", "xz", "lzma", "zstd", "lzo"])
def test_corrupt_member_names_its_offset(name: str) -> None:
    packed = bytearray(compress(DATA, name, 1))
    packed[len(packed) // 2] ^= 0x55
    with pytest.raises(CompressionError, match=rf"corrupt {name} data .* at offset 0x200"):
        _stream(b"\0" * 0x200 + bytes(packed), name, offset=0x200).read()


def test_corrupt_lz4_block_size() -> None:
    packed = bytearray(compress(DATA, "lz4"))
    packed[4:8] = (0x7FFFFFF0).to_bytes(4, "little")
    with pytest.raises(CompressionError, match=r"corrupt lz4 data .* at offset 0x0"):
        _stream(bytes(packed), "lz4").read()


def test_old_gzip_magic_is_refused_as_the_kernel_does() -> None:
    with pytest.raises(CompressionError, match=r"not a gzip file .* at offset 0x0"):
        _stream(b"\x1f\x9e" + b"x" * 100, "gzip").read()


@pytest.mark.parametrize("name", CODECS)
def test_bomb_past_the_cap(name: str) -> None:
    bomb = compress(bytes(8 << 20), name)
    assert len(bomb) < 64 << 10
    with pytest.raises(DecompressionBombError, match=r"cap of 1048576 bytes in the .* at offset 0x10\b"):
        _stream(b"\0" * 16 + bomb, name, offset=16, cap=1 << 20).read()


def test_lz4_legacy_ends_at_zero_padding_and_continues_after_a_repeated_magic() -> None:
    a, b = compress(b"first" * 1000, "lz4"), compress(b"second" * 1000, "lz4")
    stream = _stream(a + b + b"\0" * 8 + b"after", "lz4")
    assert stream.read() == b"first" * 1000 + b"second" * 1000
    assert stream.end == len(a) + len(b)


def test_lz4_legacy_blocks_are_8_mib() -> None:
    data = DATA * 9  # two blocks
    packed = compress(data, "lz4", 1)
    assert int.from_bytes(packed[4:8], "little") < len(packed) - 8  # more than one block
    assert _stream(packed, "lz4").read() == data


def test_read_chunk_hands_out_the_decompressors_output_uncut() -> None:
    data = DATA * 9  # two lz4 blocks: 8 MiB and the rest
    stream = _stream(compress(data, "lz4", 1), "lz4")
    first = stream.read(100)  # a chunk cut by read: read_chunk hands out the rest of it
    chunks = [first, *iter(lambda: stream.read_chunk(1 << 20), b"")]
    assert [len(c) for c in chunks] == [100, (8 << 20) - 100, len(data) - (8 << 20)]
    assert b"".join(chunks) == data
    assert stream.read_chunk(1 << 20) == b""


@pytest.mark.parametrize("name", ["zstd", "gzip"])
def test_read_chunk_is_at_most_about_n(name: str) -> None:
    stream = _stream(compress(DATA, name, 1), name)
    chunks = list(iter(lambda: stream.read_chunk(1 << 16), b""))
    assert b"".join(chunks) == DATA
    assert max(len(c) for c in chunks) <= 1 << 16


@pytest.mark.parametrize("views", [False, True])
def test_prefetched_stream_skips_and_reads(views: bool) -> None:
    data = DATA * 12  # an 8 MiB lz4 block and a 4 MiB one
    member = _stream(compress(data, "lz4", 1), "lz4")
    with Prefetch(member, 1 << 20, views=views) as chunks:
        stream = PrefetchedStream(chunks)
        assert stream.read(10) == data[:10]
        assert stream.skip(3 << 20) == 3 << 20  # across chunks when they are 1 MiB
        assert stream.read(5) == data[10 + (3 << 20) : 15 + (3 << 20)]
        at = 15 + (3 << 20)
        assert stream.skip(6 << 20) == 6 << 20  # across the lz4 block's end
        at += 6 << 20
        assert stream.read(7) == data[at : at + 7]
        at += 7
        assert stream.skip(len(data)) == len(data) - at  # fewer at the end
        assert stream.eof
        assert stream.skip(1) == 0
        assert stream.read(1) == b""


def test_a_prefetched_lz4_image_lists_and_reads_as_written() -> None:
    # 8 MiB blocks handed out as views, the data of most entries skipped without copying: the
    # entries and the data of those read are what was written.
    files = [(f"f{i}", bytes([i]) * (i * 300_001 % (3 << 20))) for i in range(12)]
    image = compress(archive(*(f(name, data) for name, data in files)), "lz4", 1)
    read = ("f3", "f7", "f11")
    seen: list[tuple[str, bytes | int]] = []
    with bootmem.initramfs.open(image) as img:
        for entry, reader in img.stream():
            seen.append((entry.name, reader.read_data() if entry.name in read else entry.c_filesize))
    assert seen == [(name, data if name in read else len(data)) for name, data in files]


@pytest.mark.parametrize("kernel", [False, True])
def test_lz4_blocks_of_an_image_file_read_as_in_memory(tmp_path: Path, kernel: bool) -> None:
    data = DATA * 17  # three blocks, the last shorter: the one buffer they are read into shrinks
    path = tmp_path / "member.lz4"
    path.write_bytes(b"\0" * 12 + compress(data, "lz4", 1) + b"\0" * 4)
    with path.open("rb") as file:
        stream = MemberStream("lz4", _FileImage(file, owned=False), 12, Budget(1 << 40), kernel=kernel)
        assert b"".join(iter(lambda: stream.read(3 << 20), b"")) == data
        assert stream.end == path.stat().st_size - 4


def test_a_huge_lz4_block_size_in_an_image_file_reads_no_more_than_the_file(tmp_path: Path) -> None:
    import tracemalloc

    packed = bytearray(compress(DATA, "lz4"))
    packed[4:8] = (0x7FFFFFF0).to_bytes(4, "little")  # the kernel checks no bound
    path = tmp_path / "member.lz4"
    path.write_bytes(packed)
    tracemalloc.start()
    try:
        with path.open("rb") as file, pytest.raises(CompressionError, match=r"lz4 .* at offset 0x0"):
            MemberStream("lz4", _FileImage(file, owned=False), 0, Budget(1 << 40), kernel=True).read()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


@pytest.mark.parametrize("owned", [False, True], ids=["a caller's file (seek, read)", "its own (pread)"])
def test_read_into_from_a_file_image(owned: bool, tmp_path: Path) -> None:
    path = tmp_path / "image"
    path.write_bytes(bytes(range(256)) * 4)
    buffer = memoryview(bytearray(300))
    with path.open("rb") as file:
        image = _FileImage(file, owned=owned)
        assert image.read_at(1000, 100) == bytes(range(232, 256))
        assert image.read_at(10, 300) == (bytes(range(256)) * 2)[10:310]
        assert image.readinto_at(1000, buffer) == 24
        assert bytes(buffer[:24]) == bytes(range(232, 256))
        assert image.readinto_at(10, buffer) == 300
        assert bytes(buffer) == (bytes(range(256)) * 2)[10:310]
        assert image.readinto_at(1024, buffer) == 0
        image.window(4, 1000)  # the image is a part of the file: nothing past its end is read
        assert image.readinto_at(990, buffer) == 10
        assert bytes(buffer[:10]) == bytes(range(226, 236))  # file offset 994
        assert image.read_at(990, 100) == bytes(range(226, 236))
        assert image.read_at(1000, 100) == b""


def test_lz4_frame_is_read() -> None:
    import lz4.frame

    packed = lz4.frame.compress(DATA)
    stream = _stream(packed + b"tail", "lz4-frame")
    assert stream.read() == DATA
    assert stream.end == len(packed)


def test_missing_lzo_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lzo", None)
    with pytest.raises(MissingCodecError, match="python-lzo") as exc:
        _stream(b"\x89LZO\x00\r\n\x1a\n" + bytes(40), "lzo", offset=0)
    assert isinstance(exc.value, ImportError)
    assert "0x0" in str(exc.value)
    with pytest.raises(MissingCodecError, match="python-lzo"):
        open_compressor("lzo")


def test_none_is_identity() -> None:
    assert compress(b"abc", "none") == b"abc"
    assert set(COMPRESSIONS) == {"none", *CODECS}


@pytest.mark.parametrize(
    ("name", "level"), [("gzip", 10), ("zstd", 30), ("bogus", None), ("lz4-frame", None)]
)
def test_bad_compressor_arguments(name: str, level: int | None) -> None:
    with pytest.raises(UsageError):
        open_compressor(name, level)


def test_compressor_is_streaming() -> None:
    for name in CODECS:
        c = open_compressor(name, 1)
        parts = [c.compress(DATA[i : i + 300_000]) for i in range(0, len(DATA), 300_000)]
        parts.append(c.flush())
        assert _stream(b"".join(parts), name).read() == DATA, name


# --- the kernel's detection and its decompressors' own messages -----------------------------


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"\x1f\x9e", "gzip"),  # "old gzip": in the table, refused by gunzip ("Not a gzip file")
        (b"BZh9", "bzip2"),
        (b"BZ", "bzip2"),
        (b"\x5d\x00", "lzma"),
        (b"\x5d\x00\x01junk", "lzma"),  # not a valid lzma header, yet lzma to the kernel
        (b"\xfd\x37\x00", "xz"),
        (b"\x89\x4c\x00", "lzo"),
        (b"\x02\x21\x00\x00", "lz4"),
        (b"\x28\xb5", "zstd"),
        (b"\x04\x22\x4d\x18", None),  # an lz4 frame: not in compressed_formats[]
        (b"\x1f", None),  # len < 2: "Need at least this much..."
        (b"", None),
        (b"\x5d\x01", None),
        (b"070701", None),
    ],
)
def test_decompress_method_reads_two_bytes_as_lib_decompress(head: bytes, name: str | None) -> None:
    assert decompress_method(head) == name


def test_the_table_is_the_one_source() -> None:
    assert tuple(n for n, c in CODECS_TABLE.items() if c.compressor is not None) == COMPRESSIONS
    assert KERNEL_COMPRESSIONS == {n for n, c in CODECS_TABLE.items() if c.kernel} == {*COMPRESSIONS}
    for name, codec in CODECS_TABLE.items():
        assert all(len(m) == 2 for m in codec.kernel_magics), name
        assert (
            all(any(m.startswith(k) for k in codec.kernel_magics) for m in codec.magics) or not codec.kernel
        )
        assert bool(codec.kernel_magics) == (codec.kernel and name != "none"), name
        if codec.levels:
            assert codec.default_level in codec.levels, name


_PAYLOAD = archive((Entry("big", stat.S_IFREG | 0o644), DATA[:300_000]))
_MACHINE = Machine(ram_size=64 << 20, kernel_size=1 << 20)


def _set(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new) :]


def _lzop_first_block(packed: bytes) -> int:
    """The offset of the first block's compressed bytes in an lzop member bootmem wrote."""
    header = LzopHeader.parse(packed)
    assert header is not None
    return header.length + 12  # uncompressed size, compressed size, adler32


def _zstd_first_block(packed: bytes) -> int:
    fhd = packed[4]
    single = (fhd >> 5) & 1
    return 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + (1 if single else 0, 2, 4, 8)[fhd >> 6] + 3


def _damaged(name: str, how: str) -> bytes:
    packed = compress(_PAYLOAD, name, 1)
    if how == "truncated":
        return packed[: len(packed) // 2]
    if name == "gzip" and how == "corrupt":
        return _set(packed, 10, b"\x07")  # BFINAL, BTYPE 11: "invalid block type"
    if name == "gzip" and how == "name":
        return packed[:3] + b"\x08" + packed[4:10] + b"x" * 50  # FNAME, and no NUL before the end
    if name == "bzip2":
        return _set(packed, 4, b"\x00")  # the block magic 0x314159265359
    if name == "lzma":
        return packed[:13] + b"\xff" * 64
    if name == "xz":
        return _set(packed, 13, bytes([packed[13] ^ 0xFF]))  # the block header: its CRC32 fails
    if name == "lzo" and how == "corrupt":
        return _set(packed, _lzop_first_block(packed), b"\xff" * 64)
    if name == "lzo" and how == "block":
        at = LzopHeader.parse(packed).length  # type: ignore[union-attr]
        return _set(packed, at, (_LZO_BLOCK + 1).to_bytes(4, "big"))
    if name == "lz4":
        return _set(packed, 8, b"\xff" * 64)
    if name == "zstd":
        return _set(packed, _zstd_first_block(packed), b"\xff" * 64)
    raise AssertionError((name, how))


# What Linux's decompressor passes to error() (lib/decompress_*.c), or init/initramfs.c's own
# "decompressor failed" where it says nothing.
KERNEL_MESSAGES = [
    ("gzip", lambda: b"\x1f\x9e" + bytes(40), "Not a gzip file"),
    ("gzip", lambda: b"\x1f\x8b\x08\x00" + bytes(3), "Not a gzip file"),  # fewer than 10 bytes
    ("gzip", lambda: _damaged("gzip", "name"), "header error"),
    ("gzip", lambda: _damaged("gzip", "corrupt"), "uncompression error"),
    ("gzip", lambda: _damaged("gzip", "truncated"), "read error"),
    ("bzip2", lambda: _damaged("bzip2", "corrupt"), "decompressor failed"),
    ("bzip2", lambda: _damaged("bzip2", "truncated"), "decompressor failed"),
    ("bzip2", lambda: b"BZx" + bytes(40), "decompressor failed"),
    ("lzma", lambda: b"\x5d\x00\x01junk", "unexpected EOF"),
    ("lzma", lambda: _damaged("lzma", "corrupt"), "LZMA data is corrupt"),
    ("lzma", lambda: _damaged("lzma", "truncated"), "unexpected EOF"),
    ("xz", lambda: b"\xfd\x37junk" + bytes(40), "Input is not in the XZ format (wrong magic bytes)"),
    ("xz", lambda: _damaged("xz", "corrupt"), "XZ-compressed data is corrupt"),
    ("xz", lambda: _damaged("xz", "truncated"), "XZ-compressed data is corrupt"),
    ("lzo", lambda: b"\x89\x4cjunk" + bytes(40), "invalid header"),
    ("lzo", lambda: _damaged("lzo", "block"), "dest len longer than block size"),
    ("lzo", lambda: _damaged("lzo", "corrupt"), "Compressed data violation"),
    ("lzo", lambda: _damaged("lzo", "truncated"), "file corrupted"),
    ("lz4", lambda: b"\x02\x21junk" + bytes(40), "invalid header"),
    ("lz4", lambda: _damaged("lz4", "corrupt"), "Decoding failed"),
    ("lz4", lambda: _damaged("lz4", "truncated"), "data corrupted"),
    ("zstd", lambda: b"\x28\xb5junk" + bytes(40), "Input is not in the ZSTD format (wrong magic bytes)"),
    ("zstd", lambda: _damaged("zstd", "corrupt"), "ZSTD-compressed data is corrupt"),
    ("zstd", lambda: _damaged("zstd", "truncated"), "ZSTD-compressed data is truncated"),
]


@pytest.mark.parametrize(
    ("name", "make", "message"), KERNEL_MESSAGES, ids=[f"{n}-{m}" for n, _, m in KERNEL_MESSAGES]
)
def test_boot_logs_the_decompressors_own_message(name: str, make: Callable[[], bytes], message: str) -> None:
    image = make()
    assert decompress_method(image) == name
    report = boot(image, machine=_MACHINE)
    assert report.unpack_error == message, report.unpack_detail
    assert f"Initramfs unpacking failed: {message}" in [
        str(line).split("] ", 1)[-1] for line in report.log.lines
    ]


def test_strict_reading_checks_the_gzip_crc_the_kernel_does_not() -> None:
    packed = compress(_PAYLOAD, "gzip")
    bad = _set(packed, len(packed) - 8, bytes([packed[-8] ^ 1]))  # the CRC32 in the trailer
    with pytest.raises(DecompressorError, match="corrupt gzip data in the member at offset 0x0"):
        bootmem.initramfs.open(bad).getmembers()
    assert [m.name for m in bootmem.initramfs.open(bad, strict=False).getmembers()] == ["big"]
    report = boot(bad, machine=_MACHINE)
    assert report.unpack_error is None
    assert report.rootfs is not None and report.rootfs.read("/big") == DATA[:300_000]


def test_a_gzip_header_beyond_ten_bytes_is_read_as_the_kernel_reads_it() -> None:
    # FCOMMENT (0x10) is not skipped by __gunzip: the comment is taken for deflate data.
    packed = compress(_PAYLOAD, "gzip")
    commented = packed[:3] + b"\x10" + packed[4:10] + b"a comment\0" + packed[10:]
    assert [m.name for m in bootmem.initramfs.open(commented).getmembers()] == ["big"]
    report = boot(commented, machine=_MACHINE)
    assert report.unpack_error == "uncompression error"


def test_a_library_error_is_a_decompressor_error_and_a_bug_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    import zlib

    packed = compress(_PAYLOAD, "gzip")

    def corrupt(self: object, max_length: int) -> bytes:
        raise zlib.error("invalid block type")

    monkeypatch.setattr(compress_module._GzipEngine, "produce", corrupt)
    with pytest.raises(DecompressorError) as exc:
        _stream(packed, "gzip").read()
    assert exc.value.kernel_message == "uncompression error"

    def bug(self: object, max_length: int) -> bytes:
        raise ValueError("a bug, not bad data")

    monkeypatch.setattr(compress_module._GzipEngine, "produce", bug)
    with pytest.raises(ValueError, match="a bug") as caught:
        _stream(packed, "gzip").read()
    assert not isinstance(caught.value, CompressionError)

"""bootmem.initramfs.compress: magic detection, bounded streaming decompression, writers.

Each compression is checked both ways against its real command-line tool: what the tool writes
bootmem reads (and finds the member's end), what bootmem writes the tool reads.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from bootmem.errors import CompressionError, DecompressionBombError, MissingCodecError, UsageError
from bootmem.initramfs.compress import (
    COMPRESSIONS,
    Budget,
    MemberStream,
    compress,
    detect,
    open_compressor,
)
from bootmem.initramfs.image import _MemoryImage
from tests.conftest import require_tool
from tests.initramfs.corpus import PEER_COMPRESSORS, _content, peer_compress

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

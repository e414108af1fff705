"""bootmem.initramfs.image: segmentation by the kernel's grammar and the tarfile-style API."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bootmem.initramfs
from bootmem.errors import ChecksumError, CompressionError, CpioError, DecompressionBombError
from bootmem.initramfs import Entry
from bootmem.initramfs.compress import Budget, compress
from bootmem.initramfs.cpio import Format, pack_header
from bootmem.initramfs.image import DEFAULT_MIN_CAP, DEFAULT_RATIO, Segment
from tests.initramfs.corpus import archive

CODECS = ("gzip", "bzip2", "lzma", "xz", "lzo", "lz4", "zstd")


def reg(name: str, data: bytes = b"", mode: int = 0o644) -> tuple[Entry, bytes]:
    return Entry(name=name, c_mode=stat.S_IFREG | mode), data


def pad(data: bytes, to: int = 512) -> bytes:
    return data + b"\0" * (-len(data) % to)


EARLY = archive(
    (Entry(name="kernel", c_mode=0o40755), b""),
    reg("kernel/x86/microcode/GenuineIntel.bin", b"\x01" * 1000),
)
MAIN = archive(
    reg("init", b"#!/bin/sh\n", 0o755), reg("etc/fstab", b"fstab v1"), reg("etc/fstab", b"fstab v2")
)

OFF = len(pad(EARLY))  # where the main member starts after the padded early archive


@pytest.fixture(params=CODECS)
def codec(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- segmentation ---------------------------------------------------------------------------


def test_raw_early_plus_compressed_main(codec: str) -> None:
    main = compress(MAIN, codec)
    data = pad(EARLY) + main
    with bootmem.initramfs.open(data) as img:
        assert img.getnames() == [
            "kernel",
            "kernel/x86/microcode/GenuineIntel.bin",
            "init",
            "etc/fstab",
            "etc/fstab",
        ]
        assert img.segments == [
            Segment(0, 0, len(EARLY), "none", "newc", len(EARLY), len(EARLY), 2, 1),
            Segment(1, len(pad(EARLY)), len(data), codec, "newc", len(main), len(MAIN), 3, 1),
        ]
        assert [e.segment for e in img] == [0, 0, 1, 1, 1]


def test_any_number_and_order_of_segments() -> None:
    parts = [
        pad(archive(reg("a")), 4),
        compress(archive(reg("b")), "gzip"),
        b"\0" * 3,  # realign: NULs are skipped
        compress(archive(reg("c"), format="crc"), "xz"),
        b"\0" * 17,
        compress(archive(reg("d")), "zstd"),
        compress(archive(reg("e")), "lzo"),
    ]
    data = b"".join(parts)
    data += b"\0" * (-len(data) % 4) + archive(reg("f"))
    with bootmem.initramfs.open(data) as img:
        assert img.getnames() == ["a", "b", "c", "d", "e", "f"]
        segs = img.segments
        assert [s.compression for s in segs] == ["none", "gzip", "xz", "zstd", "lzo", "none"]
        assert [s.format for s in segs] == ["newc", "newc", "crc", "newc", "newc", "newc"]
        assert segs[1].offset == len(parts[0]) and segs[1].end == segs[1].offset + len(parts[1])
        assert segs[2].offset == segs[1].end + 3
        assert segs[-1].end == len(data)


def test_several_archives_in_one_member_and_mixed_formats() -> None:
    stream = archive(reg("a")) + b"\0" * 16 + archive(reg("b"), format="crc")
    with bootmem.initramfs.open(compress(stream, "gzip")) as img:
        (seg,) = img.segments
        assert (seg.archives, seg.entries, seg.format) == (2, 2, "mixed")
        assert [e.archive for e in img] == [0, 1]


def test_empty_archive_segment_has_a_format() -> None:
    with bootmem.initramfs.open(archive(format="crc") + compress(archive(), "gzip")) as img:
        assert [(s.format, s.entries, s.archives) for s in img.segments] == [("crc", 0, 1), ("newc", 0, 1)]


def test_only_nuls_is_an_empty_image() -> None:
    with bootmem.initramfs.open(b"\0" * 4096) as img:
        assert img.segments == [] and img.getmembers() == []


def test_trailer_string_in_file_data_does_not_end_the_archive(codec: str) -> None:
    decoy = archive() * 3
    data = compress(archive(reg("decoy", decoy), reg("after", b"x")), codec)
    with bootmem.initramfs.open(data) as img:
        assert img.getnames() == ["decoy", "after"]
        f = img.extractfile("decoy")
        assert f is not None and f.read() == decoy


# --- bad images -----------------------------------------------------------------------------


def test_invalid_magic() -> None:
    data = pad(EARLY) + b"\x42junk"
    with pytest.raises(
        CompressionError,
        match=rf"invalid magic at start of compressed archive at offset {len(pad(EARLY)):#x}",
    ):
        bootmem.initramfs.open(data).getmembers()


def test_lz4_frames_are_read_but_not_by_the_kernel_model() -> None:
    import lz4.frame

    data = pad(EARLY) + lz4.frame.compress(MAIN)
    assert bootmem.initramfs.open(data).segments[1].compression == "lz4-frame"
    with pytest.raises(
        CompressionError, match=rf"invalid magic at start of compressed archive at offset {OFF:#x}"
    ):
        bootmem.initramfs.open(data, strict=False).getmembers()


@pytest.mark.parametrize("follows", ["none", "gzip"])
def test_unaligned_bytes_after_a_raw_archive_are_broken_padding(follows: str) -> None:
    # init/initramfs.c do_reset(): the NULs after a raw archive's trailer must end 4-aligned,
    # whatever comes next.  len(EARLY) is a multiple of 4: +2 is unaligned.
    nxt = archive(reg("x")) if follows == "none" else compress(MAIN, "gzip")
    data = EARLY + b"\0\0" + nxt
    with pytest.raises(CpioError, match=rf"^broken padding at offset {len(EARLY) + 2:#x}"):
        bootmem.initramfs.open(data).getmembers()
    assert [s.compression for s in bootmem.initramfs.open(EARLY + b"\0" * 4 + nxt).segments] == [
        "none",
        follows,
    ]


def test_unaligned_raw_archive_after_a_member_is_invalid_magic() -> None:
    member = compress(MAIN, "gzip")
    data = member + b"\0" * (-len(member) % 4 + 2) + archive(reg("x"))
    with pytest.raises(CompressionError, match=r"invalid magic at start of compressed archive"):
        bootmem.initramfs.open(data).getmembers()


def test_junk_after_a_compressed_member(codec: str) -> None:
    member = compress(MAIN, codec)
    data = pad(EARLY) + member + b"junk"
    if codec == "lz4":
        # lz4's legacy format has no end: as in lib/decompress_unlz4.c the junk is read as a block.
        with pytest.raises(CompressionError, match=rf"lz4 .* at offset {len(pad(EARLY)):#x}"):
            bootmem.initramfs.open(data).getmembers()
        return
    with pytest.raises(
        CompressionError, match=rf"invalid magic .* at offset {len(pad(EARLY)) + len(member):#x}"
    ):
        bootmem.initramfs.open(data).getmembers()


def test_junk_within_a_compressed_member() -> None:
    data = compress(MAIN + b"\0" * 4 + b"junk", "gzip")
    where = f"{len(MAIN) + 4:#x} of the gzip member at offset 0x0"
    with pytest.raises(CpioError, match=rf"junk within compressed archive at offset {where}"):
        bootmem.initramfs.open(data).getmembers()


def test_member_without_trailer_is_junk_at_the_end(codec: str) -> None:
    cut = MAIN[: MAIN.rindex(b"070701")]  # drop the trailer
    data = pad(EARLY) + compress(cut, codec)
    with pytest.raises(
        CpioError, match=rf"junk at the end of compressed archive at offset {len(pad(EARLY)):#x}"
    ):
        bootmem.initramfs.open(data).getmembers()


def test_corrupt_compressed_data() -> None:
    member = bytearray(compress(MAIN * 50, "xz"))
    member[len(member) // 2] ^= 0xFF
    with pytest.raises(CompressionError, match=rf"corrupt xz data in the member at offset {OFF:#x}"):
        bootmem.initramfs.open(pad(EARLY) + bytes(member)).getmembers()


def test_truncated_compressed_member(codec: str) -> None:
    member = compress(MAIN, codec)
    data = pad(EARLY) + member[: len(member) - 8]
    with pytest.raises((CompressionError, CpioError), match=rf"at offset {OFF:#x}"):
        bootmem.initramfs.open(data).getmembers()


def test_cpio_errors_in_a_member_name_the_member() -> None:
    crc = archive(reg("f", b"payload"), format="crc")
    crc = crc[: 6 + 12 * 8] + b"00000001" + crc[6 + 13 * 8 :]
    with pytest.raises(
        ChecksumError,
        match=rf"bad data checksum for 'f' at segment 1 offset 0x0 of the zstd member at offset {OFF:#x}",
    ):
        bootmem.initramfs.open(pad(EARLY) + compress(crc, "zstd")).getmembers()
    cut = MAIN[:-200]
    with pytest.raises(CpioError, match=rf"offset 0x[0-9a-f]+ of the gzip member at offset {OFF:#x}"):
        bootmem.initramfs.open(pad(EARLY) + compress(cut, "gzip")).getmembers()


def test_bomb_with_the_default_cap() -> None:
    # A few KB of zstd that expand to one file of DEFAULT_MIN_CAP bytes: past the default cap of a tiny image.
    import zstandard

    size = DEFAULT_MIN_CAP + (1 << 20)
    c = zstandard.ZstdCompressor(level=1).compressobj()
    parts = [
        c.compress(pack_header(Entry(name="bomb", c_mode=0o100644), namesize=5, filesize=size) + b"bomb\0\0")
    ]
    zeros = bytes(1 << 20)
    parts += [c.compress(zeros) for _ in range(size >> 20)]
    parts.append(c.flush())
    bomb = b"".join(parts)
    assert len(bomb) < 64 << 10
    data = pad(EARLY) + bomb
    with pytest.raises(
        DecompressionBombError,
        match=rf"cap of {DEFAULT_MIN_CAP} bytes in the zstd member at offset {OFF:#x} \(segment 1\): "
        rf"\d+ bytes reached; the default cap, 64 times the {len(bomb)} compressed bytes read .*--max-size",
    ):
        bootmem.initramfs.open(data).getmembers()


def test_bomb_with_an_explicit_cap(codec: str) -> None:
    data = compress(archive(reg("zeros", bytes(4 << 20))), codec)
    with pytest.raises(DecompressionBombError, match=r"cap of 65536 bytes .* at offset 0x0"):
        bootmem.initramfs.open(data, max_decompressed=1 << 16).getmembers()


# --- the tarfile-style API ------------------------------------------------------------------


def test_getmember_last_wins_and_keyerror() -> None:
    with bootmem.initramfs.open(pad(EARLY) + compress(MAIN, "gzip")) as img:
        fstab = img.getmember("etc/fstab")
        assert img.getmember("./etc/fstab") == fstab
        f = img.extractfile(fstab)
        assert f is not None and f.read() == b"fstab v2"
        with pytest.raises(KeyError):
            img.getmember("etc/passwd")
        assert img.extractfile("kernel") is None
        raw = img.extractfile("kernel/x86/microcode/GenuineIntel.bin")
        assert raw is not None and raw.read() == b"\x01" * 1000


def test_sources_path_file_bytes_memoryview(tmp_path: Path) -> None:
    data = pad(EARLY) + compress(MAIN, "zstd")
    path = tmp_path / "initrd.img"
    path.write_bytes(data)
    names = bootmem.initramfs.open(data).getnames()
    with path.open("rb") as f:
        assert bootmem.initramfs.open(f).getnames() == names
        assert not f.closed
    assert bootmem.initramfs.open(path).getnames() == names
    assert bootmem.initramfs.open(str(path)).getnames() == names
    with bootmem.initramfs.open(memoryview(data)) as img:
        assert img.getnames() == names


def test_memoryview_source_is_not_copied() -> None:
    buf = bytearray(pad(EARLY) + compress(MAIN, "gzip"))
    img = bootmem.initramfs.open(memoryview(buf))
    with pytest.raises(BufferError):
        buf.append(0)  # a view of it is alive: the image reads the caller's buffer in place
    assert len(img.getnames()) == 5
    img.close()


def test_stream_shows_segment_boundaries() -> None:
    data = pad(EARLY) + compress(MAIN, "gzip") + b"\0" * 3 + compress(archive(reg("z")), "zstd")
    img = bootmem.initramfs.open(data, strict=False)
    seen = []
    for entry, reader in img.stream():
        seen.append((entry.segment, len(img.segments)))
        if entry.name == "etc/fstab":
            assert reader.read_data() in (b"fstab v1", b"fstab v2")
    assert seen == [(0, 0), (0, 0), (1, 1), (1, 1), (1, 1), (2, 2)]
    assert len(img.segments) == 3


def test_segments_after_a_failed_stream_are_those_before_the_error() -> None:
    data = pad(EARLY) + compress(MAIN, "gzip") + b"junk"
    img = bootmem.initramfs.open(data, strict=False)
    with pytest.raises(CompressionError):
        for _ in img.stream():
            pass
    assert [s.compression for s in img.segments] == ["none", "gzip"]


def test_data_taken_while_streaming(codec: str) -> None:
    big = bytes(range(256)) * 9000
    data = compress(archive(reg("big", big), reg("small", b"s")), codec)
    got = {}
    for entry, reader in bootmem.initramfs.open(data).stream():
        got[entry.name] = b"".join(reader.iter_data(1000))
    assert got == {"big": big, "small": b"s"}


def _decompress_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == "bootmem-decompress"]


def test_a_member_is_decompressed_by_its_own_thread_while_listing(codec: str) -> None:
    files = [reg(f"f{i}", bytes([i]) * 70_000) for i in range(160)]  # 11 MB: more than it reads ahead
    data = pad(EARLY) + compress(archive(*files), codec)
    stream = bootmem.initramfs.open(data).stream()
    assert not _decompress_threads()
    assert [next(stream)[0].segment for _ in range(2)] == [0, 0]  # the raw early archive, read in place
    assert not _decompress_threads()
    assert next(stream)[0].name == "f0"
    assert _decompress_threads()  # decompressing ahead of the entries handed out
    assert [entry.name for entry, _ in stream] == [f"f{i}" for i in range(1, 160)]
    assert not _decompress_threads()
    stream = bootmem.initramfs.open(data).stream()
    assert [next(stream)[0].segment for _ in range(3)] == [0, 0, 1]
    stream.close()  # left early: the thread is stopped and joined
    assert not _decompress_threads()


def test_default_cap() -> None:
    # 64 times the compressed bytes of the members, at least 256 MiB; a given cap is the cap.
    assert (DEFAULT_RATIO, DEFAULT_MIN_CAP) == (64, 256 << 20)
    budget = Budget()
    assert budget.limit() == budget.limit(10) == DEFAULT_MIN_CAP
    assert budget.limit(1 << 30) == 64 << 30
    budget.compressed = 8 << 20
    assert budget.limit(2 << 20) == 640 << 20
    assert Budget(1000).limit(1 << 30) == 1000


# --- property: what CpioWriter writes reads back identically --------------------------------

_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0/"), min_size=1, max_size=20
)
_entries = st.lists(
    st.tuples(
        st.lists(_names, min_size=1, max_size=3).map("/".join),
        st.sampled_from(
            [
                stat.S_IFREG | 0o644,
                stat.S_IFDIR | 0o755,
                stat.S_IFLNK | 0o777,
                stat.S_IFIFO | 0o600,
                stat.S_IFREG | 0o4755,
            ]
        ),
        st.binary(max_size=3000),
        st.integers(0, 2**32 - 1),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entries=_entries,
    format=st.sampled_from(["newc", "crc"]),
    compression=st.sampled_from(["none", "gzip", "zstd", "lz4", "xz"]),
    early=st.booleans(),
)
def test_written_trees_read_back_identically(
    entries: list[tuple[str, int, bytes, int]], format: Format, compression: str, early: bool
) -> None:
    want = []
    for name, mode, body, mtime in entries:
        entry = Entry(
            name=name,
            c_mode=mode,
            c_mtime=mtime,
            c_ino=len(want) + 1,
            linkname=body.decode("latin-1")[:50] or "t" if stat.S_ISLNK(mode) else None,
        )
        want.append((entry, body if stat.S_ISREG(mode) else b""))
    main = archive(*want, format=format)
    data = (pad(EARLY) if early else b"") + compress(main, compression)
    with bootmem.initramfs.open(data) as img:
        members = [m for m in img if m.segment == (1 if early else 0)]
        assert len(members) == len(want)
        for got, (entry, body) in zip(members, want, strict=True):
            assert (got.name, got.c_mode, got.c_mtime, got.c_ino, got.format) == (
                entry.name,
                entry.c_mode,
                entry.c_mtime,
                entry.c_ino,
                format,
            )
            if entry.issym():  # a C string, as the kernel reads it: it ends at the first NUL
                assert got.linkname == (entry.linkname or "").partition("\0")[0]
            f = img.extractfile(got)
            assert (f.read() if f else b"") == body

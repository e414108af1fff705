"""bootmem.initramfs.cpio: header layout round trips and every bad archive the reader meets.

Each bad-input test asserts the exception class and that the message names the offset (hex)
where the archive went wrong (issue 3, "Bad input").
"""

from __future__ import annotations

import io
import stat

import pytest

from bootmem.errors import ChecksumError, CpioError
from bootmem.initramfs.cpio import (
    HEADER_SIZE,
    PATH_MAX,
    CpioReader,
    Entry,
    Format,
    data_checksum,
    pack_header,
    parse_header,
)
from tests.initramfs.corpus import archive, raw_entry


def reg(name: str, data: bytes = b"", **kw: int) -> tuple[Entry, bytes]:
    return Entry(name=name, c_mode=stat.S_IFREG | 0o644, **kw), data


def read_all(data: bytes, **kw: object) -> list[tuple[Entry, bytes]]:
    reader = CpioReader(io.BytesIO(data), **kw)  # type: ignore[arg-type]
    return [(e, reader.read_data()) for e in reader]


def header_offsets(data: bytes) -> list[int]:
    """Offsets of the headers of a well-formed archive, trailer included."""
    offsets, pos = [], 0
    while True:
        _, f = parse_header(data[pos : pos + HEADER_SIZE])
        offsets.append(pos)
        name_end = pos + HEADER_SIZE + f["c_namesize"]
        if data[pos + HEADER_SIZE : name_end - 1] == b"TRAILER!!!":
            return offsets
        pos = (name_end + 3 & ~3) + f["c_filesize"]
        pos = pos + 3 & ~3


# --- layout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["newc", "crc"])
def test_pack_parse_round_trip(format: Format) -> None:
    entry = Entry(
        name="usr/bin/x",
        c_mode=0o100755,
        c_ino=0x1234,
        c_uid=0xFFFFFFFF,
        c_gid=7,
        c_nlink=2,
        c_mtime=1_700_000_000,
        c_devmajor=8,
        c_devminor=1,
        c_rdevmajor=0,
        c_rdevminor=0,
        format=format,
    )
    raw = pack_header(entry, namesize=10, filesize=5, check=0xDEAD)
    fmt, fields = parse_header(raw)
    assert fmt == format
    again = pack_header(
        Entry(
            name=entry.name,
            format=fmt,
            **{k: v for k, v in fields.items() if k not in ("c_namesize", "c_filesize", "c_check")},
        ),
        namesize=fields["c_namesize"],
        filesize=fields["c_filesize"],
        check=fields["c_check"],
    )
    assert again == raw
    assert fields["c_check"] == (0xDEAD if format == "crc" else 0)


def test_archive_round_trip_is_byte_exact() -> None:
    data = archive(reg("a", b"hello"), (Entry(name="l", c_mode=0o120777, linkname="a"), b""), reg("e"))
    entries = read_all(data)
    assert archive(*[(e, d) for e, d in entries]) == data


def test_header_is_110_bytes_and_name_data_are_4_aligned() -> None:
    data = archive(reg("ab", b"xyz"))
    assert data[:6] == b"070701"
    assert header_offsets(data) == [0, 120]  # 110 + 3 of name -> 116, + 3 of data -> 120
    assert len(data) % 4 == 0


def test_trailer_inside_file_data_does_not_end_the_archive() -> None:
    fake = archive()  # a whole archive: header "070701..." + "TRAILER!!!"
    data = archive(reg("decoy", fake + b"TRAILER!!!\0"), reg("after", b"still here"))
    assert [(e.name, d) for e, d in read_all(data)] == [
        ("decoy", fake + b"TRAILER!!!\0"),
        ("after", b"still here"),
    ]


def test_crc_checksum_is_the_byte_sum() -> None:
    assert data_checksum(b"\x01\x02\xff") == 0x102
    data = archive(reg("f", b"\xff" * 10), format="crc")
    ((entry, body),) = read_all(data)
    assert entry.c_check == 0xFF * 10 and body == b"\xff" * 10


# --- bad input ------------------------------------------------------------------------------

BASE = archive(reg("first", b"1111"), reg("second", b"data of the second"), reg("third"))
SECOND = header_offsets(BASE)[1]  # 0x80


def patched(at: int, new: bytes, data: bytes = BASE) -> bytes:
    return data[:at] + new + data[at + len(new) :]


def test_truncated_header() -> None:
    with pytest.raises(CpioError, match=rf"truncated cpio header at offset {SECOND:#x}: 50 of 110"):
        read_all(BASE[: SECOND + 50])


def test_truncated_name() -> None:
    with pytest.raises(CpioError, match=rf"truncated name at offset {SECOND:#x}"):
        read_all(BASE[: SECOND + HEADER_SIZE + 3])


def test_truncated_data() -> None:
    with pytest.raises(CpioError, match=r"truncated data of 'second': \d+ bytes missing at offset 0x"):
        read_all(BASE[: SECOND + 124 + 5])


def test_bad_magic_mid_stream() -> None:
    with pytest.raises(CpioError, match=rf"no cpio magic at offset {SECOND:#x}: b'123456'"):
        read_all(patched(SECOND, b"123456"))


def test_non_hex_characters() -> None:
    at = SECOND + 6 + 8  # c_mode
    with pytest.raises(CpioError, match=rf"bad c_mode b'000081zz' in cpio header at offset {at:#x}"):
        read_all(patched(at, b"000081zz"))


def test_namesize_zero() -> None:
    at = SECOND + 6 + 11 * 8
    with pytest.raises(CpioError, match=rf"bad c_namesize 0 at offset {SECOND:#x}"):
        read_all(patched(at, b"00000000"))


def test_namesize_over_path_max() -> None:
    at = SECOND + 6 + 11 * 8
    with pytest.raises(CpioError, match=rf"bad c_namesize {PATH_MAX + 1} at offset {SECOND:#x}"):
        read_all(patched(at, b"%08X" % (PATH_MAX + 1)))


# Entries init/initramfs.c's do_header skips over their recorded sizes (state SkipIt): a
# c_namesize of 0 or over PATH_MAX, and a symlink whose target is over PATH_MAX bytes.
KERNEL_SKIPS = {
    "namesize-0": raw_entry(b"", namesize=0, data=b"body of a nameless entry"),
    "namesize-over-path-max": raw_entry(b"n" * PATH_MAX + b"\0", namesize=PATH_MAX + 1, data=b"data"),
    "symlink-target-over-path-max": raw_entry(
        b"link\0", namesize=5, data=b"t" * (PATH_MAX + 1), mode=stat.S_IFLNK | 0o777
    ),
}


@pytest.mark.parametrize("case", sorted(KERNEL_SKIPS))
def test_lenient_reader_skips_what_the_kernel_skips(case: str) -> None:
    before, after = archive(reg("a", b"aaaa")), archive(reg("b", b"data of b"))
    # One archive: "a", the entry the kernel skips, "b" (the first archive's trailer cut off).
    data = before[: header_offsets(before)[-1]] + KERNEL_SKIPS[case] + after
    reader = CpioReader(io.BytesIO(data), strict=False)
    assert [(e.name, reader.read_data()) for e in reader] == [("a", b"aaaa"), ("b", b"data of b")]
    assert reader.skipped == 1 and reader.archives == 1
    with pytest.raises(CpioError, match=rf"at offset {header_offsets(before)[-1]:#x}"):
        read_all(data)  # strict: the same entry is an error naming its offset


def test_lenient_reader_counts_nothing_in_a_clean_archive() -> None:
    reader = CpioReader(io.BytesIO(archive(reg("a"), reg("b"))), strict=False)
    assert [e.name for e in reader] == ["a", "b"] and reader.skipped == 0


def test_name_without_nul() -> None:
    at = SECOND + HEADER_SIZE + len("second")
    with pytest.raises(CpioError, match=rf"name without its NUL at offset {SECOND:#x}"):
        read_all(patched(at, b"X"))


def test_filesize_past_the_end() -> None:
    at = SECOND + 6 + 6 * 8
    with pytest.raises(CpioError, match=r"truncated data of 'second': \d+ bytes missing at offset 0x"):
        read_all(patched(at, b"7FFFFFFF"))


def test_crc_mismatch() -> None:
    data = archive(reg("f", b"payload"), reg("g"), format="crc")
    at = 6 + 12 * 8  # c_check of the first entry
    with pytest.raises(ChecksumError, match=r"bad data checksum for 'f' at offset 0x0: c_check 0x00000001"):
        read_all(patched(at, b"00000001", data))


def test_crc_mismatch_is_found_when_the_data_is_skipped() -> None:
    data = patched(6 + 12 * 8, b"00000001", archive(reg("f", b"payload"), reg("g"), format="crc"))
    with pytest.raises(ChecksumError, match=r"offset 0x0"):
        list(CpioReader(io.BytesIO(data)))


def test_odc_gets_the_kernel_message() -> None:
    odc = b"070707" + b"0" * 70
    with pytest.raises(CpioError, match=r"incorrect cpio method used: use -H newc option \(at offset 0x0\)"):
        read_all(odc + b"\0" * 200)


def test_missing_trailer() -> None:
    data = BASE[: header_offsets(BASE)[-1]]
    with pytest.raises(CpioError, match=r"truncated archive: no TRAILER!!! before the end at offset 0x"):
        read_all(data)


def test_base_offset_and_where_are_in_messages() -> None:
    with pytest.raises(CpioError, match=rf"no cpio magic at offset {0x1000 + SECOND:#x} of X"):
        read_all(patched(SECOND, b"123456"), base_offset=0x1000, segment=2, where=" of X")
    with pytest.raises(CpioError, match=rf"truncated name at segment 2 offset {0x1000 + SECOND:#x} of X"):
        read_all(BASE[: SECOND + HEADER_SIZE + 3], base_offset=0x1000, segment=2, where=" of X")


def test_trailer_body_is_skipped() -> None:
    # A trailer with c_filesize 4: do_name's SkipIt state skips its body like any other.
    data = archive(reg("a"))
    trailer = header_offsets(data)[-1]
    odd = patched(trailer + 6 + 6 * 8, b"00000004", data) + b"zzzz"
    reader = CpioReader(io.BytesIO(odd + archive(reg("b"))), multi_archive=True)
    assert [e.name for e in reader] == ["a", "b"]
    reader = CpioReader(io.BytesIO(odd + b"next"))
    assert [e.name for e in reader] == ["a"]
    assert reader.position == len(odd)


def test_junk_within_a_multi_archive_stream() -> None:
    data = archive(reg("a")) + b"\0" * 8 + b"junk"
    with pytest.raises(CpioError, match=rf"junk within compressed archive at offset {len(data) - 4:#x}"):
        list(CpioReader(io.BytesIO(data), multi_archive=True))


def test_max_entries() -> None:
    data = archive(*[reg(f"f{i}") for i in range(10)])
    with pytest.raises(CpioError, match="more than 5 entries"):
        list(CpioReader(io.BytesIO(data), max_entries=5))


def test_truncated_data_found_when_the_data_is_skipped() -> None:
    cut = BASE[: SECOND + 124 + 5]
    where = f"offset {len(cut):#x}"
    with pytest.raises(CpioError, match=rf"truncated data of 'second': 9 bytes missing at {where}"):
        list(CpioReader(io.BytesIO(cut)))

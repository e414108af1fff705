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
    _Source,
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


@pytest.mark.parametrize("field", [b"+0000001", b" 0000001", b"0000_001", b"0x000001"])
def test_what_python_int_takes_is_still_not_8_hex_digits(field: bytes) -> None:
    # int(..., 16) takes a sign, spaces, underscores and 0x; the header's first field too must not.
    with pytest.raises(CpioError, match=r"bad c_ino .* in cpio header at offset 0x6: not 8 hex digits"):
        read_all(patched(6, field))


def test_namesize_zero() -> None:
    at = SECOND + 6 + 11 * 8
    with pytest.raises(CpioError, match=rf"bad c_namesize 0 at offset {SECOND:#x}"):
        read_all(patched(at, b"00000000"))


def test_namesize_over_path_max() -> None:
    at = SECOND + 6 + 11 * 8
    with pytest.raises(CpioError, match=rf"bad c_namesize {PATH_MAX + 1} at offset {SECOND:#x}"):
        read_all(patched(at, b"%08X" % (PATH_MAX + 1)))


# Entries init/initramfs.c's do_header skips over their recorded sizes (state SkipIt): a
# c_namesize of 0 or over PATH_MAX, and a symlink whose target is over PATH_MAX bytes.  Their
# bodies are not multiples of 4 long, so the skip must count the padding too.
KERNEL_SKIPS = {
    "namesize-0": raw_entry(b"", namesize=0, data=b"body of a nameless entry!"),
    "namesize-over-path-max": raw_entry(b"n" * PATH_MAX + b"\0", namesize=PATH_MAX + 1, data=b"data5"),
    "symlink-target-over-path-max": raw_entry(
        b"link\0", namesize=5, data=b"t" * (PATH_MAX + 2), mode=stat.S_IFLNK | 0o777
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


# --- what the reader and writer must get exactly right ----------------------------------------


def test_header_fields_are_in_the_documented_order() -> None:
    # Documentation/driver-api/early-userspace/buffer-format.rst: the magic, then c_ino, c_mode,
    # c_uid, c_gid, c_nlink, c_mtime, c_filesize, c_devmajor, c_devminor, c_rdevmajor,
    # c_rdevminor, c_namesize, c_check, each 8 hex digits (usr/gen_init_cpio.c prints "%08X").
    entry = Entry(
        name="ab",
        c_mode=0o100644,
        c_ino=0xA1,
        c_uid=0xB2,
        c_gid=0xC3,
        c_nlink=0xD4,
        c_mtime=0xE5,
        c_devmajor=0xF6,
        c_devminor=0x17,
        c_rdevmajor=0x28,
        c_rdevminor=0x39,
        format="crc",
    )
    assert pack_header(entry, namesize=3, filesize=0x4A, check=0xFFFFFFFF) == (
        b"070702" b"000000A1" b"000081A4" b"000000B2" b"000000C3" b"000000D4" b"000000E5"
        b"0000004A" b"000000F6" b"00000017" b"00000028" b"00000039" b"00000003" b"FFFFFFFF"
    )  # fmt: skip


def test_a_field_past_32_bits_is_refused_by_name() -> None:
    assert pack_header(Entry("a", 0o100644, c_mtime=0xFFFFFFFF), namesize=2, filesize=0)[46:54] == b"FFFFFFFF"
    with pytest.raises(CpioError, match=r"^c_mtime 4294967296 of 'a' does not fit in a cpio header$"):
        pack_header(Entry("a", 0o100644, c_mtime=1 << 32), namesize=2, filesize=0)


def test_the_trailer_is_gen_init_cpios() -> None:
    # usr/gen_init_cpio.c cpio_trailer: every field 0 but c_nlink 1 and c_namesize 11.
    assert archive() == (
        b"070701" + b"00000000" * 4 + b"00000001" + b"00000000" * 6 + b"0000000B" + b"00000000"
        + b"TRAILER!!!\0" + b"\0" * 3
    )  # fmt: skip


FIELDS_SET = {
    "c_ino": 0x11,
    "c_uid": 0x22,
    "c_gid": 0x33,
    "c_nlink": 0x44,
    "c_mtime": 0x55,
    "c_devmajor": 0x66,
    "c_devminor": 0x77,
    "c_rdevmajor": 8,
    "c_rdevminor": 1,
}


@pytest.mark.parametrize("format", ["newc", "crc"])
def test_the_reader_gives_every_field_and_where_the_entry_is(format: Format) -> None:
    written = [
        Entry("dev/sda1", stat.S_IFBLK | 0o660, **FIELDS_SET),
        Entry("lib", stat.S_IFLNK | 0o777, linkname="usr/lib", **FIELDS_SET),
        Entry("init", stat.S_IFREG | 0o755, **FIELDS_SET),
    ]
    first = archive(reg("early"), format=format)
    data = first + archive(*((e, b"#!/bin/sh\n" if e.isreg() else b"") for e in written), format=format)
    reader = CpioReader(io.BytesIO(data), segment=3, base_offset=0x400, multi_archive=True)
    read = list(reader)[1:]
    starts = [len(first) + at for at in header_offsets(data[len(first) :])[:3]]
    expected = [
        e.replace(format=format, offset=0x400 + at, segment=3, archive=1)
        for e, at in zip(written, starts, strict=True)
    ]
    expected[1] = expected[1].replace(c_filesize=len("usr/lib"))
    check = data_checksum(b"#!/bin/sh\n") if format == "crc" else 0
    expected[2] = expected[2].replace(c_filesize=10, c_check=check)
    assert read == expected
    assert [e.c_namesize for e in read] == [9, 4, 5]
    assert reader.archives == 2 and reader.entries == 4 and reader.ended_cleanly


def test_entries_count_their_archive() -> None:
    data = b"".join(archive(reg(f"f{i}")) for i in range(3))
    reader = CpioReader(io.BytesIO(data), multi_archive=True)
    assert [(e.name, e.archive) for e in reader] == [("f0", 0), ("f1", 1), ("f2", 2)]
    assert reader.archives == 3


def test_ended_cleanly_only_after_a_trailer() -> None:
    reader = CpioReader(io.BytesIO(BASE[: header_offsets(BASE)[-1]]))
    assert not reader.ended_cleanly
    seen = []
    with pytest.raises(CpioError, match="no TRAILER!!!"):
        for entry in reader:
            seen.append(entry.name)
            assert not reader.ended_cleanly
    assert seen == ["first", "second", "third"] and not reader.ended_cleanly


@pytest.mark.parametrize("strict", [True, False])
def test_a_name_and_a_symlink_target_of_path_max_bytes_are_read(strict: bool) -> None:
    # do_header: a name is skipped only when c_namesize > PATH_MAX (its NUL counted), a
    # symlink only when its target is over PATH_MAX bytes.
    name, target = "n" * (PATH_MAX - 1), "t" * PATH_MAX
    data = archive(reg(name, b"x"), (Entry("l", stat.S_IFLNK | 0o777, linkname=target), b""))
    reader = CpioReader(io.BytesIO(data), strict=strict)
    assert [(e.name, e.c_namesize, e.linkname) for e in reader] == [(name, PATH_MAX, None), ("l", 2, target)]
    assert reader.skipped == 0


def test_a_symlink_target_ends_at_its_first_nul() -> None:
    # do_symlink hands the collected target to init_symlink as a C string.
    data = raw_entry(b"l\0", namesize=2, data=b"target\0junk", mode=stat.S_IFLNK | 0o777) + archive()
    ((entry, _),) = read_all(data)
    assert entry.linkname == "target" and entry.c_filesize == 11


def test_a_crc_file_read_in_chunks_is_summed_over_all_of_them() -> None:
    body = bytes(range(256)) * 40
    good = archive(reg("f", body), reg("g", b"next"), format="crc")
    reader = CpioReader(io.BytesIO(good))
    assert [(e.name, b"".join(reader.iter_data(1000))) for e in reader] == [("f", body), ("g", b"next")]
    bad = patched(6 + 12 * 8, b"%08X" % (data_checksum(body) + 1), good)
    reader = CpioReader(io.BytesIO(bad), base_offset=0x1000)
    with pytest.raises(ChecksumError, match=r"bad data checksum for 'f' at offset 0x1000: c_check 0x"):
        for _ in reader:
            assert b"".join(reader.iter_data(1000)) == body


def test_the_crc_writer_sums_regular_files_only() -> None:
    data = archive((Entry("l", stat.S_IFLNK | 0o777, linkname="abc"), b""), reg("f", b"\x02"), format="crc")
    (link, _), (file, _) = read_all(data)
    assert link.c_check == 0 and file.c_check == 2


class Trickle:
    """A stream that returns at most ``most`` bytes a read, as a pipe or a decompressor may."""

    def __init__(self, data: bytes, most: int) -> None:
        self._data, self._pos, self._most = data, 0, most

    def read(self, n: int = -1) -> bytes:
        n = self._most if n < 0 else min(n, self._most)
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out


@pytest.mark.parametrize("most", [1, 3, 7, 4096])
def test_short_reads_give_the_same_entries(most: int) -> None:
    early = archive(reg("kernel/x86/microcode/GenuineIntel.bin", b"\x01" * 1001))
    main = archive(
        reg("a", b"aaaaa"),
        (Entry("l", stat.S_IFLNK | 0o777, linkname="a"), b""),
        reg("big", bytes(range(256)) * 300),
        reg("empty"),
        format="crc",
    )
    data = early + b"\0" * 516 + main
    expected = read_all(data, multi_archive=True)
    assert [e.name for e, _ in expected][-1] == "empty"
    reader = CpioReader(Trickle(data, most), multi_archive=True)
    got: list[tuple[Entry, bytes | None]] = []
    for i, entry in enumerate(reader):
        # the data taken whole, in chunks, or skipped
        if i % 3 == 0:
            got.append((entry, reader.read_data()))
        elif i % 3 == 1:
            got.append((entry, b"".join(reader.iter_data(5))))
        else:
            got.append((entry, None))
    assert got == [(e, (d, d, None)[i % 3]) for i, (e, d) in enumerate(expected)]
    assert reader.position == len(data) and reader.archives == 2


def test_max_entries_allows_exactly_that_many() -> None:
    data = archive(*[reg(f"f{i}") for i in range(5)])
    assert len(list(CpioReader(io.BytesIO(data), max_entries=5))) == 5


def test_empty_input() -> None:
    with pytest.raises(CpioError, match=r"^empty archive at offset 0x0$"):
        read_all(b"")


def test_truncated_symlink_target() -> None:
    data = archive((Entry("l", stat.S_IFLNK | 0o777, linkname="target"), b""))
    with pytest.raises(CpioError, match=r"^truncated data of 'l' at offset 0x0$"):
        read_all(data[: HEADER_SIZE + 2 + 4])


def test_a_skipped_entry_cut_short() -> None:
    cut = KERNEL_SKIPS["namesize-0"][:-8]
    with pytest.raises(CpioError, match=r"^truncated entry at offset 0x0$"):
        read_all(cut, strict=False)


@pytest.mark.parametrize("block", [512, 4096])
def test_the_writer_pads_to_its_block_size(block: int) -> None:
    from bootmem.initramfs.cpio import CpioWriter

    unpadded = archive(reg("a", b"x" * 700))
    out = io.BytesIO()
    with CpioWriter(out, block_size=block) as writer:
        writer.add(*reg("a", b"x" * 700))
    data = out.getvalue()
    assert len(data) == -(-len(unpadded) // block) * block == writer.position
    assert data == unpadded + b"\0" * (len(data) - len(unpadded))


# --- the reader's look-ahead buffer -----------------------------------------------------------


class _Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes a read, as a pipe may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._step, self._at = data, step, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._step if n < 0 else min(n, self._step)
        out = self._data[self._at : self._at + n]
        self._at += len(out)
        return out


DATA = bytes(range(256)) * 4


@pytest.mark.parametrize("step", [1, 3, 1024])
def test_reads_and_skips_across_the_look_ahead(step: int) -> None:
    src = _Source(_Trickle(DATA, step))
    assert src.peek(8) == DATA[:8]
    assert src.read(2) == DATA[:2]
    assert src.peek(4) == DATA[2:6]  # inside what is buffered
    assert src.peek(10) == DATA[2:12]  # past it: the rest of the buffer, then the stream
    assert src.read(12) == DATA[2:14]  # the buffered part first, then the stream
    assert src.position == 14
    src.peek(8)
    src.read(3)
    assert src.skip(10, chunk=3) == 10  # five buffered bytes, then the stream in chunks of 3
    assert src.position == 27 and src.read(3) == DATA[27:30]
    assert src.skip(len(DATA)) == len(DATA) - 30 and src.read(1) == b""


@pytest.mark.parametrize("step", [1, 5, 4096])
def test_nul_runs_are_counted_across_blocks(step: int) -> None:
    data = b"ab" + bytes(10) + b"cd" + bytes(3)
    src = _Source(_Trickle(data, step))
    assert src.read(1) == b"a" and src.skip_nuls(chunk=4) == 0
    assert src.read(1) == b"b"
    assert src.skip_nuls(chunk=4) == 10  # the run spans three blocks of 4
    assert src.position == 12 and src.read(2) == b"cd"
    assert src.skip_nuls(chunk=4) == 3 and src.position == 17 and src.read(1) == b""

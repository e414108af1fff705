"""`bootmem ls` and `bootmem examine`: output formats, and one-line errors for bad images."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bootmem.cli import main
from bootmem.initramfs import Entry
from bootmem.initramfs.compress import compress
from tests.conftest import validate_json
from tests.initramfs.corpus import archive


def _image(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "initrd.img"
    path.write_bytes(data)
    return str(path)


EARLY = archive((Entry(name="kernel/x86/microcode/GenuineIntel.bin", c_mode=0o100644), b"\x01" * 100))
EARLY += b"\0" * (-len(EARLY) % 512)
MAIN = archive(
    (Entry(name=".", c_mode=stat.S_IFDIR | 0o755, c_nlink=2, c_mtime=1_700_000_000), b""),
    (Entry(name="dev/console", c_mode=stat.S_IFCHR | 0o600, c_rdevmajor=5, c_rdevminor=1), b""),
    (Entry(name="bin/sh", c_mode=stat.S_IFLNK | 0o777, linkname="busybox"), b""),
    (Entry(name="odd\nname\x1b[2J", c_mode=stat.S_IFREG | 0o4755, c_uid=1000, c_gid=100), b"hi"),
)


@pytest.fixture
def image(tmp_path: Path) -> str:
    return _image(tmp_path, EARLY + compress(MAIN, "zstd"))


def test_ls(image: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", image]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "kernel/x86/microcode/GenuineIntel.bin",
        ".",
        "dev/console",
        "bin/sh",
        "odd\\nname\\x1b[2J",
    ]


def test_ls_long(image: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "-l", image]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "-rw-r--r--",
        "1",
        "0",
        "0",
        "100",
        "1970-01-01",
        "00:00",
        "kernel/x86/microcode/GenuineIntel.bin",
    ]
    assert lines[1].split() == ["drwxr-xr-x", "2", "0", "0", "0", "2023-11-14", "22:13", "."]
    assert lines[2].split() == ["crw-------", "1", "0", "0", "5,", "1", "1970-01-01", "00:00", "dev/console"]
    assert lines[3].endswith(" bin/sh -> busybox") and lines[3].startswith("lrwxrwxrwx")
    assert lines[4].split()[:5] == ["-rwsr-xr-x", "1", "1000", "100", "2"]
    assert lines[4].endswith("odd\\nname\\x1b[2J")


def test_ls_json(image: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "--json", image]) == 0
    data = json.loads(capsys.readouterr().out)
    validate_json(data, "ls")
    entries = data["entries"]
    assert [e["name"] for e in entries][-1] == "odd\nname\x1b[2J"
    assert [e["segment"] for e in entries] == [0, 1, 1, 1, 1]
    assert entries[2]["rdev"] == [5, 1] and entries[2]["type"] == "c"
    assert entries[3]["linkname"] == "busybox"
    assert entries[4]["mode"] == "4755"


def test_examine(image: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examine", image]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "index",
        "offset",
        "end",
        "compression",
        "format",
        "compressed",
        "uncompressed",
        "entries",
    ]
    assert lines[1].split()[:5] == ["0", "0x0", hex(len(EARLY.rstrip(b"\0")) + 1 + 3 & ~3), "none", "newc"]
    assert lines[2].split()[:5] == ["1", "0x200", hex(512 + len(compress(MAIN, "zstd"))), "zstd", "newc"]
    assert lines[2].split()[6:] == [str(len(MAIN)), "4"]


def test_examine_contents_json(image: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examine", "--contents", "--json", image]) == 0
    data = json.loads(capsys.readouterr().out)
    validate_json(data, "examine-contents")
    segments = [(s["index"], s["compression"], s["entries"]) for s in data["segments"]]
    assert segments == [(0, "none", 1), (1, "zstd", 4)]
    assert data["microcode"] == {"GenuineIntel": 100}
    assert data["init"] is None and data["busybox"] is None and data["kernel_versions"] == []


def test_examine_json(image: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examine", "--json", image]) == 0
    data = json.loads(capsys.readouterr().out)
    validate_json(data, "examine")
    segments = data["segments"]
    assert [s["compression"] for s in segments] == ["none", "zstd"]
    assert set(segments[0]) == {
        "index",
        "offset",
        "end",
        "compression",
        "format",
        "compressed_size",
        "uncompressed_size",
        "entries",
        "archives",
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x42" * 100, "invalid magic at start of compressed archive at offset 0x0"),
        (EARLY + compress(MAIN, "gzip")[:-20], "at offset 0x200"),
        (EARLY + compress(MAIN[:-124], "gzip"), "junk at the end of compressed archive at offset 0x200"),
        (b"070707" + b"0" * 200, "incorrect cpio method used: use -H newc option (at offset 0x0)"),
        (MAIN[:200], "offset 0x"),
    ],
)
@pytest.mark.parametrize("command", ["ls", "examine"])
def test_bad_image_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, message: str, command: str
) -> None:
    assert main([command, _image(tmp_path, data)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("bootmem: error: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No such file" in err

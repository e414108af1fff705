"""`examine --contents`: kernel versions, modules, firmware, microcode, init, busybox."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from bootmem.cli import main
from bootmem.initramfs import open as open_image
from bootmem.initramfs.cpio import Entry
from bootmem.initramfs.summary import HEAD_SIZE, interpreter, summarise
from bootmem.kernel.example import example_image
from tests.conftest import require_tool, validate_json
from tests.initramfs import corpus

DIR = stat.S_IFDIR | 0o755
EXE = stat.S_IFREG | 0o755
LNK = stat.S_IFLNK | 0o777


@pytest.mark.peer
@pytest.mark.parametrize("program", ["/bin/ls", "/usr/bin/python3", "/bin/busybox"])
def test_interpreter_agrees_with_readelf(program: str) -> None:
    readelf = require_tool("readelf")
    path = shutil.which(program) or program
    if not Path(path).exists():
        pytest.skip(f"{program} is not on this machine")
    shown = subprocess.run([readelf, "-lW", path], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requesting program interpreter: ([^\]]+)\]", shown)
    head = Path(path).read_bytes()[:HEAD_SIZE]
    assert interpreter(head) == (match.group(1) if match else None)


def test_interpreter_of_scripts_and_data() -> None:
    assert interpreter(b"#!/usr/bin/env python3\nprint()\n") == "/usr/bin/env python3"
    assert interpreter(b"\x7fELF") is None  # too short to hold a header
    assert interpreter(b"plain data") is None


def _image(*entries: tuple[Entry, bytes]) -> bytes:
    return corpus.archive(*entries)


def test_summary_of_a_busybox_rootfs() -> None:
    busybox = Path("/bin/busybox").read_bytes() if Path("/bin/busybox").exists() else b"\x7fELF" + b"\0" * 60
    ko = b"\0" * 5000
    data = _image(
        (Entry(name="bin", c_mode=DIR), b""),
        (Entry(name="bin/busybox", c_mode=EXE, c_filesize=len(busybox), c_ino=7, c_nlink=2), busybox),
        (Entry(name="bin/sh", c_mode=LNK, linkname="busybox"), b""),
        (Entry(name="bin/ls", c_mode=LNK, linkname="/bin/busybox"), b""),
        (Entry(name="bin/mount", c_mode=EXE, c_ino=7, c_nlink=2), b""),  # a hardlink applet
        (Entry(name="bin/kmod", c_mode=EXE, c_filesize=4), b"\x7fELF"),
        (Entry(name="init", c_mode=EXE, c_filesize=22), b"#!/bin/sh\nexec switch\n"),
        (Entry(name="usr", c_mode=DIR), b""),
        *(
            (Entry(name=name, c_mode=DIR), b"")
            for name in (
                "usr/lib",
                "usr/lib/modules",
                "usr/lib/modules/6.1.0-13-amd64",
                "usr/lib/modules/6.1.0-13-amd64/kernel",
                "usr/lib/modules/6.1.0-13-amd64/kernel/fs",
                "usr/lib/modules/6.1.0-13-amd64/kernel/fs/ext4",
                "usr/lib/firmware",
            )
        ),
        (
            Entry(
                name="usr/lib/modules/6.1.0-13-amd64/kernel/fs/ext4/ext4.ko",
                c_mode=0o100644,
                c_filesize=len(ko),
            ),
            ko,
        ),
        (
            Entry(
                name="usr/lib/modules/6.1.0-13-amd64/kernel/fs/ext4/jbd2.ko.xz", c_mode=0o100644, c_filesize=3
            ),
            b"xz!",
        ),
        (Entry(name="usr/lib/firmware/a.bin", c_mode=0o100644, c_filesize=10), b"0123456789"),
    )
    with open_image(data) as img:
        s = summarise(img)
    assert s.kernel_versions == ["6.1.0-13-amd64"]
    assert s.module_total.count == 2 and s.module_total.bytes == 5003
    assert list(s.modules) == ["kernel/fs"]
    assert (s.firmware.count, s.firmware.bytes) == (1, 10)
    assert (s.init, s.interpreter) == ("/init", "/bin/sh")
    assert (s.busybox, s.applets, s.binaries) == ("/bin/busybox", 3, 1)
    assert s.microcode == {}


def test_init_through_a_symlink_and_an_elf_interpreter() -> None:
    ls = Path("/bin/ls").read_bytes()
    data = _image(
        (Entry(name="usr", c_mode=DIR), b""),
        (Entry(name="usr/lib", c_mode=DIR), b""),
        (Entry(name="usr/lib/systemd", c_mode=DIR), b""),
        (Entry(name="usr/lib/systemd/systemd", c_mode=EXE, c_filesize=len(ls)), ls),
        (Entry(name="init", c_mode=LNK, linkname="usr/lib/systemd/systemd"), b""),
    )
    with open_image(data) as img:
        s = summarise(img)
    assert s.init == "/usr/lib/systemd/systemd"
    assert s.interpreter == interpreter(ls[:HEAD_SIZE]) is not None


def test_examine_contents_of_the_built_in_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "example.img"
    image.write_bytes(example_image())
    assert main(["examine", "--contents", str(image)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^microcode\s+GenuineIntel", text, re.M)
    assert re.search(r"^init\s+/init$", text, re.M)
    assert main(["examine", "--contents", "--json", str(image)]) == 0
    doc = json.loads(capsys.readouterr().out)
    validate_json(doc, "examine-contents")
    assert [s["compression"] for s in doc["segments"]] == ["none", "zstd"]
    assert doc["busybox"] == "/bin/busybox" and doc["applets"] > 5
    assert doc["modules"]["total"]["count"] > 0


def test_modules_that_are_symlinks_count_as_the_files_they_lead_to() -> None:
    # Debian's mkinitramfs, when /lib/modules/VERSION is a symlink, copies each module to where
    # the link leads and leaves a relative symlink at lib/modules/VERSION/...: modprobe follows it.
    real = "srv/tree/lib/modules/6.1.0-13-amd64/kernel/fs/ext4"
    mods = "usr/lib/modules/6.1.0-13-amd64/kernel/fs"
    parents = sorted({"/".join(d.split("/")[:n]) for d in (real, mods) for n in range(1, d.count("/") + 2)})
    data = _image(
        *((Entry(name=name, c_mode=DIR), b"") for name in parents),
        (Entry(name=f"{real}/ext4.ko", c_mode=0o100644, c_filesize=5), b"ext4!"),
        (Entry(name=f"{mods}/ext4.ko", c_mode=LNK, linkname=f"../../../../../../{real}/ext4.ko"), b""),
        # Two names for one file count once; a link to nothing or to a directory counts not at all.
        (Entry(name=f"{mods}/alias.ko", c_mode=LNK, linkname="ext4.ko"), b""),
        (Entry(name=f"{mods}/gone.ko", c_mode=LNK, linkname="/nowhere/gone.ko"), b""),
        (Entry(name=f"{mods}/dir.ko", c_mode=LNK, linkname="/srv"), b""),
    )
    with open_image(data) as img:
        s = summarise(img)
    assert s.kernel_versions == ["6.1.0-13-amd64"]
    assert (s.module_total.count, s.module_total.bytes) == (1, 5)
    assert list(s.modules) == ["kernel/fs"]

"""Unified kernel images: the initrd in a PE/COFF ``.initrd`` section, read in place."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bootmem.cli import main
from bootmem.errors import ImageError
from bootmem.initramfs import open as open_image
from bootmem.kernel.example import example_image
from tests.conftest import require_tool

# systemd-stub, as Debian's systemd-boot-efi installs it: what ukify builds UKIs over.
STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")


def _stub() -> Path:
    if not STUB.exists():
        message = f"{STUB} is not installed (Debian package systemd-boot-efi)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must install it: see .ci/run)")
        pytest.skip(message)
    return STUB


@pytest.fixture(scope="module")
def uki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A UKI made as ukify makes one: ``objcopy --add-section .initrd=...`` over systemd-stub."""
    objcopy = require_tool("objcopy")
    stub = _stub()
    tmp = tmp_path_factory.mktemp("uki")
    initrd = tmp / "initrd.img"
    initrd.write_bytes(example_image())
    out = tmp / "uki.efi"
    subprocess.run(
        [objcopy, "--add-section", f".initrd={initrd}", "--set-section-flags", ".initrd=data,readonly",
         "--change-section-vma", ".initrd=0x3000000", str(stub), str(out)],
        check=True,
    )  # fmt: skip
    return out, initrd.read_bytes()


@pytest.mark.peer
def test_a_uki_reads_as_its_initrd(uki: tuple[Path, bytes]) -> None:
    path, initrd = uki
    with open_image(path) as a, open_image(initrd) as b:
        assert a.getnames() == b.getnames()
        assert a.uki_section is not None and a.uki_section[1] == len(initrd)
        assert [(s.offset, s.end, s.compression) for s in a.segments] == [
            (s.offset, s.end, s.compression) for s in b.segments
        ]
    # The same from bytes in memory.
    with open_image(path.read_bytes()) as c:
        assert c.getnames() == b.getnames()


@pytest.mark.peer
def test_the_section_is_where_objdump_says(uki: tuple[Path, bytes]) -> None:
    objdump = require_tool("objdump")
    path, initrd = uki
    table = subprocess.run([objdump, "-h", str(path)], capture_output=True, text=True, check=True).stdout
    row = next(line.split() for line in table.splitlines() if ".initrd" in line)
    size, offset = int(row[2], 16), int(row[5], 16)
    with open_image(path) as img:
        assert img.uki_section == (offset, size)
    assert path.read_bytes()[offset : offset + size] == initrd


@pytest.mark.peer
def test_cli_on_a_uki(uki: tuple[Path, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = uki
    assert main(["examine", str(path)]) == 0
    assert "unified kernel image: .initrd section at" in capsys.readouterr().out
    assert main(["cat", str(path), "init"]) == 0


def test_a_pe_file_without_initrd_is_an_error(tmp_path: Path) -> None:
    pe = bytearray(0x200)
    pe[:2] = b"MZ"
    struct.pack_into("<I", pe, 0x3C, 0x80)
    pe[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<HHIIIHH", pe, 0x84, 0x8664, 1, 0, 0, 0, 0, 0)
    struct.pack_into("<8sIIII", pe, 0x98, b".text", 0x10, 0x1000, 0x10, 0x100)
    with pytest.raises(ImageError, match=r"without an \.initrd section \(sections: \.text\)"):
        open_image(bytes(pe))
    struct.pack_into("<8sIIII", pe, 0x98, b".initrd", 0x1000, 0x1000, 0x1000, 0x100)
    with pytest.raises(ImageError, match=r"\.initrd \[0x100, 0x1100\) lies past the end"):
        open_image(bytes(pe))
    pe[0x80:0x84] = b"NE\0\0"
    with pytest.raises(ImageError, match="no 'PE"):
        open_image(bytes(pe))


def test_the_kernel_model_does_not_unwrap_a_uki() -> None:
    """The kernel gets the initrd systemd-stub extracted: a PE file as initrd is no cpio."""
    pe = b"MZ" + b"\0" * 100
    with open_image(pe, strict=False) as img:
        assert img.uki_section is None


def test_stdin_pipe(tmp_path: Path) -> None:
    """`-` reads the image from a pipe, compressed segments included."""
    image = example_image()
    (tmp_path / "x.img").write_bytes(image)
    bootmem = [sys.executable, "-m", "bootmem"]
    piped = subprocess.run([*bootmem, "ls", "-"], input=image, capture_output=True, check=True).stdout
    direct = subprocess.run([*bootmem, "ls", str(tmp_path / "x.img")], capture_output=True, check=True).stdout
    assert piped == direct and len(piped.splitlines()) > 10
    cat = subprocess.run([*bootmem, "cat", "-", "init"], input=image, capture_output=True, check=True).stdout
    assert cat.startswith(b"#!/bin/sh")

"""Several archives from one manifest, appending to an image, and the image's own permissions."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bootmem.cli import main
from bootmem.errors import UsageError
from bootmem.initramfs import create
from bootmem.initramfs import open as open_image
from bootmem.initramfs.create import create_image, split_manifest
from bootmem.kernel.boot import init_rootfs
from bootmem.kernel.unpack import unpack_to_rootfs
from bootmem.mm import PageAllocator
from tests.conftest import require_tool

MANIFEST = """\
# early microcode, raw, then the main archive compressed
#cpio: none
dir /kernel 0755 0 0
dir /kernel/x86 0755 0 0
dir /kernel/x86/microcode 0755 0 0
file /kernel/x86/microcode/GenuineIntel.bin {ucode} 0644 0 0
#cpio: zstd -19
dir /etc 0755 0 0
file /etc/shadow {shadow} 0600 0 0
slink /init /bin/sh 0777 0 0
#cpio: gzip:1
dir /etc 0755 0 0
file /etc/motd {motd} 0644 0 0
"""


@pytest.fixture
def manifest(tmp_path: Path) -> str:
    for name, data in (("ucode", b"\x01" * 3000), ("shadow", b"root:*:19000::::::\n"), ("motd", b"hi\n")):
        (tmp_path / name).write_bytes(data)
    return MANIFEST.format(ucode=tmp_path / "ucode", shadow=tmp_path / "shadow", motd=tmp_path / "motd")


def test_each_part_is_a_segment_with_its_compression(manifest: str, tmp_path: Path) -> None:
    out = tmp_path / "img"
    create_image(out, manifest=manifest.splitlines())
    with open_image(out) as img:
        assert [s.compression for s in img.segments] == ["none", "zstd", "gzip"]
        assert img.getmember("etc/motd").size == 3
        assert img.getmember("kernel/x86/microcode/GenuineIntel.bin").size == 3000


@pytest.mark.peer
def test_the_raw_first_part_is_what_gnu_cpio_reads(manifest: str, tmp_path: Path) -> None:
    cpio = require_tool("cpio")
    out = tmp_path / "img"
    create_image(out, manifest=manifest.splitlines())
    names = subprocess.run([cpio, "-t", "--quiet"], stdin=out.open("rb"), capture_output=True, check=True)
    assert names.stdout.decode().split() == [
        "kernel", "kernel/x86", "kernel/x86/microcode", "kernel/x86/microcode/GenuineIntel.bin"]  # fmt: skip


def test_gen_init_cpio_reads_the_part_lines_as_comments(manifest: str) -> None:
    parts = split_manifest(manifest.splitlines())
    assert [(p.compression, p.first_line) for p in parts] == [("none", 3), ("zstd:19", 8), ("gzip:1", 12)]
    with pytest.raises(UsageError, match=r"manifest:2: bad archive line"):
        split_manifest(["dir /a 0755 0 0", "#cpio: zstd fast"])


def test_a_bad_line_is_named_by_its_line_in_the_whole_manifest(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"manifest:4: unknown type 'bogus'"):
        create_image(
            tmp_path / "img", manifest=["dir /a 0755 0 0", "#cpio: gzip", "dir /b 0755 0 0", "bogus"]
        )
    assert not (tmp_path / "img").exists()


def test_the_image_is_no_more_readable_than_its_inputs(manifest: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.img"
    create_image(secret, manifest=manifest.splitlines())
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    public = tmp_path / "public.img"
    public.write_bytes(b"")
    public.chmod(0o666)  # an existing image is narrowed too, never widened
    create_image(public, manifest=[line for line in manifest.splitlines() if "shadow" not in line])
    assert stat.S_IMODE(public.stat().st_mode) == 0o644 & ~_umask() & 0o666


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_append_adds_a_segment_and_later_entries_win(manifest: str, tmp_path: Path) -> None:
    image = tmp_path / "img"
    create_image(image, manifest=manifest.splitlines())
    before = image.read_bytes()
    motd = tmp_path / "motd2"
    motd.write_bytes(b"updated motd\n")
    create_image(image, manifest=["dir /etc 0755 0 0", f"file /etc/motd {motd} 0644 0 0"], append=True)
    after = image.read_bytes()
    assert after.startswith(before) and len(after) > len(before)
    with open_image(image) as img:
        assert len(img.segments) == 4 and img.segments[3].offset % 4 == 0
        reader = img.extractfile("etc/motd")
        assert reader is not None and reader.read() == b"updated motd\n"


def test_a_failed_append_leaves_the_image_as_it_was(
    manifest: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "img"
    create_image(image, manifest=manifest.splitlines())
    before = image.read_bytes()
    with pytest.raises(UsageError):  # fails before writing: a file that is not there
        create_image(image, manifest=["dir /x 0755 0 0", f"file /x/y {tmp_path / 'missing'} 0644 0 0"],
                     append=True)  # fmt: skip
    assert image.read_bytes() == before

    def disk_full(sink: Any, sources: Any, format: Any) -> None:
        sink.write(b"070701" + b"0" * 200)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(create, "write_archive", disk_full)
    with pytest.raises(OSError, match="No space left"):  # fails half way through writing
        create_image(image, manifest=["dir /x 0755 0 0"], append=True)
    assert image.read_bytes() == before


def test_cli_manifest_from_stdin_and_append(manifest: str, tmp_path: Path) -> None:
    image = tmp_path / "img"
    bootmem = [sys.executable, "-m", "bootmem"]
    subprocess.run(
        [*bootmem, "create", "--manifest", "-", "-o", str(image)], input=manifest.encode(), check=True
    )
    tree = tmp_path / "tree"
    (tree / "opt").mkdir(parents=True)
    (tree / "opt/extra").write_bytes(b"x")
    assert main(["create", str(tree), "--append", "--compress", "lz4", "-o", str(image)]) == 0
    with open_image(image) as img:
        assert [s.compression for s in img.segments] == ["none", "zstd", "gzip", "lz4"]
        assert "opt/extra" in img.getnames()


def test_a_file_named_like_the_trailer_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "TRAILER!!!").write_bytes(b"x")
    with pytest.raises(UsageError, match="named 'TRAILER!!!'"):
        create_image(tmp_path / "img", root=root)
    assert not (tmp_path / "img").exists()


def _unpacked(image: Path) -> set[str]:
    """The paths the kernel's unpacker makes of ``image``; fails on an unpack error."""
    fs = init_rootfs(PageAllocator(base=0, size=64 << 20), tmpfs=True)
    result = unpack_to_rootfs(image.read_bytes(), fs)
    assert result.error is None, result.error
    return {name for name, _ in fs.walk()}


def test_an_lz4_member_ends_in_a_zero_word_so_another_can_follow(tmp_path: Path) -> None:
    # lz4's legacy format has no end marker: without the zero word the kernel reads the next
    # member's first bytes as a block's size and fails ("Decoding failed").
    a, b = tmp_path / "a", tmp_path / "b"
    create_image(a, manifest=["#cpio: lz4", f"file /one {__file__} 0644 0 0", "#cpio: none",
                              f"file /two {__file__} 0644 0 0"])  # fmt: skip
    assert {"/one", "/two"} <= _unpacked(a)
    # Appending onto what `lz4 -l` wrote, which has no zero word of its own.
    create_image(b, manifest=[f"file /one {__file__} 0644 0 0"])
    lz4 = require_tool("lz4")
    b.write_bytes(subprocess.run([lz4, "-l", "-c", str(b)], capture_output=True, check=True).stdout)
    create_image(b, manifest=[f"file /two {__file__} 0644 0 0"], append=True)
    assert {"/one", "/two"} <= _unpacked(b)

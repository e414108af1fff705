"""Decompression bombs: a few KB of each compression that expand past the cap.

The image reader must stop with a clean :class:`DecompressionBombError` naming the member and
the cap, after decompressing no more than about the cap; in a boot the failure is logged as
Linux logs it ("Initramfs unpacking failed: decompressor failed"), the initrd is freed and no
page is leaked.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import bootmem.errors
import bootmem.initramfs
from bootmem.errors import DecompressionBombError
from bootmem.initramfs.compress import COMPRESSIONS, compress
from bootmem.initramfs.cpio import Entry
from bootmem.kernel.boot import Machine, boot
from tests.initramfs.corpus import archive, claimed_header

CAP = 1 << 20
BOMBS = [c for c in COMPRESSIONS if c != "none"]
HEAD = archive((Entry("init", stat.S_IFREG | 0o755, c_filesize=3), b"#!\n"))


@functools.cache
def _bomb(name: str, size: int) -> bytes:
    """One archive, then ``size`` NULs (skipped between archives), as one ``name`` member."""
    return compress(HEAD + bytes(size), name)


@functools.cache
def _file_bomb(name: str, size: int) -> bytes:
    """An archive whose one file holds ``size`` zero bytes, as one ``name`` member."""
    return compress(archive((Entry("zeros", stat.S_IFREG | 0o644, c_filesize=size), bytes(size))), name)


@pytest.mark.parametrize("name", BOMBS)
def test_a_bomb_stops_at_the_cap(name: str) -> None:
    bomb = _bomb(name, 4 * CAP)
    assert len(bomb) < 20_000, f"{name}: {len(bomb)} bytes is not a bomb"
    with (
        bootmem.initramfs.open(bomb, max_decompressed=CAP) as image,
        pytest.raises(DecompressionBombError, match=rf"cap of {CAP} bytes in the {name} member"),
    ):
        for _entry, reader in image.stream():
            reader.read_data()


@pytest.mark.parametrize("name", BOMBS)
def test_a_file_bomb_stops_at_the_cap(name: str) -> None:
    bomb = _file_bomb(name, 4 * CAP)
    with bootmem.initramfs.open(bomb, max_decompressed=CAP) as image, pytest.raises(DecompressionBombError):
        for _entry, reader in image.stream():
            for _ in reader.iter_data(1 << 16):
                pass


def test_the_default_cap_of_a_small_image() -> None:
    # The default cap: 64 times the members' compressed bytes, at least 256 MiB; a 10 KB zstd
    # bomb passes it.
    bomb = _bomb("zstd", (256 << 20) + (1 << 20))
    with (
        bootmem.initramfs.open(bomb) as image,
        pytest.raises(DecompressionBombError, match=r"passes the cap of 268435456 bytes"),
    ):
        for _entry, _reader in image.stream():
            pass


# --- the default cap counts compressed members, not padding (issue 11, hostile 6) ------------
#
# The cap used to be 1000 times the image's size: 64 MiB of NUL padding lifted it to 64 GiB,
# and gzip's ~1000x ratio let a member expand 1000-fold.  Now it is 64 times the compressed
# bytes of the members read (NULs between members never count), at least 256 MiB.

PAD = 64 << 20


@pytest.mark.parametrize("name", ["gzip", "zstd"])
def test_padding_does_not_lift_the_default_cap(name: str) -> None:
    bomb = _bomb(name, (256 << 20) + (8 << 20))
    padded = bytes(PAD) + bomb + bytes(PAD)
    with (
        bootmem.initramfs.open(padded) as image,
        pytest.raises(DecompressionBombError, match=rf"cap of {256 << 20} bytes in the {name} member "
                      rf"at offset {PAD:#x} \(segment 0\): \d+ bytes reached; the default cap"),
    ):  # fmt: skip
        for _entry, _reader in image.stream():
            pass
    # A cap given explicitly is the cap, padding or not.
    with bootmem.initramfs.open(padded, max_decompressed=300 << 20) as image:
        assert [e.name for e in image] == ["init"]


def test_a_gzip_member_expands_64_times_not_1000(monkeypatch: pytest.MonkeyPatch) -> None:
    # Zeros deflate about 1000-fold.  With the 256 MiB floor lowered, the cap is the ratio's:
    # 64 times the compressed bytes read, whatever the member could still produce.
    import bootmem.initramfs.compress as compress_module

    monkeypatch.setattr(compress_module, "DEFAULT_MIN_CAP", 1 << 20)
    bomb = _file_bomb("gzip", 256 << 20)
    assert len(bomb) * 900 < 256 << 20  # a 1000x member
    with pytest.raises(DecompressionBombError) as caught, bootmem.initramfs.open(bomb) as image:
        for _entry, reader in image.stream():
            for _ in reader.iter_data(1 << 16):
                pass
    message = str(caught.value)
    cap = int(message.split("cap of ", 1)[1].split()[0])
    reached = int(message.split(": ", 1)[1].split()[0])
    assert cap <= 64 * len(bomb)
    assert cap < reached <= cap + (4 << 20)  # stopped within one output chunk of the cap
    assert f"64 times the {cap // 64} compressed bytes read" in message


# An 8 MiB machine: the unpacker's cap is twice RAM, 16 MiB; the rootfs limit is half of the
# free pages, so the NUL bomb is a decompressor failure, the file bomb a write error.
MACHINE = Machine(ram_size=8 << 20, kernel_size=1 << 20)
BOOT_BOMB = 20 << 20


@pytest.mark.parametrize("async_unpack", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("name", BOMBS)
def test_a_bomb_in_boot_is_a_logged_error_with_no_page_leaked(name: str, async_unpack: bool) -> None:
    for bomb, message in (
        (_bomb(name, BOOT_BOMB), "decompressor failed"),
        (_file_bomb(name, BOOT_BOMB), None),
    ):
        report = boot(bomb, machine=MACHINE, cmdline=f"initramfs_async={int(async_unpack)}")
        pa = report.allocator
        assert pa is not None and report.rootfs is not None
        assert report.unpack_error is not None
        if message is not None:
            assert report.unpack_error == message
            assert "passes the cap" in (report.unpack_detail or "")
        else:  # the file fills the rootfs first, or the cap stops it
            assert report.unpack_error in ("write error", "decompressor failed")
        assert any("Initramfs unpacking failed: " in str(line) for line in report.log.lines)
        pa.check_invariants()
        assert report.initrd is not None
        assert report.freed_pages > 0
        assert "initrd" not in {region for region, _, _ in pa.reserved_regions()}
        assert pa.stats()["allocated"] == report.rootfs.used_pages == report.rootfs_pages
        assert pa.pages_by_owner().get(report.rootfs.owner, 0) == report.rootfs_pages


# --- bodies the unpacker skips (issue 11, hostile 1) ----------------------------------------
#
# init/initramfs.c do_header() sends an entry with c_namesize 0 or over PATH_MAX, and
# do_symlink() one whose target is over PATH_MAX, to SkipIt: the bytes stream by in do_skip()
# and are never collected.  A 64 KB zstd member holding such an entry made bootmem read the
# claimed 4 GiB into one bytes object (3.1 GB of host memory for `boot --mem 1G`).


#: What each hostile entry claims; the image holds SKIPPED bytes of body after its header.
SKIPPED = 96 << 20
HOSTILE_SKIPS = {
    "namesize-ffffffff": claimed_header(b"", mode=stat.S_IFREG | 0o644, namesize=0xFFFFFFFF, filesize=0),
    "symlink-fffffff0": claimed_header(b"l\0", mode=stat.S_IFLNK | 0o777, namesize=2, filesize=0xFFFFFFF0),
}


@functools.cache
def hostile_skip(kind: str, compression: str = "zstd", size: int = SKIPPED) -> bytes:
    """A compressed member: the hostile header, then ``size`` zero bytes of its claimed body."""
    return compress(HOSTILE_SKIPS[kind] + bytes(size), compression)


@pytest.mark.parametrize("kind", sorted(HOSTILE_SKIPS))
def test_a_skipped_body_is_streamed_not_held(kind: str) -> None:
    import tracemalloc

    image = hostile_skip(kind)
    assert len(image) < 20_000
    tracemalloc.start()
    try:
        with (
            bootmem.initramfs.open(image, strict=False, max_decompressed=SKIPPED + (1 << 20)) as img,
            pytest.raises(bootmem.errors.CpioError, match="truncated entry"),
        ):
            list(img)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Bounded by the decompressor's chunks, not the 96 MiB that streamed by.
    assert peak < 16 << 20, f"{peak} bytes held while skipping {SKIPPED}"


@pytest.mark.parametrize("kind", sorted(HOSTILE_SKIPS))
def test_a_skipped_body_in_boot_costs_no_memory(kind: str) -> None:
    import tracemalloc

    image = hostile_skip(kind)  # built before tracing: its 96 MiB of zeros are the test's, not boot's
    tracemalloc.start()
    try:
        report = boot(image, machine=Machine(ram_size=64 << 20, kernel_size=1 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 64 MiB of RAM: the cap is twice that, 128 MiB, past the 96 MiB the image holds, so the
    # skip runs off the end of the member as Linux's does.
    assert report.unpack_error is not None
    assert peak < 16 << 20, f"{peak} bytes held while skipping {SKIPPED}"


# --- --max-size on every command that decompresses ------------------------------------------

CLI_BOMB = 8 << 20  # NULs behind one archive; --max-size 1M stops each command early


@pytest.mark.parametrize(
    "args",
    [
        ["ls", "IMAGE"],
        ["examine", "IMAGE"],
        ["examine", "--contents", "IMAGE"],
        ["cat", "IMAGE", "init"],
        ["du", "IMAGE"],
        ["diff", "IMAGE", "IMAGE"],
        ["extract", "IMAGE", "DIR"],
    ],
    ids=lambda args: "-".join(a for a in args if a.isalpha() and a.islower()),
)
def test_max_size_stops_each_command_with_one_line(args: list[str], tmp_path: Path) -> None:
    image = tmp_path / "bomb.img"
    image.write_bytes(bytes(4096) + _bomb("zstd", CLI_BOMB))
    argv = [str(image) if a == "IMAGE" else str(tmp_path / "out") if a == "DIR" else a for a in args]
    proc = _bootmem(*argv, "--max-size", "1M")
    assert proc.returncode in (1, 2), proc  # diff's trouble is 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("bootmem: error: "), proc.stderr
    assert "cap of 1048576 bytes in the zstd member at offset 0x1000 (segment 0)" in proc.stderr
    assert "bytes reached" in proc.stderr and "--max-size" in proc.stderr
    # Without it, the default cap (256 MiB here) lets the same image through.
    assert _bootmem(*argv).returncode == 0


def test_max_size_in_boot_and_budget(tmp_path: Path) -> None:
    image = tmp_path / "bomb.img"
    image.write_bytes(_bomb("zstd", CLI_BOMB))
    proc = _bootmem("boot", "--initrd", str(image), "--max-size", "1M", "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["unpack_error"] == "decompressor failed"
    assert "cap of 1048576 bytes in the zstd member at offset 0x0 (segment 0)" in report["unpack_detail"]
    assert _bootmem("boot", "--initrd", str(image), "--json").returncode == 0  # twice RAM by default
    proc = _bootmem("budget", str(image), "--max-size", "1M")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cap of 1048576 bytes" in proc.stderr


@pytest.mark.parametrize("value", ["foo", "0"])
def test_a_bad_max_size_is_one_line_naming_it(value: str, tmp_path: Path) -> None:
    image = tmp_path / "a.img"
    image.write_bytes(HEAD)
    proc = _bootmem("ls", str(image), "--max-size", value)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1, proc.stderr
    assert repr(value) in proc.stderr


def _bootmem(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "bootmem", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )

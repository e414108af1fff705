"""Hostile machines and inputs given to `boot` and `budget`: refused early, in one line, with
host memory bounded by the input (issue: modelled RAM without a bound, inputs read whole)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bootmem.errors import InvalidRangeError
from bootmem.fdt import DeviceTree
from bootmem.mm.ram import MAX_RAM_SIZE, PhysicalMemory
from tests.conftest import bootmem_env
from tests.initramfs.corpus import archive, f

# Host memory a refused command may use: the interpreter, numpy and the default 256M machine's
# mappings, far below what reading the input or modelling the RAM would cost.
ADDRESS_SPACE = 2 << 30


def bootmem(*args: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m bootmem ARGS`` with its address space limited to :data:`ADDRESS_SPACE`."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    return subprocess.run(
        [sys.executable, "-m", "bootmem", *args],
        capture_output=True,
        text=True,
        env=bootmem_env(),
        stdin=stdin,
        preexec_fn=limit,
        timeout=120,
        check=False,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert proc.stderr.startswith("bootmem: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["boot", "--mem", "100T"], "of 100.0 TiB cannot be modelled: bootmem models at most 1.0 TiB"),
        (["boot", "--mem", "1P"], "of 1024.0 TiB cannot be modelled"),
        (["boot", "--mem", "8192P"], "RAM [0x40000000, 0x8000000040000000)"),
        (["budget", "--kernel-size", "100T", "IMAGE"], "does not boot with up to 1.0 TiB of RAM"),
    ],
)
def test_ram_beyond_what_bootmem_models_is_refused(args: list[str], fragment: str, tmp_path: Path) -> None:
    image = tmp_path / "empty.img"
    image.write_bytes(b"")
    proc = bootmem(*[str(image) if a == "IMAGE" else a for a in args])
    assert fragment in one_line_error(proc)


@pytest.mark.parametrize(
    ("memory", "fragment"),
    [
        ([(0x8000_0000, 0x8000_0000 + (1 << 50))], "[0x80000000, 0x4000080000000) of 1024.0 TiB"),
        # Two small banks 2^50 bytes apart: the span is what would be modelled.
        ([(0, 1 << 30), (1 << 50, (1 << 50) + (1 << 30))], "[0x0, 0x4000040000000)"),
        ([((1 << 64) - (1 << 21), (1 << 64) - (1 << 20))], "is not inside RAM"),
    ],
)
def test_a_device_tree_with_huge_memory_is_refused(
    memory: list[tuple[int, int]], fragment: str, tmp_path: Path
) -> None:
    dtb = tmp_path / "huge.dtb"
    dtb.write_bytes(DeviceTree.build(memory=memory))
    assert len(dtb.read_bytes()) < 400
    assert fragment in one_line_error(bootmem("boot", "--dtb", str(dtb)))


def test_memory_with_the_top_address_bit_set_boots(tmp_path: Path) -> None:
    # Not an OverflowError: RAM at 2^63 is an address like any other below 2^64.
    dtb = tmp_path / "top.dtb"
    dtb.write_bytes(DeviceTree.build(memory=[(1 << 63, (1 << 63) + (256 << 20))]))
    proc = bootmem("boot", "--dtb", str(dtb))
    assert proc.returncode == 0, proc.stderr
    assert "[mem 0x8000000000000000-0x800000000fffffff]" in proc.stdout


def test_physical_memory_refuses_more_than_the_maximum() -> None:
    with pytest.raises(InvalidRangeError, match="cannot be modelled"):
        PhysicalMemory(0, MAX_RAM_SIZE + 4096)
    with pytest.raises(InvalidRangeError, match="below 2\\^64"):
        PhysicalMemory((1 << 64) - 4096, 8192)


def test_initrd_from_dev_zero_is_refused_after_the_ram_it_must_fit() -> None:
    fragment = "initrd '/dev/zero' is larger than the 256.0 MiB of RAM it must be loaded into"
    assert fragment in one_line_error(bootmem("boot", "--initrd", "/dev/zero"))


def test_a_sparse_file_larger_than_ram_is_refused_before_it_is_read(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.img"
    with open(sparse, "wb") as f:
        f.truncate(4 << 30)
    proc = bootmem("boot", "--initrd", str(sparse))
    assert f"of {4 << 30} bytes is larger than the 256.0 MiB of RAM" in one_line_error(proc)


def test_dtb_from_dev_zero_is_refused_after_its_header() -> None:
    assert "bad magic 00000000" in one_line_error(bootmem("boot", "--dtb", "/dev/zero"))


@pytest.mark.parametrize("source", ["/dev/null", "EMPTY"])
def test_an_empty_initrd_boots_as_no_initrd(source: str, tmp_path: Path) -> None:
    # Linux: a zero-length initrd is no initrd (x86 reserve_initrd, of reserve_initrd_mem).
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    path = str(empty) if source == "EMPTY" else source
    proc = bootmem("boot", "--initrd", path)
    assert proc.returncode == 0, proc.stderr
    assert "Trying to unpack rootfs image" not in proc.stdout
    assert "Traceback" not in proc.stderr
    budget = bootmem("budget", path)
    assert "no init" in one_line_error(budget)


def test_a_machine_of_one_tebibyte_boots_in_a_small_address_space() -> None:
    # RAM is mapped a section at a time: 1 TiB needs address space for what the boot touches.
    proc = bootmem("boot", "--mem", "1T")
    assert proc.returncode == 0, proc.stderr
    assert "Freeing initrd memory:" in proc.stdout


def endless_pipe() -> subprocess.Popen[bytes]:
    """A process writing zeros to its stdout until its reader goes away."""
    return subprocess.Popen(["cat", "/dev/zero"], stdout=subprocess.PIPE)


def test_an_endless_initrd_on_standard_input_is_refused_after_the_ram_it_must_fit() -> None:
    zeros = endless_pipe()
    try:
        proc = bootmem("boot", "--initrd", "-", stdin=zeros.stdout.fileno() if zeros.stdout else None)
    finally:
        zeros.kill()
        zeros.wait()
    fragment = "initrd standard input is larger than the 256.0 MiB of RAM it must be loaded into"
    assert fragment in one_line_error(proc)


def test_an_initrd_on_standard_input_boots(tmp_path: Path) -> None:
    image = tmp_path / "small.img"
    image.write_bytes(archive(f("init", b"#!/bin/sh\n", 0o755)))
    cat = subprocess.Popen(["cat", str(image)], stdout=subprocess.PIPE)
    proc = bootmem("boot", "--mem=256M", "--initrd", "-", stdin=cat.stdout.fileno() if cat.stdout else None)
    cat.wait()
    assert proc.returncode == 0, proc.stderr
    assert "Freeing initrd memory: 4K" in proc.stdout and "standard input" in proc.stdout


def test_an_endless_initrd_on_standard_input_is_refused_at_the_pipe_limit_on_a_large_machine() -> None:
    # RAM of 8G would let 8G of a pipe be copied to a temporary file: the pipe limit (4G) bounds it
    # first, so the disk does not fill either.
    zeros = endless_pipe()
    try:
        proc = bootmem(
            "boot", "--mem", "8G", "--initrd", "-", stdin=zeros.stdout.fileno() if zeros.stdout else None
        )
    finally:
        zeros.kill()
        zeros.wait()
    fragment = (
        f"standard input is not seekable and passes {4 << 30} bytes, the most read from a pipe (give a file)"
    )
    assert fragment in one_line_error(proc)


@pytest.mark.parametrize("command", ["ls", "examine", "extract", "budget"])
def test_an_endless_image_on_standard_input_stops_at_max_size(command: str, tmp_path: Path) -> None:
    # A pipe is copied to a temporary file, not to memory, and no further than --max-size.
    zeros = endless_pipe()
    args = [command, "--max-size", "64M", "-"] + ([str(tmp_path / "dest")] if command == "extract" else [])
    try:
        proc = bootmem(*args, stdin=zeros.stdout.fileno() if zeros.stdout else None)
    finally:
        zeros.kill()
        zeros.wait()
    fragment = f"standard input is not seekable and passes {64 << 20} bytes, the most read from a pipe"
    assert fragment in one_line_error(proc)

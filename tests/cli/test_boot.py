"""`bootmem boot`: the built-in example, --json, --tree, device trees, one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bootmem.cli import main
from bootmem.kernel.arch import X86_64
from bootmem.kernel.example import example_image
from tests.conftest import validate_json
from tests.kernel.conftest import compile_dts, dts


def test_builtin_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", "--mem", "256M"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\[ +\d+\.\d{6}\] Freeing initrd memory: \d+K$", out, re.MULTILINE)
    assert "Trying to unpack rootfs image as initramfs..." in out
    assert "Run /init as init process" in out
    assert "built-in example" in out


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", "--mem", "256M", "--json", "--cmdline", "initramfs_async=0"]) == 0
    data = json.loads(capsys.readouterr().out)
    validate_json(data, "boot")
    assert data["ok"] is True and data["initramfs_async"] is False
    assert data["total_pages"] == ((256 << 20) - X86_64.hole_bytes) // 4096
    assert data["freed_pages"] > 0 and data["rootfs"]["pages"] > 0
    assert data["free_pages_end"] == data["free_pages_before_release"] + data["freed_pages"]
    assert any(line.endswith(f"Freeing initrd memory: {data['freed_pages'] * 4}K") for line in data["log"])


def test_root_on_the_command_line_makes_rootfs_ramfs(capsys: pytest.CaptureFixture[str]) -> None:
    # init/do_mounts.c init_rootfs: a root= makes rootfs ramfs, with no limit but RAM.
    assert main(["boot", "--mem", "256M", "--cmdline", "root=/dev/vda1 ro"]) == 0
    assert re.search(r"^rootfs is +ramfs .*no limit", capsys.readouterr().out, re.MULTILINE)
    assert main(["boot", "--mem", "256M", "--json", "--cmdline", "root=/dev/vda1"]) == 0
    rootfs = json.loads(capsys.readouterr().out)["rootfs"]
    assert (rootfs["fs"], rootfs["limit_pages"], rootfs["limit_inodes"]) == ("ramfs", None, None)
    assert main(["boot", "--mem", "256M", "--json"]) == 0
    rootfs = json.loads(capsys.readouterr().out)["rootfs"]
    assert rootfs["fs"] == "tmpfs" and rootfs["limit_pages"] == rootfs["limit_inodes"] > 0
    assert main(["boot", "--mem", "256M"]) == 0
    assert "rootfs is" not in capsys.readouterr().out


def test_tree_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "tree.tsv"
    assert main(["boot", "--mem", "256M", "--tree", str(tree)]) == 0
    capsys.readouterr()
    lines = tree.read_text().splitlines()
    rows = {line.split("\t")[0]: line.split("\t") for line in lines}
    assert [line.split("\t")[0] for line in lines] == sorted(rows)
    assert all(len(r) == 10 for r in rows.values())
    assert rows["/"][1] == "d"
    init = rows["/init"]
    assert init[1:5] == ["f", "0755", "0", "0"] and re.fullmatch(r"[0-9a-f]{64}", init[9])
    assert init[6:9] == ["1", "1700000000", "-"]
    assert rows["/bin/sh"][1] == "l" and rows["/bin/sh"][9] == "busybox"
    assert rows["/dev/vda"][1] == "b" and rows["/dev/vda"][8] == "254:0" and rows["/dev/vda"][9] == "-"
    assert rows["/dev/console"][8] == "5:1"
    assert rows["/tmp"][2] == "1777"
    assert rows["/run/initctl"][1] == "p"
    assert rows["/sbin/udhcpc-script"][6] == "2"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--mem", "lots"], "lots"),
        (["--mem", "256M", "--base", "0x1001"], "0x1001"),
        (["--mem", "256M", "--rootfs-size", "150%"], "150%"),
        (["--mem", "256M", "--initrd", "/nonexistent/initrd.img"], "/nonexistent/initrd.img"),
    ],
    ids=["bad-mem", "unaligned-base", "bad-rootfs-pct", "missing-initrd"],
)
def test_bad_input_is_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bootmem: error: ")
    assert needle in lines[0]


def test_dtb_with_32_bit_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = example_image()
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(image)
    start = 0x4200_0000
    dtb = tmp_path / "board.dtb"
    dtb.write_bytes(
        compile_dts(dts(initrd=(start, start + len(image)), cells=1, bootargs="initramfs_async=0"))
    )
    assert main(["boot", "--initrd", str(initrd), "--dtb", str(dtb), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    validate_json(data, "boot")
    assert data["initrd"]["start"] == start and data["initrd"]["end"] == start + len(image)
    assert data["cmdline"] == "initramfs_async=0"
    assert data["free_policy"] == "linux-generic"  # riscv and arm64 round the range inward
    assert data["freed_pages"] == len(image) // 4096


def test_disabled_initrd_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = example_image()
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(image)
    dtb = tmp_path / "board.dtb"
    dtb.write_bytes(compile_dts(dts(initrd=(0x9000_0000, 0x9000_0000 + len(image)), cells=1)))
    assert main(["boot", "--initrd", str(initrd), "--dtb", str(dtb)]) == 1
    out = capsys.readouterr().out
    assert "is not a memory region - disabling initrd" in out
    assert "initrd       disabled: INITRD: 0x90000000" in out
    assert main(["boot", "--initrd", str(initrd), "--dtb", str(dtb), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    validate_json(data, "boot")
    assert data["ok"] is False and data["initrd"] is None and "disabling initrd" in data["initrd_disabled"]


def test_small_rootfs_size_fails_with_write_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", "--mem", "256M", "--rootfs-size", "256K", "--free-policy", "linux-generic"]) == 1
    out = capsys.readouterr().out
    assert "Initramfs unpacking failed: write error" in out
    assert "Freeing initrd memory: " in out
    assert "unpacking    failed: " in out
    argv = ["boot", "--mem", "256M", "--rootfs-size", "256K", "--free-policy", "linux-generic", "--json"]
    assert main(argv) == 1
    data = json.loads(capsys.readouterr().out)
    validate_json(data, "boot")
    assert data["unpack_error"] == "write error" and data["unpack_detail"]
    assert data["free_policy"] == "linux-generic"


def test_retain_initrd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", "--mem", "256M", "--cmdline", "retain_initrd"]) == 0
    out = capsys.readouterr().out
    assert "Freeing initrd memory" not in out
    assert "freed        nothing: retain_initrd" in out


def test_too_little_ram_for_the_kernel_is_a_deadlock_panic(capsys: pytest.CaptureFixture[str]) -> None:
    # Debian's kernel (the x86_64 profile) holds tens of MiB after mem_init: on 64M the unpack
    # leaves less than the watermarks free, and Linux panics with nothing to kill.
    assert main(["boot", "--mem", "64M", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    validate_json(data, "boot")
    assert data["panic"] == "System is deadlocked on memory" and data["ok"] is False
    assert data["init"] is None and data["freed_pages"] == 0
    assert data["unpack_peak_free_bytes"] < data["watermark_bytes"]
    assert data["log"][-1].endswith("Kernel panic - not syncing: System is deadlocked on memory")
    assert not any("Run /init" in line for line in data["log"])
    assert main(["boot", "--mem", "64M"]) == 1
    rows = capsys.readouterr().out.splitlines()
    assert any(r.startswith("panic ") and "below the" in r and "watermarks" in r for r in rows), rows
    assert "init         not run" in rows
    # The flat profile models no kernel beyond its image: the model's own pages are the limit.
    assert main(["boot", "--mem", "64M", "--arch", "flat", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["panic"] is None


def test_boot_agrees_with_budget_at_its_answer(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # One rule for both: the smallest RAM budget finds boots under `bootmem boot`, and one step
    # less fails there the way budget says (for this image, the kernel's own needs).
    image = tmp_path / "example.img"
    image.write_bytes(example_image())
    assert main(["budget", str(image), "--json"]) == 0
    released = json.loads(capsys.readouterr().out)["released"]
    at, step = released["min_ram_bytes"], released["step_bytes"]
    assert released["limit"] == "kernel", released
    assert main(["boot", "--initrd", str(image), "--mem", f"{at // 1024}K", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["init"] == "/init"
    assert main(["boot", "--initrd", str(image), "--mem", f"{(at - step) // 1024}K", "--json"]) == 1
    below = json.loads(capsys.readouterr().out)
    assert below["panic"] == "System is deadlocked on memory", released["failure_below"]

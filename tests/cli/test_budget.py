"""`bootmem budget`: human output, --json, --from-log, and no progress when piped."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bootmem.cli import main
from bootmem.kernel.arch import X86_64
from tests.conftest import validate_json
from tests.kernel.test_arch import DATA as LOGS
from tests.report.conftest import make_image
from tests.report.test_budget import DMESG


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "initrd.img"
    path.write_bytes(make_image({"bin/busybox": random.Random(5).randbytes(400_000)}, compression="gzip"))
    return path


def test_human_output(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budget", str(image), "--kernel-size", "2M"]) == 0
    out = capsys.readouterr().out
    assert "min RAM" in out and "retain_initrd" in out and "peak" in out
    assert "Why: " in out
    assert "\x1b[" not in out


def test_json(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["budget", str(image), "--arch", "flat", "--kernel-size", "2M", "--rootfs-size", "80%", "--json"]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    validate_json(data, "budget")
    assert data["min_ram_bytes"] == data["released"]["min_ram_bytes"]
    assert data["release_wins_bytes"] == data["min_ram_retain_initrd_bytes"] - data["min_ram_bytes"]
    assert data["min_ram_bytes"] <= data["min_ram_retain_initrd_bytes"]
    assert data["rootfs_share"] == 0.8
    assert data["arch"] == {
        "name": "flat",
        "fixed_bytes": 16 << 20,
        "struct_page_bytes": 0,
        "section_bytes": 128 << 20,
    }
    assert data["kernel_size"] == 2 << 20
    assert data["limit"] in ("tmpfs", "pages", "init", "placement")


def test_from_log(image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "dmesg.txt"
    log.write_text(DMESG)
    assert main(["budget", str(image), "--from-log", str(log), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    validate_json(data, "budget")
    assert data["kernel_size"] == (211712 - 47476 - 4) << 10
    assert data["arch"]["name"] == "flat"  # no e820 map in that log: its whole footprint is fixed
    assert data["calibration"][0]["reserved_bytes"] == 211712 << 10
    assert main(["budget", str(image), "--from-log", str(log), "--kernel-size", "8M"]) == 1
    assert "not both" in capsys.readouterr().err


def test_from_a_debian_log_fits_the_x86_64_profile(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A log at 512M calibrates the fixed part; the budget then boots with ``bootmem boot``."""
    assert main(["budget", str(image), "--from-log", str(LOGS / "qemu-pc-512M.log"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["arch"]["name"] == "x86_64" and data["kernel_size"] == X86_64.fixed
    ram = data["min_ram_bytes"]
    for size, boots in ((ram, True), (ram - data["step_bytes"], False)):
        main(["boot", "--initrd", str(image), "--mem", f"{size >> 10}K", "--json"])
        report = json.loads(capsys.readouterr().out)
        free = report["free_pages_end"] * 4096
        assert (report["ok"] and free >= data["init_free_bytes"]) is boots, size
    two = ["--from-log", str(LOGS / "qemu-pc-128M.log"), "--from-log", str(LOGS / "qemu-pc-2G.log")]
    assert main(["budget", str(image), *two, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["arch"]["struct_page_bytes"] == 64 and len(data["calibration"]) == 2


def test_no_progress_when_piped(image: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bootmem", "budget", str(image), "--kernel-size", "2M"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stderr == ""
    assert "min RAM" in result.stdout

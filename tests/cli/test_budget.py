"""`bootmem budget`: human output, --json, --from-log, and no progress when piped."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bootmem.cli import main
from bootmem.kernel.arch import X86_64
from bootmem.kernel.example import example_image
from bootmem.verify.kernel import Kernel
from tests.conftest import validate_json
from tests.kernel.test_arch import DATA as LOGS
from tests.report.conftest import make_image
from tests.report.test_budget import DMESG
from tests.verify.conftest import debian_amd64, qemu_x86  # noqa: F401  (fixtures)


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
        "runtime_bytes": 0,
        "runtime_growth": 0.0,
        "after_unpack_bytes": 0,
        "freed_late_bytes": 0,
    }
    assert data["kernel_size"] == 2 << 20
    assert data["limit"] in ("tmpfs", "pages", "kernel", "init", "placement")


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
    """A log at 512M calibrates the fixed part; ``bootmem boot`` unpacks the answer's and one
    step less, and the kernel's needs beyond the model's pages are met only at the answer."""
    assert main(["budget", str(image), "--from-log", str(LOGS / "qemu-pc-512M.log"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["arch"]["name"] == "x86_64" and data["kernel_size"] == X86_64.fixed
    ram = data["min_ram_bytes"]
    for size, boots in ((ram, True), (ram - data["step_bytes"], False)):
        main(["boot", "--initrd", str(image), "--mem", f"{size >> 10}K", "--json"])
        report = json.loads(capsys.readouterr().out)
        # What budget --json says the kernel needs, against what boot --json says is free.
        arch = X86_64
        peak = (report["free_pages_end"] - report["freed_pages"]) * 4096
        peak -= arch.unpack_runtime_bytes(size) + data["workspace_bytes"]
        at_init = report["free_pages_end"] * 4096 + arch.freed_late - arch.runtime_bytes(size)
        enough = peak >= arch.watermark_bytes(report["available_pages"] * 4096)
        assert (report["ok"] and enough and at_init >= data["init_free_bytes"]) is boots, size
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


# --- against the real kernel (QEMU): few boots, one at a time -------------------------------------


def _kernel_argument(kernel: Kernel) -> str:
    return str(kernel.root if kernel.root is not None else kernel.image)


@pytest.mark.qemu
def test_confirm_says_whether_linux_agrees_at_the_answer_and_one_step_below(
    debian_amd64: Kernel,  # noqa: F811
    qemu_x86: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Three real boots: one at 512M to calibrate, then the model's minimum and 64K less.
    image = tmp_path / "example.img"
    image.write_bytes(example_image())
    argv = ["budget", str(image), "--confirm", "--parallel", "1", "--kernel", _kernel_argument(debian_amd64)]
    status = main(argv)
    out = capsys.readouterr().out
    predicted = re.search(r"the model's minimum with the probe prepended: (\d+)K", out)
    assert predicted is not None, out
    assert "calibrated from a real boot with 524288K" in out
    booted = [int(k) for k in re.findall(r"Linux with (\d+)K: ", out)]
    assert booted == [int(predicted.group(1)), int(predicted.group(1)) - 64], out
    verdict = out.strip().splitlines()[-1].strip()
    assert verdict.startswith(("Linux agrees", "Linux disagrees")), out
    assert status == (0 if verdict.startswith("Linux agrees") else 1), out


@pytest.mark.qemu
def test_real_bisects_with_linux_alone(
    debian_amd64: Kernel,  # noqa: F811
    qemu_x86: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A coarse step keeps it to a handful of boots.
    image = tmp_path / "example.img"
    image.write_bytes(example_image())
    argv = ["budget", str(image), "--real", "--real-step", "16M", "--parallel", "1"]
    assert main([*argv, "--kernel", _kernel_argument(debian_amd64)]) == 0
    out = capsys.readouterr().out
    found = re.search(r"min RAM +\S+ \S+: (\d+)K boots under Linux, (\d+)K does not \(.*\); step 16384K", out)
    assert found is not None, out
    at, below = int(found.group(1)), int(found.group(2))
    assert at % 16384 == 0 and below == at - 16384
    rows = dict(re.findall(r"^ +(\d+)K: (.*) \(\d+s\)$", out, re.MULTILINE))
    assert rows[str(at)].startswith("booted, Freeing initrd memory:"), out
    assert not rows[str(below)].startswith("booted"), out
    assert all(r.startswith("booted") is (int(k) >= at) for k, r in rows.items()), out
    assert 4 <= len(rows) <= 8


def test_parallel_must_be_positive(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budget", str(image), "--real", "--parallel", "0"]) != 0
    assert "--parallel 0" in capsys.readouterr().err

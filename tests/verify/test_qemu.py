"""QEMU's command line, and the built-in example booted by Linux and by the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bootmem.cli import main
from bootmem.errors import UsageError
from bootmem.verify.kernel import Kernel
from bootmem.verify.qemu import qemu_argv, ram_argument
from tests.conftest import require_tool, validate_json


def test_ram_argument() -> None:
    assert ram_argument(256 << 20) == "256M"
    assert ram_argument((256 << 20) - (64 << 10)) == "262080K"
    with pytest.raises(UsageError, match="RAM 1000"):
        ram_argument(1000)


def test_argv_boots_with_console_panic_and_no_reboot(tmp_path: Path) -> None:
    require_tool("qemu-system-x86_64")
    kernel = Kernel(image=tmp_path / "bzImage", arch="amd64")
    argv = qemu_argv(kernel, tmp_path / "initrd", ram=128 << 20, cmdline="rdinit=/x quiet")
    joined = " ".join(argv)
    assert "-accel tcg -m 128M" in joined
    assert "-append console=ttyS0 panic=-1 rdinit=/x quiet" in joined
    assert {"-no-reboot", "-nodefaults"} <= set(argv)
    assert argv[argv.index("-serial") + 1] == "stdio"


@pytest.mark.qemu
def test_example_agrees_with_linux(
    debian_amd64: Kernel, qemu_x86: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Through the command line, whose --json output is checked against its schema.
    kernel = debian_amd64.root or debian_amd64.image
    assert main(["verify", "--kernel", str(kernel), "--mem", "256M", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    validate_json(data, "verify")
    (verdict,) = data["boots"]
    assert data["agree"] is True and verdict["agree"] is True and verdict["differences"] == []
    assert verdict["ram_bytes"] == 256 << 20 and verdict["timed_out"] is False
    assert verdict["linux"]["freed_k"] is not None and verdict["linux"]["panic"] is None
    assert verdict["linux"]["paths"] == verdict["model"]["paths"] > 50
    assert {"Memory: total", "Freeing initrd memory"} <= {f["figure"] for f in verdict["figures"]}

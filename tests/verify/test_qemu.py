"""QEMU's command line, and the built-in example booted by Linux and by the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootmem.errors import UsageError
from bootmem.kernel.example import example_image
from bootmem.verify.compare import verify_image
from bootmem.verify.kernel import Kernel
from bootmem.verify.qemu import qemu_argv, ram_argument
from tests.conftest import require_tool


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
def test_example_agrees_with_linux(debian_amd64: Kernel, qemu_x86: str) -> None:
    verdict = verify_image(example_image(), debian_amd64, ram=256 << 20)
    assert verdict.linux.freed_k is not None and verdict.linux.tree is not None
    assert verdict.differences == []
    assert len(verdict.linux.tree) == len(verdict.model_tree) > 50

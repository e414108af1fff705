"""The budget against a real kernel: Debian's mkinitramfs image under Debian's kernel in QEMU.

The model is calibrated by the kernel's own boot log at 512M (only the fixed part: the part that
grows with RAM is the x86_64 profile's), then ``find_budget`` answers, and the real kernel must
unpack the image with 1% more RAM than the answer and fail with "write error" with 1% less.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from bootmem.kernel.arch import X86_64
from bootmem.report.budget import calibrate, find_budget, parse_dmesg
from bootmem.verify.images import mkinitramfs, probe_segment
from bootmem.verify.kernel import Kernel
from tests.conftest import require_tool
from tests.verify.conftest import debian_amd64, qemu_x86  # noqa: F401  (fixtures)

STOP = ("Freeing initrd memory:", "Kernel panic", "Run /init as init process")


def unpack_log(qemu: str, kernel: Kernel, image: bytes, ram_k: int, *, timeout: float = 600) -> str:
    """The kernel's console up to ``Freeing initrd memory`` (or a panic), booting ``image``."""
    with tempfile.NamedTemporaryFile(suffix=".img") as initrd:
        initrd.write(image)
        initrd.flush()
        argv = [
            qemu, "-accel", "tcg", "-m", f"{ram_k}K", "-kernel", str(kernel.image), "-initrd", initrd.name,
            "-append", "console=ttyS0 panic=-1", "-display", "none", "-no-reboot", "-serial", "stdio",
            "-monitor", "none",
        ]  # fmt: skip
        lines: list[str] = []
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    lines.append(line.rstrip("\r\n"))
                    if any(s in line for s in STOP):
                        break
            finally:
                proc.kill()
                proc.wait(timeout=timeout)
        return "\n".join(lines)


@pytest.mark.qemu
def test_budget_is_within_one_percent_of_the_real_kernels_threshold(
    debian_amd64: Kernel,  # noqa: F811
    qemu_x86: str,  # noqa: F811
) -> None:
    require_tool("mkinitramfs")
    image = mkinitramfs(debian_amd64, "zstd")
    log = unpack_log(qemu_x86, debian_amd64, probe_segment(), 512 << 10)
    arch = calibrate(X86_64, [parse_dmesg(log, where="the 512M boot")])
    budget = find_budget(image, arch=arch, init_free=0)
    answer = budget.released.min_ram
    above = unpack_log(qemu_x86, debian_amd64, image, answer * 101 // 100 >> 10)
    below = unpack_log(qemu_x86, debian_amd64, image, answer * 99 // 100 >> 10)
    assert "Freeing initrd memory:" in above and "Initramfs unpacking failed" not in above, above[-2000:]
    assert "Initramfs unpacking failed: write error" in below, below[-2000:]


def test_unpack_log_stops_at_the_release(tmp_path: Path) -> None:
    """The reader stops at the first line that ends what the test needs (no QEMU involved)."""
    script = tmp_path / "fake-qemu"
    script.write_text(
        "#!/bin/sh\necho 'Memory: 1K/2K available'\necho 'Freeing initrd memory: 4K'\nexec sleep 60\n"
    )
    script.chmod(0o755)
    kernel = Kernel(image=tmp_path / "bzImage", arch="amd64")
    out = unpack_log(str(script), kernel, b"", 1024, timeout=5)
    assert out.splitlines() == ["Memory: 1K/2K available", "Freeing initrd memory: 4K"]

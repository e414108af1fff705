"""Linux and the model on the same images: Debian's own mkinitramfs image, every compression
the kernel decompresses, and the smallest RAM that boots.

Each boot runs the real kernel under QEMU (TCG: 15-60 s a boot on two cores) and the model on
the same composed bytes; a difference in any figure or path fails the test with the list.
"""

from __future__ import annotations

import pytest

from bootmem.kernel.arch import profile
from bootmem.kernel.example import example_image
from bootmem.report.budget import calibrate, find_budget, parse_dmesg
from bootmem.units import format_k
from bootmem.verify.compare import Verdict, verify_image
from bootmem.verify.images import mkinitramfs
from bootmem.verify.kernel import Kernel, debian_kernel
from bootmem.verify.threshold import RealMachine, real_threshold
from tests.conftest import require_tool

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="session")
def debian_image(debian_amd64: Kernel) -> bytes:
    """Debian's own initramfs-tools image for the kernel (MODULES=most, zstd): about 31 MB."""
    require_tool("mkinitramfs")
    return mkinitramfs(debian_amd64, "zstd")


@pytest.fixture(scope="session")
def small_debian_image(debian_amd64: Kernel) -> bytes:
    """mkinitramfs with MODULES=dep and lz4: about 9 MB, 18 MB of file data."""
    require_tool("mkinitramfs")
    return mkinitramfs(debian_amd64, "lz4", modules="dep")


def _differences(verdict: Verdict) -> list[str]:
    return [f"{d.what}: linux {d.linux}, model {d.model}" for d in verdict.differences]


@pytest.mark.parametrize(("ram_mib", "error"), [(320, "write error"), (512, None)])
def test_debian_mkinitramfs_image(
    debian_amd64: Kernel, qemu_x86: str, debian_image: bytes, ram_mib: int, error: str | None
) -> None:
    # 127 MiB of file data: tmpfs's half of RAM is too small at 320M and enough at 512M.  At
    # 320M the write error comes 4 pages into /usr/bin/nfsmount, past the 3 of /usr/bin/minips:
    # the 36K of SMP alternatives Linux frees before mounting rootfs are in tmpfs's limit, and
    # nfsmount keeps the size vfs_truncate gave it (a hole after its first page).
    verdict = verify_image(debian_image, debian_amd64, ram=ram_mib << 20)
    assert verdict.linux.unpack_error == error
    assert _differences(verdict) == []


@pytest.mark.parametrize("compression", ["gzip", "bzip2", "lzma", "xz", "lzo", "lz4", "zstd"])
def test_every_compression_the_kernel_decompresses(
    debian_amd64: Kernel, qemu_x86: str, compression: str
) -> None:
    if compression not in debian_amd64.compressions():
        pytest.skip(f"kernel {debian_amd64.version} does not decompress {compression}")
    if compression == "lzo":
        from tests.conftest import require_module

        require_module("lzo")
    verdict = verify_image(example_image(compression), debian_amd64, ram=192 << 20)
    assert verdict.linux.freed_k is not None and verdict.linux.unpack_error is None
    assert _differences(verdict) == []


@pytest.mark.xfail(
    strict=True,
    run=False,  # eleven real boots (about 12 minutes) to confirm a known gap
    reason="below its tmpfs threshold this 9 MB image runs Linux out of memory before init "
    "('System is deadlocked on memory' at 118784K; boots at 119808K): the model's 4 MiB left for "
    "init is far below what Debian's kernel needs, so it answers 109192K (8.9% low). Where tmpfs "
    "decides, the model is exact: tests/report/test_budget_real.py",
)
def test_model_budget_within_one_percent_of_linux(
    debian_amd64: Kernel, qemu_x86: str, small_debian_image: bytes
) -> None:
    machine = RealMachine(small_debian_image, debian_amd64)
    real = real_threshold(machine, lo=96 << 20, hi=256 << 20, step=1 << 20)
    # Calibrated from the kernel's own log at the threshold, as a user with one log would be.
    calibration = parse_dmesg(real.at.console, where="the boot at the threshold")
    hole = real.min_ram - calibration.ram_bytes
    arch = calibrate(profile(calibration.arch or "flat"), [calibration])
    model = find_budget(machine.composed, kernel_size=arch.fixed, arch=arch, calibrations=(calibration,))
    predicted = model.released.min_ram + hole
    error = abs(predicted - real.min_ram) / real.min_ram
    assert error <= 0.01, (
        f"model {format_k(predicted)} vs Linux {format_k(real.min_ram)} ({error:.1%}); "
        f"Linux below: {real.below.why if real.below else '-'}; model: {model.released.reason}"
    )


def test_a_device_tree_machine_frees_as_generic_linux(qemu_x86: str) -> None:
    # arm64 under QEMU's virt machine: the initrd arrives through /chosen of QEMU's own blob,
    # which the model boots; generic Linux frees the initrd's range rounded inward.
    require_tool("qemu-system-aarch64")
    require_tool("apt-get")
    kernel = debian_kernel("arm64")
    verdict = verify_image(example_image(), kernel, ram=256 << 20)
    assert verdict.qemu.dtb is not None and verdict.linux.tree is not None
    assert _differences(verdict) == []

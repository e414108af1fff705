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
from bootmem.units import align_down, align_up, format_k
from bootmem.verify.compare import Verdict, verify_image
from bootmem.verify.images import mkinitramfs
from bootmem.verify.kernel import Kernel, debian_kernel
from bootmem.verify.threshold import RealMachine
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


def test_model_budget_within_one_percent_of_linux(
    debian_amd64: Kernel, qemu_x86: str, small_debian_image: bytes
) -> None:
    # Below its tmpfs threshold this image runs Linux out of memory in the unpack ("System is
    # deadlocked on memory"): bisected to 128K, 119680K boots and 119552K does not. The model is
    # calibrated by one real boot well above that (its Memory: line and the probe's /proc/meminfo),
    # then Linux must boot with 1% more RAM than the model's answer and run out of memory with 1% less.
    machine = RealMachine(small_debian_image, debian_amd64, parallel=1)
    (first,) = machine.boot([160 << 20])
    calibration = parse_dmesg(first.console, where="the boot with 160M")
    assert calibration.runtime_bytes is not None, first.console[-2000:]
    arch = calibrate(profile(calibration.arch or "flat"), [calibration])
    model = find_budget(machine.composed, arch=arch, calibrations=(calibration,))
    assert model.released.limit == "kernel", model.released.reason
    answer = model.released.min_ram
    above, below = machine.boot([align_up(answer * 101 // 100, 4096), align_down(answer * 99 // 100, 4096)])
    assert above.ok, f"Linux with {format_k(above.ram)}, 1% above the model's {format_k(answer)}: {above.why}"
    assert not below.ok and "deadlocked on memory" in below.why, (
        f"Linux with {format_k(below.ram)}, 1% below the model's {format_k(answer)}: {below.why}"
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


@pytest.mark.parametrize(("size_mib", "deadlocks"), [(20, False), (40, True)])
def test_the_profiles_deadlock_on_memory_is_linuxs(
    debian_amd64: Kernel, qemu_x86: str, size_mib: int, deadlocks: bool
) -> None:
    # An incompressible raw initrd on 128M: the x86_64 profile as shipped (no calibration) says
    # whether the unpack leaves the kernel deadlocked on memory, and Linux does the same.
    import random

    from bootmem.kernel.arch import X86_64
    from bootmem.kernel.boot import DEADLOCK, Machine, boot
    from bootmem.verify.parse import parse_console
    from bootmem.verify.qemu import boot_qemu
    from tests.kernel.conftest import archive, f

    image = archive(f("blob", random.Random(size_mib).randbytes(size_mib << 20)))
    model = boot(image, machine=Machine.for_arch(X86_64, 128 << 20), poison=None)
    linux = parse_console(boot_qemu(debian_amd64, image, ram=128 << 20).console)
    assert (model.panic == DEADLOCK) is deadlocks
    assert (linux.panic == DEADLOCK) is deadlocks, linux.panic

"""The command line words the model reads, judged by the real kernel: each boots the built-in
example under Linux and in the model with the same words, and every figure and path must agree."""

from __future__ import annotations

import pytest

from bootmem.kernel.example import example_image
from bootmem.verify.compare import verify_image
from bootmem.verify.kernel import Kernel

pytestmark = pytest.mark.qemu


@pytest.mark.parametrize(
    ("cmdline", "freed", "fs"),
    [
        ("retain_initrd", False, "tmpfs"),
        # __setup("retain_initrd", ...) refuses a value: the initrd is freed.
        ("retain_initrd=1", True, "tmpfs"),
        # __setup("initramfs_async=", ...): a bare word matches nothing and is not an error.
        ("initramfs_async", True, "tmpfs"),
        # init_rootfs: with root= rootfs is ramfs (directories of size 0 in the probe's tree).
        ("root=/dev/bootmem-none", True, "ramfs"),
    ],
)
def test_the_kernel_reads_the_command_line_as_the_model(
    debian_amd64: Kernel, qemu_x86: str, cmdline: str, freed: bool, fs: str
) -> None:
    verdict = verify_image(example_image(), debian_amd64, ram=192 << 20, cmdline=cmdline)
    assert (verdict.linux.freed_k is not None) is freed
    assert verdict.model.rootfs_fs == fs
    assert [f"{d.what}: linux {d.linux}, model {d.model}" for d in verdict.differences] == []

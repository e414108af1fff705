"""The unpack rules table (tests/kernel/unpack_rules.py) booted under the real kernel.

Each case is the probe segment followed by the case's image, booted with
``rdinit=/bootmem-probe/init``; the probe's records of the rootfs Linux built and the console's
"Initramfs unpacking failed" line are checked against the table, as the model's test checks
the modelled rootfs.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from bootmem.verify.images import BEGIN, END, PROBE_CMDLINE, compose, probe_segment
from bootmem.verify.kernel import Kernel
from tests.kernel.unpack_rules import CASES, Case, Seen, differences

_KINDS = {
    stat.S_IFREG: "f",
    stat.S_IFDIR: "d",
    stat.S_IFLNK: "l",
    stat.S_IFCHR: "c",
    stat.S_IFBLK: "b",
    stat.S_IFIFO: "p",
    stat.S_IFSOCK: "s",
}


def _boot(kernel: Kernel, qemu: str, image: bytes, tmp_path: Path, cmdline: str = "") -> str:
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(compose(probe_segment(), image))
    argv = [qemu, "-accel", "tcg", "-m", "256M", "-kernel", str(kernel.image), "-initrd", str(initrd)]
    argv += ["-append", f"console=ttyS0 panic=-1 {PROBE_CMDLINE} {cmdline}".rstrip()]
    argv += ["-display", "none", "-no-reboot"]
    argv += ["-serial", "stdio", "-monitor", "none"]
    done = subprocess.run(argv, capture_output=True, timeout=300, check=False)
    return done.stdout.decode("utf-8", "replace").replace("\r", "")


def _rootfs(console: str) -> dict[str, Seen]:
    """The probe's S, H and L records, by path relative to the root."""
    assert BEGIN in console and END in console, console[-2000:]
    paths: dict[str, Seen] = {}
    for line in console.split(BEGIN, 1)[1].split(END, 1)[0].splitlines():
        fields = line.split("\t")
        if fields[0] == "S" and len(fields) >= 10:
            kind = _KINDS.get(stat.S_IFMT(int(fields[1], 16)), "?")
            mode = int(fields[1], 16)
            rdev = (int(fields[7], 16), int(fields[8], 16))
            paths[fields[9].lstrip("/")] = Seen(
                kind, uid=int(fields[2]), rdev=rdev, size=int(fields[4]), mode=mode & 0o7777
            )
        elif fields[0] == "H" and len(fields) >= 2:
            digest, _, name = fields[1].partition("  ")
            paths[name.lstrip("/")].sha256 = digest
        elif fields[0] == "L" and len(fields) >= 3:
            paths[fields[2].lstrip("/")].target = fields[1]
    return paths


@pytest.mark.qemu
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_real_kernel_follows_the_rule(
    case: Case, debian_amd64: Kernel, qemu_x86: str, tmp_path: Path
) -> None:
    console = _boot(debian_amd64, qemu_x86, case.image, tmp_path, case.cmdline)
    failed = [
        line.split(": ", 1)[1] for line in console.splitlines() if "Initramfs unpacking failed: " in line
    ]
    assert (failed[0].strip() if failed else None) == case.message, case.rule
    if case.freed is not None:
        assert ("Freeing initrd memory:" in console) is case.freed, case.rule
    rootfs = _rootfs(console)
    for name, want in case.paths.items():
        got = rootfs.get(name)
        assert got is not None, f"{name!r} is missing ({case.rule})"
        assert not differences(want, got), (name, differences(want, got))
    for name in case.absent:
        assert name not in rootfs, f"{name!r} exists ({case.rule})"

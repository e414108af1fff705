"""Each case of the rules table (tests/kernel/unpack_rules.py) unpacked into the modelled rootfs."""

from __future__ import annotations

import pytest

from bootmem.fs.tmpfs import Tmpfs
from bootmem.kernel.boot import CommandLine, Machine, boot, init_rootfs
from bootmem.kernel.unpack import unpack_to_rootfs
from bootmem.mm import PageAllocator
from tests.kernel.conftest import SYNC
from tests.kernel.unpack_rules import CASES, Case, Node, Seen, differences


def check_rootfs(fs: Tmpfs, case: Case) -> None:
    """Assert that ``fs`` holds what ``case`` says Linux builds."""
    for name, want in case.paths.items():
        inode = fs.find("/" + name, follow_symlinks=False)
        assert inode is not None, f"{name!r} is missing ({case.rule})"
        digest = fs.sha256("/" + name) if inode.kind == "f" else None
        got = Seen(inode.kind, digest, inode.target, inode.uid, inode.rdev, inode.size, inode.permissions)
        assert not differences(want, got), (name, differences(want, got))
    for name in case.absent:
        assert fs.find("/" + name, follow_symlinks=False) is None, f"{name!r} exists ({case.rule})"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_model_follows_the_rule(case: Case) -> None:
    # rootfs as init_rootfs mounts it for the case's command line, on the case's RAM.
    tmpfs = CommandLine.parse(case.cmdline).rootfs_is_tmpfs
    fs = init_rootfs(PageAllocator(base=0, size=case.ram), tmpfs=tmpfs)
    result = unpack_to_rootfs(case.image, fs)
    assert (result.error.message if result.error else None) == case.message, case.rule
    check_rootfs(fs, case)
    if case.pages is not None:
        assert fs.used_pages == case.pages, case.rule
    if case.freed is not None:
        report = boot(case.image, machine=Machine(ram_size=case.ram), cmdline=f"{SYNC} {case.cmdline}")
        freed = any(m.startswith("Freeing initrd memory") for m in report.log.messages())
        assert freed is case.freed, case.rule


def test_node_kinds_are_known() -> None:
    assert {c.kind for case in CASES for c in case.paths.values()} <= set("fdlcbps")
    assert Node("f").data is None

"""The booted rootfs against ``bootmem extract --filter fully_trusted`` and GNU ``cpio -idm``.

For images the real tools wrote (GNU cpio newc and crc, bsdcpio, busybox; gzip, xz, zstd,
lz4; a distribution-shaped image with a raw early segment), every path must come out the
same: type, permission bits, owner, size, SHA-256 of the data, symlink target, device
numbers, mtime, and which names share an inode.  Directory sizes and link counts belong to
each filesystem and are not compared.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from bootmem.cli import main
from bootmem.fs.tmpfs import Tmpfs
from bootmem.kernel.boot import boot
from tests.conftest import require_tool
from tests.initramfs import corpus
from tests.kernel.conftest import MACHINE, SYNC

pytestmark = pytest.mark.peer

Snapshot = tuple[dict[str, tuple[object, ...]], set[frozenset[str]]]


def _rootfs_snapshot(fs: Tmpfs) -> Snapshot:
    paths: dict[str, tuple[object, ...]] = {}
    groups: dict[int, set[str]] = {}
    for line in fs.tree():
        path, kind, mode, uid, gid, size, _nlink, mtime, rdev, data = line.split("\t")
        if path == "/":
            continue
        paths[path] = (
            kind,
            mode,
            int(uid),
            int(gid),
            None if kind == "d" else int(size),
            int(mtime),
            rdev,
            data,
        )
    for path, inode in fs.walk():
        if inode.kind == "f" and inode.nlink > 1:
            groups.setdefault(id(inode), set()).add(path)
    return paths, {frozenset(g) for g in groups.values()}


def _host_snapshot(root: Path) -> Snapshot:
    kinds = {stat.S_IFDIR: "d", stat.S_IFREG: "f", stat.S_IFLNK: "l", stat.S_IFCHR: "c", stat.S_IFBLK: "b"}
    kinds |= {stat.S_IFIFO: "p", stat.S_IFSOCK: "s"}
    paths: dict[str, tuple[object, ...]] = {}
    groups: dict[int, set[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = "/" + os.path.relpath(full, root)
            kind = kinds[stat.S_IFMT(st.st_mode)]
            data = "-"
            if kind == "f":
                data = hashlib.sha256(Path(full).read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    groups.setdefault(st.st_ino, set()).add(rel)
            elif kind == "l":
                data = os.readlink(full)
            rdev = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" if kind in "cb" else "-"
            size = None if kind == "d" else st.st_size
            mode = f"{stat.S_IMODE(st.st_mode):04o}"
            paths[rel] = (kind, mode, st.st_uid, st.st_gid, size, int(st.st_mtime), rdev, data)
    return paths, {frozenset(g) for g in groups.values()}


def _gnu_cpio(archives: list[bytes], dest: Path) -> Path:
    cpio = require_tool("cpio")
    dest.mkdir()
    for data in archives:  # one archive at a time: cpio reads only the first of a stream
        subprocess.run([cpio, "-idmu", "--quiet"], input=data, cwd=dest, check=True, capture_output=True)
    return dest


CASES = [
    ("gnu-newc", "none"),
    ("gnu-crc", "none"),
    ("bsdcpio", "none"),
    ("busybox", "none"),
    ("gnu-newc", "gzip"),
    ("gnu-newc", "xz"),
    ("bsdcpio", "zstd"),
    ("busybox", "lz4"),
    ("distro", "zstd"),
    ("distro", "gzip"),
]


@pytest.mark.parametrize(("tool", "compression"), CASES, ids=[f"{t}-{c}" for t, c in CASES])
def test_booted_rootfs_equals_extract_and_gnu_cpio(
    kernel_tree: Path, tmp_path: Path, tool: str, compression: str
) -> None:
    if tool == "distro":
        distro = corpus.distro_image(kernel_tree, compression=compression)
        image, archives = distro.data, [distro.early, distro.main]
    else:
        archive = corpus.peer_archive(kernel_tree, tool)  # type: ignore[arg-type]
        image, archives = corpus.peer_compress(archive, compression), [archive]

    report = boot(image, machine=MACHINE, cmdline=SYNC, no_builtin=True)
    assert report.ok, report.log
    assert report.rootfs is not None
    booted = _rootfs_snapshot(report.rootfs)

    image_file = tmp_path / "initrd.img"
    image_file.write_bytes(image)
    extracted = tmp_path / "extracted"
    assert main(["extract", "--filter", "fully_trusted", str(image_file), str(extracted)]) == 0
    by_extract = _host_snapshot(extracted)
    by_cpio = _host_snapshot(_gnu_cpio(archives, tmp_path / "cpio"))

    assert len(booted[0]) > 100 and booted[1]
    assert booted[1] == by_extract[1] == by_cpio[1]
    assert booted[0] == by_extract[0]
    assert _without_dir_and_symlink_mtimes(booted[0]) == _without_dir_and_symlink_mtimes(by_cpio[0])


def _without_dir_and_symlink_mtimes(paths: dict[str, tuple[object, ...]]) -> dict[str, tuple[object, ...]]:
    # GNU cpio -m restores the mtimes of files only: a directory's is changed by its children
    # afterwards, a symlink's is never set.
    return {p: (*v[:5], None, *v[6:]) if v[0] in ("d", "l") else v for p, v in paths.items()}


def test_later_segments_win_like_gnu_cpio_extracting_in_order(tmp_path: Path) -> None:
    import io

    from bootmem.initramfs.cpio import CpioWriter, Entry

    def one(data: bytes, mode: int) -> bytes:
        out = io.BytesIO()
        with CpioWriter(out) as w:
            w.add(Entry("etc", stat.S_IFDIR | 0o755, c_nlink=2, c_mtime=5))
            w.add(Entry("etc/conf", stat.S_IFREG | mode, c_mtime=7), data)
        return out.getvalue()

    first, second = one(b"first version, longer\n", 0o644), one(b"second\n", 0o600)
    report = boot(first + second, machine=MACHINE, cmdline=SYNC, no_builtin=True)
    assert report.rootfs is not None
    booted = _rootfs_snapshot(report.rootfs)
    by_cpio = _host_snapshot(_gnu_cpio([first, second], tmp_path / "cpio"))
    assert (
        booted[0]["/etc/conf"] == by_cpio[0]["/etc/conf"] == ("f", "0600", 0, 0, 7, 7, "-", _sha(b"second\n"))
    )
    assert _without_dir_and_symlink_mtimes(booted[0]) == _without_dir_and_symlink_mtimes(by_cpio[0])


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

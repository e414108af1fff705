"""Differential tests: bootmem's extraction against GNU ``cpio -idm``, and bootmem's images
against GNU cpio and bsdcpio.

A realistic tree (nested directories, empty and multi-MB files, symlinks, hardlinks, a fifo,
device nodes when running as root, odd names) is archived by each peer, compressed by the
real compressors, optionally behind a raw early segment; ``bootmem extract`` must produce the
tree ``cpio -idm --no-absolute-filenames`` produces from the same bytes.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from bootmem.initramfs.create import create_image
from bootmem.initramfs.extract import extractall
from tests.conftest import require_tool
from tests.initramfs.test_extract import tree_of

pytestmark = pytest.mark.peer

COMPRESSORS: dict[str, list[str]] = {
    "gzip": ["gzip", "-c", "-9"],
    "bzip2": ["bzip2", "-c"],
    "xz": ["xz", "-c", "--check=crc32"],
    "lzma": ["lzma", "-c"],
    "lz4": ["lz4", "-c", "-l"],
    "zstd": ["zstd", "-c", "-q", "-3"],
    "lzo": ["lzop", "-c"],
}


def build_tree(root: Path, *, files: int = 240, seed: int = 3) -> Path:
    """A tree shaped like an initramfs: nested dirs, scripts, libraries, links and oddities."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    dirs = [root]
    for i in range(30):
        parent = rng.choice(dirs)
        d = parent / f"dir{i}"
        d.mkdir()
        dirs.append(d)
    for i in range(files):
        d = rng.choice(dirs)
        size = rng.choice([0, 1, 3, 100, 4095, 4096, 70_000])
        (d / f"file{i}.so").write_bytes(rng.randbytes(size))
        if i % 7 == 0:
            os.chmod(d / f"file{i}.so", 0o755)
    (root / "big.bin").write_bytes(rng.randbytes(3 << 20))
    (root / "empty").write_bytes(b"")
    os.chmod(root / "empty", 0o4755)
    os.chmod(dirs[3], 0o700)
    (root / "bin").mkdir()
    (root / "bin" / "busybox").write_bytes(b"\x7fELF" + rng.randbytes(5000))
    for applet in ("sh", "ls", "mount"):
        os.link(root / "bin" / "busybox", root / "bin" / applet)
    os.symlink("bin/busybox", root / "init")
    os.symlink("../bin/sh", dirs[1] / "relative-link")
    os.symlink("/does/not/exist", root / "dangling-absolute")
    os.symlink("dir0", root / "link-to-dir")
    os.mkfifo(root / "fifo")
    for odd in ("new\nline", "\x1b[31mred", "sp ace", "ütf-8", "quote'\"", "back\\slash"):
        (root / odd).write_bytes(odd.encode("utf-8", "surrogateescape"))
    (root / os.fsdecode(b"latin1-\xe9")).write_bytes(b"not utf-8")
    if os.geteuid() == 0:
        (root / "dev").mkdir()
        os.mknod(root / "dev" / "console", 0o600 | stat.S_IFCHR, os.makedev(5, 1))
        os.mknod(root / "dev" / "loop0", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (1_650_000_000 + rng.randrange(10**6),) * 2, follow_symlinks=False)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tree(tmp_path_factory.mktemp("interop") / "tree")


def peer_archive(tool: str, tree: Path, out: Path) -> Path:
    """``tree`` archived by a peer: ``gnu-newc``, ``gnu-crc``, ``bsdcpio`` or ``busybox``."""
    names = subprocess.run(
        ["find", ".", "-mindepth", "1", "-print0"], cwd=tree, capture_output=True, check=True
    )
    listing = b"\0".join(sorted(names.stdout.rstrip(b"\0").split(b"\0"))) + b"\0"
    command = {
        "gnu-newc": [require_tool("cpio"), "-o", "-0", "-H", "newc", "--quiet"],
        "gnu-crc": [require_tool("cpio"), "-o", "-0", "-H", "crc", "--quiet"],
        "bsdcpio": [require_tool("bsdcpio"), "-o", "-0", "--format", "newc", "--quiet"],
        "busybox": [require_tool("busybox"), "cpio", "-o", "-0", "-H", "newc"],
    }[tool]
    with out.open("wb") as f:
        subprocess.run(command, cwd=tree, input=listing, stdout=f, stderr=subprocess.DEVNULL, check=True)
    return out


def peer_compress(name: str, raw: bytes) -> bytes:
    command = COMPRESSORS[name]
    require_tool(command[0])
    return subprocess.run(command, input=raw, capture_output=True, check=True).stdout


def gnu_extract(archives: list[bytes], dest: Path) -> Path:
    """GNU cpio's tree of the raw archives, extracted one after another into ``dest``."""
    cpio = require_tool("cpio")
    dest.mkdir()
    for raw in archives:
        subprocess.run(
            [cpio, "-idm", "--no-absolute-filenames", "--quiet"],
            cwd=dest,
            input=raw,
            capture_output=True,
            check=True,
        )
    return dest


@pytest.mark.parametrize("tool", ["gnu-newc", "gnu-crc", "bsdcpio", "busybox"])
def test_extract_matches_gnu_cpio_per_archiver(tool: str, tree: Path, tmp_path: Path) -> None:
    raw = peer_archive(tool, tree, tmp_path / "a.cpio").read_bytes()
    expected = tree_of(gnu_extract([raw], tmp_path / "gnu"), all_mtimes=False)
    extractall(raw, tmp_path / "ours", filter="fully_trusted")
    assert tree_of(tmp_path / "ours", all_mtimes=False) == expected
    assert tree_of(tmp_path / "ours") == tree_of(tree)  # and every mtime as in the source
    assert len(expected) > 250


@pytest.mark.parametrize("compression", list(COMPRESSORS))
def test_extract_compressed_behind_an_early_segment(compression: str, tree: Path, tmp_path: Path) -> None:
    early_dir = tmp_path / "early"
    (early_dir / "kernel" / "x86" / "microcode").mkdir(parents=True)
    (early_dir / "kernel" / "x86" / "microcode" / "GenuineIntel.bin").write_bytes(b"\x01" * 5000)
    early = peer_archive("gnu-newc", early_dir, tmp_path / "early.cpio").read_bytes()
    main = peer_archive("gnu-newc", tree, tmp_path / "main.cpio").read_bytes()
    image = early + b"\0" * 4 + peer_compress(compression, main)
    if compression == "lzo":
        pytest.importorskip("lzo")
    expected = tree_of(gnu_extract([early, main], tmp_path / "gnu"), all_mtimes=False)
    extractall(image, tmp_path / "ours", filter="fully_trusted")
    assert tree_of(tmp_path / "ours", all_mtimes=False) == expected


def test_data_filter_tree_matches_gnu_cpio_without_specials(tree: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(
        tree, plain, symlinks=True, ignore=shutil.ignore_patterns("fifo", "dev", "dangling-absolute")
    )
    raw = peer_archive("gnu-newc", plain, tmp_path / "a.cpio").read_bytes()
    expected = tree_of(gnu_extract([raw], tmp_path / "gnu"), all_mtimes=False)
    extractall(raw, tmp_path / "ours", filter="data")
    ours = tree_of(tmp_path / "ours", all_mtimes=False)
    assert ours.keys() == expected.keys()
    for path, (kind, mode, *rest) in expected.items():
        ours_kind, ours_mode, *ours_rest = ours[path]
        assert (ours_kind, ours_rest) == (kind, rest), path
        if kind == "-":
            assert ours_mode == (mode & 0o755 if mode & 0o100 else mode & 0o644) | 0o600, path


# --- bootmem's images read by the peers ----------------------------------------------------


@pytest.fixture(scope="module", params=["newc", "crc"])
def created(request: pytest.FixtureRequest, tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("created") / f"image-{request.param}.cpio"
    create_image(out, root=tree, format=request.param)
    return out


def test_gnu_cpio_lists_created_image(created: Path, tree: Path) -> None:
    listed = subprocess.run(
        [require_tool("cpio"), "-t", "--quiet"], input=created.read_bytes(), capture_output=True, check=True
    ).stdout
    names = subprocess.run(
        ["find", ".", "-mindepth", "1", "-print0"], cwd=tree, capture_output=True, check=True
    )
    expected = sorted(n[2:] for n in names.stdout.rstrip(b"\0").split(b"\0"))
    # cpio -t prints one name a line: names with newlines span two lines, so compare as text.
    assert listed == b"".join(n + b"\n" for n in expected)


@pytest.mark.parametrize("reader", ["gnu", "bsdcpio", "bootmem"])
def test_created_image_extracts_to_the_source_tree(
    reader: str, created: Path, tree: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    data = created.read_bytes()
    if reader == "gnu":
        subprocess.run([require_tool("cpio"), "-idm", "--quiet"], cwd=dest, input=data, check=True)
    elif reader == "bsdcpio":
        subprocess.run([require_tool("bsdcpio"), "-idm", "--quiet"], cwd=dest, input=data, check=True)
    else:
        extractall(data, dest, filter="fully_trusted")
    all_mtimes = reader != "gnu"
    assert tree_of(dest, all_mtimes=all_mtimes) == tree_of(tree, all_mtimes=all_mtimes)


def test_crc_image_verifies_under_gnu_cpio(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "crc.cpio"
    create_image(out, root=tree, format="crc")
    done = subprocess.run(
        [require_tool("cpio"), "-i", "--only-verify-crc"],
        cwd=tmp_path,
        input=out.read_bytes(),
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    assert b"checksum error" not in done.stderr.lower()

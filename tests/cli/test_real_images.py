"""`bootmem ls`, `extract` and `examine` on real distribution images, against the real peer tools.

The images are Debian's own: ``mkinitramfs`` of initramfs-tools for the Debian kernel the verify
tests fetch (``MODULES=dep``), in several compressions, one also with an early microcode segment
in front as Debian's microcode hooks prepend it, and one wrapped in a unified kernel image over
systemd-stub.  What bootmem says of them is compared with what dracut's ``lsinitrd``, GNU cpio and
bsdtar say, each segment cut out at the offsets ``bootmem examine`` reports and decompressed by
the codec's own command-line tool.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bootmem.cli import main
from bootmem.verify.images import mkinitramfs
from bootmem.verify.kernel import Kernel
from tests.conftest import require_tool
from tests.initramfs.test_uki import _stub
from tests.verify.conftest import debian_amd64  # noqa: F401  (fixture)

pytestmark = pytest.mark.qemu

#: The images: name -> (compression, with an early microcode segment).  gzip is what lsinitrd
#: reads through zcat, lz4 is the legacy frame format, zstd Debian's default.
IMAGES = {
    "zstd": ("zstd", False),
    "lz4": ("lz4", False),
    "gzip": ("gzip", False),
    "microcode+zstd": ("zstd", True),
}

#: How the codecs' own tools decompress a segment.
DECOMPRESS = {"gzip": ["gzip", "-dc"], "zstd": ["zstd", "-dc"], "lz4": ["lz4", "-dc"], "xz": ["xz", "-dc"]}

#: A line of ``cpio -tv`` (what lsinitrd prints): mode, links, user, group, size, a date of
#: three fields, the name (and `` -> target`` for a symlink).
_CPIO_TV = re.compile(r"^([-dlcbps][rwxsStT-]{9}) +(\d+) +(\S+) +(\S+) +(\d+) +\S+ +\S+ +\S+ (.*)$")


def _early_microcode(tmp: Path) -> bytes:
    """An uncompressed early segment as Debian's intel-microcode hook prepends it: GNU cpio
    ``-o -H newc`` of ``kernel/x86/microcode/GenuineIntel.bin`` (here not real microcode: what the
    tools list does not depend on it)."""
    tree = tmp / "early"
    (tree / "kernel" / "x86" / "microcode").mkdir(parents=True)
    (tree / "kernel" / "x86" / "microcode" / "GenuineIntel.bin").write_bytes(bytes(range(256)) * 16)
    names = "kernel\nkernel/x86\nkernel/x86/microcode\nkernel/x86/microcode/GenuineIntel.bin\n"
    done = subprocess.run(
        [require_tool("cpio"), "-o", "-H", "newc", "--quiet", "-R", "0:0"],
        input=names.encode(), cwd=tree, capture_output=True, check=True,
    )  # fmt: skip
    return done.stdout


@pytest.fixture(scope="session")
def debian_images(
    debian_amd64: Kernel,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], Path]:
    """The image of :data:`IMAGES` by name, built once a session (a build takes seconds)."""
    built: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in built:
            require_tool("mkinitramfs")
            compression, early = IMAGES[name]
            if compression not in debian_amd64.compressions():
                pytest.skip(f"kernel {debian_amd64.version} does not decompress {compression}")
            tmp = tmp_path_factory.mktemp(f"debian-{name}")
            path = tmp / "initrd.img"
            if early:  # Debian's early segment in front of the image of that compression
                path.write_bytes(_early_microcode(tmp) + build(compression).read_bytes())
            else:
                mkinitramfs(debian_amd64, compression, modules="dep", out=path)
            built[name] = path
        return built[name]

    return build


def _bootmem(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _owner(uid: int, gid: int) -> tuple[str, str]:
    """The names GNU cpio -tv shows for ``uid`` and ``gid`` (numbers when the host has none)."""
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return user, group


def _long_listing(out: str) -> list[tuple[Any, ...]]:
    """``bootmem ls -l`` rows as (mode, links, user, group, size, name-and-target)."""
    rows = []
    for line in out.splitlines():
        mode, nlink, uid, gid, size, _date, _time, name = line.split(maxsplit=7)
        rows.append((mode, int(nlink), *_owner(int(uid), int(gid)), int(size), name))
    return rows


def _lsinitrd_listing(out: str) -> list[tuple[Any, ...]]:
    """The ``cpio -tv`` rows of lsinitrd's output, as :func:`_long_listing` makes them: the
    header lines (image size, dracut version, arguments and modules) are no entries."""
    rows = []
    for line in out.splitlines():
        if m := _CPIO_TV.match(line):
            rows.append((m[1], int(m[2]), m[3], m[4], int(m[5]), m[6]))
    return rows


def _segments(image: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    segments: list[dict[str, Any]] = json.loads(_bootmem(capsys, "examine", "--json", str(image)))["segments"]
    return segments


def _decompressed(image: Path, segment: dict[str, Any]) -> bytes:
    """Segment ``segment`` of ``image`` cut out at examine's offsets, decompressed by the codec's tool."""
    with image.open("rb") as f:
        f.seek(segment["offset"])
        data = f.read(segment["end"] - segment["offset"])
    if segment["compression"] == "none":
        return data
    argv = DECOMPRESS[segment["compression"]]
    return subprocess.run(
        [require_tool(argv[0]), *argv[1:]], input=data, capture_output=True, check=True
    ).stdout


def tree_of(root: Path, *, mtimes: bool = False) -> dict[str, tuple[Any, ...]]:
    """Path -> (type, mode, uid, gid, sha256 or link target, hardlink group, mtime) of the tree
    under ``root``.  The mtimes are of regular files only and with ``mtimes`` only: ``lsinitrd
    --unpack`` runs ``cpio -id`` without ``-m``, and GNU cpio 2.13 ``-idm`` does not restore
    those of directories and symlinks."""
    stats: dict[str, os.stat_result] = {}
    groups: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            st = stats[rel] = os.lstat(os.path.join(root, rel))
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
    tree: dict[str, tuple[Any, ...]] = {}
    for rel, st in sorted(stats.items()):
        path = root / rel
        kind = stat.filemode(st.st_mode)[0]
        what = (
            hashlib.sha256(path.read_bytes()).hexdigest() if kind == "-"
            else os.readlink(path) if kind == "l"
            else None
        )  # fmt: skip
        mode = None if kind == "l" else stat.S_IMODE(st.st_mode)
        group = tuple(sorted(groups.get((st.st_dev, st.st_ino), [])))
        mtime = int(st.st_mtime) if mtimes and kind == "-" else None
        tree[rel] = (kind, mode, st.st_uid, st.st_gid, what, group, mtime)
    return tree


@pytest.mark.parametrize("name", IMAGES)
def test_ls_agrees_with_lsinitrd(
    name: str, debian_images: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    lsinitrd = require_tool("lsinitrd")
    image = debian_images(name)
    ours = _long_listing(_bootmem(capsys, "ls", "-l", str(image)))
    out = subprocess.run([lsinitrd, str(image)], capture_output=True, text=True, check=True).stdout
    theirs = _lsinitrd_listing(out)
    # lsinitrd sorts each segment's listing by name (`sort -k9`, in the locale's collation):
    # the order is the peer's, so the rows are compared as sorted lists.
    assert sorted(ours) == sorted(theirs)
    assert len(ours) > 400
    if IMAGES[name][1]:  # lsinitrd recognises Debian's early segment by its microcode
        assert "Early CPIO image" in out
    names = _bootmem(capsys, "ls", str(image)).splitlines()
    assert names == [row[-1].split(" -> ")[0] for row in ours]


@pytest.mark.parametrize("name", IMAGES)
def test_ls_is_what_cpio_and_bsdtar_list_segment_by_segment(
    name: str, debian_images: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cpio, bsdtar = require_tool("cpio"), require_tool("bsdtar")
    image = debian_images(name)
    segments = _segments(image, capsys)
    assert [s["compression"] for s in segments] == (["none"] if IMAGES[name][1] else []) + [IMAGES[name][0]]
    gnu: list[str] = []
    bsd: list[str] = []
    for segment in segments:
        data = _decompressed(image, segment)
        gnu += (
            subprocess.run([cpio, "-t", "--quiet"], input=data, capture_output=True, check=True)
            .stdout.decode()
            .splitlines()
        )
        bsd += (
            subprocess.run([bsdtar, "-tf", "-"], input=data, capture_output=True, check=True)
            .stdout.decode()
            .splitlines()
        )
    ours = _bootmem(capsys, "ls", str(image)).splitlines()
    assert ours == gnu
    assert ours == bsd


@pytest.mark.parametrize("name", IMAGES)
def test_extract_makes_the_tree_lsinitrd_unpacks(
    name: str, debian_images: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lsinitrd = require_tool("lsinitrd")
    image = debian_images(name)
    theirs = tmp_path / "lsinitrd"
    theirs.mkdir()
    subprocess.run([lsinitrd, "--unpack", str(image)], cwd=theirs, check=True)
    ours = tmp_path / "bootmem"
    # lsinitrd --unpack leaves out an early segment ("Won't unpack anything from early cpio
    # part"): bootmem extracts the segments after it for the comparison.
    segments = ["--segment", "1"] if IMAGES[name][1] else []
    assert _bootmem(capsys, "extract", *segments, str(image), str(ours)) == ""
    tree = tree_of(ours)
    assert tree == tree_of(theirs)
    assert len(tree) > 400
    if IMAGES[name][1]:  # and --unpackearly unpacks the early segment alone
        early = tmp_path / "lsinitrd-early"
        early.mkdir()
        subprocess.run([lsinitrd, "--unpackearly", str(image)], cwd=early, check=True)
        assert _bootmem(capsys, "extract", "--segment", "0", str(image), str(tmp_path / "early")) == ""
        assert tree_of(tmp_path / "early") == tree_of(early)
        assert (early / "kernel/x86/microcode/GenuineIntel.bin").is_file()


@pytest.mark.parametrize("name", IMAGES)
def test_extract_makes_the_tree_gnu_cpio_unpacks_segment_by_segment(
    name: str, debian_images: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cpio = require_tool("cpio")
    image = debian_images(name)
    theirs = tmp_path / "cpio"
    theirs.mkdir()
    for segment in _segments(image, capsys):  # in order: a later segment's entries replace
        subprocess.run(
            [cpio, "-idm", "--quiet", "--no-absolute-filenames"],
            input=_decompressed(image, segment), cwd=theirs, check=True,
        )  # fmt: skip
    ours = tmp_path / "bootmem"
    assert _bootmem(capsys, "extract", str(image), str(ours)) == ""
    assert tree_of(ours, mtimes=True) == tree_of(theirs, mtimes=True)
    if IMAGES[name][1]:
        assert (ours / "kernel/x86/microcode/GenuineIntel.bin").is_file()


@pytest.mark.parametrize("name", ["zstd", "microcode+zstd"])
def test_examine_contents_names_the_kernel_the_image_was_built_for(
    name: str,
    debian_images: Callable[[str], Path],
    debian_amd64: Kernel,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = debian_images(name)
    contents = json.loads(_bootmem(capsys, "examine", "--contents", "--json", str(image)))
    assert contents["kernel_versions"] == [debian_amd64.version]
    assert contents["modules"]["total"]["count"] > 0
    assert contents["init"] == "/init"
    assert contents["busybox"] == "/usr/bin/busybox"
    if IMAGES[name][1]:
        assert contents["microcode"] == {"GenuineIntel": 4096}
    text = _bootmem(capsys, "examine", "--contents", str(image))
    assert re.search(rf"^kernel +{re.escape(str(debian_amd64.version))}$", text, re.M), text


@pytest.fixture(scope="session")
def debian_uki(
    debian_images: Callable[[str], Path],
    debian_amd64: Kernel,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path]:
    """(UKI, its initrd): the Debian kernel and the image with its early microcode (as ukify
    puts microcode and image in one .initrd) over systemd-stub, the sections where the
    systemd-stub documentation's objcopy recipe puts them."""
    objcopy = require_tool("objcopy")
    stub = _stub()
    initrd = debian_images("microcode+zstd")
    tmp = tmp_path_factory.mktemp("uki")
    (tmp / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux"\nID=debian\n')
    (tmp / "cmdline").write_text("quiet\n")
    out = tmp / "linux.efi"
    subprocess.run(
        [objcopy,
         "--add-section", f".osrel={tmp / 'os-release'}", "--change-section-vma", ".osrel=0x20000",
         "--add-section", f".cmdline={tmp / 'cmdline'}", "--change-section-vma", ".cmdline=0x30000",
         "--add-section", f".linux={debian_amd64.image}", "--change-section-vma", ".linux=0x2000000",
         "--add-section", f".initrd={initrd}", "--change-section-vma", ".initrd=0x3000000",
         str(stub), str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out, initrd


def test_ls_of_a_uki_is_ls_of_its_initrd(
    debian_uki: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    uki, initrd = debian_uki
    assert uki.read_bytes().startswith(b"MZ")
    ours = _bootmem(capsys, "ls", "-l", str(uki))
    assert ours == _bootmem(capsys, "ls", "-l", str(initrd))
    assert len(ours.splitlines()) > 400


def test_ls_of_a_uki_agrees_with_lsinitrd(
    debian_uki: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # lsinitrd takes the .initrd section out of a UKI with objcopy, as bootmem reads it in place.
    lsinitrd = require_tool("lsinitrd")
    uki, _ = debian_uki
    out = subprocess.run([lsinitrd, str(uki)], capture_output=True, text=True, check=True).stdout
    assert "initrd in UEFI" in out and "Early CPIO image" in out
    assert sorted(_long_listing(_bootmem(capsys, "ls", "-l", str(uki)))) == sorted(_lsinitrd_listing(out))

"""bootmem's image tools (`ls`, `extract`, `examine`, `cat`, `du`, `diff`) on real distribution
images, against the real peer tools.

The images are Debian's own: ``mkinitramfs`` of initramfs-tools for the Debian kernel the verify
tests fetch (``MODULES=dep``), in several compressions, one also with an early microcode segment
in front as Debian's microcode hooks prepend it, and one wrapped in a unified kernel image over
systemd-stub.  What bootmem says of them is compared with what dracut's ``lsinitrd``, GNU cpio and
bsdtar say, each segment cut out at the offsets ``bootmem examine`` reports and decompressed by
the codec's own command-line tool.  For `du` and `diff`, which no peer has, the figures are
computed from the trees ``lsinitrd --unpack`` makes (`du` also against GNU du of that tree on a
tmpfs, the kernel's own count of its pages).
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bootmem.cli import main
from bootmem.verify.images import mkinitramfs
from bootmem.verify.kernel import Kernel
from tests.conftest import bootmem_env, require_tool, validate_json
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

#: Images for one test only: name -> (compression, with an early microcode segment, MODULES=).
#: MODULES=list with an empty list leaves out the modules MODULES=dep picks for the host (hooks
#: still add a few); it builds in seconds, where MODULES=most, Debian's default, takes 20 to 40.
OTHER_IMAGES = {"zstd-list": ("zstd", False, "list")}

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
    """The image of :data:`IMAGES` or :data:`OTHER_IMAGES` by name, built once a session (a
    build takes seconds)."""
    built: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in built:
            require_tool("mkinitramfs")
            compression, early, modules = (*IMAGES[name], "dep") if name in IMAGES else OTHER_IMAGES[name]
            if compression not in debian_amd64.compressions():
                pytest.skip(f"kernel {debian_amd64.version} does not decompress {compression}")
            tmp = tmp_path_factory.mktemp(f"debian-{name}")
            path = tmp / "initrd.img"
            if early:  # Debian's early segment in front of the image of that compression
                path.write_bytes(_early_microcode(tmp) + build(compression).read_bytes())
            else:
                mkinitramfs(debian_amd64, compression, modules=modules, out=path)
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


def _segments(image: Path, capture: pytest.CaptureFixture[Any]) -> list[dict[str, Any]]:
    """``examine --json``'s segments of ``image`` (``capture`` is capsys or capfdbinary)."""
    capture.readouterr()
    assert main(["examine", "--json", str(image)]) == 0
    segments: list[dict[str, Any]] = json.loads(capture.readouterr().out)["segments"]
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
    image = debian_images(name)
    theirs = tmp_path / "lsinitrd"
    _lsinitrd_unpack(image, theirs)
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
        _lsinitrd_unpack(image, early, "--unpackearly")
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


# --- cat, extract -O, selection, du, diff, stdin and JSON on the same images ----------------------


def _bootmem_bytes(capfd: pytest.CaptureFixture[bytes], *argv: str) -> bytes:
    capfd.readouterr()
    status = main(list(argv))
    out, err = capfd.readouterr()
    assert status == 0, err.decode()
    return out


def _bootmem_fails(capfd: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, bytes, str]:
    capfd.readouterr()
    status = main(list(argv))
    out, err = capfd.readouterr()
    return status, out, err.decode()


def _segment_data(image: Path, capfd: pytest.CaptureFixture[bytes]) -> list[bytes]:
    """Each segment of ``image``, cut out at examine's offsets and decompressed by its codec's tool."""
    return [_decompressed(image, segment) for segment in _segments(image, capfd)]


def _bsdtar(data: bytes, *args: str) -> bytes:
    """``bsdtar ARGS -f -`` of one segment; what it wrote (bsdtar exits 1 when a pattern matched
    nothing in this segment, which is no error here: another segment may hold it)."""
    done = subprocess.run([require_tool("bsdtar"), *args, "-f", "-"], input=data, capture_output=True)
    assert done.returncode == 0 or b"Not found in archive" in done.stderr, done.stderr
    return done.stdout


def _lsinitrd_file(image: Path, path: str) -> bytes:
    return subprocess.run(
        [require_tool("lsinitrd"), "-f", path, str(image)], capture_output=True, check=True
    ).stdout


@pytest.mark.parametrize("name", IMAGES)
def test_cat_and_extract_to_stdout_give_what_lsinitrd_and_bsdtar_give(
    name: str,
    debian_images: Callable[[str], Path],
    debian_amd64: Kernel,  # noqa: F811
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    image = debian_images(name)
    data = _segment_data(image, capfdbinary)
    names = [_bsdtar(segment, "-t").decode().splitlines() for segment in data]
    rows = _long_listing(_bootmem_bytes(capfdbinary, "ls", "-l", str(image)).decode())
    # busybox's applets are one inode of many names; newc gives the data to the last of them.
    links = [row for row in rows if row[0].startswith("-") and row[1] > 1]
    (carrier,) = [row[-1] for row in links if row[4] > 0]
    assert "usr/bin/busybox" in [row[-1] for row in links] and len(links) > 100
    paths = [
        "conf/initramfs.conf",
        f"usr/lib/modules/{debian_amd64.version}/kernel/fs/ext4/ext4.ko",
        carrier,
        *(["kernel/x86/microcode/GenuineIntel.bin"] if IMAGES[name][1] else []),
    ]
    wanted = []
    for path in paths:
        holder = max(i for i, listed in enumerate(names) if path in listed)  # a later segment wins
        theirs = _bsdtar(data[holder], "-xO", path)
        assert theirs, path
        assert _lsinitrd_file(image, path) == theirs, path
        assert _bootmem_bytes(capfdbinary, "cat", str(image), path) == theirs, path
        assert _bootmem_bytes(capfdbinary, "extract", "-O", str(image), path) == theirs, path
        wanted.append(theirs)
    assert _bootmem_bytes(capfdbinary, "cat", str(image), *paths) == b"".join(wanted)
    # Another name of busybox's inode: cat gives the data the rootfs holds there (the inode's),
    # where lsinitrd (GNU cpio --to-stdout) and bsdtar -xO write that entry's own body, which
    # newc leaves empty on all names but the last.
    busybox = wanted[paths.index(carrier)]
    assert _bootmem_bytes(capfdbinary, "cat", str(image), "usr/bin/busybox") == busybox
    assert _lsinitrd_file(image, "usr/bin/busybox") == _bsdtar(data[-1], "-xO", "usr/bin/busybox") == b""
    # All of them chosen, the inode's data comes once, where its carrier is, as bsdtar writes it.
    whole = _bsdtar(data[-1], "-xO", "usr/bin", "usr/sbin")
    assert whole.count(busybox) == 1
    assert _bootmem_bytes(capfdbinary, "extract", "-O", str(image), "usr/bin", "usr/sbin") == whole
    # A path the image does not hold: an error naming it, one line (lsinitrd -f prints nothing
    # and exits 0; bsdtar says "Not found in archive" and exits 1).
    for argv in (["cat", str(image), "conf/initramfs.conf", "conf/nothing.conf"],
                 ["extract", "-O", str(image), "conf/nothing.conf"]):  # fmt: skip
        status, _out, err = _bootmem_fails(capfdbinary, *argv)
        assert status != 0 and err.count("\n") == 1 and "'conf/nothing.conf'" in err, (argv, err)


#: Patterns for `bootmem ls` and the bsdtar pattern that chooses the same paths: bsdtar's `*`
#: matches across `/` (libarchive's pathmatch), bootmem's within a name, `**` across; a pattern
#: naming a directory chooses what is under it in both.
SELECTIONS = [
    ("usr/lib/modules/**/*.ko", "usr/lib/modules/*.ko"),
    ("usr/lib/modules/*/modules.*", "usr/lib/modules/*/modules.*"),
    ("conf", "conf"),
    ("kernel/*/microcode/*.bin", "kernel/*/microcode/*.bin"),  # the early segment's microcode
]


@pytest.mark.parametrize("name", IMAGES)
def test_ls_and_extract_choose_what_bsdtar_chooses(
    name: str, debian_images: Callable[[str], Path], tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    # bsdtar is the peer: it applies its pattern to each archive itself, in archive order.
    # (lsinitrd lists but does not select, and fnmatch over its names would be this test's
    # own matcher.)
    image = debian_images(name)
    data = _segment_data(image, capfdbinary)
    for ours, theirs in SELECTIONS:
        listed = b"".join(_bsdtar(segment, "-t", theirs) for segment in data).decode().splitlines()
        if not listed:  # the microcode pattern, of an image with no early segment
            assert ours.startswith("kernel/") and not IMAGES[name][1]
            status, _out, err = _bootmem_fails(capfdbinary, "ls", str(image), ours)
            assert status != 0 and err.count("\n") == 1 and repr(ours) in err, err
            continue
        assert _bootmem_bytes(capfdbinary, "ls", str(image), ours).decode().splitlines() == listed, ours
        assert len(listed) == 1 if ours.startswith("kernel/") else len(listed) > 3, ours
    # extract --segment N PATTERN writes the chosen entries and their parent directories only,
    # the tree bsdtar -x of that segment makes (with the umask that gives parents 0755).
    last = str(len(data) - 1)
    pattern, peer_pattern = SELECTIONS[0]
    ours_dir, theirs_dir = tmp_path / "bootmem", tmp_path / "bsdtar"
    theirs_dir.mkdir()
    subprocess.run(
        [require_tool("bsdtar"), "-x", "-f", "-", "-C", str(theirs_dir), peer_pattern],
        input=data[-1], check=True, umask=0o022,
    )  # fmt: skip
    argv = ["extract", "--segment", last, str(image), str(ours_dir), pattern]
    assert _bootmem_bytes(capfdbinary, *argv) == b""
    tree = tree_of(ours_dir, mtimes=True)
    assert tree == tree_of(theirs_dir, mtimes=True)
    files = sorted(path for path, row in tree.items() if row[0] != "d")
    chosen = _bootmem_bytes(capfdbinary, "ls", "--segment", last, str(image), pattern).decode().splitlines()
    assert files == sorted(chosen) and len(files) > 3
    parents = {str(Path(path).parents[i]) for path in files for i in range(len(Path(path).parents) - 1)}
    assert sorted(path for path, row in tree.items() if row[0] == "d") == sorted(parents)
    assert {row[1] for path, row in tree.items() if row[0] == "d"} == {0o755}


def _tmpfs_dir(tmp_path: Path) -> Path | None:
    """A fresh directory on a tmpfs (/dev/shm) when there is one, else None."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return None
    kind = subprocess.run(["stat", "-f", "-c", "%T", str(shm)], capture_output=True, text=True).stdout.strip()
    if kind != "tmpfs":
        return None
    return Path(tempfile.mkdtemp(prefix=f"{tmp_path.name}-", dir=shm))


def _tree_pages(root: Path, depth: int) -> dict[str, int]:
    """KiB of tmpfs pages under each directory of ``root`` at most ``depth`` deep, from the tree
    itself: a regular file takes ceil(size / 4096) pages, a hardlinked one once, a symlink with a
    target of 128 bytes or more a page; directories take none."""
    inodes: dict[str, dict[tuple[int, int], int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        parts = [] if rel == "." else rel.split(os.sep)
        owners = ["."] + ["/".join(parts[: i + 1]) for i in range(min(len(parts), depth))]
        for owner in owners:
            inodes.setdefault(owner, {})
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                pages = -(-st.st_size // 4096)
            elif stat.S_ISLNK(st.st_mode):
                pages = 1 if len(os.readlink(os.path.join(dirpath, name))) >= 128 else 0
            else:
                continue
            for owner in owners:
                inodes[owner][st.st_dev, st.st_ino] = pages
    return {owner: sum(pages.values()) * 4 for owner, pages in inodes.items()}


@pytest.mark.parametrize("name", IMAGES)
def test_du_is_the_tmpfs_pages_of_the_tree_lsinitrd_unpacks(
    name: str, debian_images: Callable[[str], Path], tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    image = debian_images(name)
    shm = _tmpfs_dir(tmp_path)
    root = shm or tmp_path / "lsinitrd"
    try:
        if IMAGES[name][1]:  # the early segment first, as the kernel unpacks it
            _lsinitrd_unpack(image, root, "--unpackearly")
        _lsinitrd_unpack(image, root)
        theirs = _tree_pages(root, 1)
        if shm is not None:  # the kernel's own count: GNU du of the tree on a tmpfs
            du = [require_tool("du"), "-k", "-d", "1", "."]
            out = subprocess.run(du, cwd=root, capture_output=True, text=True, check=True).stdout
            rows = (line.split("\t") for line in out.splitlines())
            assert {path.removeprefix("./"): int(kib) for kib, path in rows} == theirs
    finally:
        if shm is not None:
            shutil.rmtree(shm)
    out = _bootmem_bytes(capfdbinary, "du", str(image), "-d", "1").decode()
    ours = {path: int(kib) for kib, path in (line.split("\t") for line in out.splitlines())}
    assert ours == theirs
    assert ours["."] > 16 * 1024 and set(ours) >= {".", "usr", "conf", "scripts"}
    data = json.loads(_bootmem_bytes(capfdbinary, "du", "--json", str(image), "-d", "1"))
    validate_json(data, "du")
    assert {row["path"]: row["kib"] for row in data["directories"]} == ours


def _lsinitrd_unpack(image: Path, where: Path, option: str = "--unpack") -> None:
    """``lsinitrd --unpack`` (or ``--unpackearly``) of ``image`` into ``where``, made if need be."""
    where.mkdir(exist_ok=True)
    subprocess.run([require_tool("lsinitrd"), option, str(image)], cwd=where, check=True)


def _unpacked(image: Path, where: Path) -> dict[str, tuple[Any, ...]]:
    """:func:`tree_of` the tree ``lsinitrd --unpack`` makes of ``image`` in ``where``."""
    _lsinitrd_unpack(image, where)
    return tree_of(where)


def _file_bytes(tree: dict[str, tuple[Any, ...]], root: Path) -> int:
    """Bytes of regular-file data in ``tree`` (of :func:`tree_of` under ``root``), a hardlinked file once."""
    inodes = {}
    for path, row in tree.items():
        if row[0] == "-":
            st = os.lstat(root / path)
            inodes[st.st_dev, st.st_ino] = st.st_size
    return sum(inodes.values())


@pytest.mark.parametrize("other", ["lz4", "zstd-list"])
def test_diff_is_what_differs_between_the_trees_lsinitrd_unpacks(
    other: str,
    debian_images: Callable[[str], Path],
    tmp_path: Path,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    a, b = debian_images("zstd"), debian_images(other)
    tree_a, tree_b = _unpacked(a, tmp_path / "a"), _unpacked(b, tmp_path / "b")
    status, out, err = _bootmem_fails(capfdbinary, "diff", "--json", str(a), str(b))
    assert status == 1, err
    diff = json.loads(out)
    validate_json(diff, "diff")
    assert not diff["identical"]
    assert [entry["path"] for entry in diff["added"]] == sorted(tree_b.keys() - tree_a.keys())
    assert [entry["path"] for entry in diff["removed"]] == sorted(tree_a.keys() - tree_b.keys())
    differ = sorted(path for path in tree_a.keys() & tree_b.keys() if tree_a[path] != tree_b[path])
    assert [entry["path"] for entry in diff["changed"]] == differ
    # Whichever the compression, the configuration file says it (COMPRESS=): it differs.
    assert "conf/initramfs.conf" in differ
    if other == "lz4":  # the same files, but for that line
        assert diff["added"] == diff["removed"] == [] and differ == ["conf/initramfs.conf"]
    else:  # MODULES=list has only the modules hooks add (and smaller modules.* indexes)
        removed = [entry["path"] for entry in diff["removed"]]
        assert len([path for path in removed if path.endswith(".ko")]) > 10 and diff["added"] == []
    (segment,) = diff["segments"]
    sizes = [s["end"] - s["offset"] for s in (_segments(image, capfdbinary)[0] for image in (a, b))]
    assert segment["compression"] == {"a": "zstd", "b": IMAGES.get(other, ("zstd",))[0]}
    assert [segment["image_bytes"]["a"], segment["image_bytes"]["b"]] == sizes
    assert segment["image_bytes"]["a"] != segment["image_bytes"]["b"]
    files = [_file_bytes(tree_a, tmp_path / "a"), _file_bytes(tree_b, tmp_path / "b")]
    assert [segment["file_bytes"]["a"], segment["file_bytes"]["b"]] == files
    assert diff["total"]["file_bytes"] == {"a": files[0], "b": files[1], "change": files[1] - files[0]}
    text = _bootmem_fails(capfdbinary, "diff", str(a), str(b))[1].decode()
    assert re.search(r"^~ conf/initramfs\.conf: content, size ", text, re.M), text


def _bootmem_piped(image: Path, *argv: str) -> bytes:
    """``cat IMAGE | bootmem ARGV`` (``-`` in ``argv`` being the image): stdin a pipe, not the file."""
    feeder = subprocess.Popen(["cat", str(image)], stdout=subprocess.PIPE)
    try:
        bootmem = [sys.executable, "-m", "bootmem", *argv]
        done = subprocess.run(bootmem, stdin=feeder.stdout, capture_output=True, env=bootmem_env())
    finally:
        assert feeder.stdout is not None
        feeder.stdout.close()
        fed = feeder.wait()
    assert done.returncode == 0, done.stderr
    assert fed == 0  # cat wrote the whole image: bootmem read to the end
    return done.stdout


@pytest.mark.parametrize("name", ["zstd", "microcode+zstd", "uki"])
def test_an_image_from_a_pipe_is_the_image_from_its_file(
    name: str,
    debian_images: Callable[[str], Path],
    debian_uki: tuple[Path, Path],
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    image = debian_uki[0] if name == "uki" else debian_images(name)
    listing = _bootmem_bytes(capfdbinary, "ls", "-l", str(image))
    assert _bootmem_piped(image, "ls", "-l", "-") == listing
    assert len(listing.splitlines()) > 400
    config = _bootmem_piped(image, "cat", "-", "conf/initramfs.conf")
    assert config == _lsinitrd_file(image, "conf/initramfs.conf") and b"COMPRESS=zstd" in config


def test_the_tools_read_a_uki_as_its_initrd(
    debian_uki: tuple[Path, Path],
    debian_amd64: Kernel,  # noqa: F811
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    """cat, extract -O, a selection, du, diff and examine --contents of the UKI are those of
    the image in its .initrd; lsinitrd -f (which objcopy-dumps .initrd) gives the same bytes."""
    uki, initrd = debian_uki
    ko = f"usr/lib/modules/{debian_amd64.version}/kernel/fs/ext4/ext4.ko"
    for path in ("conf/initramfs.conf", ko, "kernel/x86/microcode/GenuineIntel.bin"):
        theirs = _lsinitrd_file(uki, path)
        assert theirs and _bootmem_bytes(capfdbinary, "cat", str(uki), path) == theirs, path
        assert _bootmem_bytes(capfdbinary, "extract", "-O", str(uki), path) == theirs, path
    for argv in (["ls", "usr/lib/modules/**/*.ko"], ["du", "-d", "1"], ["examine", "--contents", "--json"]):
        ours = _bootmem_bytes(capfdbinary, argv[0], str(uki), *argv[1:])
        assert ours == _bootmem_bytes(capfdbinary, argv[0], str(initrd), *argv[1:]) and ours, argv
    diff = _bootmem_bytes(capfdbinary, "diff", "--json", str(uki), str(initrd))  # exit 0: the same
    assert json.loads(diff)["identical"] is True


@pytest.mark.parametrize("name", ["microcode+zstd", "uki"])
def test_json_of_a_real_image_is_what_the_schemas_say(
    name: str,
    debian_images: Callable[[str], Path],
    debian_uki: tuple[Path, Path],
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    image = debian_uki[0] if name == "uki" else debian_images(name)
    listing = json.loads(_bootmem_bytes(capfdbinary, "ls", "--json", str(image)))
    validate_json(listing, "ls")
    names = _bootmem_bytes(capfdbinary, "ls", str(image)).decode().splitlines()
    assert [entry["name"] for entry in listing["entries"]] == names
    contents = json.loads(_bootmem_bytes(capfdbinary, "examine", "--contents", "--json", str(image)))
    validate_json(contents, "examine-contents")
    assert contents["microcode"] == {"GenuineIntel": 4096}
    validate_json(json.loads(_bootmem_bytes(capfdbinary, "du", "--json", str(image))), "du")
    status, out, err = _bootmem_fails(capfdbinary, "diff", "--json", str(debian_images("zstd")), str(image))
    assert status == 1, err
    diff = json.loads(out)
    validate_json(diff, "diff")
    assert [entry["path"] for entry in diff["added"]] == [
        "kernel", "kernel/x86", "kernel/x86/microcode", "kernel/x86/microcode/GenuineIntel.bin"
    ]  # fmt: skip


# --- the write side on a real image ------------------------------------------------------------


def test_create_from_the_extracted_tree_gives_the_same_rootfs(
    debian_images: Callable[[str], Path], tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    # Extracted (as root, owners and modes restored) and archived again: the kernel builds the
    # same tree from both, and lsinitrd lists the same entries,
    lsinitrd = require_tool("lsinitrd")
    image = debian_images("zstd")
    tree = tmp_path / "tree"
    assert _bootmem_bytes(capfdbinary, "extract", str(image), str(tree)) == b""
    again = tmp_path / "again.img"
    assert _bootmem_bytes(capfdbinary, "create", str(tree), "--compress", "zstd", "-o", str(again)) == b""
    status, out, err = _bootmem_fails(capfdbinary, "diff", str(image), str(again))
    assert status == 0 and "added 0 B, removed 0 B, changed +0 B" in out.decode(), (out, err)

    def names(path: Path) -> list[str]:
        rows = subprocess.run([lsinitrd, str(path)], capture_output=True, text=True, check=True).stdout
        return sorted(m[6] for line in rows.splitlines() if (m := _CPIO_TV.match(line)))

    # but for ".": create writes the tree under the directory, not the directory itself, whose
    # mode (a build directory's is often 0700) would become the rootfs's root's.
    assert names(again) == [n for n in names(image) if n != "."] and len(names(again)) > 400


def test_a_segment_appended_to_debians_lz4_image_boots_under_linux(
    debian_images: Callable[[str], Path],
    debian_amd64: Kernel,  # noqa: F811
    tmp_path: Path,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    # mkinitramfs writes lz4 with `lz4 -l`, whose format has no end: appending must end it, or
    # Linux reads the new segment's first bytes as one more lz4 block ("Decoding failed").
    from bootmem.verify.compare import verify_image

    require_tool("qemu-system-x86_64")
    image = tmp_path / "initrd.img"
    image.write_bytes(debian_images("lz4").read_bytes())
    extra = tmp_path / "extra" / "etc" / "bootmem"
    extra.mkdir(parents=True)
    (extra / "appended").write_bytes(b"appended after the lz4 member\n")
    argv = ["create", str(tmp_path / "extra"), "--append", "--compress", "gzip", "-o", str(image)]
    assert _bootmem_bytes(capfdbinary, *argv) == b""
    listed = _bootmem_bytes(capfdbinary, "ls", str(image)).decode().splitlines()
    assert "etc/bootmem/appended" in listed and "usr/bin/busybox" in listed
    verdict = verify_image(image.read_bytes(), debian_amd64, ram=512 << 20)
    assert verdict.linux.unpack_error is None and verdict.linux.freed_k is not None
    assert not verdict.differences, [f"{d.what}: {d.linux} vs {d.model}" for d in verdict.differences]

"""Extraction to a host directory: PEP 706 filters, hostile archives, the kernel's replace rules.

Every hostile case asserts the specific refusal *and* that nothing new appeared next to the
destination (a listing of its parent before and after).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bootmem.errors import (
    AbsoluteLinkError,
    ExtractError,
    FilterError,
    LinkOutsideDestinationError,
    OutsideDestinationError,
    SpecialFileError,
)
from bootmem.initramfs.cpio import CpioWriter, Entry
from bootmem.initramfs.extract import FILTERS, extractall, relative_name
from bootmem.initramfs.select import Selection
from tests.conftest import require_tool

# --- builders and observers (shared with the other test modules of this package) -------------

REG, DIR, LNK = stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK


def member(name: str, kind: int = REG, perm: int = 0o644, **fields: Any) -> Entry:
    fields.setdefault("c_mtime", 1_600_000_000)
    return Entry(name=name, c_mode=kind | perm, **fields)


def archive(*items: Entry | tuple[Entry, bytes] | None, format: str = "newc") -> bytes:
    """A cpio stream: each item an entry (with data), ``None`` closing one archive and starting another."""
    out = io.BytesIO()
    writer = CpioWriter(out, format=format)  # type: ignore[arg-type]
    for item in items:
        if item is None:
            writer.close()
            writer = CpioWriter(out, format=format)  # type: ignore[arg-type]
            continue
        entry, data = item if isinstance(item, tuple) else (item, b"")
        writer.add(entry, data)
    writer.close()
    return out.getvalue()


def reader(data: bytes) -> bytes:
    return data


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """Every path under ``root`` (symlinks not followed): type and content or target."""
    seen: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                seen[rel] = ("l", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                seen[rel] = ("f", hashlib.sha256(Path(path).read_bytes()).hexdigest())
            else:
                seen[rel] = (stat.filemode(st.st_mode)[0], "")
    return seen


def tree_of(root: Path, *, all_mtimes: bool = True) -> dict[str, tuple[Any, ...]]:
    """What the interop tests compare: type, mode, size, sha256, link target, mtime, and the
    hardlink group (the sorted names sharing the inode).  With ``all_mtimes=False`` the mtimes
    of directories and symlinks are left out: GNU cpio 2.13 ``-idm`` does not restore them."""
    groups: dict[tuple[int, int], list[str]] = {}
    stats: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = stats[rel] = os.lstat(path)
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
    tree: dict[str, tuple[Any, ...]] = {}
    for rel, st in sorted(stats.items()):
        path = os.path.join(root, rel)
        kind = stat.filemode(st.st_mode)[0]
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if kind == "-" else None
        target = os.readlink(path) if kind == "l" else None
        size = st.st_size if kind in "-l" else 0
        mode = None if kind == "l" else stat.S_IMODE(st.st_mode)
        rdev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in "cb" else None
        group = tuple(sorted(groups.get((st.st_dev, st.st_ino), [])))
        mtime = int(st.st_mtime) if all_mtimes or kind not in "dl" else None
        tree[rel] = (kind, mode, size, digest, target, rdev, group, mtime)
    return tree


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """``tmp_path/jail/dest``; ``tmp_path/jail/outside`` is a directory an attacker aims at."""
    (tmp_path / "jail" / "outside").mkdir(parents=True)
    (tmp_path / "jail" / "outside" / "victim").write_bytes(b"precious")
    return tmp_path / "jail" / "dest"


def outside_of(dest: Path) -> dict[str, tuple[str, str]]:
    """The listing of ``dest``'s parent, ``dest``'s own subtree left out."""
    return {k: v for k, v in snapshot(dest.parent).items() if k != "dest" and not k.startswith("dest/")}


def refuses(
    dest: Path, data: bytes, error: type[ExtractError], filter: str = "data", *, name: str
) -> ExtractError:
    """Extract ``data`` twice: by default the entry ``name`` is skipped with a reason and the rest
    extracted; with ``strict`` the refusal ``error`` is raised.  Nothing appears outside either time."""
    before = outside_of(dest)
    result = extractall(data, dest, filter=filter)
    assert name in [skipped for skipped, _reason in result.skipped]
    assert all(reason and "\n" not in reason for _name, reason in result.skipped)
    assert outside_of(dest) == before
    strict = dest.parent.parent / "strict"  # outside the jail whose listing is compared
    with pytest.raises(error) as info:
        extractall(data, strict, filter=filter, strict=True)
    assert outside_of(dest) == before
    if isinstance(info.value, FilterError):
        assert isinstance(info.value.member, Entry)
    return info.value


# --- hostile archives ---------------------------------------------------------------------


@pytest.mark.parametrize("filter", list(FILTERS))
@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "./../outside/victim", "/../evil", ".."])
def test_dotdot_escape_is_refused(dest: Path, filter: str, name: str) -> None:
    error = refuses(dest, archive((member(name), b"pwned")), OutsideDestinationError, filter, name=name)
    assert isinstance(error, OutsideDestinationError) and error.member.name == name


@pytest.mark.parametrize("filter", list(FILTERS))
def test_absolute_name_lands_inside(dest: Path, filter: str) -> None:
    before = outside_of(dest)
    extractall(
        reader(archive(member("/etc", DIR, 0o755), (member("/etc/passwd"), b"x"))), dest, filter=filter
    )
    assert (dest / "etc" / "passwd").read_bytes() == b"x"
    assert outside_of(dest) == before


@pytest.mark.parametrize("filter", ["rootfs", "tar", "fully_trusted"])
@pytest.mark.parametrize("target", ["../outside", "/tmp", "."])
def test_symlink_then_write_through_it(dest: Path, filter: str, target: str) -> None:
    # CVE-2015-1197: a symlink to a directory outside, then a file "under" it.  A parent that
    # is a symlink is never followed, even one that stays inside.
    data = archive(member("x", LNK, 0o777, linkname=target), (member("x/evil"), b"pwned"))
    error = refuses(dest, data, ExtractError, filter, name="x/evil")
    assert "'x' is a symlink" in str(error)
    assert os.readlink(dest / "x") == target  # the link itself is harmless and stays
    assert not (dest / "evil").exists()


@pytest.mark.parametrize(
    ("target", "error"), [("../outside", LinkOutsideDestinationError), ("/tmp", AbsoluteLinkError)]
)
def test_data_refuses_the_symlink_itself(dest: Path, target: str, error: type[FilterError]) -> None:
    data = archive(member("x", LNK, 0o777, linkname=target), (member("x/evil"), b"pwned"))
    refused = refuses(dest, data, error, name="x")
    assert isinstance(refused, FilterError) and refused.member.name == "x"
    assert not (dest / "x").is_symlink()  # x/evil made it a plain directory


@pytest.mark.parametrize("filter", list(FILTERS))
def test_file_replacing_a_symlink_is_not_written_through(dest: Path, filter: str) -> None:
    # Under data the link must point inside to be accepted; it still must not be followed.
    target = "y" if filter == "data" else "../outside/victim"
    data = archive(member("y"), member("x", LNK, 0o777, linkname=target), (member("x"), b"new"))
    before = outside_of(dest)
    extractall(reader(data), dest, filter=filter)
    assert outside_of(dest) == before
    assert (dest / "x").read_bytes() == b"new" and not (dest / "x").is_symlink()
    assert (dest / "y").read_bytes() == b""


@pytest.mark.parametrize("filter", ["rootfs", "tar", "fully_trusted"])
@pytest.mark.parametrize("target", ["../outside/victim", "/etc/passwd"])
def test_hardlink_through_a_replaced_name_pointing_outside(dest: Path, filter: str, target: str) -> None:
    # "a" opens a hardlink group, is replaced by a symlink leading outside, then the group's
    # last link carries data: the kernel would link "b" to the symlink and write through it.
    data = archive(
        member("a", c_ino=7, c_nlink=2),
        member("a", LNK, 0o777, linkname=target),
        (member("b", c_ino=7, c_nlink=2), b"pwned"),
    )
    error = refuses(dest, data, ExtractError, filter, name="b")
    assert "'b'" in str(error) and "symlink" in str(error)
    assert Path("/etc/passwd").read_bytes() != b"pwned"


@pytest.mark.parametrize(
    ("kind", "rdev"),
    [(stat.S_IFCHR, (1, 3)), (stat.S_IFBLK, (7, 0)), (stat.S_IFIFO, (0, 0)), (stat.S_IFSOCK, (0, 0))],
)
def test_data_refuses_special_files(dest: Path, kind: int, rdev: tuple[int, int]) -> None:
    data = archive(member("dev/node", kind, 0o600, c_rdevmajor=rdev[0], c_rdevminor=rdev[1]))
    refuses(dest, data, SpecialFileError, name="dev/node")
    assert not os.path.lexists(dest / "dev" / "node")


@pytest.mark.parametrize("name", ["new\nline", "\x1b[31mred\x1b[0m", "tab\there", "bad\udcffbyte"])
def test_odd_names_are_extracted_byte_exact(dest: Path, name: str) -> None:
    extractall(reader(archive((member(name), b"odd"))), dest)
    assert os.listdir(os.fsencode(dest)) == [os.fsencode(name)]
    assert (dest / name).read_bytes() == b"odd"


def test_refusal_is_skipped_and_extraction_goes_on(dest: Path) -> None:
    data = archive((member("ok"), b"1"), (member("../bad"), b"2"), (member("later"), b"3"))
    refuses(dest, data, OutsideDestinationError, name="../bad")
    assert sorted(os.listdir(dest)) == ["later", "ok"]


def test_strict_stops_at_the_first_refusal_and_keeps_what_came_before(dest: Path) -> None:
    data = archive((member("ok"), b"1"), (member("../bad"), b"2"), (member("later"), b"3"))
    with pytest.raises(OutsideDestinationError):
        extractall(data, dest, strict=True)
    assert sorted(os.listdir(dest)) == ["ok"]


def test_unknown_filter(dest: Path) -> None:
    with pytest.raises(ExtractError, match="unknown filter"):
        extractall(reader(archive(member("a"))), dest, filter="nope")


# --- modes and owners ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter", "perm", "expected"),
    [
        ("fully_trusted", 0o4775, 0o4775),
        ("tar", 0o4775, 0o755),
        ("tar", 0o2666, 0o644),
        ("data", 0o4775, 0o755),
        ("data", 0o444, 0o644),  # owner read/write added, no execute added
        ("data", 0o070, 0o640),
    ],
)
def test_file_modes_per_filter(dest: Path, filter: str, perm: int, expected: int) -> None:
    extractall(reader(archive((member("f", perm=perm), b"x"))), dest, filter=filter)
    assert stat.S_IMODE(os.lstat(dest / "f").st_mode) == expected


def test_data_keeps_directory_modes_owner_accessible(dest: Path) -> None:
    extractall(reader(archive(member("d", DIR, 0o2555), member("d/f"))), dest, filter="data")
    assert stat.S_IMODE(os.lstat(dest / "d").st_mode) == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership is restored only as root")
@pytest.mark.parametrize(("filter", "owned"), [("fully_trusted", True), ("tar", True), ("data", False)])
def test_ownership_only_outside_data(dest: Path, filter: str, owned: bool) -> None:
    data = archive(
        (member("f", c_uid=1234, c_gid=4321), b"x"), member("l", LNK, 0o777, linkname="f", c_uid=55)
    )
    extractall(reader(data), dest, filter=filter)
    st, lst = os.lstat(dest / "f"), os.lstat(dest / "l")
    assert ((st.st_uid, st.st_gid) == (1234, 4321)) is owned
    assert (lst.st_uid == 55) is owned


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root")
def test_device_nodes_outside_data(dest: Path) -> None:
    data = archive(
        member("null", stat.S_IFCHR, 0o666, c_rdevmajor=1, c_rdevminor=3), member("p", stat.S_IFIFO)
    )
    extractall(reader(data), dest, filter="fully_trusted")
    st = os.lstat(dest / "null")
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    assert stat.S_ISFIFO(os.lstat(dest / "p").st_mode)


# --- the kernel's rules (init/initramfs.c) ------------------------------------------------


def test_later_file_is_truncated_and_rewritten(dest: Path) -> None:
    extractall(reader(archive((member("f"), b"long content"), None, (member("f"), b"short"))), dest)
    assert (dest / "f").read_bytes() == b"short"


@pytest.mark.parametrize(
    "first",
    [member("p", DIR, 0o755), member("p", LNK, 0o777, linkname="elsewhere"), member("p", stat.S_IFIFO)],
)
def test_existing_path_of_another_type_is_removed(dest: Path, first: Entry) -> None:
    extractall(reader(archive(first, (member("p"), b"file now"))), dest, filter="fully_trusted")
    assert (dest / "p").read_bytes() == b"file now"


def test_directory_replaces_a_file(dest: Path) -> None:
    extractall(reader(archive((member("p"), b"x"), member("p", DIR, 0o755), member("p/q"))), dest)
    assert (dest / "p").is_dir() and (dest / "p" / "q").is_file()


def test_non_empty_directory_is_not_replaced(dest: Path) -> None:
    result = extractall(reader(archive(member("d", DIR, 0o755), member("d/f"), (member("d"), b"x"))), dest)
    assert (dest / "d").is_dir()
    assert [name for name, _ in result.skipped] == ["d"]


def test_gnu_hardlinks_data_on_the_last_link(dest: Path) -> None:
    data = archive(
        member("a", c_ino=9, c_nlink=3),
        member("other", c_ino=10),
        member("b", c_ino=9, c_nlink=3),
        (member("c", c_ino=9, c_nlink=3), b"shared"),
    )
    extractall(reader(data), dest)
    inodes = {os.lstat(dest / n).st_ino for n in "abc"}
    assert len(inodes) == 1 and os.lstat(dest / "a").st_nlink == 3
    assert (dest / "a").read_bytes() == b"shared"


def test_hardlinks_reset_at_each_trailer(dest: Path) -> None:
    data = archive(
        (member("a", c_ino=9, c_nlink=2), b"first"), None, (member("b", c_ino=9, c_nlink=2), b"second")
    )
    extractall(reader(data), dest)
    assert (dest / "a").read_bytes() == b"first" and (dest / "b").read_bytes() == b"second"
    assert os.lstat(dest / "a").st_ino != os.lstat(dest / "b").st_ino


def test_directory_times_and_modes_are_set_after_children(dest: Path) -> None:
    data = archive(member("d", DIR, 0o555, c_mtime=1000), (member("d/f", c_mtime=2000), b"x"))
    extractall(reader(data), dest, filter="fully_trusted")
    st = os.lstat(dest / "d")
    assert (int(st.st_mtime), stat.S_IMODE(st.st_mode)) == (1000, 0o555)
    assert int(os.lstat(dest / "d" / "f").st_mtime) == 2000


def test_missing_parents_are_created(dest: Path) -> None:
    extractall(reader(archive((member("a/b/c"), b"deep"))), dest)
    assert (dest / "a" / "b" / "c").read_bytes() == b"deep"


def test_parent_that_is_a_file_skips_the_entry(dest: Path) -> None:
    result = extractall(reader(archive((member("a"), b"x"), (member("a/b"), b"y"))), dest)
    assert (dest / "a").read_bytes() == b"x"
    assert [name for name, _ in result.skipped] == ["a/b"]


def test_symlink_to_a_directory_inside_is_not_followed(dest: Path) -> None:
    # usr-merge images: lib -> usr/lib, then (rarely) entries under lib/.  The kernel follows
    # it; extraction never writes through a symlink, so the entry is skipped and said so.
    data = archive(
        member("usr", DIR, 0o755),
        member("usr/lib", DIR, 0o755),
        member("lib", LNK, 0o777, linkname="usr/lib"),
        (member("lib/x"), b"x"),
    )
    result = extractall(reader(data), dest)
    assert result.skipped == [("lib/x", "parent 'lib' is a symlink, which extraction does not follow")]
    assert os.listdir(dest / "usr" / "lib") == []


def test_members_and_progress(dest: Path) -> None:
    data = archive((member("a"), b"aa"), (member("b"), b"bbb"), (member("c"), b"c"))
    seen: list[tuple[str, int]] = []
    result = extractall(
        reader(data), dest, members=["a", "c"], progress=lambda e, n: seen.append((e.name, n))
    )
    assert sorted(os.listdir(dest)) == ["a", "c"]
    assert seen == [("a", 2), ("c", 1)]
    assert (result.entries, result.bytes) == (2, 3)


def test_custom_filter_may_skip_or_rename(dest: Path) -> None:
    def only_upper(m: Entry, _dest: str) -> Entry | None:
        return m.replace(name=m.name.upper()) if m.name != "skip" else None

    extractall(reader(archive((member("a"), b"1"), (member("skip"), b"2"))), dest, filter=only_upper)
    assert os.listdir(dest) == ["A"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("/a", "a"), ("./a/b", "a/b"), ("//./a", "a"), ("./", "."), ("a/", "a"), ("/", ".")],
)
def test_relative_name(name: str, expected: str) -> None:
    assert relative_name(name) == expected


# --- root filesystems, as root and not ----------------------------------------------------


def _extract_as(user: str, image: bytes, where: Path) -> subprocess.CompletedProcess[str]:
    """``bootmem extract`` of ``image`` into ``where/dest``, run as ``user`` (root or nobody)."""
    where.mkdir(mode=0o777)
    where.chmod(0o777)
    (where / "img").write_bytes(image)
    (where / "img").chmod(0o644)
    argv = [sys.executable, "-m", "bootmem", "extract", str(where / "img"), str(where / "dest")]
    if user == "nobody":
        argv = [require_tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root")
@pytest.mark.parametrize("user", ["root", "nobody"])
@pytest.mark.parametrize("which", ["example", "distro"])
def test_root_filesystems_extract_completely_by_default(
    user: str, which: str, distro_image: Callable[..., Any]
) -> None:
    from bootmem import initramfs
    from bootmem.kernel.example import example_image

    image = example_image() if which == "example" else distro_image().data
    with initramfs.open(image) as img:
        members = img.getmembers()
    where = Path(tempfile.mkdtemp(prefix="bootmem-extract-")) / "work"
    where.parent.chmod(0o755)  # reachable by nobody, unlike tmp_path
    try:
        done = _extract_as(user, image, where)
        nodes = [m for m in members if m.ischr() or m.isblk()]
        assert done.returncode == 0, done.stderr
        if user == "nobody" and nodes:
            warning = f"{len(nodes)} character or block device node(s) not created: that needs root"
            assert done.stderr == f"bootmem: warning: {warning}\n"
        else:
            assert done.stderr == ""
        expected = {relative_name(m.name) for m in members} - {"."}
        if user == "nobody":
            expected -= {relative_name(m.name) for m in nodes}
        missing = [name for name in expected if not os.path.lexists(where / "dest" / name)]
        assert missing == []
    finally:
        shutil.rmtree(where.parent)


# --- the kernel's rules, on a host directory ------------------------------------------------

#: Cases of the rules table whose outcome is rootfs's own limits (tmpfs's size and inodes,
#: ramfs), which a host directory does not have.
_LIMIT_CASES = {
    "write-error-finishes-the-entry-then-stops",
    "rootfs-is-ramfs-with-root",
    "inode-limit-drops-entries-silently",
}


#: Paths Linux lacks that extraction makes: missing parents (as ``cpio -d`` does) and the
#: entries under them.  A file inside is extracted, but its data is not judged by the kernel's
#: 070702 sum, which Linux never reads for a file it could not open.
_PARENTS_MADE = {
    "crc-checked-only-when-opened": {"missing-dir"},
    "missing-parent-drops-the-entry": {"a/x", "s", "m"},
}


#: Cases whose root's mode is the filesystem's own (no "." entry): the destination is the
#: user's directory, whose mode extraction leaves as it is.
_ROOT_NOT_ARCHIVED = {"root-mode-of-tmpfs", "rootfs-is-ramfs-with-root"}


def _rule_cases() -> list[Any]:
    from tests.kernel.unpack_rules import CASES

    return [pytest.param(c, id=c.id) for c in CASES if c.id not in _LIMIT_CASES]


@pytest.mark.parametrize("case", _rule_cases())
def test_extraction_follows_the_kernel_rules(case: Any, tmp_path: Path) -> None:
    # Extraction and the model run one state machine (bootmem.kernel.unpack): the rules table's
    # images extract to what Linux's rootfs holds, as far as the host can make it.
    from tests.kernel.unpack_rules import Seen, differences

    dest = tmp_path / "out"
    result = extractall(case.image, dest, filter="fully_trusted")
    assert (result.error.message if result.error else None) == case.message, case.rule
    root = os.geteuid() == 0
    for name, want in case.paths.items():
        path = dest / name
        if want.kind == "l" and want.target == "":
            # Linux makes an empty symlink; symlink(2) on a host refuses it, and says so.
            assert not path.is_symlink() and any(n == name for n, _ in result.skipped)
            continue
        if want.kind in "cb" and not root:
            assert result.nodes_skipped
            continue
        st = os.lstat(path)
        kind = _kind(st.st_mode)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if kind == "f" else None
        target = os.readlink(path) if kind == "l" else None
        rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
        got = Seen(kind, digest, target, st.st_uid, rdev, st.st_size, stat.S_IMODE(st.st_mode))
        # Owners and device numbers only as root; the root's mode only where the image has it.
        skip = () if root else ("uid", "rdev")
        if not name and case.id in _ROOT_NOT_ARCHIVED:
            skip += ("mode",)
        assert not differences(want, got, skip), (name, differences(want, got, skip))
    for name in case.absent:
        if name in _PARENTS_MADE.get(case.id, ()):
            assert os.path.lexists(dest / name), name
            assert not [n for n, _ in result.skipped if n.split("/")[0] == name.split("/")[0]], name
            continue
        assert not os.path.lexists(dest / name), f"{name!r} exists ({case.rule})"


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISREG, "f"),
        (stat.S_ISDIR, "d"),
        (stat.S_ISLNK, "l"),
        (stat.S_ISCHR, "c"),
        (stat.S_ISBLK, "b"),
        (stat.S_ISFIFO, "p"),
        (stat.S_ISSOCK, "s"),
    ):
        if test(mode):
            return kind
    return "?"


def test_crc_sum_judged_for_a_selected_file_in_an_archived_directory(tmp_path: Path) -> None:
    # The directory is in the archive (Linux makes it) but not selected: extraction makes it as
    # a parent, and the file's bad 070702 sum is still Linux's "bad data checksum".
    from tests.kernel.conftest import archive, d, f

    data = bytearray(archive(d("dir"), f("dir/x", b"data"), format="crc"))
    at = data.index(b"dir/x") - 110 + 102
    data[at : at + 8] = b"0000DEAD"
    result = extractall(bytes(data), tmp_path / "out", members=["dir/x"])
    assert result.error is not None and result.error.message == "bad data checksum"


# --- a hardlink chosen without the name that carries its data ---------------------------------


def _gnu_hardlink_pair(tmp_path: Path) -> tuple[bytes, str, str]:
    """``find . | cpio -o -H newc`` over a file and its hardlink: the archive, the name without
    the data and the name with it (GNU cpio writes the data on the set's last name)."""
    cpio = require_tool("cpio")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"the inode's data\n")
    os.link(src / "a", src / "b")
    names = subprocess.run(["find", "."], cwd=src, capture_output=True, text=True, check=True).stdout
    data = subprocess.run(
        [cpio, "-o", "-H", "newc", "--quiet"], cwd=src, input=names.encode(), capture_output=True, check=True
    ).stdout
    from bootmem.initramfs.cpio import CpioReader

    sizes = {e.name.removeprefix("./"): e.c_filesize for e in CpioReader(io.BytesIO(data)) if e.isreg()}
    empty, full = sorted(sizes, key=lambda n: sizes[n])
    assert (sizes[empty], sizes[full]) == (0, 17)
    return data, empty, full


@pytest.mark.peer
def test_hardlink_selected_without_its_data_name_gets_the_data_as_gnu_cpio_gives_it(tmp_path: Path) -> None:
    # GNU `cpio -idm PATTERN` gives the chosen name the inode's data (bsdtar 3.6 does not: it
    # extracts the name without data empty, and fails on the other as a link to a missing
    # file); bootmem follows GNU cpio.
    data, empty, full = _gnu_hardlink_pair(tmp_path)
    for name in (empty, full):
        gnu = tmp_path / f"gnu-{name}"
        gnu.mkdir()
        subprocess.run([require_tool("cpio"), "-idm", "--quiet", name], cwd=gnu, input=data, check=True)
        ours = tmp_path / f"ours-{name}"
        result = extractall(data, ours, selection=Selection([name]))
        assert (result.entries, result.bytes, result.skipped) == (1, 0 if name == empty else 17, [])
        assert os.listdir(ours) == os.listdir(gnu) == [name]  # the private directory is gone
        assert (ours / name).read_bytes() == (gnu / name).read_bytes() == b"the inode's data\n"
        assert os.lstat(ours / name).st_nlink == 1
        assert int(os.lstat(ours / name).st_mtime) == int(os.lstat(gnu / name).st_mtime)


@pytest.mark.peer
def test_hardlink_without_its_data_name_to_stdout_and_cat(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    from bootmem.cli import main

    data, empty, _full = _gnu_hardlink_pair(tmp_path)
    image = tmp_path / "x.cpio"
    image.write_bytes(data)
    for argv in (["extract", "-O", str(image), empty], ["cat", str(image), empty]):
        assert main(argv) == 0
        assert capfdbinary.readouterr().out == b"the inode's data\n", argv


def test_hardlink_data_on_the_first_name_reaches_a_later_selected_name(dest: Path) -> None:
    # The data first, then the chosen name with none (GNU cpio 2.13 makes this one empty: it
    # links only to names it extracted).  Three names, so "c" is never made, nor "a".
    data = archive(
        (member("a", c_ino=9, c_nlink=3), b"shared"),
        member("b", c_ino=9, c_nlink=3),
        member("c", c_ino=9, c_nlink=3),
    )
    result = extractall(data, dest, selection=Selection(["b"]))
    assert os.listdir(dest) == ["b"] and (dest / "b").read_bytes() == b"shared"
    assert os.lstat(dest / "b").st_nlink == 1 and (result.entries, result.skipped) == (1, [])


def test_hardlink_data_from_an_unselected_name_passes_the_filter(dest: Path) -> None:
    # The unselected name's mode reaches the shared inode (the kernel's open chmods it), so it
    # goes through the filter first: no setuid from it under `tar`.
    data = archive(member("a", c_ino=9, c_nlink=2), (member("b", perm=0o4777, c_ino=9, c_nlink=2), b"x"))
    extractall(data, dest, selection=Selection(["a"]), filter="tar")
    assert (dest / "a").read_bytes() == b"x"
    assert stat.S_IMODE(os.lstat(dest / "a").st_mode) == 0o755


def test_hardlink_data_not_written_for_a_set_with_no_selected_name(dest: Path) -> None:
    # Data on the last name (GNU's order) and nothing of the set chosen: nothing is written.
    data = archive(member("a", c_ino=9, c_nlink=2), (member("b", c_ino=9, c_nlink=2), b"x" * 4096))
    seen: list[str] = []
    real_open = os.open

    def spy(path: Any, *args: Any, **kwargs: Any) -> int:
        seen.append(os.fsdecode(path))
        return real_open(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "open", spy)
        extractall(data + archive((member("other"), b"o")), dest, selection=Selection(["other"]))
    assert not any(".bootmem-links" in p for p in seen)
    assert os.listdir(dest) == ["other"]

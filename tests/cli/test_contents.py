"""`bootmem cat`, `bootmem du` and the selection options of `bootmem ls`, against real archives."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from bootmem.cli import main
from bootmem.initramfs.cpio import Entry
from bootmem.units import PAGE_SIZE, align_up
from tests.conftest import require_tool, validate_json
from tests.initramfs import corpus


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus.build_tree(tmp_path_factory.mktemp("contents") / "root", files=80, big_mb=1)


@pytest.fixture(scope="module")
def image(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "initrd.img"
    path.write_bytes(corpus.distro_image(tree, compression="zstd").data)
    return path


def _cat(capfdbinary: pytest.CaptureFixture[bytes], image: Path, *paths: str) -> tuple[int, bytes]:
    status = main(["cat", str(image), *paths])
    return status, capfdbinary.readouterr().out


def _cat_err(capfdbinary: pytest.CaptureFixture[bytes], image: Path, *paths: str) -> tuple[int, bytes, str]:
    status = main(["cat", str(image), *paths])
    out, err = capfdbinary.readouterr()
    return status, out, err.decode()


@pytest.mark.peer
@pytest.mark.parametrize(
    "path",
    [
        "init",
        "usr/lib/firmware/i915/big.bin",
        "usr/bin/sh",  # a hardlink: GNU cpio writes the data on the last link only
        "usr/bin/busybox",
        "bin/sh",  # through the symlink bin -> usr/bin
        "lib/firmware/i915/big.bin",  # through the symlink lib -> usr/lib
        "/etc/udev/rules.d/99-copy.rules",
        "./dir with spaces/file name.txt",
    ],
)
def test_cat_prints_what_the_tree_holds(
    path: str, tree: Path, image: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    status, out = _cat(capfdbinary, image, path)
    assert status == 0
    assert out == (tree / path.lstrip("./")).read_bytes()


@pytest.mark.peer
def test_cat_agrees_with_bsdtar(
    tree: Path, capfdbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    bsdtar = require_tool("bsdtar")
    archive = tmp_path / "main.cpio"
    archive.write_bytes(corpus.peer_archive(tree, "bsdcpio"))
    # Not a hardlink: bsdtar prints nothing for a link without data, where the kernel's tree
    # holds the inode's data.
    for name in ("init", "usr/lib/firmware/i915/big.bin", "etc/udev/rules.d/99-copy.rules"):
        want = subprocess.run([bsdtar, "-xOf", str(archive), name], capture_output=True, check=True).stdout
        status, out = _cat(capfdbinary, archive, name)
        assert (status, out) == (0, want)


def test_cat_several_files_in_the_order_asked(
    tree: Path, image: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    status, out = _cat(capfdbinary, image, "usr/bin/busybox", "init", "usr/bin/busybox")
    busybox = (tree / "usr/bin/busybox").read_bytes()
    assert status == 0
    assert out == busybox + (tree / "init").read_bytes() + busybox


def test_cat_later_segments_win(tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    etc = (Entry(name="etc", c_mode=stat.S_IFDIR | 0o755), b"")
    first = corpus.archive(etc, (Entry(name="etc/motd", c_mode=stat.S_IFREG | 0o644, c_filesize=3), b"old"))
    second = corpus.archive((Entry(name="./etc/motd", c_mode=stat.S_IFREG | 0o644, c_filesize=3), b"new"))
    orphan = corpus.archive((Entry(name="var/motd", c_mode=stat.S_IFREG | 0o644, c_filesize=3), b"new"))
    path = tmp_path / "two.img"
    path.write_bytes(first + second + orphan)
    assert _cat(capfdbinary, path, "etc/motd") == (0, b"new")
    # The kernel cannot create var/motd without var: the rootfs does not hold it.
    assert _cat(capfdbinary, path, "var/motd") == (1, b"")


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("no/such/file", "'no/such/file' is not in the image"),
        ("usr", "is a directory"),
        ("dangling", "followed to 'nowhere'"),
    ],
)
def test_cat_names_what_it_cannot_print(
    path: str, words: str, image: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    status, out, err = _cat_err(capfdbinary, image, path)
    assert status == 1
    assert out == b""
    assert words in err


def _du(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, int]:
    assert main(["du", *argv]) == 0
    rows = [line.split("\t", 1) for line in capsys.readouterr().out.splitlines()]
    return {path: int(size) for size, path in rows}


@pytest.mark.peer
def test_du_agrees_with_the_tree_gnu_cpio_extracts(
    tree: Path, image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cpio = require_tool("cpio")
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run([cpio, "-idm", "--quiet", "--no-absolute-filenames"], cwd=dest,
                   input=corpus.peer_archive(tree, "gnu-newc"), check=True)  # fmt: skip
    want_bytes: dict[str, int] = defaultdict(int)
    want_pages: dict[str, int] = defaultdict(int)
    seen: set[int] = set()
    for dirpath, _dirs, files in os.walk(dest):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if not stat.S_ISREG(st.st_mode) or st.st_ino in seen:
                continue
            seen.add(st.st_ino)
            rel = os.path.relpath(dirpath, dest)
            parts = [] if rel == "." else rel.split(os.sep)
            for depth in range(len(parts) + 1):
                where = "/".join(parts[:depth]) or "."
                want_bytes[where] += st.st_size
                want_pages[where] += align_up(st.st_size, PAGE_SIZE) // PAGE_SIZE
    got_bytes = _du(capsys, str(image), "--apparent-size")
    got_kib = _du(capsys, str(image))
    microcode = len(b"\x01\x00\x00\x00microcode update" * 512)
    assert got_bytes["."] == want_bytes["."] + microcode
    for where in ("usr", "usr/bin", "etc/udev/rules.d", "usr/lib/firmware/i915"):
        assert got_bytes[where] == want_bytes[where], where
        assert got_kib[where] == want_pages[where] * PAGE_SIZE // 1024, where


def test_du_depth_and_json(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _du(capsys, str(image), "-d", "1")
    assert all(path == "." or "/" not in path for path in rows)
    assert list(rows)[-1] == "."  # a directory comes after everything under it
    assert main(["du", str(image), "--json", "-d", "0"]) == 0
    data = json.loads(capsys.readouterr().out)
    validate_json(data, "du")
    assert [row["path"] for row in data["directories"]] == ["."]
    assert data["directories"][0]["kib"] == data["directories"][0]["pages"] * PAGE_SIZE // 1024 > 0


def test_du_leaves_out_an_entry_whose_parent_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Linux drops "a/x" (no "a" when it comes): du counts the tree Linux builds, ls lists entries.
    image = tmp_path / "x.cpio"
    image.write_bytes(
        corpus.archive(corpus.f("a/x", b"lost" * 1000), corpus.d("a"), corpus.f("a/y", b"kept"))
    )
    assert _du(capsys, str(image), "--apparent-size") == {"a": 4, ".": 4}
    assert _ls(capsys, str(image)) == ["a/x", "a", "a/y"]


def _ls(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    main(["ls", *argv])
    return capsys.readouterr().out.splitlines()


def test_ls_patterns_select_paths_and_what_is_under_them(
    image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    modules = _ls(capsys, str(image), "usr/lib/modules/**/*.ko")
    assert modules and all(name.startswith("usr/lib/modules/") and name.endswith(".ko") for name in modules)
    udev = _ls(capsys, str(image), "etc/udev")
    assert udev[:2] == ["etc/udev", "etc/udev/rules.d"]
    assert all(name.startswith("etc/udev/rules.d/") for name in udev[2:])
    assert {"etc/udev/rules.d/50-udev-default.rules", "etc/udev/rules.d/99-copy.rules"} <= set(udev)
    early = _ls(capsys, str(image), "--segment", "0")
    assert early[-1] == corpus.MICROCODE_NAME
    assert all(name == "." or name.startswith("kernel") for name in early)


def test_ls_sort_size_top(tree: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    top = _ls(capsys, str(image), "--sort", "size", "--top", "2")
    assert top == ["usr/lib/firmware/i915/big.bin", "usr/lib/firmware/i915/half.bin"]


def test_ls_says_what_matched_nothing(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", str(image), "etc", "nothing/*", "--segment", "0,7"]) == 1
    err = capsys.readouterr().err
    assert "'nothing/*'" in err and "segment 7" in err


def _extract(capfdbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, bytes, str]:
    status = main(["extract", *argv])
    out, err = capfdbinary.readouterr()
    return status, out, err.decode()


def _files_under(root: Path) -> set[str]:
    return {
        os.path.relpath(os.path.join(dirpath, name), root)
        for dirpath, _dirs, names in os.walk(root)
        for name in names
    }


def test_extract_writes_only_the_chosen_entries(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patterns = ("usr/lib/modules/**/*.ko", "etc/udev")
    chosen = _ls(capsys, str(image), *patterns)
    dest = tmp_path / "x"
    assert main(["extract", str(image), str(dest), *patterns]) == 0
    assert _files_under(dest) == {name for name in chosen if (dest / name).is_file()}
    assert {name for name in chosen if name.endswith(".ko")} <= _files_under(dest)
    assert not (dest / "init").exists() and not (dest / "usr/bin").exists()


def test_extract_segment_writes_that_segment_only(image: Path, tmp_path: Path) -> None:
    assert main(["extract", str(image), str(tmp_path / "early"), "--segment", "0"]) == 0
    assert _files_under(tmp_path / "early") == {corpus.MICROCODE_NAME}


def test_extract_names_patterns_that_matched_nothing(
    image: Path, tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    status, _out, err = _extract(capfdbinary, str(image), str(tmp_path / "x"), "init", "no/such*")
    assert status == 1 and err.count("\n") == 1 and "'no/such*'" in err
    assert (tmp_path / "x" / "init").is_file()


@pytest.mark.peer
def test_extract_to_stdout_agrees_with_bsdtar(
    tree: Path, capfdbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    bsdtar = require_tool("bsdtar")
    archive = tmp_path / "main.cpio"
    archive.write_bytes(corpus.peer_archive(tree, "bsdcpio"))
    # Directories select what is under them for both; the hardlinked rules are written once.
    for chosen in (["init"], ["usr/lib/firmware", "etc/udev", "init"], ["usr/lib/x86_64-linux-gnu"]):
        want = subprocess.run([bsdtar, "-xOf", str(archive), *chosen], capture_output=True, check=True).stdout
        assert want
        assert _extract(capfdbinary, "-O", str(archive), *chosen)[:2] == (0, want), chosen


def test_extract_to_stdout_globs_segments_and_later_entries_win(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    etc = corpus.d("etc")
    first = corpus.archive((etc, b""), corpus.f("etc/motd", b"old "), corpus.f("etc/issue", b"issue "))
    second = corpus.archive(corpus.f("./etc/motd", b"new "), corpus.f("etc/hosts", b"hosts "))
    path = tmp_path / "two.img"
    path.write_bytes(first + corpus.peer_compress(second, "gzip"))
    assert _extract(capfdbinary, "-O", str(path), "etc/*")[:2] == (0, b"issue new hosts ")
    assert _extract(capfdbinary, "-O", str(path), "etc/m*", "--segment", "0")[:2] == (0, b"old ")
    uki = tmp_path / "uki.efi"
    uki.write_bytes(corpus.pe_with_initrd(first + second))
    assert _extract(capfdbinary, "-O", str(uki), "etc/motd")[:2] == (0, b"new ")
    status, out, err = _extract(capfdbinary, "-O", str(path), "etc/hosts", "--segment", "0,5")
    assert (status, out) == (1, b"") and "'etc/hosts'" in err and "segment 5" in err
    status, _out, err = _extract(capfdbinary, str(path))
    assert status == 1 and "DIR" in err


def test_a_pattern_only_in_other_segments_names_the_segments_looked_in(
    image: Path, tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    # The microcode is in segment 0: looked for in segment 1 alone, it is not "nothing in the
    # image", and the message says where it looked.
    for argv in (
        ["ls", str(image), "--segment", "1", "kernel/**"],
        ["extract", "-O", str(image), "--segment", "1", "kernel/**"],
        ["extract", str(image), str(tmp_path / "x"), "--segment", "1", "kernel/**"],
    ):
        assert main(argv) == 1
        err = capfdbinary.readouterr().err.decode()
        assert f"nothing in segment 1 of {str(image)!r} matches 'kernel/**'" in err or (
            "nothing in segment 1 of the image matches 'kernel/**'" in err
        ), err

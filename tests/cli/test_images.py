"""`bootmem extract`, `bootmem create` and `bootmem diff`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bootmem.cli import main
from tests.conftest import validate_json
from tests.initramfs import corpus
from tests.initramfs.test_extract import DIR, LNK, archive, member, outside_of, tree_of


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "fstab").write_text("proc /proc proc\n")
    os.symlink("etc/fstab", root / "link")
    return root


def test_create_extract_round_trip(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    early = tmp_path / "early"
    early.mkdir()
    (early / "ucode").write_bytes(b"u")
    img = tmp_path / "img"
    assert main(["create", str(tree), "-o", str(img), "--compress", "zstd:3", "--early", str(early)]) == 0
    assert main(["extract", str(img), str(tmp_path / "out")]) == 0
    assert main(["extract", str(img), str(tmp_path / "main"), "--segment", "1"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == ""  # quiet when stderr is not a terminal
    assert tree_of(tmp_path / "main") == tree_of(tree)
    assert sorted(os.listdir(tmp_path / "out")) == ["etc", "link", "ucode"]


def test_create_from_manifest(tmp_path: Path) -> None:
    (tmp_path / "m").write_text("dir /bin 0755 0 0\nslink /init /bin/sh 0777 0 0\n")
    assert (
        main(["create", "--manifest", str(tmp_path / "m"), "-o", str(tmp_path / "img"), "--format", "crc"])
        == 0
    )
    assert (tmp_path / "img").read_bytes().startswith(b"070702")


def test_create_warns_of_what_the_kernel_would_drop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m").write_text("dir /bin 0755 0 0\nslink /sbin/init /bin/sh 0777 0 0\ndir /bin 0700 0 0\n")
    assert main(["create", "--manifest", str(tmp_path / "m"), "-o", str(tmp_path / "img")]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"bootmem: warning: {tmp_path / 'm'}:2: 'sbin/init': its directory 'sbin' is not created before it, "
        "so the kernel drops it silently",
        f"bootmem: warning: {tmp_path / 'm'}:3: 'bin' again (line 1): the later entry replaces it",
    ]
    assert (tmp_path / "img").read_bytes().startswith(b"070701")


def test_create_usage_errors(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create", "-o", str(tmp_path / "img")]) == 1
    (tmp_path / "m").write_text("dir /bin 0755 0 0\nbogus line\n")
    assert main(["create", "--manifest", str(tmp_path / "m"), "-o", str(tmp_path / "img")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert (
        len(err) == 2
        and err[1]
        == f"bootmem: error: {tmp_path / 'm'}:2: unknown type 'bogus' (file, dir, nod, slink, pipe, sock)"
    )
    assert not (tmp_path / "img").exists()


def test_create_to_stdout(tree: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bootmem", "create", str(tree), "-o", "-"], capture_output=True, check=True
    )
    assert done.stdout.startswith(b"070701") and done.stderr == b""


@pytest.mark.parametrize(
    ("items", "filter", "shown"),
    [
        (((member("../\x1b[2Jevil\n"), b"x"),), "rootfs", "'../\\x1b[2Jevil\\n'"),
        (
            (member("dev", DIR, 0o755), member("dev/null", 0o020000, 0o666, c_rdevmajor=1, c_rdevminor=3)),
            "data",
            "'dev/null' is a special file",
        ),
        (
            (member("x", LNK, 0o777, linkname="/tmp"), (member("x/evil"), b"x")),
            "data",
            "absolute path '/tmp'",
        ),
        (
            (member("x", LNK, 0o777, linkname="/tmp"), (member("x/evil"), b"x")),
            "rootfs",
            "parent 'x' is a symlink",
        ),
    ],
)
def test_extract_refusal_is_one_warning_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], items: tuple, filter: str, shown: str
) -> None:
    img = tmp_path / "jail" / "img"
    img.parent.mkdir()
    img.write_bytes(archive(*items, (member("after"), b"goes on")))
    dest = tmp_path / "jail" / "dest"
    before = outside_of(dest)
    assert main(["extract", str(img), str(dest), "--filter", filter]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bootmem: warning: skipped ") and shown in err, err
    assert "\x1b" not in err
    assert outside_of(dest) == before
    assert (dest / "after").read_bytes() == b"goes on"


def test_extract_strict_stops_at_the_first_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "img"
    img.write_bytes(archive((member("../evil"), b"x"), (member("after"), b"not reached")))
    assert main(["extract", str(img), str(tmp_path / "dest"), "--strict"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bootmem: error: ") and "'../evil'" in err
    assert not (tmp_path / "dest" / "after").exists()


def test_extract_default_keeps_absolute_symlinks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A Debian initramfs: etc/mtab -> /proc/mounts stopped the old default ('data') at once.
    img = tmp_path / "img"
    img.write_bytes(
        archive(
            member("etc", DIR, 0o755),
            member("etc/mtab", LNK, 0o777, linkname="/proc/mounts"),
            member("bin", LNK, 0o777, linkname="usr/bin"),
            (member("init", perm=0o755), b"#!/bin/sh\n"),
        )
    )
    assert main(["extract", str(img), str(tmp_path / "dest")]) == 0
    assert capsys.readouterr().err == ""
    assert os.readlink(tmp_path / "dest" / "etc" / "mtab") == "/proc/mounts"
    assert os.readlink(tmp_path / "dest" / "bin") == "usr/bin"


def test_extract_a_segment_the_image_lacks_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "img"
    img.write_bytes(archive((member("a"), b"x")))
    assert main(["extract", str(img), str(tmp_path / "dest"), "--segment", "99"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "segment 99" in err and "0 to 0" in err


def test_extract_bad_image_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "img").write_bytes(b"070707" + b"0" * 200)
    assert main(["extract", str(tmp_path / "img"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "incorrect cpio method used" in err


def test_extract_odd_name_is_written_exactly(tmp_path: Path) -> None:
    (tmp_path / "img").write_bytes(archive((member("a\nb\x1b[0m"), b"odd")))
    assert main(["extract", str(tmp_path / "img"), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "a\nb\x1b[0m").read_bytes() == b"odd"


def test_diff_exit_status_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.write_bytes(
        archive(member("d", DIR, 0o755), (member("f"), b"1"), (member("new\nline", perm=0o600), b""))
    )
    b.write_bytes(archive((member("f", perm=0o600), b"2"), member("s", LNK, 0o777, linkname="f")))
    assert main(["diff", str(a), str(a)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["diff", str(a), str(b)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "- d",
        "- new\\nline (0 B)",
        "+ s",
        "~ f: content, mode 0644 -> 0600",
        "segment 0 (none): image 472 B -> 356 B (-116 B), files 1 B -> 1 B (+0 B)",
        "total: image 472 B -> 356 B (-116 B), files 1 B -> 1 B (+0 B): added 0 B, removed 0 B, changed +0 B",
    ]
    assert main(["diff", str(a), str(b), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    validate_json(doc, "diff")
    assert [p["path"] for p in doc["removed"]] == ["d", "new\nline"] and doc["added"][0]["path"] == "s"
    assert main(["diff", str(a), str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_diff_answers_why_the_image_grew(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    early = archive((member("ucode"), b"u" * 100))
    old, new = tmp_path / "old.img", tmp_path / "new.img"
    old.write_bytes(
        early + corpus.peer_compress(archive((member("a.ko"), b"a" * 3000), (member("b"), b"b")), "gzip")
    )
    main_b = archive(
        (member("a.ko"), b"a" * 3000), (member("c.ko"), os.urandom(9000)), (member("d.ko"), b"d" * 20)
    )
    new.write_bytes(early + corpus.peer_compress(main_b, "xz"))
    assert main(["diff", str(old), str(new), "--sort", "size"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["+ c.ko (8.8 KiB)", "+ d.ko (20 B)", "- b (1 B)"]
    assert lines[3] == "segment 0 (none): image 340 B -> 340 B (+0 B), files 100 B -> 100 B (+0 B)"
    assert (
        lines[4].startswith("segment 1 (gzip -> xz): image ")
        and "files 2.9 KiB -> 11.7 KiB (+8.8 KiB)" in lines[4]
    )
    assert lines[5].endswith("added 8.8 KiB, removed 1 B, changed +0 B")
    assert main(["diff", str(old), str(new), "*.ko", "--segment", "1", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    validate_json(doc, "diff")
    assert [p["path"] for p in doc["added"]] == ["c.ko", "d.ko"] and doc["removed"] == []
    assert [s["index"] for s in doc["segments"]] == [1]
    assert doc["total"]["file_bytes"]["change"] == 9020
    assert main(["diff", str(old), str(new), "nothing*", "--segment", "0,4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nothing*'" in err and "segment 4" in err


def test_help_documents_the_exit_status_and_filters() -> None:
    diff_help = subprocess.run(
        [sys.executable, "-m", "bootmem", "diff", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "0 when the trees are the same, 1 when they differ, 2 on trouble" in " ".join(diff_help.split())
    extract_help = subprocess.run(
        [sys.executable, "-m", "bootmem", "extract", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "A refused entry is skipped with a one-line warning" in " ".join(extract_help.split())
    assert "(--strict stops at the first)" in " ".join(extract_help.split())


def test_create_zstd_threads(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for spec in ("zstd:19,threads=2", "zstd:19,threads=0", "zstd:19"):
        img = tmp_path / spec
        assert main(["create", str(tree), "-o", str(img), "--compress", spec]) == 0
        assert main(["extract", str(img), str(tmp_path / f"out-{spec}")]) == 0
        assert tree_of(tmp_path / f"out-{spec}") == tree_of(tree)
    assert main(["create", str(tree), "-o", str(tmp_path / "bad"), "--compress", "zstd:19,threads=many"]) == 1
    assert capsys.readouterr().err == "bootmem: error: bad thread count 'many' in 'zstd:19,threads=many'\n"
    assert not (tmp_path / "bad").exists()


def test_create_shows_progress_on_a_terminal(tree: Path, tmp_path: Path) -> None:
    import pty

    (tree / "big").write_bytes(os.urandom(3 << 20))
    primary, secondary = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bootmem",
            "create",
            str(tree),
            "-o",
            str(tmp_path / "img"),
            "--compress",
            "xz",
        ],
        stderr=secondary,
        env=env,
    ) as proc:
        os.close(secondary)
        seen = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    os.close(primary)
    assert proc.returncode == 0
    assert b"archiving" in seen

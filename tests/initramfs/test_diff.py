"""Comparing the trees two images produce under the kernel's rules."""

from __future__ import annotations

import hashlib
import json
import stat
from typing import Any

import pytest

from bootmem.errors import ImageError
from bootmem.initramfs.diff import diff_images, image_tree, tree_path
from bootmem.initramfs.select import Selection
from tests.initramfs import corpus
from tests.initramfs.test_extract import DIR, LNK, archive, member

BASE = (
    member("etc", DIR, 0o755),
    (member("etc/fstab"), b"proc /proc proc\n"),
    member("lib", DIR, 0o755),
    member("lib/modules", DIR, 0o755),
    (member("init", perm=0o755), b"#!/bin/sh\n"),
)


def test_identical() -> None:
    d = diff_images(archive(*BASE), archive(*BASE))
    assert d.identical and not d
    doc = d.to_json()
    assert (doc["identical"], doc["added"], doc["removed"], doc["changed"]) == (True, [], [], [])
    assert doc["total"]["file_bytes"] == {"a": 26, "b": 26, "change": 0}


def test_changed_file_mode_symlink_added_dir_removed() -> None:
    after = archive(
        member("etc", DIR, 0o755),
        (member("etc/fstab"), b"proc /proc proc defaults\n"),
        (member("init", perm=0o700), b"#!/bin/sh\n"),
        member("lib", DIR, 0o755),
        member("sbin", LNK, 0o777, linkname="bin"),
    )
    d = diff_images(archive(*BASE), after)
    assert d.added == ["sbin"]
    assert d.removed == ["lib/modules"]
    assert [(c.path, c.fields) for c in d.changed] == [
        ("etc/fstab", ("content", "size")),
        ("init", ("mode",)),
    ]
    doc = json.loads(json.dumps(d.to_json()))
    assert doc["changed"][1] == {
        "path": "init",
        "fields": ["mode"],
        "a": {"mode": "0755"},
        "b": {"mode": "0700"},
        "size_change": 0,
    }
    assert doc["changed"][0]["b"]["content"] == hashlib.sha256(b"proc /proc proc defaults\n").hexdigest()


def test_type_and_target_changes() -> None:
    a = archive(member("x", LNK, 0o777, linkname="one"), member("y", LNK, 0o777, linkname="t"))
    b = archive(member("x", LNK, 0o777, linkname="two"), (member("y"), b"file"))
    d = diff_images(a, b)
    assert [(c.path, c.fields[0]) for c in d.changed] == [("x", "linkname"), ("y", "type")]


def test_later_entries_win_and_hardlinks_share_data() -> None:
    # The GNU convention: data on the last link; a later archive rewrites "f".
    a = archive(
        member("a", c_ino=3, c_nlink=2),
        (member("b", c_ino=3, c_nlink=2), b"linked"),
        (member("f"), b"old"),
        None,
        (member("f"), b"new"),
    )
    tree = image_tree(a)
    assert tree["a"].sha256 == tree["b"].sha256 == hashlib.sha256(b"linked").hexdigest()
    assert tree["f"].sha256 == hashlib.sha256(b"new").hexdigest()
    same = archive((member("a"), b"linked"), (member("b"), b"linked"), (member("f"), b"new"))
    assert diff_images(a, same).identical


def test_owner_and_device_numbers() -> None:
    a = archive(member("c", stat.S_IFCHR, 0o600, c_rdevmajor=5, c_rdevminor=1), (member("o", c_uid=0), b""))
    b = archive(
        member("c", stat.S_IFCHR, 0o600, c_rdevmajor=4, c_rdevminor=1), (member("o", c_uid=1000), b"")
    )
    assert [(c.path, c.fields) for c in diff_images(a, b).changed] == [("c", ("rdev",)), ("o", ("uid",))]


def test_non_empty_directory_survives_a_file_of_the_same_name() -> None:
    a = archive(member("d", DIR, 0o755), member("d/x"), (member("d"), b"file"))
    assert image_tree(a)["d"].type == "d"


def test_tree_path() -> None:
    assert tree_path("/./usr//lib/../bin/") == "usr/bin"
    assert tree_path("../../etc") == "etc"
    assert tree_path(".") == ""


def test_mtimes_are_not_compared() -> None:
    a = archive((member("f", c_mtime=1), b"x"))
    b = archive((member("f", c_mtime=2), b"x"))
    assert diff_images(a, b).identical


def _two_segments(early: bytes, main: bytes) -> bytes:
    return early + corpus.peer_compress(main, "gzip")


def test_sizes_of_added_removed_and_changed_paths_and_per_segment() -> None:
    early = archive(member("kernel", DIR, 0o755), (member("kernel/ucode.bin"), b"u" * 100))
    a = _two_segments(
        early, archive((member("big"), b"x" * 5000), (member("f"), b"12"), (member("gone"), b"g" * 7))
    )
    grown = archive(
        (member("big"), b"x" * 9000),
        (member("f"), b"12"),
        (member("new", c_ino=9, c_nlink=2), b""),
        (member("new2", c_ino=9, c_nlink=2), b"n" * 300),  # one inode, counted once
    )
    b = _two_segments(early, grown)
    d = diff_images(a, b)
    assert (d.added, d.removed, [c.path for c in d.changed]) == (["new", "new2"], ["gone"], ["big"])
    doc = d.to_json()
    assert doc["added"] == [
        {"path": "new", "type": "f", "size": 300, "segment": 1},
        {"path": "new2", "type": "f", "size": 300, "segment": 1},
    ]
    assert doc["removed"] == [{"path": "gone", "type": "f", "size": 7, "segment": 1}]
    assert doc["changed"][0]["size_change"] == 4000
    early_seg, main_seg = doc["segments"]
    assert early_seg["file_bytes"] == {"a": 100, "b": 100, "change": 0}
    assert early_seg["image_bytes"]["change"] == 0 and early_seg["compression"] == {"a": "none", "b": "none"}
    assert main_seg["file_bytes"] == {"a": 5009, "b": 9302, "change": 4293}
    assert main_seg["compression"] == {"a": "gzip", "b": "gzip"}
    assert main_seg["image_bytes"]["a"] == len(a) - len(early)
    total = doc["total"]
    assert (total["added_bytes"], total["removed_bytes"], total["changed_bytes"]) == (300, 7, 4000)
    assert total["file_bytes"]["change"] == 300 - 7 + 4000
    assert total["image_bytes"] == {"a": len(a), "b": len(b), "change": len(b) - len(a)}


def test_a_segment_only_one_image_has() -> None:
    early = archive((member("ucode"), b"u" * 10))
    d = diff_images(early, _two_segments(early, archive((member("f"), b"1234"))))
    assert d.added == ["f"]
    seg = d.to_json()["segments"][1]
    assert seg["compression"] == {"a": None, "b": "gzip"}
    assert seg["file_bytes"] == {"a": None, "b": 4, "change": 4}


def test_selection_limits_both_trees() -> None:
    early = archive((member("ucode"), b"u"))
    a = _two_segments(early, archive(member("etc", DIR, 0o755), (member("etc/a"), b"1"), (member("x"), b"1")))
    b = _two_segments(
        early, archive(member("etc", DIR, 0o755), (member("etc/a"), b"22"), (member("y"), b"1"))
    )
    d = diff_images(a, b, selection=Selection(["etc"]))
    assert (d.added, d.removed, [c.path for c in d.changed]) == ([], [], ["etc/a"])
    chosen = Selection([], [0])
    d = diff_images(a, b, selection=chosen)
    assert d.identical and [s.index for s in d.segments] == [0] and not chosen.unmatched()
    missing = Selection(["nothing"], [7])
    diff_images(a, b, selection=missing)
    assert missing.unmatched() == ["'nothing'", "segment 7"]


#: Cases of the rules table whose outcome is rootfs's own limits (tmpfs's size and inodes,
#: ramfs), which the tree does not model.
_LIMIT_CASES = {
    "write-error-finishes-the-entry-then-stops",
    "rootfs-is-ramfs-with-root",
    "inode-limit-drops-entries-silently",
}


def _rule_cases() -> list[Any]:
    from tests.kernel.unpack_rules import CASES

    return [pytest.param(c, id=c.id) for c in CASES if c.id not in _LIMIT_CASES]


@pytest.mark.parametrize("case", _rule_cases())
def test_image_tree_follows_the_kernel_rules(case: Any) -> None:
    # diff and du compare the tree Linux builds: the rules table's images give its paths (and,
    # strict, the kernel's error).
    if case.message is not None:
        with pytest.raises(ImageError):
            image_tree(case.image)
    from tests.kernel.unpack_rules import Seen, differences

    tree = image_tree(case.image, strict=False)
    for name, want in case.paths.items():
        if not name:
            continue  # the root is left out of the tree
        node = tree.get(name)
        assert node is not None, f"{name!r} is missing ({case.rule})"
        got = Seen(node.type, node.sha256, node.linkname, node.uid, node.rdev, node.size, node.mode)
        skip = () if want.kind in "fl" else ("size",)  # the tree sizes files and symlinks only
        assert not differences(want, got, skip), (name, differences(want, got, skip))
    for name in case.absent:
        assert name not in tree, f"{name!r} is in the tree ({case.rule})"


def test_entry_whose_parent_is_missing_is_not_in_the_tree() -> None:
    # Linux drops "a/x" (no "a" yet); the "a" archived after it does not bring it back.
    a = archive((member("a/x"), b"lost"), member("a", DIR, 0o755), (member("a/y"), b"kept"))
    assert list(image_tree(a)) == ["a", "a/y"]
    b = archive(member("a", DIR, 0o755), (member("a/y"), b"kept"))
    assert diff_images(a, b).identical

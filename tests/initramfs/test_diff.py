"""Comparing the trees two images produce under the kernel's rules."""

from __future__ import annotations

import hashlib
import json
import stat

from bootmem.initramfs.diff import diff_images, image_tree, tree_path
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
    assert d.to_json() == {"identical": True, "added": [], "removed": [], "changed": []}


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

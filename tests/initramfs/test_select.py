"""Selection of entries by glob pattern and segment."""

from __future__ import annotations

import posixpath
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootmem.errors import UsageError
from bootmem.initramfs.cpio import Entry
from bootmem.initramfs.select import Selection, normalise, parse_segments


@pytest.mark.parametrize(
    ("pattern", "path", "selected"),
    [
        ("usr", "usr", True),
        ("usr", "usr/bin/sh", True),
        ("usr", "usr2", False),
        ("usr/*", "usr/bin", True),
        ("usr/*", "usr/bin/sh", True),  # under a selected directory
        ("*.ko", "a.ko", True),
        ("*.ko", "d/a.ko", False),  # `*` stays within one component
        ("**/*.ko", "a.ko", True),
        ("usr/lib/modules/**/*.ko", "usr/lib/modules/6.1/kernel/fs/ext4/ext4.ko", True),
        ("usr/lib/modules/**/*.ko", "usr/lib/modules/6.1/modules.dep", False),
        ("lib/firmware/i915/?lk_*.bin", "lib/firmware/i915/glk_dmc_ver1_04.bin", True),
        ("etc/[ab]*", "etc/adjtime", True),
        ("etc/[!ab]*", "etc/adjtime", False),
        ("etc/[!ab]*", "etc/fstab", True),
        ("a[b", "a[b", True),  # an unclosed class is a literal "["
        ("./init", "init", True),
        ("/init", "init", True),
        ("a.b", "axb", False),  # regex characters are literal
    ],
)
def test_patterns(pattern: str, path: str, selected: bool) -> None:
    assert Selection([pattern]).matches_path(path) is selected


_component = st.text(st.characters(blacklist_characters="/*?[\0", blacklist_categories=("Cs",)), min_size=1)


@given(st.lists(_component, min_size=1, max_size=4), st.lists(_component, max_size=3))
def test_a_literal_path_selects_itself_and_what_is_under_it(parts: list[str], more: list[str]) -> None:
    path = normalise("/".join(parts))
    s = Selection([path])
    assert s.matches_path(path)
    assert s.matches_path(normalise(posixpath.join(path, *more)))
    assert not s.matches_path(path + "x")


def test_segments_and_unmatched() -> None:
    s = Selection(["etc", "nothing"], segments=parse_segments("1,3"))
    reg = stat.S_IFREG | 0o644
    assert not s.matches(Entry(name="etc/a", c_mode=reg, segment=0))
    assert s.matches(Entry(name="etc/a", c_mode=reg, segment=1))
    assert s.unmatched() == ["'nothing'", "segment 3"]
    assert Selection().everything and not s.everything


@pytest.mark.parametrize("text", ["", "1,,2", "x", "-1"])
def test_bad_segment_lists(text: str) -> None:
    with pytest.raises(UsageError, match="bad segment number"):
        parse_segments(text)

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootmem.errors import UsageError
from bootmem.units import PAGE_SIZE, align_down, align_up, format_k, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4096", 4096),
        ("256M", 256 << 20),
        ("256m", 256 << 20),
        ("1G", 1 << 30),
        ("1GiB", 1 << 30),
        ("64KiB", 64 << 10),
        ("1.5G", 3 << 29),
        ("0x8000000", 0x8000000),
        ("1T", 1 << 40),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "12X", "-1", "0x", "1.2.3"])
def test_parse_size_refuses_with_the_text(text: str) -> None:
    with pytest.raises(UsageError, match=repr(text).replace("(", r"\(")):
        parse_size(text)


@given(st.integers(0, 1 << 48), st.integers(0, 20))
def test_alignment(value: int, shift: int) -> None:
    a = 1 << shift
    down, up = align_down(value, a), align_up(value, a)
    assert down % a == 0 and up % a == 0
    assert down <= value <= up
    assert up - down in (0, a)


def test_formats() -> None:
    assert PAGE_SIZE == 4096
    assert format_k(30436 * 1024) == "30436K"
    assert format_k(4095) == "3K"
    assert format_size(512) == "512 B"
    assert format_size(int(128.7 * (1 << 20))) == "128.7 MiB"

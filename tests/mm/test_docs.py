"""The examples in bootmem.mm's docstrings are exact: run them."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["allocator", "buddy", "events", "lease", "memblock", "ram"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"bootmem.mm.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0

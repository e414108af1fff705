from __future__ import annotations

import subprocess
import sys

import pytest

from bootmem import __version__
from bootmem.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"bootmem {__version__}"


def test_help_lists_the_tool() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bootmem", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "usage: bootmem" in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: bootmem" in capsys.readouterr().out

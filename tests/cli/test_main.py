from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_ls_imports_only_what_listing_needs(tmp_path: Path) -> None:
    """`bootmem ls` starts in tens of milliseconds, so its start-up is mostly imports: the boot
    model, plotting, rich, numpy and json (only --json needs it) stay out of it."""
    from bootmem.initramfs.create import create_image

    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "init").write_bytes(b"#!/bin/sh\n")
    create_image(tmp_path / "img", root=tmp_path / "tree", compression="zstd")
    code = (
        "import sys\nfrom bootmem.cli import main\n"
        f"main(['ls', {str(tmp_path / 'img')!r}])\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "init\n"
    loaded = set(done.stderr.split())
    heavy = {
        "json",
        "rich",
        "numpy",
        "matplotlib",
        "bootmem.kernel",
        "bootmem.mm",
        "bootmem.fs",
        "bootmem.report",
    }
    assert not heavy & loaded

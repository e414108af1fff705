"""Shell completion and the manual page, generated from the parser: each checked by its consumer."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from bootmem.cli import COMMANDS, build_parser
from bootmem.cli.manual import fish_completion, manual_page
from tests.conftest import require_tool


def _run(*argv: str) -> str:
    return subprocess.run([sys.executable, "-m", "bootmem", *argv], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


@pytest.mark.peer
@pytest.mark.parametrize(("shell", "check"), [("bash", ["-n"]), ("zsh", ["-n"]), ("fish", ["--no-execute"])])
def test_completion_parses_in_its_shell(
    shell: str, check: list[str], tmp_path: pytest.TempPathFactory
) -> None:
    exe = require_tool(shell)
    script = _run("completion", shell)
    for command in COMMANDS:
        assert command in script
    result = subprocess.run([exe, *check], input=script, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.peer
def test_bash_completes_subcommands_and_options() -> None:
    bash = require_tool("bash")
    script = _run("completion", "bash")
    probe = script + '\nCOMP_WORDS=(bootmem ls --so); COMP_CWORD=2; _shtab_bootmem; echo "${COMPREPLY[@]}"\n'
    probe += 'COMP_WORDS=(bootmem e); COMP_CWORD=1; _shtab_bootmem; echo "${COMPREPLY[@]}"\n'
    out = subprocess.run([bash, "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()
    assert "--sort" in out[-2].split()
    assert set(out[-1].split()) == {"examine", "extract"}


def test_fish_names_every_option_of_every_subcommand() -> None:
    parser = build_parser()
    script = fish_completion(parser)
    assert "-n '__fish_seen_subcommand_from ls' -l sort -r -a 'image name size'" in script
    assert re.search(r"-n '__fish_seen_subcommand_from boot' .*-l mem\b", script)


@pytest.mark.peer
def test_the_manual_page_is_clean_roff_naming_every_command() -> None:
    groff = require_tool("groff")
    page = _run("man")
    assert page == manual_page(build_parser())
    result = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", "-z"], input=page, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stderr == ""
    text = subprocess.run([groff, "-man", "-Tascii", "-P-cbou"], input=page, capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    for command in COMMANDS:
        assert re.search(rf"^   {command}$", text, re.M), command
    assert "--segment N[,M]" in text

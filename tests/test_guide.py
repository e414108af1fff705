"""docs/guide.md's commands, run on the inputs docs/guide_inputs.py builds, print what the
guide shows: the same lines in the same order, figures aside.

The inputs are built at a twentieth of the guide's size; the shape of every output (each line's
first word, numbers masked) must match the guide's, in order.
"""

from __future__ import annotations

import re
import runpy
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide.md"
SCALE = 0.05


def blocks() -> list[list[tuple[str, list[str]]]]:
    """Each fenced block of the guide that holds commands, as ``[(command, output lines)]``."""
    found = []
    for block in re.findall(r"```\n(.*?)```", GUIDE.read_text(), re.DOTALL):
        steps: list[tuple[str, list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps and line.strip():
                steps[-1][1].append(line)
        if steps:
            found.append(steps)
    return found


def shape(line: str) -> str:
    """A line's first word, numbers masked; a memory map row is ``MAP``."""
    words = line.split()
    if len(words) > 1 and re.fullmatch(r"[KDFIRO.]+", words[1]):
        return "MAP"
    return re.sub(r"0x[0-9a-f]+|\d+(\.\d+)?", "#", words[0])


@pytest.fixture(scope="module")
def workdir(
    tmp_path_factory: pytest.TempPathFactory, bootmem_on_path: dict[str, str]
) -> tuple[Path, dict[str, str]]:
    work = tmp_path_factory.mktemp("guide")
    env = dict(bootmem_on_path)  # `bootmem` on PATH is this tree's
    env.pop("NO_COLOR", None)
    return work, env


def test_the_guide_has_its_commands() -> None:
    commands = [command for steps in blocks() for command, _ in steps]
    assert commands[0] == "python3 docs/guide_inputs.py"
    assert sum(c.startswith("bootmem ") for c in commands) >= 8


def test_every_command_of_the_guide_prints_what_the_guide_shows(workdir: tuple[Path, dict[str, str]]) -> None:
    work, env = workdir
    runpy.run_path(str(ROOT / "docs" / "guide_inputs.py"))["build"](work, SCALE)
    assert {p.name for p in work.iterdir()} >= {"tree", "tree-small", "early", "dmesg.txt"}
    for steps in blocks():
        script = "\n".join(command for command, _ in steps if not command.startswith("python3 docs/"))
        if not script:
            continue
        proc = subprocess.run(
            ["bash", "-c", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.stderr == "", (script, proc.stderr)
        expected = [shape(line) for _, output in steps for line in output]
        actual = iter(shape(line) for line in proc.stdout.splitlines() if line.strip())
        # Every expected line, in order, among the actual ones (a subsequence).
        missing = [s for s in expected if not any(s == a for a in actual)]
        assert not missing, (script, missing, proc.stdout)
    assert (work / "boot.png").read_bytes().startswith(b"\x89PNG")

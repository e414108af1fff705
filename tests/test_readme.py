"""The README's promises on a stock machine: wheels only, one command to install and boot, one
command to set up and run the tests.

The fresh-clone tests make venvs and install from the package index: they run under CI
(``CI=true``) or with ``BOOTMEM_INSTALL_TESTS=1``, and skip with that reason otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict[str, object]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]  # type: ignore[no-any-return]


def readme_block(heading: str) -> str:
    """The first ```sh block under ``heading`` in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading) :]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match is not None, heading
    return match.group(1).strip()


def install_tests() -> None:
    if os.environ.get("CI") == "true" or os.environ.get("BOOTMEM_INSTALL_TESTS") == "1":
        return
    pytest.skip("makes venvs and installs from the package index: set BOOTMEM_INSTALL_TESTS=1 (CI does)")


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "bootmem"
    subprocess.run([git, "clone", "-q", str(ROOT), str(clone)], check=True)
    return clone


def test_libfdt_is_the_tests_oracle_not_a_dependency() -> None:
    project = pyproject()
    dependencies = project["dependencies"]
    assert isinstance(dependencies, list)
    assert not [d for d in dependencies if "libfdt" in d or "lzo" in d]
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict)
    assert any(d.startswith("pylibfdt") for d in extras["test"])


def test_every_runtime_dependency_installs_from_a_wheel(tmp_path: Path) -> None:
    install_tests()
    dependencies = pyproject()["dependencies"]
    assert isinstance(dependencies, list)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
         "--report", str(tmp_path / "report.json"), "-q", *dependencies],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_the_readme_installs_and_boots_on_a_fresh_machine(fresh_clone: Path) -> None:
    install_tests()
    command = readme_block("## Try it")
    assert command == "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/bootmem boot"
    # The command as a user types it, with the pip flags that only keep the output short and the
    # build wheels-only, as a machine without a compiler would.
    env = {**os.environ, "PIP_ONLY_BINARY": ":all:", "PIP_QUIET": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        ["bash", "-c", command],
        cwd=fresh_clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Freeing initrd memory:" in proc.stdout and "built-in example" in proc.stdout


def test_the_test_script_sets_up_and_runs_the_tests(fresh_clone: Path) -> None:
    install_tests()
    assert readme_block("## Run the tests") == "scripts/test"
    # The script's own venv, .venv in the clone: a BOOTMEM_VENV of the caller would point
    # it elsewhere (and reinstall bootmem there from this clone).
    env = {**os.environ}
    env.pop("PYTHONPATH", None)
    env.pop("BOOTMEM_VENV", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["scripts/test", *args], cwd=fresh_clone, env=env, capture_output=True, text=True, timeout=1800,
            check=False,
        )  # fmt: skip

    proc = run("-q", "-p", "no:cacheprovider", "tests/test_units.py")
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    assert re.search(r"\d+ passed", proc.stdout)
    assert (fresh_clone / ".venv" / "bin" / "bootmem").exists()
    # pytest's exit 5, no test collected, is a failure.
    proc = run("-q", "-p", "no:cacheprovider", "tests/test_units.py", "-k", "no_such_test")
    assert proc.returncode == 1
    assert "collected no tests" in proc.stderr


def test_ci_runs_the_test_script_with_ci_set() -> None:
    text = (ROOT / ".ci" / "run").read_text()
    assert "export CI=true" in text and "exec scripts/test" in text

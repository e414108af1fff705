"""Shared test configuration.

Peer tools (GNU cpio, bsdcpio, busybox, dtc, the compressors) are looked up on PATH, optional
codecs (python-lzo, the ``lzo`` extra) imported.  On a user's machine a missing one skips its
tests with the reason; under CI (``CI=true``) a missing one is a failure, so a green CI run
means the differential tests really ran.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Hypothesis's per-example deadline is a timing assertion, and timings live in bench/: on a
# loaded two-core machine a correct example can take longer than 200 ms.
settings.register_profile("bootmem", deadline=None)
settings.load_profile("bootmem")


def require_tool(name: str) -> str:
    """The path of peer tool ``name``; skip (or, under CI, fail) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        message = f"peer tool {name!r} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must install it: see .ci/run)")
        pytest.skip(message)
    return path


def require_module(name: str) -> object:
    """Import ``name``; skip (or, under CI, fail) when the package is not installed."""
    try:
        return __import__(name)
    except ImportError:
        message = f"Python package {name!r} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def bootmem_env(**extra: str) -> dict[str, str]:
    """The environment for running ``python -m bootmem`` (or the shim of :func:`bootmem_on_path`)
    in a subprocess: this process's, with this process's ``sys.path`` as ``PYTHONPATH`` so
    that the child imports the bootmem under test, and ``extra`` on top."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **extra}


@pytest.fixture(scope="session")
def bootmem_on_path(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """:func:`bootmem_env` with a ``bootmem`` command first on ``PATH`` that runs the bootmem
    under test with this interpreter, for tests that run commands as a user types them."""
    bindir = tmp_path_factory.mktemp("bin")
    shim = bindir / "bootmem"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m bootmem "$@"\n')
    shim.chmod(0o755)
    return bootmem_env(PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")


SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def validate_json(data: object, command: str) -> None:
    """Validate ``data`` against ``docs/schemas/<command>.schema.json`` (the schema docs/json.md
    documents), failing the test with the path and the rule that the data breaks."""
    jsonschema: Any = require_module("jsonschema")
    schema = json.loads((SCHEMAS / f"{command}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors)


#: Optional codec packages: compression name -> the module its tests need.
OPTIONAL_CODECS = {"lzo": "lzo"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_module(name): needs Python package name (skip; CI: fail)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test parametrized with an optional codec's name needs that codec's package."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        values = set(callspec.params.values()) if all(map(_hashable, callspec.params.values())) else set()
        for codec, module in OPTIONAL_CODECS.items():
            if codec in values:
                item.add_marker(pytest.mark.needs_module(module))


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("needs_module"):
        require_module(marker.args[0])


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> object:
    """A test that meets a codec whose package is missing (bootmem's ``MissingCodecError``)
    skips, or fails under CI, as :func:`require_module` says; with the package there, the
    error stands."""
    try:
        return (yield)
    except ImportError as exc:
        from bootmem.errors import MissingCodecError

        missing = exc.__cause__ if isinstance(exc, MissingCodecError) else None
        if isinstance(missing, ModuleNotFoundError) and missing.name:
            require_module(missing.name)
        raise

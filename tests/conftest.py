"""Shared test configuration.

Peer tools (GNU cpio, bsdcpio, busybox, dtc, the compressors) are looked up on PATH.  On a
user's machine a missing one skips its tests with the reason; under CI (``CI=true``) a missing
peer is a failure, so a green CI run means the differential tests really ran.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest


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


SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def validate_json(data: object, command: str) -> None:
    """Validate ``data`` against ``docs/schemas/<command>.schema.json`` (the schema docs/json.md
    documents), failing the test with the path and the rule that the data breaks."""
    jsonschema: Any = require_module("jsonschema")
    schema = json.loads((SCHEMAS / f"{command}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors)

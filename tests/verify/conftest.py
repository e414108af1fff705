"""Fixtures for the real-kernel tests: the kernel (fetched once into the cache) and QEMU.

A machine without QEMU, apt or network skips these tests with the reason; under ``CI=true``
a missing piece is a failure (see ``tests.conftest.require_tool``).
"""

from __future__ import annotations

import os

import pytest

from bootmem.errors import VerifyError
from bootmem.verify.kernel import Kernel, debian_kernel, kernel_from_path
from tests.conftest import require_tool


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def debian_amd64() -> Kernel:
    """Debian's current amd64 kernel package, unpacked in the cache (``BOOTMEM_KERNEL`` overrides)."""
    given = os.environ.get("BOOTMEM_KERNEL")
    try:
        if given:
            from pathlib import Path

            return kernel_from_path(Path(given))
        require_tool("apt-get")
        require_tool("dpkg-deb")
        return debian_kernel("amd64")
    except VerifyError as exc:
        _unavailable(f"no real kernel: {exc}")
        raise


@pytest.fixture(scope="session")
def qemu_x86() -> str:
    return require_tool("qemu-system-x86_64")

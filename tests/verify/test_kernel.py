"""Kernel acquisition: images recognised by their boot headers, Debian's package from the cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootmem.errors import VerifyError
from bootmem.verify import kernel as vk
from bootmem.verify.kernel import Kernel, kernel_arch, kernel_from_path


@pytest.mark.parametrize(
    ("offset", "magic", "arch"),
    [(0x202, b"HdrS", "amd64"), (0x38, b"ARM\x64", "arm64"), (0x38, b"RSC\x05", "riscv64")],
)
def test_kernel_arch_from_boot_header(tmp_path: Path, offset: int, magic: bytes, arch: str) -> None:
    image = bytearray(0x1000)
    image[offset : offset + 4] = magic
    path = tmp_path / "Image"
    path.write_bytes(bytes(image))
    assert kernel_arch(path) == arch
    assert kernel_from_path(path) == Kernel(image=path, arch=arch)


def test_not_a_kernel(tmp_path: Path) -> None:
    path = tmp_path / "vmlinuz"
    path.write_bytes(b"\0" * 0x1000)
    with pytest.raises(VerifyError, match="not a bzImage"):
        kernel_from_path(path)
    with pytest.raises(VerifyError, match="no kernel at"):
        kernel_from_path(tmp_path / "missing")


def test_unpacked_tree_gives_version_config_and_compressions(tmp_path: Path) -> None:
    version = "6.1.0-99-amd64"
    (tmp_path / "boot").mkdir()
    image = bytearray(0x1000)
    image[0x202:0x206] = b"HdrS"
    (tmp_path / "boot" / f"vmlinuz-{version}").write_bytes(bytes(image))
    (tmp_path / "boot" / f"config-{version}").write_text(
        "CONFIG_RD_GZIP=y\n# CONFIG_RD_BZIP2 is not set\nCONFIG_RD_ZSTD=y\nCONFIG_RD_XZ=m\n"
    )
    (tmp_path / "lib" / "modules" / version).mkdir(parents=True)
    k = kernel_from_path(tmp_path)
    assert (k.arch, k.version) == ("amd64", version)
    assert k.modules == tmp_path / "lib" / "modules" / version
    assert k.compressions() == ["gzip", "zstd"]


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert vk.cache_dir() == tmp_path / "bootmem"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert vk.cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "bootmem"


def test_missing_apt_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(VerifyError, match=r"apt-cache not found: fetching Debian's kernel"):
        vk.debian_kernel("amd64", cache=tmp_path)


def test_unknown_package_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An apt-cache that knows nothing, as on a host whose apt lists lack the architecture.
    fake = tmp_path / "apt-cache"
    fake.write_text('#!/bin/sh\necho "$3"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(
        VerifyError, match=r"no kernel package that 'linux-image-amd64' depends on \(for amd64\)"
    ):
        vk.debian_kernel("amd64", cache=tmp_path)


def test_the_hosts_architecture_needs_no_apt_options() -> None:
    assert vk.apt_options(vk.host_arch()) == []

"""The probe segment and the composed image, read back by bootmem and by GNU cpio."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bootmem import initramfs
from bootmem.errors import UsageError, VerifyError
from bootmem.verify.images import (
    PROBE_DIR,
    PROBE_INIT,
    STAGED_MARK,
    _has_interpreter,
    build_lock,
    compose,
    mkinitramfs,
    probe_segment,
    remove_stale_links,
)
from bootmem.verify.kernel import Kernel, cache_dir
from tests.conftest import require_tool


def test_probe_segment_is_a_raw_newc_archive_of_busybox_and_init() -> None:
    busybox = Path(require_tool("busybox")).resolve()
    probe = probe_segment()
    assert len(probe) % 4 == 0
    with initramfs.open(probe) as image:
        entries = {e.name: e for e in image}
        segments = image.segments
    assert len(segments) == 1 and segments[0].compression == "none"
    assert set(entries) == {PROBE_DIR, f"{PROBE_DIR}/busybox", f"{PROBE_DIR}/init", f"{PROBE_DIR}/proc"}
    assert entries[f"{PROBE_DIR}/proc"].isdir()
    assert entries[f"{PROBE_DIR}/busybox"].c_filesize == busybox.stat().st_size
    assert entries[PROBE_INIT.lstrip("/")].c_mode == 0o100755


def test_probe_init_runs_under_the_host_busybox(tmp_path: Path) -> None:
    # GNU cpio unpacks the probe as the kernel would; its script must be valid ash.
    cpio = require_tool("cpio")
    subprocess.run([cpio, "-idm", "--quiet"], input=probe_segment(), cwd=tmp_path, check=True)
    init = tmp_path / PROBE_DIR / "init"
    assert init.read_text().startswith(f"#!/{PROBE_DIR}/busybox sh\n")
    subprocess.run([str(tmp_path / PROBE_DIR / "busybox"), "sh", "-n", str(init)], check=True)


def test_dynamic_busybox_is_refused(tmp_path: Path) -> None:
    # A 64-bit ELF header with one PT_INTERP program header.
    elf = bytearray(0x40 + 0x38)
    elf[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", elf, 0x20, 0x40)
    struct.pack_into("<HH", elf, 0x36, 0x38, 1)
    struct.pack_into("<I", elf, 0x40, 3)
    assert _has_interpreter(bytes(elf))
    fake = tmp_path / "busybox"
    fake.write_bytes(bytes(elf))
    with pytest.raises(VerifyError, match="dynamically linked"):
        probe_segment(fake)
    struct.pack_into("<I", elf, 0x40, 1)  # PT_LOAD only: static
    assert not _has_interpreter(bytes(elf))


def test_compose_keeps_the_image_after_the_probe() -> None:
    probe = probe_segment()
    assert compose(probe, b"IMAGE") == probe + b"IMAGE"
    with pytest.raises(UsageError, match="4-byte aligned"):
        compose(b"abc", b"")


@pytest.mark.qemu
def test_mkinitramfs_builds_debians_image_for_the_kernel(debian_amd64: Kernel) -> None:
    require_tool("mkinitramfs")
    image = mkinitramfs(debian_amd64, "lz4", modules="dep")
    with initramfs.open(image) as img:
        members = list(img)
        names = {e.name for e in members}
        codecs = [s.compression for s in img.segments]
    assert codecs == ["lz4"]
    # Modules are files at their own paths, as in Debian's image: nothing of bootmem's cache.
    modules = [e for e in members if e.name.endswith(".ko") or ".ko." in e.name]
    assert modules and all(e.isreg() for e in modules), [e.name for e in modules if not e.isreg()][:5]
    assert not [n for n in names if "bootmem" in n or STAGED_MARK in n]
    assert {
        "init",
        "scripts/init-top",
        "usr/bin/busybox",
        f"usr/lib/modules/{debian_amd64.version}/modules.dep",
    } <= names
    # The package's tree stays as it was found: no link left in /lib/modules or /boot (looked at
    # under the build lock: a build running in parallel has its link there while it runs).
    with build_lock():
        staged = Path("/lib/modules") / str(debian_amd64.version)
        assert not staged.is_symlink() and not (staged / STAGED_MARK).exists()


@pytest.mark.qemu
def test_mkinitramfs_removes_a_stale_link_an_interrupted_build_left(debian_amd64: Kernel) -> None:
    # An interrupted build leaves /lib/modules/VERSION pointing into the cache (here at a tree
    # that is gone): the next build removes it, makes its own, and leaves nothing behind.
    require_tool("mkinitramfs")
    link = Path("/lib/modules") / str(debian_amd64.version)
    with build_lock():  # looked at and made where no build in parallel has its staged tree
        if link.exists() and not link.is_symlink():
            pytest.skip(f"{link} is the host's own kernel: nothing of the cache to leave there")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(cache_dir() / "kernels" / "interrupted-build" / "lib" / "modules")
    try:
        image = mkinitramfs(debian_amd64, "lz4", modules="dep")
    finally:
        with build_lock():
            stale = link.is_symlink()
            if stale:
                link.unlink()
    assert not stale
    with initramfs.open(image) as img:
        assert f"usr/lib/modules/{debian_amd64.version}/modules.dep" in {e.name for e in img}


def test_stale_links_into_the_cache_go_and_nothing_else(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "kernels" / "k").mkdir(parents=True)
    host = tmp_path / "host"
    host.mkdir()
    stale = tmp_path / "stale"  # -> into the cache, dangling: an interrupted build's
    stale.symlink_to(cache / "kernels" / "gone")
    relative = tmp_path / "relative"  # -> into the cache through a relative path
    relative.symlink_to(Path("cache") / "kernels" / "k")
    foreign = tmp_path / "foreign"  # -> the host's own tree: not ours
    foreign.symlink_to(host)
    beside = tmp_path / "beside"  # -> a sibling whose name starts like the cache's: not ours
    (tmp_path / "cache2").mkdir()
    beside.symlink_to(tmp_path / "cache2")
    real = tmp_path / "real"  # a real directory
    real.mkdir()
    links = [(p, cache) for p in (stale, relative, foreign, beside, real, tmp_path / "absent")]
    staged = tmp_path / "staged"  # a staged tree an interrupted build left: marked as bootmem's
    (staged / "kernel").mkdir(parents=True)
    (staged / STAGED_MARK).write_text("")
    links.append((staged, cache))
    assert remove_stale_links(links, cache) == [stale, relative, staged]
    assert not stale.is_symlink() and not relative.is_symlink() and not staged.exists()
    assert foreign.is_symlink() and beside.is_symlink() and real.is_dir()


def test_mkinitramfs_refuses_a_bare_image(tmp_path: Path) -> None:
    bare = Kernel(image=tmp_path / "bzImage", arch="amd64")
    with pytest.raises(VerifyError, match="not an unpacked Debian kernel package"):
        mkinitramfs(bare, "gzip")
    with pytest.raises(UsageError, match="unknown compression 'brotli'"):
        mkinitramfs(bare, "brotli")


def test_the_build_lock_is_the_machines_not_the_cache_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Builds stage into /lib/modules, which every user's cache shares: a build with another
    # cache directory must wait for the lock too.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "one"))
    probe = (
        "import fcntl, os\n"
        "from bootmem.verify import images\n"
        "with open(images.build_lock_path(), 'a') as f:\n"
        "    try:\n"
        "        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "    except BlockingIOError:\n"
        "        print('busy')\n"
        "    else:\n"
        "        print('free')\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "two")}
    with build_lock():
        held = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
        )
    assert held.stdout.strip() == "busy", held.stderr

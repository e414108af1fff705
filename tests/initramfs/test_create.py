"""Image creation: reproducible archives from a directory, gen_init_cpio manifests, segments."""

from __future__ import annotations

import errno
import io
import os
import random
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bootmem.initramfs.compress
import bootmem.initramfs.create
from bootmem.errors import CompressionError, CpioError, UsageError
from bootmem.initramfs.compress import COMPRESSIONS, open_compressor
from bootmem.initramfs.cpio import CpioReader, Entry
from bootmem.initramfs.create import create_image, default_threads, lint, parse_compression, parse_manifest
from bootmem.initramfs.extract import extractall
from tests.conftest import require_tool
from tests.initramfs.corpus import _content
from tests.initramfs.test_extract import tree_of


def entries(data: bytes) -> list[tuple[Entry, bytes]]:
    reader = CpioReader(io.BytesIO(data), multi_archive=True)
    return [(e, reader.read_data()) for e in reader]


@pytest.fixture
def small_tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "usr" / "bin" / "tool", 0o755)
    (root / "a").write_bytes(b"shared data")
    os.link(root / "a", root / "z")
    os.link(root / "a", root / "usr" / "m")
    os.symlink("usr/bin/tool", root / "init")
    os.mkfifo(root / "fifo")
    for path in root.rglob("*"):
        os.utime(path, (2_000_000_000, 2_000_000_000), follow_symlinks=False)
    return root


def test_sorted_names_and_stable_inodes(small_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "img"
    create_image(out, root=small_tree)
    got = entries(out.read_bytes())
    names = [e.name for e, _ in got]
    assert names == sorted(names, key=os.fsencode)
    assert names == ["a", "fifo", "init", "usr", "usr/bin", "usr/bin/tool", "usr/m", "z"]
    inos = {e.name: e.c_ino for e, _ in got}
    assert inos["a"] == inos["usr/m"] == inos["z"] == 1
    assert inos["fifo"] == 2 and inos["usr/bin/tool"] == 6


def test_hardlinks_carry_data_on_the_last_link(small_tree: Path, tmp_path: Path) -> None:
    create_image(tmp_path / "img", root=small_tree)
    got = {e.name: (e, data) for e, data in entries((tmp_path / "img").read_bytes())}
    assert [(got[n][0].c_filesize, got[n][0].c_nlink) for n in ("a", "usr/m", "z")] == [
        (0, 3),
        (0, 3),
        (11, 3),
    ]
    assert got["z"][1] == b"shared data"


def test_reproducible_bytes(small_tree: Path, tmp_path: Path) -> None:
    create_image(tmp_path / "one", root=small_tree, compression="gzip:9")
    os.utime(small_tree, None)
    create_image(tmp_path / "two", root=small_tree, compression="gzip:9")
    assert (tmp_path / "one").read_bytes() == (tmp_path / "two").read_bytes()


def test_source_date_epoch_clamps_mtimes(
    small_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.utime(small_tree / "a", (100, 100))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000")
    create_image(tmp_path / "img", root=small_tree)
    mtimes = {e.name: e.c_mtime for e, _ in entries((tmp_path / "img").read_bytes())}
    assert mtimes["a"] == 100
    assert set(mtimes.values()) == {100, 1_000_000}


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes and owners need root")
def test_devices_and_owners_kept(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.mknod(root / "console", 0o600 | stat.S_IFCHR, os.makedev(5, 1))
    (root / "owned").write_bytes(b"x")
    os.chown(root / "owned", 1000, 2000)
    create_image(tmp_path / "img", root=root)
    got = {e.name: e for e, _ in entries((tmp_path / "img").read_bytes())}
    assert got["console"].ischr() and got["console"].rdev == (5, 1)
    assert (got["owned"].c_uid, got["owned"].c_gid) == (1000, 2000)


def test_early_segment_then_compressed_main(small_tree: Path, tmp_path: Path) -> None:
    from bootmem import initramfs

    early = tmp_path / "early"
    (early / "kernel").mkdir(parents=True)
    (early / "kernel" / "ucode.bin").write_bytes(b"\x55" * 1001)
    create_image(tmp_path / "img", root=small_tree, compression="zstd:3", early=early)
    data = (tmp_path / "img").read_bytes()
    assert data.startswith(b"070701")
    image = initramfs.open(tmp_path / "img")
    assert [s.compression for s in image.segments] == ["none", "zstd"]
    assert image.getnames()[:2] == ["kernel", "kernel/ucode.bin"]
    assert image.segments[1].offset % 4 == 0


@pytest.mark.parametrize("compression", ["none", "gzip", "bzip2", "xz", "lzma", "lz4", "zstd:19"])
def test_compressions_read_back(small_tree: Path, tmp_path: Path, compression: str) -> None:
    create_image(tmp_path / "img", root=small_tree, compression=compression)
    extractall(tmp_path / "img", tmp_path / "out", filter="fully_trusted")
    assert tree_of(tmp_path / "out") == tree_of(small_tree)


def test_stream_output(small_tree: Path, tmp_path: Path) -> None:
    buf = io.BytesIO()
    written = create_image(buf, root=small_tree, format="crc")
    create_image(tmp_path / "img", root=small_tree, format="crc")
    assert buf.getvalue() == (tmp_path / "img").read_bytes() and written == len(buf.getvalue())
    assert buf.getvalue().startswith(b"070702")


def test_parse_compression() -> None:
    assert parse_compression("zstd:19") == ("zstd", 19, None)
    assert parse_compression("gzip") == ("gzip", None, None)
    assert parse_compression("xz:3", 6) == ("xz", 6, None)
    assert parse_compression("zstd:19,threads=3") == ("zstd", 19, 3)
    assert parse_compression("zstd,threads=0") == ("zstd", None, 0)
    with pytest.raises(UsageError, match="bad compression level"):
        parse_compression("zstd:fast")
    with pytest.raises(UsageError, match="bad thread count 'all'"):
        parse_compression("zstd:19,threads=all")
    with pytest.raises(UsageError, match="unknown compression option 'long=27'"):
        parse_compression("zstd:19,long=27")


@pytest.fixture
def data_tree(tmp_path: Path) -> Path:
    """About 6 MB of compressible file data, in six files."""
    root = tmp_path / "data"
    root.mkdir()
    rng = random.Random(3)
    words = [rng.randbytes(rng.randrange(4, 24)) for _ in range(2000)]
    for i in range(6):
        (root / f"f{i}").write_bytes(b"".join(rng.choices(words, k=80_000)))
    return root


def test_zstd_threads_write_the_same_bytes_for_any_count(data_tree: Path, tmp_path: Path) -> None:
    made = {}
    # Level 1's jobs are 2 MiB (four windows of 512 KiB): this tree makes three of them.
    for spec in ("zstd:1,threads=1", "zstd:1,threads=2", "zstd:1,threads=5", "zstd:1", "zstd:1,threads=0"):
        out = tmp_path / spec
        create_image(out, root=data_tree, compression=spec)
        made[spec] = out.read_bytes()
    # libzstd's multi-threaded format does not depend on the worker count, so the default
    # (one per core) is reproducible across machines; single-threaded mode is another format.
    assert made["zstd:1,threads=1"] == made["zstd:1,threads=2"] == made["zstd:1,threads=5"]
    assert made["zstd:1"] == made["zstd:1,threads=1"]
    assert made["zstd:1,threads=0"] != made["zstd:1,threads=1"]
    plain = tmp_path / "plain"
    create_image(plain, root=data_tree)
    for data in made.values():
        assert zstandard.ZstdDecompressor().decompressobj().decompress(data) == plain.read_bytes()


def test_zstd_threads_match_zstd_cli_single_thread(data_tree: Path, tmp_path: Path) -> None:
    require_tool("zstd")
    create_image(tmp_path / "plain", root=data_tree)
    create_image(tmp_path / "st", root=data_tree, compression="zstd:6,threads=0")
    create_image(tmp_path / "mt", root=data_tree, compression="zstd:6,threads=2")
    for name in ("st", "mt"):
        out = subprocess.run(["zstd", "-dcq", str(tmp_path / name)], capture_output=True, check=True).stdout
        assert out == (tmp_path / "plain").read_bytes()


def test_threads_only_for_zstd(small_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="threads=2 for gzip"):
        create_image(tmp_path / "img", root=small_tree, compression="gzip,threads=2")
    with pytest.raises(UsageError, match="threads=-1"):
        open_compressor("zstd", 3, threads=-1)
    assert not (tmp_path / "img").exists()
    create_image(tmp_path / "img", root=small_tree, compression="gzip,threads=0")


def test_progress_counts_file_data(data_tree: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    create_image(
        tmp_path / "img", root=data_tree, compression="zstd:1", progress=lambda d, t: calls.append((d, t))
    )
    total = sum(p.stat().st_size for p in data_tree.iterdir())
    assert {t for _, t in calls} == {total}
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == total and len(done) >= 6


def test_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        create_image(tmp_path / "img")
    assert not (tmp_path / "img").exists()


# --- gen_init_cpio manifests --------------------------------------------------------------


MANIFEST = """\
# a manifest in usr/gen_init_cpio's syntax
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
nod /dev/loop0 0660 0 6 b 7 0
dir /bin 0755 0 0
file /bin/busybox {busybox} 0755 0 0 /bin/sh /bin/ls

slink /init /bin/busybox 0777 0 0
pipe /run.fifo 0644 0 0
sock /run.sock 0600 0 0
"""


def test_manifest_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "12345")
    binary = tmp_path / "busybox"
    binary.write_bytes(b"\x7fELF busybox")
    (tmp_path / "m.txt").write_text(MANIFEST.format(busybox=binary))
    create_image(tmp_path / "img", manifest=tmp_path / "m.txt")
    got = entries((tmp_path / "img").read_bytes())
    summary = [(e.name, e.type, oct(e.mode), e.c_gid, e.rdev, e.c_filesize, e.c_nlink) for e, _ in got]
    assert summary == [
        ("dev", "d", "0o755", 0, (0, 0), 0, 2),
        ("dev/console", "c", "0o600", 0, (5, 1), 0, 1),
        ("dev/loop0", "b", "0o660", 6, (7, 0), 0, 1),
        ("bin", "d", "0o755", 0, (0, 0), 0, 2),
        ("bin/busybox", "f", "0o755", 0, (0, 0), 0, 3),
        ("bin/sh", "f", "0o755", 0, (0, 0), 0, 3),
        ("bin/ls", "f", "0o755", 0, (0, 0), 12, 3),
        ("init", "l", "0o777", 0, (0, 0), 12, 1),
        ("run.fifo", "p", "0o644", 0, (0, 0), 0, 1),
        ("run.sock", "s", "0o600", 0, (0, 0), 0, 1),
    ]
    assert got[6][1] == b"\x7fELF busybox" and got[7][0].linkname == "/bin/busybox"
    assert {e.c_mtime for e, _ in got} <= {12345}
    assert len({e.c_ino for e, _ in got[4:7]}) == 1


def test_manifest_env_in_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f").write_bytes(b"env")
    monkeypatch.setenv("HERE", str(tmp_path))
    sources = parse_manifest(["file /f ${HERE}/f 0644 0 0"])
    assert sources[0].path == f"{tmp_path}/f"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("flie /x /y 0644 0 0", "unknown type 'flie'"),
        ("dir /x 0755 0", "dir takes 4 fields, got 3"),
        ("dir /x 0855 0 0", "bad mode '0855'"),
        ("nod /x 0600 0 0 q 1 1", "bad device type 'q'"),
        ("file /x /no/such/file 0644 0 0", "cannot stat '/no/such/file'"),
        ("slink /x y 0777 zero 0", "bad uid 'zero'"),
    ],
)
def test_manifest_errors_name_the_line(line: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_manifest(["# header", "", line], where="list.txt")
    assert str(info.value).startswith("list.txt:3: ")
    assert message in str(info.value)


def test_manifest_mtime_override_sets_the_next_entry_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000")
    (tmp_path / "f").write_bytes(b"x")
    sources = parse_manifest([
        "#bootmem: mtime=1700000000",
        "dir /etc 0755 0 0",
        "# bootmem: mtime=5",
        f"file /etc/a {tmp_path}/f 0600 7 8 /etc/b",
        "dir /var 0700 0 0",
    ])  # fmt: skip
    got = [(s.entry.name, s.entry.c_mtime, s.entry.c_uid, oct(s.entry.mode), s.line) for s in sources]
    assert got == [
        ("etc", 1700000000, 0, "0o755", 2),  # as given: not clamped by SOURCE_DATE_EPOCH
        ("etc/a", 5, 7, "0o600", 4),
        ("etc/b", 5, 7, "0o600", 4),
        ("var", 1000, 0, "0o700", 5),
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["#bootmem: mtime=yesterday", "dir /x 0755 0 0"], "m:1: bad override 'mtime=yesterday'"),
        (["#bootmem: owner=0", "dir /x 0755 0 0"], "m:1: bad override 'owner=0'"),
        (["#bootmem: mtime=99999999999", "dir /x 0755 0 0"], "m:1: mtime '99999999999' out of range"),
        (["dir /x 0755 0 0", "#bootmem: mtime=1"], "m:2: '#bootmem:' line with no entry after it"),
        (["#bootmem: mtime=1", "#bootmem: mtime=2", "dir /x 0755 0 0"], "m:2: a second '#bootmem:' line"),
    ],
)
def test_manifest_override_errors_name_the_line(lines: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        parse_manifest(lines, where="m")


def test_lint_warns_of_missing_parents_and_repeated_paths() -> None:
    sources = parse_manifest([
        "dir /etc 0755 0 0",
        "slink /lib usr/lib 0777 0 0",
        "dir /lib/modules 0755 0 0",  # under a symlink: it may lead to a directory
        "nod /dev/console 0600 0 0 c 5 1",  # no /dev: the kernel drops it
        "dir /etc 0700 0 0",
        "dir /run/a/b 0755 0 0",
        "dir /run 0755 0 0",  # too late for /run/a/b
    ])  # fmt: skip
    assert lint(sources, where="m") == [
        "m:4: 'dev/console': its directory 'dev' is not created before it, so the kernel drops it silently",
        "m:5: 'etc' again (line 1): the later entry replaces it",
        "m:6: 'run/a/b': its directory 'run/a' is not created before it, so the kernel drops it silently",
    ]
    assert lint(sources[3:4], existing=["/dev"]) == []


def test_create_reports_lint_warnings_and_still_writes(tmp_path: Path) -> None:
    img = tmp_path / "img"
    warnings: list[str] = []
    create_image(img, manifest=["dir /a 0755 0 0", "#cpio: gzip", "dir /a/b 0755 0 0", "dir /c/d 0755 0 0"],
                 warn=warnings.append)  # fmt: skip
    assert warnings == [
        "manifest:4: 'c/d': its directory 'c' is not created before it, so the kernel drops it silently"
    ]
    create_image(img, manifest=["dir /c 0755 0 0"], append=True)
    warnings.clear()
    create_image(img, manifest=["dir /c/e 0755 0 0", "dir /x/y 0755 0 0"], append=True, warn=warnings.append)
    assert [w.split(":")[1] for w in warnings] == ["2"]  # c exists in the image appended to


def test_manifest_image_matches_gen_init_cpio_semantics_under_gnu_cpio(tmp_path: Path) -> None:
    cpio = require_tool("cpio")
    binary = tmp_path / "busybox"
    binary.write_bytes(b"\x7fELF busybox")
    (tmp_path / "m.txt").write_text(MANIFEST.format(busybox=binary))
    create_image(tmp_path / "img", manifest=tmp_path / "m.txt", format="crc")
    dest = tmp_path / "out"
    dest.mkdir()
    subprocess.run([cpio, "-idm", "--quiet"], cwd=dest, input=(tmp_path / "img").read_bytes(), check=True)
    assert (dest / "bin" / "sh").read_bytes() == b"\x7fELF busybox"
    assert os.lstat(dest / "bin" / "sh").st_ino == os.lstat(dest / "bin" / "busybox").st_ino
    assert os.readlink(dest / "init") == "/bin/busybox"


# --- round trip ---------------------------------------------------------------------------

_names = st.text(alphabet=st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1)
_names = _names.filter(lambda n: n not in (".", "..", "TRAILER!!!") and len(os.fsencode(n)) < 200)
_files = st.dictionaries(
    st.lists(_names, min_size=1, max_size=3).map(tuple),
    st.tuples(st.binary(max_size=300), st.sampled_from([0o644, 0o755, 0o600, 0o4755]), st.integers(0, 2**31)),
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=_files, fmt=st.sampled_from(["newc", "crc"]))
def test_create_then_extract_is_the_same_tree(
    tmp_path_factory: pytest.TempPathFactory, files: dict[tuple[str, ...], tuple[bytes, int, int]], fmt: str
) -> None:
    base = tmp_path_factory.mktemp("roundtrip")
    root = base / "root"
    root.mkdir()
    for parts, (data, mode, mtime) in files.items():
        path = root.joinpath(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue  # one name is a prefix directory of another
        os.chmod(path, mode)
        os.utime(path, (mtime, mtime))
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        os.utime(d, (1_000_000, 1_000_000))
    create_image(base / "img", root=root, format=fmt)  # type: ignore[arg-type]
    extractall(base / "img", base / "out", filter="fully_trusted")
    assert tree_of(base / "out") == tree_of(root)


# --- the compressing thread -------------------------------------------------------------------

ODD_CHUNK = 4099  # buffer boundaries inside headers, names and data alike


@pytest.fixture
def wide_tree(tmp_path: Path) -> Path:
    """Small files, symlinks and one file of more than a default buffer (1 MiB), then ``zz/late``."""
    rng = random.Random(11)
    root = tmp_path / "wide"
    for d in range(4):
        (root / f"d{d}").mkdir(parents=True)
        for i in range(12):
            (root / f"d{d}" / f"f{i}").write_bytes(_content(rng, rng.randint(0, 20_000)))
        os.symlink(f"f{d}", root / f"d{d}" / "link")
    (root / "big").write_bytes(_content(rng, 1_300_000))
    (root / "zz").mkdir()
    (root / "zz" / "late").write_bytes(_content(rng, 30_000))
    for path in root.rglob("*"):
        os.utime(path, (2_000_000_000, 2_000_000_000), follow_symlinks=False)
    return root


@pytest.mark.parametrize("chunk", [None, ODD_CHUNK], ids=["chunk-default", "chunk-odd"])
@pytest.mark.parametrize("name", COMPRESSIONS)
def test_output_is_the_whole_archive_compressed_in_one_go(
    wide_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, chunk: int | None
) -> None:
    if name == "lzo":
        pytest.importorskip("lzo")
    if chunk is not None:
        monkeypatch.setattr(bootmem.initramfs.create, "CHUNK", chunk)
    raw = io.BytesIO()
    create_image(raw, root=wide_tree)
    written = create_image(tmp_path / "img", root=wide_tree, compression=name)
    image = (tmp_path / "img").read_bytes()
    whole = open_compressor(name, threads=default_threads() if name == "zstd" else 0)
    assert image == whole.compress(raw.getvalue()) + whole.flush() and written == len(image)


def _vanish(path: Path) -> None:
    path.unlink()


def _shrink(path: Path) -> None:
    os.truncate(path, 100)


@pytest.mark.parametrize("compression", ["none", "zstd"])
@pytest.mark.parametrize(
    ("change", "error"), [(_vanish, FileNotFoundError), (_shrink, CpioError)], ids=["vanished", "shrunk"]
)
def test_file_changed_after_the_scan_removes_the_partial_image(
    wide_tree: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    compression: str,
    change: Any,
    error: type[Exception],
) -> None:
    scan = bootmem.initramfs.create.scan_directory

    def scan_then_change(root: str) -> list[Any]:
        sources = scan(root)
        change(wide_tree / "zz" / "late")  # the last file: many buffers are out by then
        return sources

    monkeypatch.setattr(bootmem.initramfs.create, "scan_directory", scan_then_change)
    monkeypatch.setattr(bootmem.initramfs.create, "CHUNK", ODD_CHUNK)
    threads = threading.active_count()
    with pytest.raises(error, match="late"):
        create_image(tmp_path / "img", root=wide_tree, compression=compression)
    assert not (tmp_path / "img").exists()
    assert threading.active_count() == threads


class _FailingCompressor:
    """zstd that raises ``error`` on its third ``compress``."""

    def __init__(self, error: BaseException) -> None:
        self._inner = open_compressor("zstd")
        self._error = error
        self._calls = 0

    def compress(self, data: bytes | memoryview, /) -> bytes:
        self._calls += 1
        if self._calls == 3:
            raise self._error
        return self._inner.compress(data)

    def flush(self) -> bytes:
        return self._inner.flush()


@pytest.mark.parametrize("error", [CompressionError("codec failed"), MemoryError()], ids=repr)
def test_compressor_error_reaches_the_caller_unchanged(
    wide_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    def failing(name: str, level: int | None = None, *, threads: int = 0) -> _FailingCompressor:
        return _FailingCompressor(error)

    monkeypatch.setattr(bootmem.initramfs.compress, "open_compressor", failing)
    monkeypatch.setattr(bootmem.initramfs.create, "CHUNK", ODD_CHUNK)
    threads = threading.active_count()
    with pytest.raises(type(error)) as raised:
        create_image(tmp_path / "img", root=wide_tree, compression="zstd")
    assert raised.value is error
    assert not (tmp_path / "img").exists()
    assert threading.active_count() == threads


class _FullDisk(io.RawIOBase):
    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return len(data)


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_write_error_reaches_the_caller(
    wide_tree: Path, monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    monkeypatch.setattr(bootmem.initramfs.create, "CHUNK", ODD_CHUNK)
    threads = threading.active_count()
    with pytest.raises(OSError) as raised:
        create_image(_FullDisk(50_000), root=wide_tree, compression=compression)  # type: ignore[arg-type]
    assert raised.value.errno == errno.ENOSPC
    assert threading.active_count() == threads

"""Linux's unpack rules (init/initramfs.c), each with a small archive built in memory."""

from __future__ import annotations

import gc
import io
import stat
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootmem.errors import DecompressorError
from bootmem.fs.tmpfs import OpenFile
from bootmem.initramfs.cpio import HEADER_SIZE, PATH_MAX, Entry
from bootmem.initramfs.create import create_image
from bootmem.kernel import unpack
from bootmem.kernel.unpack import default_builtin, unpack_builtin, unpack_initrd, unpack_to_rootfs
from bootmem.mm import PageAllocator
from tests.kernel.conftest import MTIME, archive, d, f, fresh_fs, raw_entry, sym


def test_default_builtin_is_linux_default_list() -> None:
    fs = fresh_fs()
    assert unpack_builtin(default_builtin(), fs) is None
    console = fs.lookup("/dev/console", follow_symlinks=False)
    assert (console.kind, console.permissions, console.rdev) == ("c", 0o600, (5, 1))
    assert fs.lookup("/dev").permissions == 0o755
    assert fs.lookup("/root").permissions == 0o700


def test_later_segments_win() -> None:
    first = archive(d("etc"), f("etc/motd", b"old contents, longer\n", 0o644, c_uid=0))
    second = archive(f("etc/motd", b"new\n", 0o600, c_uid=7, c_gid=8, c_mtime=MTIME + 5))
    fs = fresh_fs()
    result = unpack_to_rootfs(first + second, fs)
    assert result.error is None and result.segments == 2
    assert fs.read("/etc/motd") == b"new\n"
    motd = fs.lookup("/etc/motd")
    # filp_open(O_TRUNC) then vfs_fchown and vfs_fchmod: the later entry's owner and mode.
    assert (motd.permissions, motd.uid, motd.gid, motd.mtime) == (0o600, 7, 8, MTIME + 5)
    assert fs.used_pages == 1


def test_existing_device_node_gets_the_new_owner_mode_and_mtime() -> None:
    # init_mknod fails (EEXIST) but init_chown, init_chmod and do_utime still run.
    fs = fresh_fs()
    assert unpack_builtin(default_builtin(), fs) is None
    console = Entry("dev/console", stat.S_IFCHR | 0o620, c_gid=5, c_mtime=MTIME, c_rdevmajor=5, c_rdevminor=1)
    assert unpack_to_rootfs(archive(console), fs).error is None
    node = fs.lookup("/dev/console", follow_symlinks=False)
    assert (node.permissions, node.gid, node.mtime, node.rdev) == (0o620, 5, MTIME, (5, 1))


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        (d("x"), f("x", b"now a file"), "f"),
        (f("x", b"a file"), sym("x", "target"), "l"),
        (sym("x", "target"), d("x"), "d"),
        (f("x", b"a file"), Entry("x", stat.S_IFIFO | 0o600, c_mtime=MTIME), "p"),
    ],
    ids=["dir-to-file", "file-to-symlink", "symlink-to-dir", "file-to-fifo"],
)
def test_type_change_cleans_the_path(before: object, after: object, kind: str) -> None:
    fs = fresh_fs()
    result = unpack_to_rootfs(archive(before, after), fs)  # type: ignore[arg-type]
    assert result.error is None
    assert fs.lookup("/x", follow_symlinks=False).kind == kind
    assert fs.used_pages == (1 if kind == "f" else 0)


def test_non_empty_directory_is_not_replaced_by_a_file() -> None:
    # clean_path's init_rmdir fails (ENOTEMPTY), filp_open fails (EISDIR): the kernel goes on.
    fs = fresh_fs()
    result = unpack_to_rootfs(archive(d("x"), f("x/kept", b"child"), f("x", b"file data"), f("after")), fs)
    assert result.error is None
    assert fs.lookup("/x").kind == "d"
    assert fs.read("/x/kept") == b"child"
    assert fs.exists("/after")
    assert fs.used_pages == 1


def test_hardlinks_within_one_archive() -> None:
    fs = fresh_fs()
    image = archive(
        f("a", b"", c_ino=5, c_nlink=3),
        f("b", b"", c_ino=5, c_nlink=3),
        f("c", b"shared", c_ino=5, c_nlink=3),
    )
    assert unpack_to_rootfs(image, fs).error is None
    inodes = {id(fs.lookup(p)) for p in ("/a", "/b", "/c")}
    assert len(inodes) == 1
    assert fs.lookup("/a").nlink == 3
    assert fs.read("/a") == b"shared"
    assert fs.used_pages == 1


@pytest.mark.parametrize(
    "other",
    [
        {"c_ino": 6},
        {"c_devmajor": 1},
        {"c_devminor": 1},
    ],
    ids=["ino", "major", "minor"],
)
def test_hardlink_key_is_ino_major_minor_type(other: dict[str, int]) -> None:
    fields = {"c_ino": 5, "c_nlink": 2}
    fs = fresh_fs()
    image = archive(f("a", b"one", **fields), f("b", b"two", **(fields | other)))
    assert unpack_to_rootfs(image, fs).error is None
    assert (fs.read("/a"), fs.read("/b")) == (b"one", b"two")
    assert fs.lookup("/a").nlink == 1


def test_hardlink_key_includes_type() -> None:
    fs = fresh_fs()
    fifo = Entry("p", stat.S_IFIFO | 0o600, c_ino=5, c_nlink=2)
    image = archive(fifo, f("a", b"data", c_ino=5, c_nlink=2))
    assert unpack_to_rootfs(image, fs).error is None
    assert fs.lookup("/p", follow_symlinks=False).kind == "p"
    assert fs.read("/a") == b"data"


@pytest.mark.parametrize("compressed", [False, True], ids=["raw-segments", "one-compressed-member"])
def test_hardlinks_reset_at_trailer(compressed: bool) -> None:
    # free_hash() at TRAILER!!!: the same ino in the next archive is a new file.
    one = archive(f("a", b"first", c_ino=5, c_nlink=2))
    two = archive(f("b", b"second", c_ino=5, c_nlink=2))
    image = one + two
    if compressed:
        import zstandard

        image = zstandard.ZstdCompressor().compress(image)
    fs = fresh_fs()
    assert unpack_to_rootfs(image, fs).error is None
    assert (fs.read("/a"), fs.read("/b")) == (b"first", b"second")
    assert fs.lookup("/a").nlink == fs.lookup("/b").nlink == 1


def test_directory_mtimes_are_set_after_every_other_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    fs = fresh_fs()
    calls: list[str] = []
    original = fs.utime
    original_futime = OpenFile.utime

    def utime(path: str, mtime: int, **kwargs: bool) -> None:
        calls.append(fs.lookup(path, follow_symlinks=False).kind)
        original(path, mtime, **kwargs)

    def futime(self: OpenFile, mtime: int) -> None:  # a regular file's, through the open file
        calls.append(self.inode.kind)
        original_futime(self, mtime)

    fs.utime = utime  # type: ignore[method-assign]
    monkeypatch.setattr(OpenFile, "utime", futime)
    image = archive(d("top", c_mtime=111), d("top/sub", c_mtime=222), f("top/sub/file", b"x", c_mtime=333))
    assert unpack_to_rootfs(image, fs).error is None
    assert calls == ["f", "d", "d"]
    assert [fs.lookup(p).mtime for p in ("/top", "/top/sub", "/top/sub/file")] == [111, 222, 333]


def test_directory_listed_twice_keeps_the_first_mtime() -> None:
    # dir_utime walks the list newest first, so the oldest entry's mtime is applied last.
    fs = fresh_fs()
    assert unpack_to_rootfs(archive(d("x", c_mtime=100), d("x", 0o700, c_mtime=200)), fs).error is None
    node = fs.lookup("/x")
    assert (node.mtime, node.permissions) == (100, 0o700)


def test_mtimes_do_not_follow_symlinks() -> None:
    # do_utime and dir_utime use AT_SYMLINK_NOFOLLOW: a directory entry whose path later
    # became a symlink sets the symlink's mtime, never its target's.
    fs = fresh_fs()
    image = archive(d("etc", c_mtime=1), d("x", c_mtime=5), sym("x", "etc", c_mtime=9))
    assert unpack_to_rootfs(image, fs).error is None
    assert fs.lookup("/etc").mtime == 1
    assert fs.lookup("/x", follow_symlinks=False).mtime == 5


def test_first_error_wins_and_what_was_unpacked_stays() -> None:
    good = archive(f("kept", b"before the error"))
    fs = fresh_fs()
    result = unpack_to_rootfs(good + b"070707" + b"0" * 200 + b"\xff" * 64, fs)
    assert result.error is not None
    assert result.error.message == "incorrect cpio method used: use -H newc option"
    assert fs.read("/kept") == b"before the error"


def _corrupt_check(image: bytes) -> bytes:
    at = HEADER_SIZE - 8  # c_check is the last field of the first header
    return image[:at] + b"%08X" % ((int(image[at:HEADER_SIZE], 16) + 1) & 0xFFFFFFFF) + image[HEADER_SIZE:]


def test_crc_format_is_checked() -> None:
    image = archive(f("ok", b"checked data"), format="crc")
    fs = fresh_fs()
    assert unpack_to_rootfs(image, fs).error is None
    assert fs.read("/ok") == b"checked data"
    result = unpack_to_rootfs(_corrupt_check(image), fresh_fs())
    assert result.error is not None
    assert result.error.message == "bad data checksum"
    assert "'ok'" in result.error.detail


@pytest.mark.parametrize(
    ("junk", "message"),
    [
        (b"070707" + b"0" * 104, "incorrect cpio method used: use -H newc option"),
        (b"0123456789" * 20, "no cpio magic"),
        (b"\x7fELF" + b"\x01" * 200, "invalid magic at start of compressed archive"),
    ],
    ids=["odc", "zero-junk", "binary-junk"],
)
def test_bad_magic_messages(junk: bytes, message: str) -> None:
    result = unpack_to_rootfs(junk, fresh_fs())
    assert result.error is not None
    assert result.error.message == message
    assert unpack.kernel_message(Exception(result.error.detail)) == message


def test_a_decompressor_error_gives_its_own_kernel_message() -> None:
    # lib/decompress_inflate.c error("read error") is what the log shows, not "decompressor failed",
    # even when bootmem's detail mentions one of init/initramfs.c's own messages.
    exc = DecompressorError("truncated gzip member at offset 0x0 (no cpio magic seen)", "read error")
    assert unpack.kernel_message(exc) == "read error"
    assert unpack.kernel_message(DecompressorError("corrupt bzip2 data")) == "decompressor failed"


@pytest.mark.parametrize("junk", [b"0123456789" * 20, b"hsqs" + bytes(4092)], ids=["zero-junk", "squashfs"])
@pytest.mark.parametrize("blk_dev_ram", [True, False])
def test_non_initramfs_image_is_kept_as_initrd_image_only_with_blk_dev_ram(
    junk: bytes, blk_dev_ram: bool
) -> None:
    # do_populate_rootfs(): populate_initrd_image() only #ifdef CONFIG_BLK_DEV_RAM (built in).
    pa = PageAllocator(base=0, size=16 << 20)
    pa.reserve(0x10000, 0x10000 + len(junk), name="initrd")
    pa.memory.write(0x10000, junk)
    fs = fresh_fs()
    result = unpack_initrd(pa, 0x10000, 0x10000 + len(junk), fs, blk_dev_ram=blk_dev_ram)
    assert result.error is not None
    assert result.looks_like_initrd is blk_dev_ram
    assert fs.exists("/initrd.image") is blk_dev_ram
    if blk_dev_ram:
        assert fs.read("/initrd.image") == junk
    assert pa.leases() == []


def test_a_host_failure_in_the_unpack_is_raised_not_a_busy_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    # The failure's traceback holds a slice of the initrd's view, so the lease cannot close; the
    # failure is what the caller sees (the CLI: "out of host memory"), not RegionBusyError.
    def fail(image: unpack.ImageBytes, target: object, cap: object) -> None:
        head = image.read_at(0, 6)
        raise MemoryError(bytes(head))

    monkeypatch.setattr(unpack, "_unpack", fail)
    image = archive(f("a", b"x"))
    pa = PageAllocator(base=0, size=16 << 20)
    pa.reserve(0x10000, 0x10000 + len(image), name="initrd")
    pa.memory.write(0x10000, image)
    with pytest.raises(MemoryError, match="070701"):
        unpack_initrd(pa, 0x10000, 0x10000 + len(image), fresh_fs())


def _rss_shmem() -> int:
    """This process's resident pages of shared memory (the memory files' mapped pages), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssShmem:"):
                return int(line.split()[1]) * 1024
    pytest.skip("no RssShmem in /proc/self/status")


@pytest.mark.parametrize("codec", ["none", "zstd", "gzip"])
def test_the_initrd_is_mapped_a_window_at_a_time(codec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The unpacker's mapping of the initrd holds a few MiB behind the reader, not all of it: the
    # pages it has read leave the process (they stay in modelled RAM), for a raw archive and for
    # a compressed member read by the decompressor's thread alike.
    import random
    import zlib

    import zstandard

    rng = random.Random(14)
    files = {f"f{i}": rng.randbytes(4 << 20) for i in range(10)}  # incompressible: 40 MiB in any codec
    image = archive(*(f(name, data) for name, data in files.items()))
    if codec == "zstd":
        image = zstandard.ZstdCompressor(level=1).compress(image)
    elif codec == "gzip":
        z = zlib.compressobj(1, zlib.DEFLATED, 31)
        image = z.compress(image) + z.flush()
    peak = 0

    def write(self: unpack._TmpfsSink, data: memoryview) -> int:
        nonlocal peak
        peak = max(peak, _rss_shmem())
        return write_file(self, data)

    write_file = unpack._TmpfsSink.write
    monkeypatch.setattr(unpack._TmpfsSink, "write", write)
    pa = PageAllocator(base=0, size=256 << 20)
    pa.reserve(0x10000, 0x10000 + len(image), name="initrd")
    pa.memory.write(0x10000, image)  # with pwrite: not mapped
    fs = fresh_fs(256 << 20)
    gc.collect()  # the memory files of earlier tests, and their mappings, go now, not mid-unpack
    before = _rss_shmem()
    result = unpack_initrd(pa, 0x10000, 0x10000 + len(image), fs)
    assert result.error is None
    assert all(fs.read("/" + name) == data for name, data in files.items())
    mapped = (peak - before) >> 20
    assert mapped < 12, f"{mapped} MiB of the {len(image) >> 20} MiB initrd mapped at once"


def test_skipped_entries() -> None:
    # do_header: c_namesize 0 or over PATH_MAX is skipped whole; a symlink over PATH_MAX too.
    image = (
        raw_entry(b"", namesize=0, data=b"body of a nameless entry")
        + raw_entry(b"n" * (PATH_MAX + 1) + b"\0", namesize=PATH_MAX + 2, data=b"long name data")
        + archive(sym("long-link", "t" * (PATH_MAX + 1)), sym("short-link", "t" * 100), f("after", b"ok"))
    )
    fs = fresh_fs()
    result = unpack_to_rootfs(image, fs)
    assert result.error is None
    assert result.skipped == 3
    assert fs.listdir("/") == ["after", "short-link"]
    assert fs.read("/after") == b"ok"


def test_non_regular_entry_with_a_body_is_skipped() -> None:
    # do_header reads the name only "if (S_ISREG(mode) || !body_len)": a directory or device
    # entry carrying data is skipped whole.
    directory = raw_entry(b"weird\0", namesize=6, data=b"data", mode=stat.S_IFDIR | 0o755)
    fs = fresh_fs()
    result = unpack_to_rootfs(directory + archive(f("after", b"ok")), fs)
    assert result.error is None
    assert fs.listdir("/") == ["after"]
    assert result.skipped == 1


def test_skipped_entries_are_counted_in_every_segment() -> None:
    nameless = raw_entry(b"", namesize=0)
    image = nameless + archive(f("a")) + nameless + archive(f("b"))
    result = unpack_to_rootfs(image, fresh_fs())
    assert (result.error, result.segments, result.skipped) == (None, 2, 2)


def test_write_error_when_the_tmpfs_is_full() -> None:
    fs = fresh_fs(limit=2 << 12)
    result = unpack_to_rootfs(archive(f("a", b"x" * 4096), f("b", b"y" * 8192), f("c", b"z")), fs)
    assert result.error is not None and result.error.message == "write error"
    assert fs.read("/a") == b"x" * 4096
    assert not fs.exists("/c")
    assert fs.used_pages == 2


# --- property: unpacking a created image gives back the tree ---------------------------------

_names = st.text(alphabet="abcdefgh", min_size=1, max_size=4)
_tree = st.dictionaries(
    st.lists(_names, min_size=1, max_size=3).map("/".join),
    st.one_of(st.binary(max_size=9000), st.sampled_from(["->target", "->../x"]), st.none()),
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tree)
def test_unpack_of_created_image_is_the_tree(tree: dict[str, bytes | str | None]) -> None:
    # Make the tree consistent: parents are directories; a path that is a parent is a directory.
    parents = {"/".join(p.split("/")[:i]) for p in tree for i in range(1, p.count("/") + 1)}
    lines = [f"dir /{p} 0755 0 0" for p in sorted(parents)]
    expected: dict[str, tuple[str, bytes | str | None]] = {p: ("d", None) for p in parents}
    contents: dict[str, bytes] = {}
    for path, value in sorted(tree.items()):
        if path in parents:
            continue
        if value is None:
            lines.append(f"dir /{path} 0700 0 0")
            expected[path] = ("d", None)
        elif isinstance(value, str):
            lines.append(f"slink /{path} {value[2:]} 0777 0 0")
            expected[path] = ("l", value[2:])
        else:
            contents[path] = value
            expected[path] = ("f", value)
    out = io.BytesIO()
    with_files = [*lines]
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        for path, data in contents.items():
            source = Path(tmp) / path.replace("/", "_")
            source.write_bytes(data)
            with_files.append(f"file /{path} {source} 0644 0 0")
        create_image(out, manifest=with_files)
    fs = fresh_fs()
    result = unpack_to_rootfs(out.getvalue(), fs)
    assert result.error is None
    got: dict[str, tuple[str, bytes | str | None]] = {}
    for path, inode in fs.walk():
        if path == "/":
            continue
        data: bytes | str | None = None
        if inode.kind == "f":
            data = fs.read(path)
        elif inode.kind == "l":
            data = inode.target
        got[path[1:]] = (inode.kind, data)
    assert got == expected
    assert fs.used_pages == sum(-(-len(v) // 4096) for v in contents.values())


def test_a_raw_archive_cut_short_is_no_error() -> None:
    # write_buffer() consumes a partial header or partial data and unpack_to_rootfs() returns
    # no message: the files before the cut stay; the one cut was truncated to c_filesize by
    # do_name before its data came, so it has the promised size, zeros after what came.
    image = archive(d("etc"), f("etc/motd", b"x" * 3000), f("etc/issue", b"hello\n"))
    cut = image.index(b"etc/motd") + 16 + 1000  # inside etc/motd's data
    fs = fresh_fs()
    result = unpack_to_rootfs(image[:cut], fs)
    assert result.error is None
    data = fs.read("/etc/motd")
    assert len(data) == 3000
    got = len(data.rstrip(b"\0"))
    assert 0 < got < 3000 and data[:got] == b"x" * got
    assert not fs.exists("/etc/issue")


def test_a_compressed_member_cut_short_is_an_error() -> None:
    from bootmem.initramfs.compress import open_compressor

    gz = open_compressor("gzip")
    image = gz.compress(archive(d("etc"), f("etc/motd", b"x" * 3000))) + gz.flush()
    # Cut inside the deflate stream: __gunzip's nofill() returns -1, "read error".
    result = unpack_to_rootfs(image[: len(image) - 9], fresh_fs())
    assert result.error is not None
    assert result.error.message == "read error"
    # Cut inside the 8-byte trailer, which the kernel skips unread: no error, all unpacked.
    result = unpack_to_rootfs(image[: len(image) - 8], fresh_fs())
    assert result.error is None and result.entries == 2


def test_broken_padding_after_a_raw_archive() -> None:
    # do_reset(): NULs after a raw archive that leave the next byte unaligned.
    first = archive(f("a", b"first"))
    result = unpack_to_rootfs(first + b"\0\0" + archive(f("b", b"second")), fs := fresh_fs())
    assert result.error is not None and result.error.message == "broken padding"
    assert fs.read("/a") == b"first" and not fs.exists("/b")


# --- decompression in its own thread ----------------------------------------------------------


def _zstd_member(size: int) -> tuple[bytes, bytes]:
    """A zstd member of ``size`` bytes of varied data, and those bytes."""
    import random

    import zstandard

    rng = random.Random(14)
    words = [rng.randbytes(rng.randrange(4, 24)) for _ in range(512)]
    data = b"".join(rng.choice(words) for _ in range(size // 8))[:size]
    return zstandard.ZstdCompressor(level=1).compress(data), data


def _decompress_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == "bootmem-decompress"]


def test_prefetch_decompresses_ahead_of_the_reader() -> None:
    from bootmem.initramfs.compress import Budget, MemberStream
    from bootmem.initramfs.image import image_bytes

    packed, data = _zstd_member(12 * unpack.CHUNK)
    image, close = image_bytes(packed)
    member = MemberStream("zstd", image, 0, Budget(1 << 30))
    with unpack.Prefetch(member) as chunks:
        first = chunks.read()
        deadline = time.monotonic() + 30
        # Nobody reads: the thread alone takes the member AHEAD chunks further.
        while member.size < len(first) + unpack.Prefetch.AHEAD * unpack.CHUNK and time.monotonic() < deadline:
            time.sleep(0.005)
        assert member.size >= len(first) + unpack.Prefetch.AHEAD * unpack.CHUNK
        assert member.size < len(data)  # ... and no further: memory stays bounded
        rest = b"".join(iter(chunks.read, b""))
    assert first + rest == data
    assert not _decompress_threads()
    close()


def test_prefetch_left_early_stops_its_thread() -> None:
    from bootmem.initramfs.compress import Budget, MemberStream
    from bootmem.initramfs.image import image_bytes

    packed, data = _zstd_member(32 * unpack.CHUNK)
    image, close = image_bytes(packed)
    member = MemberStream("zstd", image, 0, Budget(1 << 30))
    with unpack.Prefetch(member) as chunks:
        assert chunks.read() == data[: unpack.CHUNK]
    assert not _decompress_threads()
    assert member.size <= (2 + unpack.Prefetch.AHEAD) * unpack.CHUNK
    close()


def test_prefetch_raises_the_decompressor_error_after_the_chunks_before_it() -> None:
    import gzip

    from bootmem.errors import CompressionError
    from bootmem.initramfs.compress import Budget, MemberStream
    from bootmem.initramfs.image import image_bytes

    _, data = _zstd_member(3 * unpack.CHUNK)
    packed = gzip.compress(data, compresslevel=1)
    image, close = image_bytes(packed[: len(packed) * 3 // 4])  # cut part way
    member = MemberStream("gzip", image, 0, Budget(1 << 30))
    got = b""
    with pytest.raises(CompressionError, match="truncated gzip"), unpack.Prefetch(member) as chunks:
        while chunk := chunks.read():
            got += chunk
    assert len(got) > unpack.CHUNK and data.startswith(got)
    assert not _decompress_threads()
    close()

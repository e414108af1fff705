"""The rules of init/initramfs.c as cases: a crafted image and the rootfs Linux builds from it.

One table for every test that checks them: the model (tests/kernel/test_unpack_rules.py) and the
real kernel under QEMU.  Each outcome is written from the kernel source named in ``rule``, not
from what bootmem does.
"""

from __future__ import annotations

import gzip
import hashlib
import stat
import struct
import zlib
from dataclasses import dataclass, field

import lz4.block

from bootmem.initramfs.cpio import FIELDS, Entry, pack_header, pad4
from tests.kernel.conftest import MTIME, archive, d, f, sym


@dataclass(frozen=True)
class Node:
    """What Linux leaves at a path: ``kind`` (``f d l c b p s``) and, when given, the rest."""

    kind: str
    data: bytes | None = None  # a regular file's contents
    target: str | None = None  # a symlink's target
    uid: int | None = None
    rdev: tuple[int, int] | None = None
    size: int | None = None  # st_size
    sha256: str | None = None  # a regular file's contents, for one too big to spell out
    mode: int | None = None  # permission bits (with setuid, setgid, sticky)


@dataclass
class Seen:
    """What one side (the model, a host directory, a tree, the real kernel's probe) has at a path,
    in :class:`Node`'s terms; ``sha256`` is a regular file's contents."""

    kind: str
    sha256: str | None = None
    target: str | None = None
    uid: int | None = None
    rdev: tuple[int, int] | None = None
    size: int | None = None
    mode: int | None = None


def differences(want: Node, got: Seen, skip: tuple[str, ...] = ()) -> list[str]:
    """Each way ``got`` is not what ``want`` says Linux leaves, but for the fields in ``skip``
    (what that side cannot tell); empty when it is."""
    wanted = [
        ("kind", want.kind),
        ("sha256", None if want.data is None else hashlib.sha256(want.data).hexdigest()),
        ("target", want.target),
        ("uid", want.uid),
        ("rdev", want.rdev),
        ("size", want.size),
        ("sha256", want.sha256),
        ("mode", want.mode),
    ]
    return [
        f"{key}: {getattr(got, key)!r}, Linux {value!r}"
        for key, value in wanted
        if value is not None and key not in skip and getattr(got, key) != value
    ]


@dataclass(frozen=True)
class Case:
    id: str
    rule: str  # the kernel function (and what it does) the outcome follows
    image: bytes
    paths: dict[str, Node] = field(default_factory=dict)
    absent: tuple[str, ...] = ()
    message: str | None = None  # "Initramfs unpacking failed: <message>", None for no error
    cmdline: str = ""  # more kernel command line words
    ram: int = 64 << 20  # the model's RAM (the real kernel boots with 256M)
    freed: bool | None = None  # whether "Freeing initrd memory" is printed; None: not judged
    pages: int | None = None  # the rootfs's pages after the unpack (the model only: the probe
    # does not see them)


def _no_trailer(*members: Entry | tuple[Entry, bytes]) -> bytes:
    """An archive without its trailer."""
    data = archive(*members)
    return data[: data.rindex(b"070701")]


def _entry(entry: Entry, data: bytes = b"", **override: bytes) -> bytes:
    """One newc entry, with header fields replaced by the raw 8-byte ``override`` values."""
    name = entry.name.encode() + b"\0"
    header = bytearray(pack_header(entry, namesize=len(name), filesize=len(data)))
    for key, value in override.items():
        i = 6 + 8 * FIELDS.index(key)
        header[i : i + 8] = value
    return bytes(header) + name + b"\0" * pad4(110 + len(name)) + data + b"\0" * pad4(len(data))


TRAILER = archive()

#: Bigger than rootfs's tmpfs in every machine the table is booted on (the model's 64M, QEMU's
#: 256M: about 97M), smaller than the RAM free in QEMU's 256M and the model's ramfs machine, and
#: made of zeros: whatever Linux wrote before the write error, the hole after it reads as zeros
#: too, so the contents do not depend on the exact limit.
BIG = 120 << 20

#: More files than tmpfs's inodes in every machine the table is booted on (half of
#: totalram_pages: 8192 in the model's 64M, about 25,000 in QEMU's 256M).
MANY = 30_000


def _zeros_sha256(size: int) -> str:
    digest, page = hashlib.sha256(), bytes(1 << 20)
    for _ in range(size >> 20):
        digest.update(page)
    digest.update(bytes(size & ((1 << 20) - 1)))
    return digest.hexdigest()


def _zeros_then(after: bytes) -> bytes:
    """A gzip member: a file ``big`` of BIG zero bytes, then the cpio entries ``after``."""
    head = pack_header(Entry("big", stat.S_IFREG | 0o644, c_mtime=MTIME), namesize=4, filesize=BIG)
    head += b"big\0"  # 110 + 4 bytes: padded to 116, and BIG is a multiple of 4
    head += b"\0" * pad4(len(head))
    gz = zlib.compressobj(1, zlib.DEFLATED, 31)  # a gzip member, made in 1 MiB steps
    parts = [gz.compress(head)]
    page = bytes(1 << 20)
    parts += [gz.compress(page) for _ in range(BIG >> 20)]
    parts += [gz.compress(after), gz.flush()]
    return b"".join(parts)


def _lz4_legacy(data: bytes) -> bytes:
    """``lz4 -l``'s output: the legacy magic, one block's size word and the block, no end."""
    block = lz4.block.compress(data, store_size=False)
    return struct.pack("<II", 0x184C2102, len(block)) + block


def _cases() -> list[Case]:
    gz = gzip.compress(archive(f("b", b"from gzip\n")), mtime=0)
    lz4_member = _lz4_legacy(archive(f("a", b"from lz4\n")))
    lz4_member += bytes(pad4(len(lz4_member)))
    return [
        Case(
            "lz4-member-zero-word-then-raw",
            "unlz4: a zero size word ends the member (zero padding); the image loop skips the NULs",
            lz4_member + bytes(4) + archive(f("c", b"raw\n")),
            {"a": Node("f", b"from lz4\n"), "c": Node("f", b"raw\n")},
        ),
        Case(
            "lz4-member-then-raw",
            "unlz4: with no end word the next member's first bytes are read as a block's size; "
            "LZ4_decompress_safe fails on the cpio text after them",
            lz4_member + archive(f("c", b"raw\n")),
            {"a": Node("f", b"from lz4\n")},
            absent=("c",),
            message="Decoding failed",
        ),
        Case(
            "nuls-between-entries",
            "do_reset: NULs are skipped after every entry, not only after a trailer",
            _no_trailer(f("a", b"first\n")) + bytes(8) + archive(f("b", b"second\n")),
            {"a": Node("f", b"first\n"), "b": Node("f", b"second\n")},
        ),
        Case(
            "raw-without-trailer-then-gzip",
            "unpack_to_rootfs: after do_reset the image loop starts a compressed member at a non-'0' byte",
            _no_trailer(f("a", b"raw\n")) + gz,
            {"a": Node("f", b"raw\n"), "b": Node("f", b"from gzip\n")},
        ),
        Case(
            "compressed-members-then-raw",
            "unpack_to_rootfs: after a member the image goes on at buf + my_inptr, its compressed end",
            gzip.compress(archive(f("a", b"one\n")), mtime=0) + gz + archive(f("c", b"raw\n")),
            {"a": Node("f", b"one\n"), "b": Node("f", b"from gzip\n"), "c": Node("f", b"raw\n")},
        ),
        Case(
            "gzip-member-without-trailer",
            "unpack_to_rootfs: only state != Reset at the member's end is junk; no trailer is needed",
            gzip.compress(_no_trailer(f("a", b"no trailer\n")), mtime=0),
            {"a": Node("f", b"no trailer\n")},
        ),
        Case(
            "file-sized-before-data",
            "do_name: vfs_truncate(body_len) before do_copy, so a cut-short file has the promised size",
            _entry(Entry("big", stat.S_IFREG | 0o644, c_mtime=MTIME), b"x" * 6000)[
                : 116 + 100
            ],  # header, "big\0" padded, 100 bytes
            {"big": Node("f", b"x" * 100 + bytes(5900))},
        ),
        Case(
            "header-fields-by-simple-strtoul",
            "parse_header: simple_strtoul(16) takes hex digits up to the first other byte, '0x' allowed",
            _entry(
                Entry("odd", stat.S_IFREG | 0o644, c_mtime=MTIME),
                b"hi\n",
                c_uid=b"0x000007",
                c_ino=b"1zzzzzzz",
            )
            + TRAILER,
            {"odd": Node("f", b"hi\n", uid=7)},
        ),
        Case(
            "crc-checked-only-when-opened",
            "do_copy: the 070702 sum is compared only for a file filp_open opened",
            _crc_bad("missing-dir/x") + archive(f("ok", b"fine\n"), format="crc"),
            {"ok": Node("f", b"fine\n")},
            absent=("missing-dir",),
        ),
        Case(
            "root-mode-of-tmpfs",
            "init_rootfs/shmem_init_fs_context: rootfs is tmpfs, its root made with the default mode"
            " 0777 | S_ISVTX; an archive without a '.' entry leaves it so",
            archive(f("x", b"x\n")),
            {"": Node("d", mode=0o1777), "x": Node("f", b"x\n")},
        ),
        Case(
            "root-mode-from-a-dot-entry",
            "do_name: a directory entry '.' fails init_mkdir (EEXIST), then init_chown and init_chmod"
            " apply to the root",
            archive(d(".", 0o700), f("x", b"x\n")),
            {"": Node("d", mode=0o700), "x": Node("f", b"x\n")},
        ),
        Case(
            "missing-parent-drops-the-entry",
            "do_name/do_symlink: filp_open, init_mkdir, init_symlink and init_link fail (ENOENT, ENOTDIR)"
            " when the parent is missing or not a directory; the entry is dropped silently, and a"
            " directory archived later does not bring it back",
            archive(
                f("a/x", b"lost\n"),
                d("a"),
                f("a/y", b"kept\n"),
                sym("s/l", "t"),
                d("m/n"),
                f("file", b"f\n"),
                f("file/sub", b"under a file\n"),
            ),
            {"a": Node("d"), "a/y": Node("f", b"kept\n"), "file": Node("f", b"f\n")},
            absent=("a/x", "s", "m", "file/sub"),
        ),
        Case(
            "crc-bad-sum",
            'do_copy: error("bad data checksum") for an opened file whose bytes do not sum to c_check',
            _crc_bad("x"),
            {"x": Node("f", b"data")},
            message="bad data checksum",
        ),
        Case(
            "empty-symlink-target",
            "do_symlink: init_symlink() hands an empty target to vfs_symlink, which makes it",
            archive(sym("empty", "")),
            {"empty": Node("l", target="")},
        ),
        Case(
            "symlink-4095-and-4096",
            "shmem_symlink: strlen + 1 > PAGE_SIZE is ENAMETOOLONG",
            archive(sym("fits", "a" * 4095), sym("too-long", "b" * 4096)),
            {"fits": Node("l", target="a" * 4095)},
            absent=("too-long",),
        ),
        Case(
            "symlink-page-from-128-bytes",
            "shmem_symlink: a target whose length with its NUL is over SHORT_SYMLINK_LEN (128) "
            "takes a page; a shorter one is kept in the inode",
            archive(sym("inline", "a" * 127), sym("paged", "b" * 128)),
            {"inline": Node("l", target="a" * 127), "paged": Node("l", target="b" * 128)},
            pages=1,
        ),
        Case(
            "uid-gid-minus-one",
            "init_chown / vfs_fchown: 0xffffffff is -1, 'unchanged' (chown_common)",
            archive(f("mine", b"x", c_uid=0xFFFFFFFF, c_gid=0xFFFFFFFF)),
            {"mine": Node("f", b"x", uid=0)},
        ),
        Case(
            "trailer-name-as-symlink",
            "do_header: a symlink goes to do_symlink, which never looks for TRAILER!!!",
            archive(sym("TRAILER!!!", "x")),
            {"TRAILER!!!": Node("l", target="x")},
        ),
        Case(
            "fifo-with-a-body-is-skipped",
            "do_header: the name is read only if S_ISREG(mode) || !body_len",
            _entry(Entry("fifo", stat.S_IFIFO | 0o644, c_mtime=MTIME), b"body") + archive(f("after", b"a")),
            {"after": Node("f", b"a")},
            absent=("fifo",),
        ),
        Case(
            "device-number-through-mkdev",
            "parse_header: new_encode_dev(MKDEV(major, minor)) in a 32-bit dev_t",
            archive(
                Entry(
                    "node", stat.S_IFCHR | 0o600, c_mtime=MTIME, c_rdevmajor=0x80000005, c_rdevminor=0x123456
                )
            ),
            {"node": Node("c", rdev=(5, 0x23456))},
        ),
        Case(
            "hardlink-ino-over-int-max-links",
            "find_link: the fields pass as int to int, so an ino of 2**31 or more still matches",
            archive(
                f("a", b"", c_ino=0x80000001, c_nlink=2),
                f("b", b"data", c_ino=0x80000001, c_nlink=2),
            ),
            {"a": Node("f", b"data"), "b": Node("f", b"data")},
        ),
        Case(
            "broken-padding",
            "do_reset: a non-NUL byte at an offset that is not a multiple of 4",
            archive(f("a", b"first")) + b"\0\0" + archive(f("b", b"second")),
            {"a": Node("f", b"first")},
            absent=("b",),
            message="broken padding",
        ),
        Case(
            "write-error-finishes-the-entry-then-stops",
            'do_copy: error("write error") on a short xwrite, the entry is finished (its size set by '
            "vfs_truncate); flush_buffer then returns and later calls return -1: nothing after it",
            _zeros_then(archive(f("after", b"never\n"))),
            {"big": Node("f", size=BIG, sha256=_zeros_sha256(BIG))},
            absent=("after",),
            message="write error",
        ),
        Case(
            "rootfs-is-ramfs-with-root",
            "init_rootfs: with root= rootfs is ramfs (rootfs_init_fs_context): no size limit, so the "
            "file tmpfs cannot hold is whole; directories have size 0; page_symlink keeps a "
            "4096-byte target, and page_get_link reads it back as 4095",
            _zeros_then(archive(d("dir"), f("dir/after", b"whole\n"), sym("long", "c" * 4096))),
            {
                "": Node("d", mode=0o755),  # ramfs_fill_super: RAMFS_DEFAULT_MODE
                "big": Node("f", size=BIG, sha256=_zeros_sha256(BIG)),
                "dir": Node("d", size=0),
                "dir/after": Node("f", b"whole\n"),
                "long": Node("l", target="c" * 4095),
            },
            cmdline="root=/dev/bootmem-none",
            ram=256 << 20,
        ),
        Case(
            "inode-limit-drops-entries-silently",
            "shmem_reserve_inode: past nr_inodes (totalram_pages / 2) a create is ENOSPC, which "
            "do_name ignores (filp_open fails: the data is skipped; init_mkdir's error is not "
            "looked at): later entries are missing and no message is printed",
            gzip.compress(
                archive(*(f(f"f{i:05d}") for i in range(MANY)), d("last-dir"), f("last", b"x")), 1, mtime=0
            ),
            {"f00000": Node("f", b"")},
            absent=(f"f{MANY - 1:05d}", "last-dir", "last"),
        ),
        Case(
            "odc-magic",
            'do_header: 070707 (odc) is error("incorrect cpio method used: use -H newc option")',
            _no_trailer(f("a", b"before\n")) + _odc_header(),
            {"a": Node("f", b"before\n")},
            message="incorrect cpio method used: use -H newc option",
        ),
        Case(
            "no-cpio-magic",
            "unpack_to_rootfs: a '0' at a 4-aligned offset starts a raw archive; do_header: "
            'error("no cpio magic") for any other six bytes',
            _no_trailer(f("a", b"before\n")) + b"0" * 112,
            {"a": Node("f", b"before\n")},
            message="no cpio magic",
        ),
        Case(
            "invalid-compressed-magic",
            "decompress_method: no format's two bytes: unpack_to_rootfs's "
            'error("invalid magic at start of compressed archive")',
            _no_trailer(f("a", b"before\n")) + b"XY" + bytes(30),
            {"a": Node("f", b"before\n")},
            # do_populate_rootfs: populate_initrd_image only #ifdef CONFIG_BLK_DEV_RAM (built
            # in); Debian's is a module, so the error is printed and no /initrd.image is kept.
            absent=("initrd.image",),
            message="invalid magic at start of compressed archive",
        ),
        Case(
            "gzip-crc-not-checked",
            "__gunzip: the member ends 8 bytes after the deflate stream, its CRC32 and ISIZE unread",
            _bad_gzip_crc(archive(f("a", b"crc unread\n"))),
            {"a": Node("f", b"crc unread\n")},
        ),
        Case(
            "gzip-two-byte-magic-own-message",
            'decompress_method picks gunzip on 1f 8b alone; __gunzip: error("Not a gzip file") '
            "when the method byte is not 8, and the decompressor's message is the one printed",
            _no_trailer(f("a", b"before\n")) + b"\x1f\x8b\x09" + bytes(29),
            {"a": Node("f", b"before\n")},
            message="Not a gzip file",
        ),
        Case(
            "gzip-cut-short-read-error",
            '__gunzip: input ends inside the deflate stream, nofill() returns -1: error("read error")',
            _no_trailer(f("a", b"before\n")) + _gzip_cut(archive(f("b", bytes(range(256)) * 64))),
            {"a": Node("f", b"before\n")},
            message="read error",
        ),
        Case(
            "trailer-name-as-regular-file",
            'do_name: strcmp(collected, "TRAILER!!!") looks at the name only, so a regular file '
            "named so (mode 0644, a body) is a trailer: free_hash(), its body skipped; a link after "
            "it finds no earlier name",
            _no_trailer(f("a", b"", c_ino=7, c_nlink=2))
            + _entry(Entry("TRAILER!!!", stat.S_IFREG | 0o644, c_mtime=MTIME), b"body")
            + archive(f("b", b"own data\n", c_ino=7, c_nlink=2)),
            {"a": Node("f", b""), "b": Node("f", b"own data\n")},
            absent=("TRAILER!!!",),
        ),
        Case(
            "retain-initrd-takes-no-value",
            'retain_initrd_param: __setup("retain_initrd", ...) gets "=1" and returns 0 for any '
            "value, so retain_initrd stays 0 and free_initrd_mem runs",
            archive(f("a", b"x")),
            {"a": Node("f", b"x")},
            cmdline="retain_initrd=1",
            freed=True,
        ),
        Case(
            "retain-initrd-bare",
            "retain_initrd_param: a bare retain_initrd sets it: do_populate_rootfs frees nothing",
            archive(f("a", b"x")),
            {"a": Node("f", b"x")},
            cmdline="retain_initrd",
            freed=False,
        ),
        Case(
            "junk-within-compressed",
            "flush_buffer: after an entry, a byte that is neither '0' nor NUL",
            gzip.compress(archive(f("a", b"x")) + b"junk", mtime=0),
            {"a": Node("f", b"x")},
            message="junk within compressed archive",
        ),
    ]


def _crc_bad(name: str) -> bytes:
    """A crc archive of one file ``name`` whose c_check does not match its data."""
    data = bytearray(archive(f(name, b"data"), format="crc"))
    data[102:110] = b"0000DEAD"
    return bytes(data)


def _odc_header() -> bytes:
    """An odc (070707) header of 76 bytes and a name, long enough for do_start's 110 bytes."""
    return b"070707" + b"0" * 70 + b"x\0" + bytes(40)


def _bad_gzip_crc(data: bytes) -> bytes:
    """A gzip member of ``data`` whose CRC32 is wrong."""
    packed = bytearray(gzip.compress(data, mtime=0))
    packed[-8] ^= 0xFF
    return bytes(packed)


def _gzip_cut(data: bytes) -> bytes:
    """A gzip member of ``data`` cut in the middle of its deflate stream."""
    packed = gzip.compress(data, mtime=0)
    return packed[: len(packed) // 2]


CASES = _cases()

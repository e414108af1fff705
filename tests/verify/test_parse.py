"""Reading a real kernel's console: the figures of Linux 6.1 and the probe's report."""

from __future__ import annotations

from pathlib import Path

from bootmem.verify.compare import compare_trees
from bootmem.verify.images import BEGIN, END
from bootmem.verify.parse import manifest_tree, parse_console

# A TCG boot of Debian's 6.1.0-57-amd64 with the built-in example and the probe, as captured.
CONSOLE = (Path(__file__).parent / "example-console.txt").read_text()


def test_figures_of_a_real_boot() -> None:
    report = parse_console(CONSOLE)
    assert (report.available_k, report.total_k, report.reserved_k) == (199484, 261624, 61880)
    assert report.ramdisk == (0x0FCFB000, 0x0FFE0000)
    assert report.tried_initramfs and not report.not_initramfs
    assert report.unpack_error is None
    assert report.freed_k == 2964
    assert report.tree is not None and len(report.tree) == 58
    assert "/bootmem-probe/init\tf\t0755\t0\t0\t" in next(
        t for t in report.tree if t.startswith("/bootmem-probe/init")
    )


def test_unpack_failure_and_not_initramfs() -> None:
    text = (
        "[    0.000000] Memory: 1K/2K available (3K kernel code, 4K reserved, 0K cma-reserved)\n"
        "[    2.9] Trying to unpack rootfs image as initramfs...\n"
        "[    3.1] Initramfs unpacking failed: write error\n"
        "[    3.2] rootfs image is not initramfs (no cpio magic); looks like an initrd\n"
        "[    3.5] Freeing initrd memory: 31240K\n"
        "[    9.0] Kernel panic - not syncing: No working init found.\n"
    )
    report = parse_console(text)
    assert report.unpack_error == "write error"
    assert report.not_initramfs
    assert report.freed_k == 31240
    assert report.panic == "No working init found."
    assert report.tree is None


def test_what_is_freed_before_rootfs_is_mounted() -> None:
    # x86 on one CPU frees the SMP alternatives before mnt_init() mounts rootfs; a later line
    # of the same words would not be in tmpfs's limit.
    text = (
        "[    0.09] Memory: 207544K/327160K available (93704K reserved, 0K cma-reserved)\n"
        "[    0.44] Freeing SMP alternatives memory: 36K\n"
        "[    0.46] Mount-cache hash table entries: 1024 (order: 1, 8192 bytes, linear)\n"
        "[    4.05] Freeing SMP alternatives memory: 8K\n"
    )
    assert parse_console(text).freed_early == [("SMP alternatives", 36)]
    assert parse_console(CONSOLE).freed_early == [("SMP alternatives", 36)]
    assert parse_console(text.replace("Mount-cache", "Dentry")).freed_early == [
        ("SMP alternatives", 36),
        ("SMP alternatives", 8),
    ]


def test_manifest_records_become_tree_lines() -> None:
    records = [
        "S\t41ed\t0\t0\t60\t3\t1700000000\t0\t0\t/",
        "S\t21a4\t0\t5\t0\t1\t1700000000\t5\t1\t/dev/console",
        "S\t81a4\t1000\t1000\t3\t2\t1700000000\t0\t0\t/a b",
        "S\ta1ff\t0\t0\t7\t1\t1700000000\t0\t0\t/sh",
        "H\t" + "ab" * 32 + "  /a b",
        "L\tbusybox\t/sh",
        "[   12.3] a stray kernel line",
    ]
    assert manifest_tree([BEGIN, *records, END][1:-1]) == [
        "/\td\t0755\t0\t0\t60\t3\t1700000000\t-\t-",
        "/a b\tf\t0644\t1000\t1000\t3\t2\t1700000000\t-\t" + "ab" * 32,
        "/dev/console\tc\t0644\t0\t5\t0\t1\t1700000000\t5:1\t-",
        "/sh\tl\t0777\t0\t0\t7\t1\t1700000000\t-\tbusybox",
    ]


def test_compare_trees_names_each_column_and_missing_paths() -> None:
    linux = [
        "/\td\t0755\t0\t0\t60\t3\t1\t-\t-",
        "/x\tf\t0644\t0\t0\t3\t1\t1\t-\taa",
        "/only-linux\tp\t0644\t0\t0\t0\t1\t1\t-\t-",
    ]
    model = [
        "/\td\t0755\t0\t0\t80\t3\t2\t-\t-",
        "/x\tf\t0644\t0\t1\t3\t1\t1\t-\tbb",
        "/only-model\ts\t0644\t0\t0\t0\t1\t1\t-\t-",
    ]
    found = [(d.what, d.linux, d.model) for d in compare_trees(linux, model)]
    assert found == [
        ("/ size", "60", "80"),
        ("/only-linux", "present", "absent"),
        ("/only-model", "absent", "present"),
        ("/x gid", "0", "1"),
        ("/x data", "aa", "bb"),
    ]

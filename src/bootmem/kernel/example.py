"""The built-in example image that ``bootmem boot`` runs with no arguments.

A small but real initramfs, shaped like a distribution's and generated on the fly, the same
bytes every time: an uncompressed early archive with a CPU microcode blob, NUL padding, then
a compressed main archive with a busybox-style userland - directories, an ``/init`` script, a
multi-call binary with its applet symlinks, a hardlink pair, kernel modules, configuration
files, device nodes and a fifo.
"""

from __future__ import annotations

import io
import random
import stat

from bootmem.initramfs.compress import open_compressor
from bootmem.initramfs.cpio import CpioWriter, Entry

MTIME = 1_700_000_000  # fixed, so the example is reproducible

INIT_SCRIPT = b"""#!/bin/sh
# The example's early userspace: mount the pseudo filesystems, load modules, hand over.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in /lib/modules/*/kernel/drivers/*/*.ko; do insmod "$m"; done
echo "bootmem example: rootfs ready"
exec /bin/sh
"""

APPLETS = ("sh", "ls", "cat", "mount", "umount", "insmod", "modprobe", "echo", "mkdir", "switch_root")
MODULES = {
    "block/virtio_blk.ko": 96 << 10,
    "net/virtio_net.ko": 160 << 10,
    "scsi/sd_mod.ko": 128 << 10,
    "md/dm-mod.ko": 448 << 10,
    "gpu/simpledrm.ko": 64 << 10,
}
KVER = "6.12.0-bootmem"


def _binary(rng: random.Random, size: int) -> bytes:
    """Bytes that compress about as well as machine code (roughly 2.5:1 with zstd)."""
    words = [rng.randbytes(8) for _ in range(512)]
    parts = []
    total = 0
    while total < size:
        part = rng.randbytes(24) if rng.random() < 0.35 else b"".join(rng.choices(words, k=4))
        parts.append(part)
        total += len(part)
    return b"".join(parts)[:size]


def example_image(compression: str = "zstd", level: int | None = None) -> bytes:
    """The example image: raw early archive + NUL padding + the ``compression`` main archive."""
    rng = random.Random(0x0B007)
    early = io.BytesIO()
    with CpioWriter(early) as w:
        ino = iter(range(1, 1_000))
        for d in ("kernel", "kernel/x86", "kernel/x86/microcode"):
            w.add(Entry(d, stat.S_IFDIR | 0o755, c_ino=next(ino), c_nlink=2, c_mtime=MTIME))
        w.add(
            Entry(
                "kernel/x86/microcode/GenuineIntel.bin", stat.S_IFREG | 0o644, c_ino=next(ino), c_mtime=MTIME
            ),
            rng.randbytes(48 << 10),
        )
    early_bytes = early.getvalue()
    early_bytes += b"\0" * (-len(early_bytes) % 512)

    main = io.BytesIO()
    with CpioWriter(main) as w:
        inodes = iter(range(1, 10_000))

        def add(name: str, mode: int, data: bytes = b"", **fields: int | str) -> None:
            fields.setdefault("c_ino", next(inodes))
            w.add(Entry(name, mode, c_mtime=MTIME, **fields), data)  # type: ignore[arg-type]

        dirs = [
            "bin",
            "sbin",
            "etc",
            "lib",
            "lib/modules",
            f"lib/modules/{KVER}",
            "proc",
            "sys",
            "run",
            "tmp",
            "dev",
            "root",
            "usr",
            "usr/share",
            "usr/share/udhcpc",
        ]
        dirs += [f"lib/modules/{KVER}/kernel", f"lib/modules/{KVER}/kernel/drivers"]
        dirs += sorted({f"lib/modules/{KVER}/kernel/drivers/{m.split('/')[0]}" for m in MODULES})
        add(".", stat.S_IFDIR | 0o755, c_nlink=2)
        for d in dirs:
            add(d, stat.S_IFDIR | (0o1777 if d == "tmp" else 0o700 if d == "root" else 0o755), c_nlink=2)
        add("init", stat.S_IFREG | 0o755, INIT_SCRIPT)
        add("bin/busybox", stat.S_IFREG | 0o755, _binary(rng, 1_200 << 10))
        for applet in APPLETS:
            add(f"bin/{applet}", stat.S_IFLNK | 0o777, linkname="busybox")
        for module, size in MODULES.items():
            add(f"lib/modules/{KVER}/kernel/drivers/{module}", stat.S_IFREG | 0o644, _binary(rng, size))
        deps = "".join(f"kernel/drivers/{m}:\n" for m in MODULES).encode()
        add(f"lib/modules/{KVER}/modules.dep", stat.S_IFREG | 0o644, deps)
        add("etc/passwd", stat.S_IFREG | 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        add("etc/group", stat.S_IFREG | 0o644, b"root:x:0:\n")
        add("etc/hostname", stat.S_IFREG | 0o644, b"bootmem-example\n")
        add("etc/fstab", stat.S_IFREG | 0o644, b"proc /proc proc defaults 0 0\n")
        # A hardlink pair as GNU cpio writes it: the data on the last link.
        script = b"#!/bin/sh\necho udhcpc event: $1\n"
        add("usr/share/udhcpc/default.script", stat.S_IFREG | 0o755, b"", c_ino=5000, c_nlink=2)
        add("sbin/udhcpc-script", stat.S_IFREG | 0o755, script, c_ino=5000, c_nlink=2)
        add("dev/console", stat.S_IFCHR | 0o600, c_rdevmajor=5, c_rdevminor=1)
        add("dev/null", stat.S_IFCHR | 0o666, c_rdevmajor=1, c_rdevminor=3)
        add("dev/vda", stat.S_IFBLK | 0o660, c_rdevmajor=254, c_rdevminor=0)
        add("run/initctl", stat.S_IFIFO | 0o600)
    compressor = open_compressor(compression, level)
    packed = compressor.compress(main.getvalue()) + compressor.flush()
    return early_bytes + packed

"""Images to boot under a real kernel: a Debian ``mkinitramfs`` image, and the probe segment.

:func:`mkinitramfs` runs Debian's own ``mkinitramfs`` (initramfs-tools) for a kernel unpacked
by :func:`bootmem.verify.kernel.debian_kernel`, so tests and benchmarks get the ~30 MB image a
Debian machine boots: early CPU-microcode-free, a ``MODULES=most`` main archive compressed
with the chosen compression.

:func:`probe_segment` is the raw newc archive the harness prepends to an image under test.
Its ``/bootmem-probe/init`` (booted with ``rdinit=/bootmem-probe/init``) walks the rootfs
Linux built and prints one record per path on the console between marker lines, then powers
the machine off.  The probe lives under a directory of its own so that the image under test,
whose later segments win (``init/initramfs.c`` replaces existing paths), cannot replace it
unless it ships that very directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bootmem.errors import UsageError, VerifyError
from bootmem.initramfs.cpio import Entry
from bootmem.verify.kernel import RD_OPTIONS, Kernel, cache_dir, locked

#: The probe's directory, its init and the kernel command line word that runs it.
PROBE_DIR = "bootmem-probe"
PROBE_INIT = f"/{PROBE_DIR}/init"
PROBE_CMDLINE = f"rdinit={PROBE_INIT}"

#: Marker lines around the probe's report on the console.
BEGIN = "bootmem-probe: begin"
END = "bootmem-probe: end"

# Record prefixes: M = a line of /proc/meminfo as init starts, S = stat of one path, H = SHA-256
# of a regular file, L = a symlink's target.
# Fields are tab separated; ``stat -c`` formats: %f raw mode (hex), %u, %g, %s, %h nlink,
# %Y mtime, %t/%T rdev major/minor (hex), %n the path (last, as it may hold spaces).
_PROBE_INIT = f"""#!/{PROBE_DIR}/busybox sh
B=/{PROBE_DIR}/busybox
# Keep kernel messages off the console while the report prints (console_loglevel = 1).
$B dmesg -n 1
echo
echo "{BEGIN}"
# The memory the kernel left as init starts, read from a proc mounted on the probe's own empty
# directory and unmounted before the walk, so the rootfs is listed as Linux built it.
$B mount -t proc proc /{PROBE_DIR}/proc && $B sed 's/^/M\t/' /{PROBE_DIR}/proc/meminfo
$B umount /{PROBE_DIR}/proc
$B find / -xdev -exec $B stat -c 'S\t%f\t%u\t%g\t%s\t%h\t%Y\t%t\t%T\t%n' {{}} +
$B find / -xdev -type f -exec $B sha256sum {{}} + | $B sed 's/^/H\t/'
$B find / -xdev -type l | while IFS= read -r p; do echo "L	$($B readlink "$p")	$p"; done
echo "{END}"
$B sync
$B poweroff -f
"""


def probe_segment(busybox: Path | None = None) -> bytes:
    """The probe: a raw newc archive of ``/bootmem-probe/{busybox,init,proc/}``, 4-byte aligned.

    ``busybox`` must be statically linked (Debian's busybox-static: ``/bin/busybox``), since the
    rootfs under test may have no C library; the default is the one on PATH.  Raises
    :class:`VerifyError` when there is none or it is dynamically linked.
    """
    path = busybox or _which_busybox()
    data = path.read_bytes()
    if _has_interpreter(data):
        raise VerifyError(
            f"{str(path)!r} is dynamically linked: the probe needs a static busybox (busybox-static)"
        )
    import io

    from bootmem.initramfs.cpio import CpioWriter

    out = io.BytesIO()
    with CpioWriter(out) as writer:
        writer.add(Entry(name=PROBE_DIR, c_mode=0o040755, c_ino=1, c_nlink=3))
        writer.add(Entry(name=f"{PROBE_DIR}/proc", c_mode=0o040555, c_ino=4, c_nlink=2))
        writer.add(Entry(name=f"{PROBE_DIR}/busybox", c_mode=0o100755, c_ino=2), data)
        writer.add(Entry(name=f"{PROBE_DIR}/init", c_mode=0o100755, c_ino=3), _PROBE_INIT.encode())
    return out.getvalue()


def _which_busybox() -> Path:
    found = shutil.which("busybox")
    if found is None:
        raise VerifyError("busybox not found: the probe needs a static busybox (Debian: busybox-static)")
    return Path(os.path.realpath(found))


def _has_interpreter(elf: bytes) -> bool:
    """Whether an ELF file asks for a program interpreter (``PT_INTERP``): dynamically linked."""
    import struct

    if elf[:4] != b"\x7fELF":
        raise VerifyError("the probe's busybox is not an ELF file")
    if elf[4] != 2:  # ELFCLASS64
        raise VerifyError("the probe's busybox is not a 64-bit ELF file")
    order = "<" if elf[5] == 1 else ">"
    (phoff,) = struct.unpack_from(order + "Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from(order + "HH", elf, 0x36)
    for i in range(phnum):
        (p_type,) = struct.unpack_from(order + "I", elf, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return True
    return False


def compose(probe: bytes, image: bytes) -> bytes:
    """The image the harness boots: the probe, then the image under test, unchanged.

    The probe is a raw archive whose length is a multiple of 4, so whatever follows starts
    where ``unpack_to_rootfs`` looks for the next member.
    """
    if len(probe) % 4:
        raise UsageError(f"probe segment of {len(probe)} bytes is not 4-byte aligned")
    return probe + image


# --- Debian's mkinitramfs ---------------------------------------------------------------------

# Debian's shipped /etc/initramfs-tools/initramfs.conf, compression left to the caller.
_INITRAMFS_CONF = """MODULES={modules}
BUSYBOX=auto
KEYMAP=n
COMPRESS={compress}
DEVICE=
NFSROOT=auto
RUNSIZE=10%
FSTYPE=auto
"""

# mkinitramfs's -c names, by bootmem's compression names.
_MKINITRAMFS_NAMES = {"lzo": "lzop"}


def mkinitramfs(
    kernel: Kernel,
    compression: str = "zstd",
    *,
    modules: str = "most",
    out: Path | None = None,
) -> bytes:
    """A Debian initramfs-tools image for ``kernel``, built by Debian's own ``mkinitramfs``.

    ``kernel`` must be an unpacked Debian package (:func:`~bootmem.verify.kernel.debian_kernel`
    or ``--kernel`` of such a tree): mkinitramfs reads ``/lib/modules/VERSION`` and
    ``/boot/config-VERSION``, paths it does not let a caller change, so the unpacked tree is
    put there for the duration of the build (under a lock, and only where nothing is there
    already; the host's own kernel of that version is used as it is).  The modules directory
    is a real one, of hard links (copies across filesystems) marked as bootmem's
    (:data:`STAGED_MARK`): through a symlink, mkinitramfs's ``copy_file`` would put each
    module at its path in the cache and a symlink where Debian's image has the module.  What an
    interrupted build left there is removed first (:func:`remove_stale_links`).  The
    configuration is Debian's default (``MODULES=most``, ``BUSYBOX=auto``) from a private
    ``-d`` directory, so the host's own initramfs-tools settings do not leak in;
    ``SOURCE_DATE_EPOCH`` is the kernel image's mtime, so the build is reproducible.

    ``compression`` is one of bootmem's names (``gzip bzip2 lzma xz lzo lz4 zstd``) and must be
    one the kernel decompresses.  The image is also written to ``out`` when given.  Raises
    :class:`VerifyError` when mkinitramfs or the package's files are missing or it fails.
    """
    if compression not in RD_OPTIONS:
        raise UsageError(f"unknown compression {compression!r} ({', '.join(RD_OPTIONS)})")
    if compression not in kernel.compressions():
        raise VerifyError(
            f"kernel {kernel.version} has no {RD_OPTIONS[compression]}=y: cannot boot {compression}"
        )
    if kernel.version is None or kernel.modules is None or kernel.config is None:
        raise VerifyError(
            f"{str(kernel.image)!r} is not an unpacked Debian kernel package (boot/config-VERSION and "
            "lib/modules/VERSION): mkinitramfs needs one"
        )
    tool = shutil.which("mkinitramfs")
    if tool is None:
        raise VerifyError("mkinitramfs not found (Debian: initramfs-tools-core)")
    name = _MKINITRAMFS_NAMES.get(compression, compression)
    version = kernel.version
    links = [
        (Path("/lib/modules") / version, kernel.modules),
        (Path("/boot") / f"config-{version}", kernel.config),
    ]
    with (
        build_lock(),
        tempfile.TemporaryDirectory(prefix="bootmem-mkinitramfs-") as tmp,
    ):
        scratch = Path(tmp)
        conf = scratch / "conf"
        for sub in ("conf.d", "hooks", "scripts"):
            (conf / sub).mkdir(parents=True)
        (conf / "modules").write_text("")
        (conf / "initramfs.conf").write_text(_INITRAMFS_CONF.format(modules=modules, compress=name))
        target = out or scratch / "initrd.img"
        remove_stale_links(links, cache_dir())
        made = _stage_all(links)
        try:
            env = dict(os.environ)
            env["SOURCE_DATE_EPOCH"] = str(int(kernel.image.stat().st_mtime))
            env["TMPDIR"] = str(scratch)
            argv = [tool, "-d", str(conf), "-c", name, "-o", str(target), version]
            done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        finally:
            _unstage(made)
        if done.returncode != 0:
            complaint = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise VerifyError(
                f"mkinitramfs for {version} failed: "
                + (complaint[-1] if complaint else f"exit {done.returncode}")
            )
        if "not supported by kernel" in done.stderr:
            raise VerifyError(f"mkinitramfs fell back from {name}: {done.stderr.strip().splitlines()[-1]}")
        return target.read_bytes()


def build_lock() -> contextlib.AbstractContextManager[None]:
    """The lock a :func:`mkinitramfs` build holds while what it staged is in /lib/modules and
    /boot: hold it to look at or change them with no build half way through.

    The paths are the machine's, not one user's, so the lock is too: in ``/run/lock`` (the
    temporary directory where there is none), shared by every cache directory.
    """
    return locked(build_lock_path())


def build_lock_path() -> Path:
    """The file :func:`build_lock` locks."""
    run_lock = Path("/run/lock")
    base = run_lock if run_lock.is_dir() and os.access(run_lock, os.W_OK) else Path(tempfile.gettempdir())
    return base / "bootmem-mkinitramfs.lock"


#: The file that marks a modules directory :func:`mkinitramfs` staged: a directory holding it is
#: bootmem's to remove, whatever else is in it.
STAGED_MARK = ".bootmem-staged"


def remove_stale_links(links: list[tuple[Path, Path]], cache: Path) -> list[Path]:
    """Remove what an interrupted :func:`mkinitramfs` build left at each ``link``; the paths removed.

    That is a directory holding :data:`STAGED_MARK`, or a symlink into ``cache`` (as builds
    made them before).  The caller holds the build lock, so no other build is using it.  A real
    file or directory, or a symlink pointing anywhere else, is the host's own and stays.
    Raises :class:`VerifyError` when one cannot be removed.
    """
    roots = {Path(os.path.abspath(cache)), Path(os.path.realpath(cache))}
    removed: list[Path] = []
    for link, _target in links:
        try:
            if link.is_symlink():
                pointee = Path(os.path.abspath(link.parent / os.readlink(link)))
                if not any(pointee == root or root in pointee.parents for root in roots):
                    continue
                link.unlink()
            elif link.is_dir() and (link / STAGED_MARK).is_file():
                shutil.rmtree(link)
            else:
                continue
        except OSError as exc:
            raise VerifyError(
                f"cannot remove {str(link)!r}, which an interrupted mkinitramfs build left ({exc.strerror})"
            ) from exc
        removed.append(link)
    return removed


def _stage_all(links: list[tuple[Path, Path]]) -> list[Path]:
    """Put each ``target`` at ``link`` where nothing exists yet; the paths made.

    A directory becomes a marked tree of hard links (:func:`_stage_tree`), a file a symlink.
    """
    made: list[Path] = []
    try:
        for link, target in links:
            if link.exists() or link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            made.append(link)
            if target.is_dir():
                _stage_tree(target, link)
            else:
                link.symlink_to(target)
    except OSError as exc:
        _unstage(made)
        raise VerifyError(
            f"cannot stage {str(exc.filename)!r} for mkinitramfs ({exc.strerror}): it reads only "
            "/lib/modules/VERSION and /boot/config-VERSION: run as root, or with that kernel installed"
        ) from exc
    return made


def _stage_tree(source: Path, dest: Path) -> None:
    """``dest`` as a copy of the tree ``source``: directories made, files hard-linked (copied when
    the link is refused, as across filesystems), symlinks copied; marked with :data:`STAGED_MARK`."""
    dest.mkdir()
    (dest / STAGED_MARK).write_text("staged by bootmem for mkinitramfs; removed after the build\n")
    for top, dirs, files in os.walk(source):
        here = dest / os.path.relpath(top, source)
        for name in dirs:
            if os.path.islink(os.path.join(top, name)):
                os.symlink(os.readlink(os.path.join(top, name)), here / name)
            else:
                (here / name).mkdir()
        for name in files:
            path = os.path.join(top, name)
            if os.path.islink(path):
                os.symlink(os.readlink(path), here / name)
                continue
            try:
                os.link(path, here / name)
            except OSError:
                shutil.copy2(path, here / name)


def _unstage(made: list[Path]) -> None:
    for path in made:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

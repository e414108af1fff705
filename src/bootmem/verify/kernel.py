"""A real Linux kernel to boot: one the user gives, or Debian's, fetched once into a cache.

:func:`debian_kernel` resolves the package that Debian's meta-package ``linux-image-ARCH``
depends on (``apt-cache depends``), downloads it with ``apt-get download`` and unpacks it with
``dpkg-deb -x`` under the user's cache directory (``$XDG_CACHE_HOME/bootmem`` or
``~/.cache/bootmem``).  Nothing is installed; the unpacked tree keeps ``boot/vmlinuz-VERSION``,
``boot/config-VERSION`` and ``lib/modules/VERSION``, which :func:`mkinitramfs` needs to build
a distribution image for that kernel.

:func:`kernel_from_path` takes a kernel image file (bzImage, arm64 or riscv ``Image``) or an
unpacked package tree.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bootmem.errors import UsageError, VerifyError
from bootmem.initramfs.compress import CODECS

#: Debian architectures the harness knows how to boot, and the QEMU that boots each.
ARCHES = ("amd64", "riscv64", "arm64")

#: mkinitramfs's compression names by the kernel config option that enables each decompressor.
RD_OPTIONS = {name: f"CONFIG_RD_{name.upper()}" for name, codec in CODECS.items() if codec.kernel_magics}


@dataclass(frozen=True, slots=True)
class Kernel:
    """A kernel image to boot, and, when it came from a Debian package, the unpacked package.

    ``image`` is what QEMU's ``-kernel`` takes; ``root`` the directory the package was unpacked
    into (``None`` for a bare image), holding ``boot/config-VERSION`` and
    ``lib/modules/VERSION``; ``package`` the Debian package and version it came from.
    """

    image: Path
    arch: str
    version: str | None = None
    root: Path | None = None
    package: str | None = None

    @property
    def config(self) -> Path | None:
        """``boot/config-VERSION`` of the unpacked package, when there is one."""
        if self.root is None or self.version is None:
            return None
        path = self.root / "boot" / f"config-{self.version}"
        return path if path.is_file() else None

    @property
    def modules(self) -> Path | None:
        """``lib/modules/VERSION`` of the unpacked package, when there is one."""
        if self.root is None or self.version is None:
            return None
        path = self.root / "lib" / "modules" / self.version
        return path if path.is_dir() else None

    @property
    def busybox(self) -> Path | None:
        """The static busybox fetched with a foreign-architecture kernel, for its probe."""
        if self.root is None:
            return None
        path = self.root / "bin" / "busybox"
        return path if path.is_file() else None

    def config_options(self) -> dict[str, str]:
        """The kernel's ``CONFIG_*=value`` settings (empty when the config is unknown)."""
        if self.config is None:
            return {}
        options = {}
        for line in self.config.read_text(encoding="utf-8", errors="replace").splitlines():
            name, sep, value = line.partition("=")
            if sep and name.startswith("CONFIG_"):
                options[name] = value
        return options

    def compressions(self) -> list[str]:
        """The initrd compressions this kernel decompresses (``CONFIG_RD_*=y``).

        Every compression when the config is unknown (a bare image): the kernel will say.
        """
        options = self.config_options()
        if not options:
            return list(RD_OPTIONS)
        return [name for name, option in RD_OPTIONS.items() if options.get(option) == "y"]


# --- where things are cached ---------------------------------------------------------------------


def cache_dir() -> Path:
    """bootmem's cache directory: ``$XDG_CACHE_HOME/bootmem``, else ``~/.cache/bootmem``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bootmem"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created): one fetch or build at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], *, what: str, cwd: Path | None = None) -> str:
    """Run a host tool; its stdout, or a :class:`VerifyError` naming the tool and its complaint."""
    if shutil.which(argv[0]) is None:
        raise VerifyError(f"{argv[0]} not found: {what} needs it")
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise VerifyError(f"{argv[0]} could not run: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        last = detail[-1] if detail else f"exit status {done.returncode}"
        raise VerifyError(f"{' '.join(argv)}: {last}")
    return done.stdout


# --- Debian's kernel ----------------------------------------------------------------------------


def host_arch() -> str:
    """dpkg's architecture of this host (``amd64`` when dpkg is absent)."""
    if shutil.which("dpkg") is None:
        return "amd64"
    return _run(["dpkg", "--print-architecture"], what="the host's architecture").strip()


def apt_options(arch: str, cache: Path | None = None) -> list[str]:
    """apt's ``-o`` options to look up and download packages of ``arch``.

    The host's own architecture needs none.  For another one, apt gets package lists of its own
    under ``CACHE/apt-ARCH`` (fetched by ``apt-get update`` the first time), so the host's dpkg
    and apt configuration stay untouched.
    """
    if arch == host_arch():
        return []
    home = (cache or cache_dir()) / f"apt-{arch}"
    options = [
        "-o", f"Dir::State::Lists={home / 'lists'}",
        "-o", f"Dir::Cache={home / 'cache'}",
        "-o", f"APT::Architecture={arch}",
        "-o", f"APT::Architectures::={arch}",
        "-o", "Dir::State::status=/dev/null",
    ]  # fmt: skip
    with locked(home / ".lock"):
        if not any((home / "lists").glob("*Packages*")):
            for sub in ("lists/partial", "cache/archives/partial"):
                (home / sub).mkdir(parents=True, exist_ok=True)
            _run(["apt-get", *options, "update", "-q"], what=f"fetching Debian's package lists for {arch}")
    return options


def resolve_debian_kernel(arch: str = "amd64", *, cache: Path | None = None) -> tuple[str, str]:
    """``(package, version)`` of the kernel Debian's ``linux-image-ARCH`` depends on today.

    >>> resolve_debian_kernel()  # doctest: +SKIP
    ('linux-image-6.1.0-57-amd64', '6.1.192-3')
    """
    if arch not in ARCHES:
        raise UsageError(f"unknown architecture {arch!r} ({', '.join(ARCHES)})")
    meta = f"linux-image-{arch}"
    what = "fetching Debian's kernel (or give --kernel PATH)"
    if shutil.which("apt-cache") is None:
        raise VerifyError(f"apt-cache not found: {what} needs it")
    options = apt_options(arch, cache)
    depends = _run(["apt-cache", *options, "depends", meta], what=what)
    names = re.findall(rf"Depends:\s*(linux-image-[0-9][^\s:]*-{re.escape(arch)})\b", depends)
    if not names:
        raise VerifyError(f"apt-cache knows no kernel package that {meta!r} depends on (for {arch})")
    package = names[0]
    shown = _run(["apt-cache", *options, "show", "--no-all-versions", package], what=what)
    version = re.search(r"^Version:\s*(\S+)", shown, re.MULTILINE)
    if version is None:
        raise VerifyError(f"apt-cache show {package!r} gives no Version")
    return package, version.group(1)


def debian_kernel(arch: str = "amd64", *, cache: Path | None = None) -> Kernel:
    """Debian's current kernel for ``arch``, downloaded and unpacked once into the cache.

    The package is resolved with apt (so the answer follows the host's apt sources), fetched
    with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into
    ``CACHE/kernels/PACKAGE_VERSION``; the ``.deb`` is removed afterwards.  For another
    architecture than the host's, apt uses package lists of its own (:func:`apt_options`) and
    that architecture's busybox-static is unpacked alongside, for the probe.  Concurrent
    callers wait on a lock rather than download twice.  Raises :class:`VerifyError` naming
    what is missing: apt, the package, dpkg-deb, or a kernel image in the package.
    """
    package, version = resolve_debian_kernel(arch, cache=cache)
    home = (cache or cache_dir()) / "kernels"
    target = home / f"{package}_{version}"
    options = apt_options(arch, cache)
    packages = [package] if not options else [package, "busybox-static"]
    with locked(home / ".lock"):
        if not (target / ".complete").exists():
            _download_and_unpack(packages, options, home, target)
    return _kernel_from_tree(target, arch=arch, package=f"{package}={version}")


def _download_and_unpack(packages: list[str], options: list[str], home: Path, target: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home, prefix=".fetch-") as scratch:
        work = Path(scratch)
        what = f"downloading {' '.join(packages)}"
        _run(["apt-get", *options, "download", "-q", *packages], what=what, cwd=work)
        debs = sorted(work.glob("*.deb"))
        if len(debs) != len(packages):
            raise VerifyError(f"apt-get download {' '.join(packages)} left {len(debs)} .deb files in {work}")
        tree = work / "tree"
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(tree)], what=f"unpacking {deb.name}")
        (tree / ".complete").write_text(" ".join(packages) + "\n")
        if target.exists():
            shutil.rmtree(target)
        tree.rename(target)


def _kernel_from_tree(root: Path, *, arch: str | None = None, package: str | None = None) -> Kernel:
    boot = root / "boot"
    images = sorted(boot.glob("vmlinuz-*")) + sorted(boot.glob("vmlinux-*"))
    if not images:
        raise VerifyError(f"no boot/vmlinuz-* in {str(root)!r}")
    image = images[0]
    version = image.name.split("-", 1)[1]
    return Kernel(
        image=image,
        arch=arch or kernel_arch(image),
        version=version,
        root=root,
        package=package,
    )


def kernel_arch(image: Path) -> str:
    """The architecture of a kernel image, from its boot header.

    x86's bzImage has ``HdrS`` at 0x202; arm64's ``Image`` has ``ARM\\x64`` at 0x38 and
    riscv's ``RSC\\x05`` at 0x38 (Documentation/arch/*/booting.rst).  Raises
    :class:`VerifyError` for anything else (a compressed ``vmlinuz`` of arm64 must be given
    decompressed, as QEMU wants it).
    """
    with open(image, "rb") as f:
        head = f.read(0x240)
    if head[0x202:0x206] == b"HdrS":
        return "amd64"
    if head[0x38:0x3C] == b"ARM\x64":
        return "arm64"
    if head[0x38:0x3C] == b"RSC\x05":
        return "riscv64"
    raise VerifyError(f"{str(image)!r} is not a bzImage or an arm64/riscv64 Image")


def kernel_from_path(path: Path) -> Kernel:
    """The kernel at ``path``: an image file, or a tree unpacked from a Debian kernel package."""
    if path.is_dir():
        return _kernel_from_tree(path)
    if not path.is_file():
        raise VerifyError(f"no kernel at {str(path)!r}")
    return Kernel(image=path, arch=kernel_arch(path))


def find_kernel(path: Path | None = None, *, arch: str = "amd64") -> Kernel:
    """``kernel_from_path(path)`` when a path is given, else :func:`debian_kernel`."""
    return kernel_from_path(path) if path is not None else debian_kernel(arch)

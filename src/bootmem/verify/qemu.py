"""Boot a kernel and an initrd under QEMU and capture the serial console.

One boot is one ``qemu-system-*`` process: the kernel's console on the first serial port,
read from QEMU's stdio; ``panic=-1`` and ``-no-reboot`` make a kernel panic end the process, and
the probe powers the machine off when it has printed its report.  A boot that does neither
within ``timeout`` seconds is killed and reported as timed out.

TCG (QEMU's emulator) is the default.  KVM is used only when asked for (``accel="kvm"``), or
with ``accel="auto"`` when :func:`kvm_works` proved it answers within a few seconds: on some
hosts ``/dev/kvm`` exists and a KVM guest hangs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bootmem.errors import UsageError, VerifyError
from bootmem.verify.kernel import Kernel

Accel = Literal["tcg", "kvm", "auto"]

#: QEMU and its machine arguments for each architecture; the console device Linux names.
QEMU = {
    "amd64": ("qemu-system-x86_64", ["-M", "pc"], "ttyS0"),
    "riscv64": ("qemu-system-riscv64", ["-M", "virt", "-bios", "default"], "ttyS0"),
    "arm64": ("qemu-system-aarch64", ["-M", "virt", "-cpu", "max"], "ttyAMA0"),
}

DEFAULT_TIMEOUT = 300.0

#: Called with each console line as it arrives, and the seconds since QEMU started.
ConsoleProgress = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class QemuBoot:
    """What one QEMU boot printed, and how it ended.

    ``console`` is the serial console with ``\\r`` removed; ``status`` QEMU's exit status
    (``None`` when it was killed at the timeout).
    """

    argv: list[str]
    ram: int
    console: str
    seconds: float
    status: int | None
    timed_out: bool
    accel: str
    stderr: str = ""
    dtb: bytes | None = field(default=None, repr=False)


def qemu_binary(arch: str) -> str:
    """The path of QEMU for ``arch``; :class:`VerifyError` naming the Debian package when missing."""
    if arch not in QEMU:
        raise UsageError(f"no QEMU machine for architecture {arch!r} ({', '.join(QEMU)})")
    name = QEMU[arch][0]
    found = shutil.which(name)
    if found is None:
        package = (
            "qemu-system-x86"
            if arch == "amd64"
            else ("qemu-system-arm" if arch == "arm64" else "qemu-system-misc")
        )
        raise VerifyError(f"{name} not found: booting a real {arch} kernel needs it (Debian: {package})")
    return found


def ram_argument(ram: int) -> str:
    """QEMU's ``-m`` value for ``ram`` bytes: whole MiB when it is, else KiB (``-m 262080K``)."""
    if ram <= 0 or ram % 4096:
        raise UsageError(f"RAM {ram} is not a positive whole number of 4 KiB pages")
    return f"{ram >> 20}M" if ram % (1 << 20) == 0 else f"{ram >> 10}K"


def qemu_argv(
    kernel: Kernel,
    initrd: Path,
    *,
    ram: int,
    cmdline: str = "",
    accel: str = "tcg",
    dumpdtb: Path | None = None,
) -> list[str]:
    """The QEMU command line that boots ``kernel`` with ``initrd`` in ``ram`` bytes of RAM."""
    binary = qemu_binary(kernel.arch)
    _, machine, console = QEMU[kernel.arch]
    if dumpdtb is not None:
        machine = [machine[0], f"{machine[1]},dumpdtb={dumpdtb}", *machine[2:]]
    append = " ".join([f"console={console}", "panic=-1", *cmdline.split()])
    return [
        binary,
        *machine,
        "-accel",
        accel,
        "-m",
        ram_argument(ram),
        "-smp",
        "1",
        "-kernel",
        str(kernel.image),
        "-initrd",
        str(initrd),
        "-append",
        append,
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
        "-monitor",
        "none",
    ]


def boot_qemu(
    kernel: Kernel,
    initrd: bytes,
    *,
    ram: int,
    cmdline: str = "",
    accel: Accel = "tcg",
    timeout: float = DEFAULT_TIMEOUT,
    progress: ConsoleProgress | None = None,
    dumpdtb: bool = False,
) -> QemuBoot:
    """Boot ``kernel`` with ``initrd`` (the bytes, written to a temporary file) in ``ram`` bytes.

    With ``dumpdtb`` (device-tree machines only) QEMU first writes the device tree it would
    hand the kernel, with the initrd's ``/chosen`` properties, and that blob is returned in
    :attr:`QemuBoot.dtb`.  Raises :class:`VerifyError` when QEMU is missing or does not start.
    """
    chosen = _choose_accel(accel, kernel)
    with tempfile.TemporaryDirectory(prefix="bootmem-qemu-") as tmp:
        path = Path(tmp) / "initrd.img"
        path.write_bytes(initrd)
        dtb: bytes | None = None
        if dumpdtb:
            blob = Path(tmp) / "machine.dtb"
            argv = qemu_argv(kernel, path, ram=ram, cmdline=cmdline, accel=chosen, dumpdtb=blob)
            done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
            if not blob.exists():
                raise VerifyError(
                    f"QEMU wrote no device tree: {done.stderr.decode(errors='replace').strip()}"
                )
            dtb = blob.read_bytes()
        argv = qemu_argv(kernel, path, ram=ram, cmdline=cmdline, accel=chosen)
        result = _run(argv, ram=ram, timeout=timeout, progress=progress, accel=chosen)
    return dataclasses.replace(result, dtb=dtb) if dtb is not None else result


def _run(
    argv: list[str], *, ram: int, timeout: float, progress: ConsoleProgress | None, accel: str
) -> QemuBoot:
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise VerifyError(f"{argv[0]} could not start: {exc}") from exc
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    drain.start()
    timer = threading.Timer(timeout, _kill, args=(proc,))
    timer.start()
    try:
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").replace("\r", "").rstrip("\n")
            lines.append(line)
            if progress is not None:
                progress(line, time.monotonic() - start)
        status = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            _kill(proc)
            proc.wait()
    drain.join(5)
    elapsed = time.monotonic() - start
    timed_out = elapsed >= timeout and status != 0
    return QemuBoot(
        argv=argv,
        ram=ram,
        console="\n".join(lines),
        seconds=elapsed,
        status=None if timed_out else status,
        timed_out=timed_out,
        accel=accel,
        stderr=b"".join(errors).decode("utf-8", errors="replace"),
    )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 9)


_KVM_VERDICT: dict[str, bool] = {}


def kvm_works(kernel: Kernel, *, timeout: float = 15.0) -> bool:
    """Whether a KVM guest of ``kernel`` prints its first console line within ``timeout`` seconds.

    Decided once per process and kernel; ``False`` without a writable ``/dev/kvm``.
    """
    key = str(kernel.image)
    if key not in _KVM_VERDICT:
        verdict = False
        if kernel.arch == "amd64" and os.access("/dev/kvm", os.R_OK | os.W_OK):
            seen = threading.Event()
            with tempfile.TemporaryDirectory(prefix="bootmem-kvm-") as tmp:
                empty = Path(tmp) / "empty"
                empty.write_bytes(b"")
                argv = qemu_argv(kernel, empty, ram=128 << 20, accel="kvm")
                run = threading.Thread(
                    target=_run,
                    args=(argv,),
                    kwargs={
                        "ram": 128 << 20,
                        "timeout": timeout,
                        "accel": "kvm",
                        "progress": lambda *_: seen.set(),
                    },
                    daemon=True,
                )
                run.start()
                verdict = seen.wait(timeout)
                run.join(timeout + 5)
        _KVM_VERDICT[key] = verdict
    return _KVM_VERDICT[key]


def _choose_accel(accel: Accel, kernel: Kernel) -> str:
    if accel not in ("tcg", "kvm", "auto"):
        raise UsageError(f"unknown accelerator {accel!r} (tcg, kvm or auto)")
    if accel == "auto":
        return "kvm" if kvm_works(kernel) else "tcg"
    return accel


def boot_many(
    jobs: Sequence[dict[str, object]], *, parallel: int | None = None, **common: object
) -> list[QemuBoot]:
    """Run :func:`boot_qemu` for each job's keyword arguments (merged over ``common``), in parallel.

    ``parallel`` defaults to the number of CPUs (TCG uses one per guest CPU); results come in
    the order of ``jobs``.
    """
    workers = max(1, parallel or os.cpu_count() or 1)

    def one(job: dict[str, object]) -> QemuBoot:
        return boot_qemu(**{**common, **job})  # type: ignore[arg-type]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, jobs))


def console_lines(text: str) -> Iterable[str]:
    """The console's lines, each without its trailing whitespace."""
    return (line.rstrip() for line in text.splitlines())

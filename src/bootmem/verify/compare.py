"""One image, booted by Linux under QEMU and by the model: every figure and path that differs.

:func:`verify_image` prepends the probe, boots the composed image under the real kernel, reads
its console, boots the very same bytes in the model on a machine calibrated from that
kernel's own ``Memory:`` line (the RAM Linux managed, and its reserved memory less the initrd
as the kernel's footprint), and compares:

- the messages of ``populate_rootfs``: whether it tried an initramfs, the unpack error,
  "rootfs image is not initramfs", and ``Freeing initrd memory: NK``;
- the ``Memory:`` figures (total and reserved KiB; available is shown, see :data:`INFORMATIONAL`);
- every path of the rootfs, by type, mode, uid, gid, size, nlink, rdev and content (a regular
  file's SHA-256, a symlink's target); mtimes are shown but not compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bootmem.errors import VerifyError
from bootmem.kernel.arch import FLAT
from bootmem.kernel.boot import DEADLOCK, BootReport, Machine, boot
from bootmem.mm import PAGE_SIZE
from bootmem.units import align_down, align_up, format_size
from bootmem.verify.images import PROBE_CMDLINE, compose, probe_segment
from bootmem.verify.kernel import Kernel
from bootmem.verify.parse import KernelReport, parse_console, strip_stamp
from bootmem.verify.qemu import Accel, ConsoleProgress, QemuBoot, boot_qemu

#: The columns of a tree line (``Tmpfs.tree()``) and whether a difference in each counts.
COLUMNS = ("path", "type", "mode", "uid", "gid", "size", "nlink", "mtime", "rdev", "data")
COMPARED = ("type", "mode", "uid", "gid", "size", "nlink", "rdev", "data")


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing Linux and the model disagree on: ``what``, and each side's value as text."""

    what: str
    linux: str
    model: str

    def to_json(self) -> dict[str, str]:
        return {"what": self.what, "linux": self.linux, "model": self.model}


@dataclass(slots=True)
class Verdict:
    """The outcome of one ``bootmem verify`` boot: both sides' figures and their differences."""

    ram: int
    kernel: Kernel
    qemu: QemuBoot
    linux: KernelReport
    model: BootReport
    model_tree: list[str]
    differences: list[Difference] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return not self.differences

    def figures(self) -> list[tuple[str, str, str]]:
        """``(figure, linux, model)`` for every compared figure, agreeing or not."""
        return _figures(self.linux, self.model)

    def to_json(self) -> dict[str, Any]:
        return {
            "agree": self.agree,
            "ram_bytes": self.ram,
            "kernel": str(self.kernel.image),
            "kernel_package": self.kernel.package,
            "accel": self.qemu.accel,
            "qemu_seconds": round(self.qemu.seconds, 2),
            "timed_out": self.qemu.timed_out,
            "figures": [{"figure": f, "linux": a, "model": b} for f, a, b in self.figures()],
            "linux": self.linux.to_json(),
            "model": {
                "log": [str(line) for line in self.model.log.lines],
                "paths": len(self.model_tree),
            },
            "differences": [d.to_json() for d in self.differences],
        }


def verify_image(
    image: bytes,
    kernel: Kernel,
    *,
    ram: int,
    cmdline: str = "",
    accel: Accel = "tcg",
    timeout: float = 300.0,
    probe: bytes | None = None,
    progress: ConsoleProgress | None = None,
) -> Verdict:
    """Boot ``image`` (with the probe prepended) under ``kernel`` and in the model; compare.

    Raises :class:`VerifyError` when the real boot gives nothing to compare: QEMU timed out
    before the kernel printed its ``Memory:`` line, or printed none.
    """
    if probe is None:
        probe = probe_segment(kernel.busybox)
    composed = compose(probe, image)
    # A device-tree machine: QEMU's own blob (with /chosen's initrd) feeds the model.
    dumpdtb = kernel.arch != "amd64"
    qemu = boot_qemu(
        kernel,
        composed,
        ram=ram,
        cmdline=" ".join([PROBE_CMDLINE, *cmdline.split()]),
        accel=accel,
        timeout=timeout,
        progress=progress,
        dumpdtb=dumpdtb,
    )
    linux = parse_console(qemu.console)
    if linux.memory_line is None:
        tail = " | ".join(strip_stamp(line) for line in qemu.console.splitlines()[-3:]) or "no output"
        how = f"timed out after {qemu.seconds:.0f}s" if qemu.timed_out else f"exit status {qemu.status}"
        raise VerifyError(f"the kernel printed no 'Memory:' line ({how}): {tail}")
    model = model_boot(composed, linux, cmdline=cmdline, dtb=qemu.dtb)
    model_tree = model.rootfs.tree() if model.rootfs is not None else []
    verdict = Verdict(ram=ram, kernel=kernel, qemu=qemu, linux=linux, model=model, model_tree=model_tree)
    verdict.differences = compare(linux, model, model_tree)
    if model.allocator is not None:
        model.rootfs = None
        model.allocator.close()
    return verdict


def model_machine(linux: KernelReport, *, initrd_size: int, dtb: bytes | None = None) -> Machine:
    """The modelled machine for a real boot: the RAM Linux managed and its kernel footprint.

    Linux's ``Memory: A/TK available (... RK reserved ...)`` says T KiB of RAM were managed and
    R KiB reserved when the page allocator came up, the initrd and the device tree included
    (``cma-reserved`` is apart); the model's kernel image is R less the page-rounded initrd
    (``RAMDISK:`` where Linux prints it, else ``initrd_size``) less the device tree (its
    ``totalsize``, or the model's own one page), so the model's allocator starts with the same
    free pages; what Linux freed before mounting rootfs (``Freeing SMP alternatives memory``)
    is freed by the model at the same point.  With ``dtb`` the RAM comes from the blob, as in Linux.
    """
    if linux.total_k is None or linux.reserved_k is None:
        raise VerifyError("the kernel's Memory: line has no total or reserved figure")
    if linux.ramdisk is not None:
        start, end = linux.ramdisk
        initrd = align_up(end, PAGE_SIZE) - align_down(start, PAGE_SIZE)
    else:
        initrd = align_up(initrd_size, PAGE_SIZE)
    blob = align_up(int.from_bytes(dtb[4:8], "big"), PAGE_SIZE) if dtb is not None else PAGE_SIZE
    kernel = (linux.reserved_k << 10) - initrd - blob
    if kernel <= 0:
        raise VerifyError(f"reserved {linux.reserved_k}K is smaller than the initrd ({format_size(initrd)})")
    # What Linux freed of its image before mounting rootfs counts in tmpfs's limit: the model
    # frees the same from the top of its kernel image (x86's SMP alternatives, 36K: 4 pages of
    # tmpfs at any RAM size).
    arch = replace(FLAT, freed_early=tuple((name, k << 10) for name, k in linux.freed_early))
    return Machine(ram_size=align_down(linux.total_k << 10, PAGE_SIZE), kernel_size=kernel, arch=arch)


def model_boot(
    composed: bytes, linux: KernelReport, *, cmdline: str = "", dtb: bytes | None = None
) -> BootReport:
    """The model's boot of the composed image on :func:`model_machine` of ``linux``.

    With a device tree (a machine whose initrd arrives through ``/chosen``), the initrd is freed
    as generic Linux frees it: the range rounded inward (``free_reserved_area``).
    """
    machine = model_machine(linux, initrd_size=len(composed), dtb=dtb)
    return boot(composed, machine=machine, dtb=dtb, cmdline=cmdline, poison=None)


#: Figures shown side by side but not judged, and why.
INFORMATIONAL = {
    # Linux prints nr_free_pages() when mem_init_print_info() runs, a few dozen pages after
    # memblock_free_all() handed RAM to the buddy allocator; the model's figure is the managed
    # pages (total less reserved), which is what tmpfs's limit follows (totalram_pages()).
    "Memory: available": "Linux's is nr_free_pages() at the print, after early allocations",
    # The machine here is calibrated from the Memory: line alone (model_machine): what the
    # kernel holds after mem_init is not, so the model runs out only of its own pages; `bootmem
    # budget --confirm` calibrates that too and judges the threshold against Linux.
    "deadlocked on memory": "the kernel's needs after mem_init are not calibrated here: budget --confirm",
}


def _model_figures(model: BootReport) -> dict[str, str]:
    messages = model.log.messages()
    freed = next((m for m in messages if m.startswith("Freeing initrd memory:")), None)
    return {
        "tried initramfs": str(any("Trying to unpack rootfs image as initramfs" in m for m in messages)),
        "unpack error": str(model.unpack_error) if model.unpack_error else "-",
        "not initramfs": str(any("rootfs image is not initramfs" in m for m in messages)),
        "deadlocked on memory": str(model.panic == DEADLOCK),
        "Freeing initrd memory": freed.split(":", 1)[1].strip() if freed else "-",
        "Memory: total": f"{model.total_pages * PAGE_SIZE >> 10}K",
        "Memory: reserved": f"{(model.total_pages - model.available_pages) * PAGE_SIZE >> 10}K",
        "Memory: available": f"{model.available_pages * PAGE_SIZE >> 10}K",
    }


def _linux_figures(linux: KernelReport) -> dict[str, str]:
    return {
        "tried initramfs": str(linux.tried_initramfs),
        "unpack error": linux.unpack_error or "-",
        "not initramfs": str(linux.not_initramfs),
        "deadlocked on memory": str(linux.panic == DEADLOCK),
        "Freeing initrd memory": f"{linux.freed_k}K" if linux.freed_k is not None else "-",
        "Memory: total": f"{linux.total_k}K",
        "Memory: reserved": f"{linux.reserved_k}K",
        "Memory: available": f"{linux.available_k}K",
    }


def _figures(linux: KernelReport, model: BootReport) -> list[tuple[str, str, str]]:
    ours, theirs = _model_figures(model), _linux_figures(linux)
    return [(name, theirs[name], ours[name]) for name in theirs]


def compare(linux: KernelReport, model: BootReport, model_tree: list[str]) -> list[Difference]:
    """Every figure and path on which ``linux`` and ``model`` differ, figures first."""
    differences = [
        Difference(name, a, b)
        for name, a, b in _figures(linux, model)
        if a != b and name not in INFORMATIONAL
    ]
    if linux.tree is None:
        differences.append(
            Difference("rootfs", "no probe report (init did not run)", f"{len(model_tree)} paths")
        )
        return differences
    differences.extend(compare_trees(linux.tree, model_tree))
    return differences


def compare_trees(linux: list[str], model: list[str]) -> list[Difference]:
    """Paths present on one side only, and paths whose compared columns differ.

    >>> a = ["/\\td\\t0755\\t0\\t0\\t60\\t2\\t0\\t-\\t-", "/x\\tf\\t0644\\t0\\t0\\t1\\t1\\t0\\t-\\tab"]
    >>> b = ["/\\td\\t0755\\t0\\t0\\t60\\t2\\t5\\t-\\t-", "/x\\tf\\t0600\\t0\\t0\\t1\\t1\\t0\\t-\\tab"]
    >>> [(d.what, d.linux, d.model) for d in compare_trees(a, b)]
    [('/x mode', '0644', '0600')]
    """
    ours = _by_path(model)
    theirs = _by_path(linux)
    differences = []
    for path in sorted(ours.keys() | theirs.keys()):
        a, b = theirs.get(path), ours.get(path)
        if a is None or b is None:
            differences.append(Difference(path, "present" if a else "absent", "present" if b else "absent"))
            continue
        for column in COMPARED:
            if a[column] != b[column]:
                differences.append(Difference(f"{path} {column}", a[column], b[column]))
    return differences


def _by_path(lines: list[str]) -> dict[str, dict[str, str]]:
    table = {}
    for line in lines:
        fields = line.split("\t")
        if len(fields) == len(COLUMNS):
            table[fields[0]] = dict(zip(COLUMNS, fields, strict=True))
    return table

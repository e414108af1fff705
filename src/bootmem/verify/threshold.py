"""The smallest RAM a real kernel boots an image in, and the model's budget held against it.

A real boot *succeeds* when Linux unpacked the image without an error and the probe (init)
ran and printed the rootfs: the same test the model's budget applies, with the probe as init.
:func:`real_threshold` bisects with the real kernel alone, two boots at a time (QEMU's TCG
uses one core per guest); :func:`confirm` boots at a predicted minimum and one step below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bootmem.kernel.arch import profile, ram_size_of
from bootmem.report.budget import Calibration, bisect_smallest
from bootmem.units import format_k
from bootmem.verify.images import PROBE_CMDLINE, compose, probe_segment
from bootmem.verify.kernel import Kernel
from bootmem.verify.parse import KernelReport, parse_console
from bootmem.verify.qemu import Accel, boot_many

#: Called before each round of boots: (what, boots so far, boots expected in all).
Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True, slots=True)
class RealBoot:
    """One real boot at ``ram`` bytes: whether it booted, and what Linux said."""

    ram: int
    ok: bool
    why: str
    seconds: float
    report: KernelReport
    console: str

    def to_json(self) -> dict[str, Any]:
        return {
            "ram_bytes": self.ram,
            "boots": self.ok,
            "why": self.why,
            "seconds": round(self.seconds, 2),
        }


def judge(report: KernelReport, *, timed_out: bool = False) -> tuple[bool, str]:
    """Whether a real boot counts as booting, and the words for what happened."""
    if timed_out:
        return False, "timed out"
    if report.memory_line is None:
        return False, "no Memory: line"
    if report.unpack_error is not None:
        return False, f"Initramfs unpacking failed: {report.unpack_error}"
    if report.not_initramfs:
        return False, "rootfs image is not initramfs"
    if report.tree is None:
        return False, f"init did not run ({report.panic or 'no probe report'})"
    return True, f"booted, Freeing initrd memory: {report.freed_k}K"


class RealMachine:
    """Boots of one composed image (probe + image) under one kernel at any RAM size."""

    def __init__(
        self,
        image: bytes,
        kernel: Kernel,
        *,
        cmdline: str = "",
        accel: Accel = "tcg",
        timeout: float = 300.0,
        parallel: int = 2,
        probe: bytes | None = None,
    ) -> None:
        self.composed = compose(probe if probe is not None else probe_segment(kernel.busybox), image)
        self.kernel = kernel
        self.cmdline = " ".join([PROBE_CMDLINE, *cmdline.split()])
        self.accel: Accel = accel
        self.timeout = timeout
        self.parallel = parallel
        self.boots: list[RealBoot] = []

    def boot(self, sizes: list[int]) -> list[RealBoot]:
        """Boot at each RAM size (in parallel); the results in the order of ``sizes``."""
        runs = boot_many(
            [{"ram": ram} for ram in sizes],
            parallel=self.parallel,
            kernel=self.kernel,
            initrd=self.composed,
            cmdline=self.cmdline,
            accel=self.accel,
            timeout=self.timeout,
        )
        results = []
        for ram, run in zip(sizes, runs, strict=True):
            report = parse_console(run.console)
            ok, why = judge(report, timed_out=run.timed_out)
            results.append(RealBoot(ram, ok, why, run.seconds, report, run.console))
        self.boots.extend(results)
        return results


@dataclass(frozen=True, slots=True)
class Threshold:
    """The real kernel's smallest booting RAM, to ``step``: ``min_ram`` boots, one step less does not."""

    min_ram: int
    step: int
    boots: list[RealBoot]

    @property
    def below(self) -> RealBoot | None:
        return next((b for b in self.boots if b.ram == self.min_ram - self.step), None)

    @property
    def at(self) -> RealBoot:
        return next(b for b in self.boots if b.ram == self.min_ram)

    def to_json(self) -> dict[str, Any]:
        return {
            "min_ram_bytes": self.min_ram,
            "step_bytes": self.step,
            "boots": [b.to_json() for b in self.boots],
        }


def real_threshold(
    machine: RealMachine,
    *,
    lo: int,
    hi: int,
    step: int,
    progress: Progress | None = None,
) -> Threshold:
    """Bisect the real kernel's smallest booting RAM in ``(lo, hi]`` to ``step`` bytes.

    ``lo`` and ``hi`` are first booted themselves (together); when ``lo`` boots or ``hi`` does
    not, the bracket is widened (halving ``lo``, doubling ``hi``).  Each round boots
    ``machine.parallel`` sizes at once, splitting the bracket into that many + 1 parts.
    """
    verdicts: dict[int, bool] = {}

    def boots(sizes: list[int]) -> list[bool]:
        todo = [s for s in sizes if s not in verdicts]
        if progress is not None and todo:
            what = ", ".join(format_k(s) for s in todo)
            progress(f"booting Linux with {what}", len(machine.boots), None)
        for result in machine.boot(todo) if todo else []:
            verdicts[result.ram] = result.ok
        return [verdicts[s] for s in sizes]

    found = bisect_smallest(boots, lo=lo, hi=hi, step=step, parallel=machine.parallel)
    return Threshold(min_ram=found, step=step, boots=list(machine.boots))


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The model's minimum RAM for an image, booted by the real kernel there and one step below.

    ``hole`` is RAM QEMU gives that Linux does not manage (firmware and e820 holes: QEMU's
    ``-m`` less Linux's ``Memory:`` total, from the calibration boot) and that the profile the
    model is calibrated into does not know of (``x86_64`` models QEMU's holes: 0 there; ``flat``
    none); the real boots add it to the model's figures so both sides manage the same RAM.
    """

    predicted: int
    step: int
    hole: int
    at: RealBoot
    below: RealBoot
    calibration_boot: RealBoot | None

    @property
    def agree(self) -> bool:
        return self.at.ok and not self.below.ok

    def verdict(self) -> str:
        """One sentence: does Linux agree with the model's minimum?"""
        at, below = format_k(self.at.ram), format_k(self.below.ram)
        if self.agree:
            return f"Linux agrees: it boots with {at} ({self.at.why}) and not with {below} ({self.below.why})"
        if not self.at.ok:
            return f"Linux disagrees: it does not boot with {at} ({self.at.why}): the model's minimum is low"
        return f"Linux disagrees: it boots with {below} too ({self.below.why}): the model's minimum is high"

    def to_json(self) -> dict[str, Any]:
        return {
            "agree": self.agree,
            "predicted_min_ram_bytes": self.predicted,
            "step_bytes": self.step,
            "qemu_hole_bytes": self.hole,
            "at": self.at.to_json(),
            "below": self.below.to_json(),
            "calibration_boot": self.calibration_boot.to_json() if self.calibration_boot else None,
        }


def confirm(
    machine: RealMachine,
    predict: Callable[[Calibration | None], tuple[int, int]],
    *,
    calibration: Calibration | None = None,
    calibrate_at: int = 512 << 20,
) -> Confirmation:
    """Boot the real kernel at the model's minimum and one step below it.

    ``predict(calibration)`` is the model's ``(min_ram, step)`` for ``machine``'s composed image.
    Without a ``calibration``, one real boot at ``calibrate_at`` gives it (the kernel's own
    ``Memory:`` line, :func:`bootmem.report.budget.parse_dmesg`) and the RAM QEMU's firmware keeps.
    """
    from bootmem.report.budget import parse_dmesg

    first: RealBoot | None = None
    hole = 0
    if calibration is None:
        (first,) = machine.boot([calibrate_at])
        calibration = parse_dmesg(first.console, where=f"the real boot with {format_k(calibrate_at)}")
        modelled = ram_size_of(profile(calibration.arch or "flat"), calibration.ram_bytes)
        hole = max(0, calibrate_at - modelled)
    predicted, step = predict(calibration)
    ram = -(-(predicted + hole) // step) * step
    at, below = machine.boot([ram, ram - step])
    return Confirmation(
        predicted=predicted,
        step=step,
        hole=hole,
        at=at,
        below=below,
        calibration_boot=first,
    )

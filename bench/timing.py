"""Timing side by side: alternating runs, medians, ratios, and peak RSS of fresh processes."""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass
class Comparison:
    """Seconds of every run of each contender; the first contender is the one compared.
    ``cpu`` holds the CPU seconds (user + system, of this process and the children it waited
    for) of the same runs: on a shared machine they change far less with its load than the
    elapsed seconds do."""

    title: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return next(iter(self.samples))

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def ratio(self, name: str) -> float:
        """The subject's median over ``name``'s: below 1 means the subject is faster."""
        return self.median(self.subject) / self.median(name)

    @property
    def runs(self) -> int:
        return min(len(v) for v in self.samples.values())


def alternate(
    title: str,
    contenders: Mapping[str, Callable[[], object]],
    runs: int,
    *,
    reset: Callable[[], object] | None = None,
) -> Comparison:
    """Time ``runs`` rounds of every contender, one of each per round, the order reversed on
    every other round so that drift (caches, clock, other load) falls on all of them alike.
    ``reset`` runs before each run, untimed (an emptied output directory)."""
    result = Comparison(title, {name: [] for name in contenders}, {name: [] for name in contenders})
    for r in range(runs):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            if reset is not None:
                reset()
            c0 = cpu_seconds()
            t0 = time.perf_counter()
            contenders[name]()
            result.samples[name].append(time.perf_counter() - t0)
            result.cpu[name].append(cpu_seconds() - c0)
    return result


def cpu_seconds() -> float:
    """User and system seconds of this process and of its children waited for, so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class ContenderFailed(Exception):
    """A contender's command exited non-zero; the message is the command and its last error line."""


def shell(command: str, cwd: str | None = None) -> Callable[[], object]:
    """A contender running ``command`` with ``sh -c``, its output discarded; a failure raises
    :class:`ContenderFailed`."""

    def run() -> object:
        done = subprocess.run(
            ["sh", "-c", command], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
        )
        if done.returncode:
            lines = done.stderr.decode(errors="replace").strip().splitlines() or ["(no message)"]
            raise ContenderFailed(f"`{command}` exited {done.returncode}: {lines[-1]}")
        return done

    return run


def available(commands: Mapping[str, str]) -> dict[str, Callable[[], object]]:
    """:func:`shell` contenders for ``commands`` whose tools are all installed; the first (the
    subject) is always kept, so that a missing bootmem fails loudly."""
    first = next(iter(commands))
    return {
        name: shell(cmd)
        for name, cmd in commands.items()
        if name == first or all(shutil.which(tool) for tool in _tools(cmd))
    }


def _tools(command: str) -> list[str]:
    """The program of every stage of a shell pipeline (after any ``cd DIR &&``)."""
    stages = [stage.split("&&")[-1].replace("(", " ").split() for stage in command.split("|")]
    return [words[0] for words in stages if words]


def peak_rss_of_command(command: str) -> int:
    """Peak RSS in bytes of ``command`` run by ``sh -c`` under GNU time (``%M``, the largest
    process of the pipeline). It is started from GNU time, a small process: a child forked from
    this large interpreter would inherit its high-water mark."""
    time_bin = shutil.which("time") or "/usr/bin/time"
    out = subprocess.run(
        [time_bin, "-f", "%M", "sh", "-c", command + " >/dev/null"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    return int(out.strip().splitlines()[-1]) * 1024


#: Appended to a child's Python code: prints its own peak RSS (VmHWM) as JSON on the last line.
_HWM_TAIL = """
import json as _json
with open("/proc/self/status") as _f:
    _hwm = next(int(l.split()[1]) for l in _f if l.startswith("VmHWM:"))
print(_json.dumps({"hwm_bytes": _hwm * 1024, **(RESULT if "RESULT" in globals() else {})}))
"""


def run_python_child(code: str, *args: str) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter and return the dict ``RESULT`` it sets, with its own
    peak RSS as ``hwm_bytes`` (read from ``/proc/self/status`` VmHWM at its end)."""
    out = subprocess.run(
        [sys.executable, "-c", code + _HWM_TAIL, *args], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def fmt_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"

"""The boot log, in the format of Linux's printk: ``[    0.123456] message``.

Timestamps are seconds since the start of the modelled boot, measured on the host's
monotonic clock (what the model spent, not what a real board would).  Levels follow
``KERN_*`` so that a reader can filter as ``dmesg --level`` does.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Literal

Level = Literal["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]


@dataclass(frozen=True, slots=True)
class LogLine:
    """One printk: seconds since boot, the level and the message (no trailing newline)."""

    time: float
    level: Level
    message: str

    def __str__(self) -> str:
        # printk's "[%5lu.%06lu] ": seconds right-aligned in five columns, then microseconds.
        usec = round(self.time * 1_000_000)
        return f"[{usec // 1_000_000:5d}.{usec % 1_000_000:06d}] {self.message}"


class BootLog:
    """An append-only, thread-safe list of :class:`LogLine` with a clock started at creation.

    >>> log = BootLog(clock=lambda: 0.0)
    >>> str(log.printk("Freeing initrd memory: 30436K"))
    '[    0.000000] Freeing initrd memory: 30436K'
    """

    def __init__(self, clock: object = None) -> None:
        self._clock = clock if callable(clock) else time.perf_counter
        self._t0: float = self._clock()
        self._lines: list[LogLine] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the log was created."""
        return float(self._clock()) - self._t0

    def printk(self, message: str, level: Level = "info") -> LogLine:
        with self._lock:  # stamped under the lock, so that the lines stay in time order
            line = LogLine(self.now(), level, message)
            self._lines.append(line)
        return line

    @property
    def lines(self) -> list[LogLine]:
        with self._lock:
            return list(self._lines)

    def messages(self) -> list[str]:
        """The messages alone, in order: what tests compare."""
        return [line.message for line in self.lines]

    def __str__(self) -> str:
        return "\n".join(str(line) for line in self.lines)

"""The boot log: printk's line format, levels, the clock, threads."""

from __future__ import annotations

import threading

import pytest

from bootmem.kernel.log import BootLog, LogLine


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "[    0.000000] hello"),
        (0.123456, "[    0.123456] hello"),
        (1.5, "[    1.500000] hello"),
        (12.9999996, "[   13.000000] hello"),
        (99999.000001, "[99999.000001] hello"),
        (123456.5, "[123456.500000] hello"),
    ],
)
def test_line_format(seconds: float, text: str) -> None:
    assert str(LogLine(seconds, "info", "hello")) == text


def test_clock_starts_at_creation() -> None:
    ticks = iter([10.0, 10.25, 11.0])
    log = BootLog(clock=lambda: next(ticks))
    log.printk("Trying to unpack rootfs image as initramfs...")
    line = log.printk("Initramfs unpacking failed: write error", level="emerg")
    assert (line.time, line.level) == (1.0, "emerg")
    assert str(log).splitlines() == [
        "[    0.250000] Trying to unpack rootfs image as initramfs...",
        "[    1.000000] Initramfs unpacking failed: write error",
    ]
    assert log.messages() == [
        "Trying to unpack rootfs image as initramfs...",
        "Initramfs unpacking failed: write error",
    ]


def test_lines_is_a_copy_and_threads_do_not_lose_lines() -> None:
    log = BootLog()
    copy = log.lines
    copy.append(LogLine(0.0, "info", "not in the log"))
    assert log.lines == []

    def spam(n: int) -> None:
        for i in range(500):
            log.printk(f"{n}:{i}")

    threads = [threading.Thread(target=spam, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log.lines) == 2000
    times = [line.time for line in log.lines]
    assert times == sorted(times)

"""What counts as a real boot, and the bisection that finds the smallest one."""

from __future__ import annotations

import pytest

from bootmem.errors import BootError
from bootmem.report.budget import bisect_smallest
from bootmem.verify.parse import parse_console
from bootmem.verify.threshold import judge
from tests.verify.test_parse import CONSOLE

MEMORY = "[    0.0] Memory: 1K/2K available (3K kernel code, 4K reserved, 0K cma-reserved)\n"


def test_a_boot_counts_when_unpacked_and_the_probe_ran() -> None:
    assert judge(parse_console(CONSOLE)) == (True, "booted, Freeing initrd memory: 2964K")
    failed = parse_console(MEMORY + "[ 3.1] Initramfs unpacking failed: write error\n")
    assert judge(failed) == (False, "Initramfs unpacking failed: write error")
    oom = parse_console(MEMORY + "[ 9.0] Kernel panic - not syncing: System is deadlocked on memory\n")
    assert judge(oom) == (False, "init did not run (System is deadlocked on memory)")
    assert judge(parse_console(""))[1] == "no Memory: line"
    assert judge(parse_console(CONSOLE), timed_out=True) == (False, "timed out")


@pytest.mark.parametrize("parallel", [1, 2, 3])
@pytest.mark.parametrize("threshold", [7, 64, 65, 300, 999, 1000, 5000])
def test_bisect_finds_the_smallest_that_boots(parallel: int, threshold: int) -> None:
    asked: list[int] = []

    def boots(sizes: list[int]) -> list[bool]:
        assert len(sizes) <= max(2, parallel)
        asked.extend(sizes)
        return [s >= threshold for s in sizes]

    found = bisect_smallest(boots, lo=100, hi=1000, step=1, parallel=parallel)
    assert found == threshold
    assert threshold in asked and (threshold - 1 in asked or threshold == 1)


def test_bisect_refuses_what_boots_at_one_step() -> None:
    with pytest.raises(BootError, match="nothing to search"):
        bisect_smallest(lambda sizes: [True] * len(sizes), lo=8, hi=64, step=4)

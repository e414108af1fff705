"""A short smoke run of each fuzz harness: its seeds, then a few hundred mutations of them.

The harnesses' ``TestOneInput`` is called directly (no atheris process, no coverage feedback),
so CI checks that every harness runs and that the seeds and simple mutations of them (bit
flips, truncation, inserted and overwritten bytes, spliced seeds) hold.  The real campaign is
``python -m fuzz.run`` (fuzz/README.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from types import ModuleType

import pytest

from fuzz import fuzz_extract, fuzz_fdt, fuzz_image, fuzz_unpack, seeds
from tests.conftest import require_tool

RUNS = {"image": 2000, "unpack": 1000, "extract": 500, "fdt": 2000}
HARNESSES: dict[str, ModuleType] = {
    "image": fuzz_image,
    "unpack": fuzz_unpack,
    "extract": fuzz_extract,
    "fdt": fuzz_fdt,
}
INTERESTING = [b"\0", b"\xff", b"0", b"7", b"070701", b"TRAILER!!!\0", b"\xd0\x0d\xfe\xed", b"\xff\xfe"]


def mutate(rng: random.Random, data: bytes, other: bytes, max_len: int) -> bytes:
    """One libFuzzer-style mutation of ``data`` (``other``: a second seed to splice in)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if kind == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del buf[pos:]
        elif kind == 2:
            buf[pos:pos] = rng.choice(INTERESTING)
        elif kind == 3 and buf:
            i = rng.randrange(len(buf))
            buf[i] = rng.randrange(256)
        elif kind == 4:
            del buf[pos : pos + rng.randint(1, 64)]
        else:
            cut = rng.randrange(len(other) + 1)
            buf[pos:] = other[cut:]
    return bytes(buf[:max_len])


@pytest.mark.parametrize("target", list(HARNESSES))
def test_smoke(target: str) -> None:
    for tool in ("cpio", "gzip", "dtc"):
        require_tool(tool)
    harness = HARNESSES[target]
    one: Callable[[bytes], None] = harness.TestOneInput
    corpus = list(seeds.seeds_for(target).values())
    for data in corpus:
        one(data)
    rng = random.Random(f"smoke-{target}")
    for _ in range(RUNS[target]):
        data = mutate(rng, rng.choice(corpus), rng.choice(corpus), harness.MAX_LEN)
        one(data)


def test_a_raw_archive_cut_inside_a_file_leaves_it_short_without_an_error() -> None:
    # As Linux does: write_buffer() consumes what is there; the harness must not call it a crash.
    fuzz_unpack.TestOneInput(seeds.cut_inside_data())

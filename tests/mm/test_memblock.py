"""Region lists, tested as Linux's tools/testing/memblock tests are: by scenario, with pictures.

Pictures show addresses left to right; ``r1``/``r2`` the regions added, ``|`` their edges.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bootmem.mm import Memblock, RegionList
from bootmem.mm.memblock import Region


def spans(rl: RegionList[str]) -> list[tuple[int, int, str]]:
    return [(r.start, r.end, r.name) for r in rl]


def test_reserve_simple() -> None:
    """One region is listed as given::

    |        +--------------+         |
    |        |      r1      |         |
    +--------+--------------+---------+
             0x1000         0x3000
    """
    mb = Memblock()
    assert mb.reserve(0x1000, 0x3000, "r1") == 0x2000
    assert spans(mb.reserved) == [(0x1000, 0x3000, "r1")]
    assert len(mb.reserved) == 1
    assert mb.reserved.total_size == 0x2000


def test_reserve_disjoint() -> None:
    """Two regions that do not touch stay two, sorted::

    |   +-----+          +-----+      |
    |   | r2  |          | r1  |      |
    +---+-----+----------+-----+------+
        0x1000 0x2000    0x5000 0x6000
    """
    mb = Memblock()
    mb.reserve(0x5000, 0x6000, "r")
    mb.reserve(0x1000, 0x2000, "r")
    assert spans(mb.reserved) == [(0x1000, 0x2000, "r"), (0x5000, 0x6000, "r")]
    assert mb.reserved.total_size == 0x2000


def test_reserve_overlap_top() -> None:
    """A region overlapping the top of another merges with it::

    |      +--------+              |
    |      |   r1   |              |
    |          +---------+         |
    |          |   r2    |         |
    +------+---+----+----+---------+
           0x1000   0x3000
               0x2000    0x4000
    """
    mb = Memblock()
    mb.reserve(0x1000, 0x3000, "r")
    assert mb.reserve(0x2000, 0x4000, "r") == 0x1000
    assert spans(mb.reserved) == [(0x1000, 0x4000, "r")]
    assert mb.reserved.total_size == 0x3000


def test_reserve_overlap_bottom() -> None:
    """A region overlapping the bottom of another merges with it::

    |          +---------+         |
    |          |   r1    |         |
    |      +--------+              |
    |      |   r2   |              |
    +------+---+----+----+---------+
           0x1000   0x3000
               0x2000    0x4000
    """
    mb = Memblock()
    mb.reserve(0x2000, 0x4000, "r")
    assert mb.reserve(0x1000, 0x3000, "r") == 0x1000
    assert spans(mb.reserved) == [(0x1000, 0x4000, "r")]
    assert mb.reserved.total_size == 0x3000


def test_reserve_within() -> None:
    """A region inside another adds nothing::

    |     +-------------------+    |
    |     |        r1         |    |
    |          +-------+           |
    |          |  r2   |           |
    +-----+----+-------+------+----+
          0x1000       0x3000
               0x2000         0x4000
    """
    mb = Memblock()
    mb.reserve(0x1000, 0x4000, "r")
    assert mb.reserve(0x2000, 0x3000, "r") == 0
    assert spans(mb.reserved) == [(0x1000, 0x4000, "r")]


def test_reserve_twice() -> None:
    """The same region twice is listed once::

    |     +---------+     |
    |     | r1 = r2 |     |
    +-----+---------+-----+
    """
    mb = Memblock()
    mb.reserve(0x1000, 0x2000, "r")
    assert mb.reserve(0x1000, 0x2000, "r") == 0
    assert spans(mb.reserved) == [(0x1000, 0x2000, "r")]


def test_reserve_adjacent_merges_same_name_only() -> None:
    """Touching regions merge when their names agree, and stay apart otherwise::

    |  +----+----+----+  |
    |  | a  | a  | b  |  |
    +--+----+----+----+--+
    """
    rl: RegionList[str] = RegionList()
    rl.add(0x1000, 0x2000, "a")
    rl.add(0x2000, 0x3000, "a")
    rl.add(0x3000, 0x4000, "b")
    assert spans(rl) == [(0x1000, 0x3000, "a"), (0x3000, 0x4000, "b")]
    assert rl.check() is None


def test_reserve_overlap_keeps_first_name() -> None:
    """Overlapping regions of different names: covered bytes keep the first name::

    |  +---------+          |
    |  | initrd  |          |
    |       +---------+     |
    |       |   dtb   |     |
    +--+----+----+----+-----+
    """
    rl: RegionList[str] = RegionList()
    rl.add(0x1000, 0x3000, "initrd")
    assert rl.add(0x2000, 0x4000, "dtb") == 0x1000
    assert spans(rl) == [(0x1000, 0x3000, "initrd"), (0x3000, 0x4000, "dtb")]


def test_reserve_bridges_a_gap() -> None:
    """A region spanning the gap between two merges all three::

    |  +----+     +----+   |
    |  | r1 |     | r2 |   |
    |     +----------+     |
    |     |    r3    |     |
    +--+--+-+-----+--+-+---+
    """
    rl: RegionList[str] = RegionList()
    rl.add(0x1000, 0x2000, "r")
    rl.add(0x4000, 0x5000, "r")
    assert rl.add(0x1800, 0x4800, "r") == 0x2000
    assert spans(rl) == [(0x1000, 0x5000, "r")]


def test_free_simple() -> None:
    """Freeing a whole region removes it::

    |  +----+   |      |         |
    |  | r1 |   |  ->  |         |
    +--+----+---+      +---------+
    """
    mb = Memblock()
    mb.reserve(0x1000, 0x2000, "r1")
    assert mb.free(0x1000, 0x2000) == [Region("r1", 0x1000, 0x2000)]
    assert spans(mb.reserved) == []


def test_free_within_splits() -> None:
    """Freeing the middle of a region leaves two::

    |  +------------+  |      |  +---+    +---+  |
    |  |     r1     |  |  ->  |  |r1 |    |r1 |  |
    +--+---+----+---+--+      +--+---+----+---+--+
           0x2000 0x3000
    """
    mb = Memblock()
    mb.reserve(0x1000, 0x4000, "r1")
    assert mb.free(0x2000, 0x3000) == [Region("r1", 0x2000, 0x3000)]
    assert spans(mb.reserved) == [(0x1000, 0x2000, "r1"), (0x3000, 0x4000, "r1")]


def test_free_overlap_top_and_bottom() -> None:
    """Freeing a range that straddles two regions trims both::

    |  +----+  +----+  |      |  +--+      +--+  |
    |  | r1 |  | r2 |  |  ->  |  |r1|      |r2|  |
    |    +--------+    |      |                  |
    +----+--------+----+      +------------------+
    """
    mb = Memblock()
    mb.reserve(0x1000, 0x3000, "r1")
    mb.reserve(0x4000, 0x6000, "r2")
    removed = mb.free(0x2000, 0x5000)
    assert removed == [Region("r1", 0x2000, 0x3000), Region("r2", 0x4000, 0x5000)]
    assert spans(mb.reserved) == [(0x1000, 0x2000, "r1"), (0x5000, 0x6000, "r2")]


def test_free_absent() -> None:
    """Freeing a range that holds no region changes nothing::

    |  +----+        |
    |  | r1 |  xxxx  |
    +--+----+--------+
    """
    mb = Memblock()
    mb.reserve(0x1000, 0x2000, "r1")
    assert mb.free(0x3000, 0x4000) == []
    assert spans(mb.reserved) == [(0x1000, 0x2000, "r1")]


def test_queries() -> None:
    rl: RegionList[str] = RegionList()
    rl.add(0x1000, 0x2000, "a")
    rl.add(0x3000, 0x4000, "b")
    assert rl.covers(0x1000, 0x2000)
    assert not rl.covers(0x1000, 0x3001)
    assert rl.gaps(0x0, 0x5000) == [(0x0, 0x1000), (0x2000, 0x3000), (0x4000, 0x5000)]
    assert rl.intersects(0x1FFF, 0x2000)
    assert not rl.intersects(0x2000, 0x3000)
    assert [r.name for r in rl.overlapping(0x1800, 0x3001)] == ["a", "b"]
    assert "0x1000" in repr(rl)


def test_memory_list() -> None:
    mb = Memblock()
    mb.add_memory(0x8000_0000, 0x9000_0000)
    mb.add_memory(0x9000_0000, 0xA000_0000)
    assert spans(mb.memory) == [(0x8000_0000, 0xA000_0000, "System RAM")]


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 60), st.integers(1, 20), st.sampled_from("ab")),
        max_size=25,
    )
)
def test_region_list_matches_a_byte_model(ops: list[tuple[bool, int, int, str]]) -> None:
    """Random adds and removes agree with a dict of byte -> label, and the list stays merged."""
    rl: RegionList[str] = RegionList()
    model: dict[int, str] = {}
    for is_add, start, n, name in ops:
        end = start + n
        if is_add:
            new = [b for b in range(start, end) if b not in model]
            assert rl.add(start, end, name) == len(new)
            model.update(dict.fromkeys(new, name))
        else:
            removed = rl.remove(start, end)
            gone = {b: model.pop(b) for b in range(start, end) if b in model}
            assert {b: r.name for r in removed for b in range(r.start, r.end)} == gone
        assert rl.check() is None
        assert {b: r.name for r in rl for b in range(r.start, r.end)} == model
        assert rl.covers(start, end) == all(b in model for b in range(start, end))
        assert rl.intersects(start, end) == any(b in model for b in range(start, end))

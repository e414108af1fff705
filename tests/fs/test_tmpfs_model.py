"""bootmem.fs.tmpfs against a dict model: random create/write/truncate/unlink/link sequences.

After every step: the allocator's books are consistent, the pages it has handed to ``rootfs`` are
exactly ``sum(ceil(size / PAGE_SIZE))`` over the distinct inodes, and every file reads back as
the model says.  Writes and grows meet both the size limit and injected allocation failures.
"""

from __future__ import annotations

import errno
import itertools

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bootmem.errors import TmpfsError
from bootmem.fs.tmpfs import Tmpfs
from bootmem.mm import PAGE_SIZE, PageAllocator
from tests.fs.conftest import RAM_BASE, rootfs_pages

LIMIT_PAGES = 10
PATHS = ["/a", "/b", "/c", "/d/a", "/d/b"]
MAX_POS = 3 * PAGE_SIZE + 7

positions = st.one_of(
    st.integers(0, MAX_POS),
    st.sampled_from([0, PAGE_SIZE - 1, PAGE_SIZE, PAGE_SIZE + 1, 2 * PAGE_SIZE]),
)
payloads = st.builds(
    lambda n, byte: bytes([byte]) * n,
    st.one_of(st.integers(0, 2 * PAGE_SIZE + 3), st.sampled_from([1, PAGE_SIZE - 1, PAGE_SIZE])),
    st.integers(1, 255),
)
failures = st.one_of(st.none(), st.integers(1, 3))


def pages_for(size: int) -> int:
    return -(-size // PAGE_SIZE)


class TmpfsModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pa = PageAllocator(base=RAM_BASE, size=64 * PAGE_SIZE)
        self.fs = Tmpfs(self.pa, size_limit=LIMIT_PAGES * PAGE_SIZE)
        self.fs.mkdir("/d", 0o755)
        self.names: dict[str, int] = {}  # path -> inode id
        self.data: dict[int, bytearray] = {}  # inode id -> contents
        self.ids = itertools.count()

    def teardown(self) -> None:
        self.pa.fail_nth_alloc(None)
        self.fs.remove_path("/d")
        for path in [p for p in self.names if p.count("/") == 1]:
            self.fs.unlink(path)
        assert rootfs_pages(self.pa) == 0
        self.pa.check_invariants()
        self.pa.close()

    # --- model helpers ------------------------------------------------------------------

    def used(self) -> int:
        return sum(pages_for(len(d)) for d in self.data.values())

    def drop(self, path: str) -> None:
        ident = self.names.pop(path)
        if ident not in self.names.values():
            del self.data[ident]

    def first_failing_page(self, fail: int | None) -> int:
        """How many new pages can be had before one fails (the limit, then the injection)."""
        room = LIMIT_PAGES - self.used()
        return room if fail is None else min(room, fail - 1)

    # --- rules ----------------------------------------------------------------------------

    @rule(path=st.sampled_from(PATHS), truncate=st.booleans(), pos=positions, data=payloads, fail=failures)
    def write(self, path: str, truncate: bool, pos: int, data: bytes, fail: int | None) -> None:
        if path not in self.names:
            self.names[path] = ident = next(self.ids)
            self.data[ident] = bytearray()
        content = self.data[self.names[path]]
        if truncate:
            content.clear()
        old_pages = pages_for(len(content))
        end = pos + len(data)
        needed = max(0, pages_for(end) - old_pages) if data else 0
        can = self.first_failing_page(fail)
        self.pa.fail_nth_alloc(fail)
        try:
            with self.fs.create(path, 0o644, truncate=truncate) as f:
                f.seek(pos)
                try:
                    f.write(data)
                except TmpfsError as exc:
                    assert exc.errno == errno.ENOSPC
                    assert needed > can, "a write failed that had room"
                    event("write: no space")
                    failed_at = (old_pages + can) * PAGE_SIZE
                    if failed_at > pos:  # bytes up to the failing page were copied
                        new = content + bytes(max(0, pos - len(content)))
                        new[pos:end] = data
                        content[:] = new[: max(len(content), failed_at)]
                    assert f.tell() == max(pos, failed_at)
                else:
                    assert needed <= can, "a write succeeded past the limit or an injected failure"
                    if data and pos > len(content):
                        content.extend(bytes(pos - len(content)))
                    content[pos:end] = data
        finally:
            self.pa.fail_nth_alloc(None)

    @rule(path=st.sampled_from(PATHS), size=positions, fail=failures)
    def truncate(self, path: str, size: int, fail: int | None) -> None:
        if path not in self.names:
            try:
                self.fs.truncate(path, size)
            except TmpfsError as exc:
                assert exc.errno == errno.ENOENT
            else:
                raise AssertionError(f"truncate of missing {path!r} succeeded")
            return
        content = self.data[self.names[path]]
        needed = max(0, pages_for(size) - pages_for(len(content)))
        can = self.first_failing_page(fail)
        self.pa.fail_nth_alloc(fail)
        try:
            self.fs.truncate(path, size)
        except TmpfsError as exc:
            assert exc.errno == errno.ENOSPC and needed > can
            event("truncate: no space")
        else:
            assert needed <= can
            if size < len(content):
                del content[size:]
            else:
                content.extend(bytes(size - len(content)))
        finally:
            self.pa.fail_nth_alloc(None)

    @rule(path=st.sampled_from(PATHS))
    def unlink(self, path: str) -> None:
        try:
            self.fs.unlink(path)
        except TmpfsError as exc:
            assert exc.errno == errno.ENOENT and path not in self.names
        else:
            self.drop(path)

    @rule(existing=st.sampled_from(PATHS), new=st.sampled_from(PATHS))
    def link(self, existing: str, new: str) -> None:
        try:
            self.fs.link(existing, new)
        except TmpfsError as exc:
            if existing not in self.names:
                assert exc.errno == errno.ENOENT
            else:
                assert exc.errno == errno.EEXIST and new in self.names
        else:
            assert existing in self.names and new not in self.names
            self.names[new] = self.names[existing]
            event("link")

    @rule()
    def remove_dir(self) -> None:
        assert self.fs.remove_path("/d")
        for path in [p for p in self.names if p.startswith("/d/")]:
            self.drop(path)
        self.fs.mkdir("/d", 0o755)

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def pages_match_sizes(self) -> None:
        self.pa.check_invariants()
        used = self.used()
        assert rootfs_pages(self.pa) == self.fs.used_pages == used
        assert self.pa.stats()["allocated"] == used
        inodes = {id(self.fs.lookup(p)): self.fs.lookup(p) for p in self.names}
        assert sum(pages_for(i.size) for i in inodes.values()) == used
        assert all(len(i.pages) == pages_for(i.size) for i in inodes.values())

    @invariant()
    def contents_and_links_match(self) -> None:
        for path, ident in self.names.items():
            assert self.fs.read(path) == self.data[ident], path
            nlink = sum(1 for other in self.names.values() if other == ident)
            assert self.fs.stat(path).st_nlink == nlink
        for path in PATHS:
            assert self.fs.exists(path) == (path in self.names)


TmpfsModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_tmpfs_model = TmpfsModel.TestCase

"""Proof, not hope, that two users of one page allocator really ran interleaved.

A test of concurrency that asserts "the other thread allocated while unpacking was going on"
passes or fails with the scheduler's mood.  :class:`Interleaving` makes that overlap happen
every time: it holds the thread that makes ``owner``'s first allocation - right after that
allocation returns, outside the allocator's lock - until the allocator has handed a block to
another owner, then lets it go on.  It records the allocator's events
(:meth:`PageAllocator.subscribe`, delivered in the order the allocator made the changes), so
:meth:`Interleaving.check` can assert from the allocator's own books that another owner's
allocation lies strictly between ``owner``'s first and last.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from bootmem.mm import PageAllocator
from bootmem.mm.events import AllocatorEvent


class Interleaving:
    """Holds ``owner``'s first allocation until an owner starting with ``other`` allocated.

    Install it with ``boot(..., allocator_hook=gate.install)`` or ``gate.install(pa)``.
    ``timeout`` (seconds) only guards against a hang: when nobody else allocates in that time
    (the behaviour under test is broken, say the other side runs only after ``owner`` is done),
    the held thread goes on and :meth:`check` fails.
    """

    def __init__(self, owner: str = "rootfs", other: str = "", *, timeout: float = 30.0) -> None:
        self.owner = owner
        self.other = other
        self.timeout = timeout
        self.allocs: list[str] = []  # the owner of every allocation, in the allocator's order
        self.held = False  # the owner's thread was held after its first allocation
        self.timed_out = False
        self._owner_thread: int | None = None
        self._other_allocated = threading.Event()

    def install(self, pa: PageAllocator) -> None:
        """Subscribe to ``pa``'s events and put the hold point after its ``alloc``/``alloc_bulk``."""
        pa.subscribe(self._observe)
        for name in ("alloc", "alloc_bulk"):
            setattr(pa, name, self._held_after(getattr(pa, name)))

    def _observe(self, event: AllocatorEvent) -> None:
        # Runs under the allocator's lock, so ``allocs`` is in the allocator's order.
        if event.op != "alloc":
            return
        self.allocs.append(event.owner)
        if event.owner == self.owner:
            if self._owner_thread is None:
                self._owner_thread = threading.get_ident()
        elif self._owner_thread is not None and event.owner.startswith(self.other):
            self._other_allocated.set()

    def _held_after(self, allocate: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = allocate(*args, **kwargs)
            if not self.held and self._owner_thread == threading.get_ident():
                self.held = True
                self.timed_out = not self._other_allocated.wait(self.timeout)
            return result

        return call

    def check(self) -> None:
        """Assert that an allocation by ``other`` came between ``owner``'s first and last."""
        assert self.held, f"{self.owner!r} never allocated"
        assert not self.timed_out, (
            f"nobody ({self.other!r}...) allocated within {self.timeout} s "
            f"of {self.owner!r}'s first allocation"
        )
        allocs = self.allocs
        first = allocs.index(self.owner)
        last = len(allocs) - 1 - allocs[::-1].index(self.owner)
        between = [o for o in allocs[first + 1 : last] if o != self.owner and o.startswith(self.other)]
        assert between, f"no allocation by {self.other!r}... between {self.owner!r}'s first and last"

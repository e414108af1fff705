"""What the page allocator reports to its subscribers.

Every ``reserve``, ``release``, ``alloc`` and ``free`` produces one :class:`AllocatorEvent`,
delivered in order, while the allocator's lock is held (a callback may query the allocator but
should return quickly).  The memory timeline of a boot is built from these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Operation = Literal["reserve", "release", "alloc", "free"]


@dataclass(frozen=True, slots=True)
class AllocatorEvent:
    """One change to the allocator's books.

    ``time`` is ``time.perf_counter()``; ``pfn`` the first page concerned; ``pages`` how many
    pages changed state (a ``reserve`` counts only pages that left the free lists, a ``release``
    only pages that reached them, so either may be 0); ``owner`` the allocation's owner tag or the
    reservation's name.
    """

    time: float
    op: Operation
    pfn: int
    pages: int
    owner: str


Subscriber = Callable[[AllocatorEvent], None]

"""Frozen records that do not need :mod:`dataclasses` at import time.

``import dataclasses`` imports :mod:`inspect` (and with it ``ast``, ``dis``, ``tokenize``), and
each ``@dataclass`` compiles its methods when its module is imported: about 7 ms, and 1 ms a
class, of every ``bootmem ls``, which lists a small image in less.  The records that ``ls``
reads (cpio's ``Entry``, the image's ``Segment``, the codec table) derive from :class:`Record`
instead.  Such a class names its fields in order in ``_FIELDS``, makes them its ``__slots__``
and writes its ``__init__``; :class:`Record` gives it what ``@dataclass(frozen=True,
slots=True)`` would: equality and hash over the fields (less those in ``_NOT_COMPARED``), the
same ``repr``, assignment refused, pickling and copying, and :meth:`~Record.replace` and
:meth:`~Record.asdict` for ``dataclasses.replace`` and ``dataclasses.asdict``.

>>> class Point(Record):
...     _FIELDS = ("x", "y")
...     __slots__ = _FIELDS
...     def __init__(self, x: int, y: int = 0) -> None:
...         self._fill(x, y)
>>> p = Point(1, 2)
>>> p, p == Point(1, 2), p.replace(y=5), p.asdict()
(Point(x=1, y=2), True, Point(x=1, y=5), {'x': 1, 'y': 2})
>>> p.x = 3
Traceback (most recent call last):
    ...
AttributeError: cannot assign to field 'x'
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Self


class Record:
    """Base of a frozen record whose fields are its ``_FIELDS`` (see the module's docstring)."""

    __slots__ = ()
    #: The fields, in order: the ``__init__`` parameters, the ``repr``.
    _FIELDS: tuple[str, ...] = ()
    #: Fields left out of equality and hash (``field(compare=False)``).
    _NOT_COMPARED: frozenset[str] = frozenset()

    #: The ``__set__`` of each field's slot, in ``_FIELDS`` order (made for each subclass).
    _SETTERS: tuple[Callable[[object, object], None], ...] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._SETTERS = tuple(getattr(cls, name).__set__ for name in cls._FIELDS)

    def _fill(self, *values: object) -> None:
        """Set the fields, in order, to ``values`` (what ``__init__`` does; it passes them all)."""
        # Each slot's own setter: a third less time than object.__setattr__ by name (an Entry,
        # one per cpio header, takes 1.7 us instead of 2.7).  strict=False: +25% for an Entry.
        for setter, value in zip(self._SETTERS, values, strict=False):
            setter(self, value)

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, f) for f in self._FIELDS if f not in self._NOT_COMPARED)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._FIELDS)
        return f"{type(self).__qualname__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[type[Self], tuple[object, ...]]:
        return type(self), tuple(getattr(self, f) for f in self._FIELDS)

    def asdict(self) -> dict[str, Any]:
        """The fields by name, in order (as ``dataclasses.asdict`` of a record of plain values)."""
        return {f: getattr(self, f) for f in self._FIELDS}

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` made (as ``dataclasses.replace``; tarfile's ``TarInfo.replace``)."""
        return type(self)(**{**self.asdict(), **changes})

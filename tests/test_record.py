"""bootmem.record: a Record behaves as the frozen slotted dataclass it stands for."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import stat

import pytest

from bootmem.initramfs import Entry, Segment
from bootmem.initramfs.compress import CODECS, Codec, LzopHeader
from bootmem.record import Record


def _twin(cls: type[Record], not_compared: frozenset[str] = frozenset()) -> type:
    """The ``@dataclass(frozen=True, slots=True)`` with ``cls``'s fields, in its order."""
    fields = [(f, object, dataclasses.field(compare=f not in not_compared)) for f in cls._FIELDS]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True, slots=True)


ENTRY = Entry("usr/bin/sh", stat.S_IFLNK | 0o777, c_ino=7, c_nlink=1, linkname="busybox", c_namesize=11)
SEGMENT = Segment(1, 0x200, 0x1000, "zstd", "newc", 0xE00, 0x4000, 12, 1)


@pytest.mark.parametrize(
    "record", [ENTRY, SEGMENT, LzopHeader(0x1030, 1, 0x03000001, 42)], ids=["Entry", "Segment", "LzopHeader"]
)
def test_a_record_is_its_dataclass(record: Record) -> None:
    twin_cls = _twin(type(record), type(record)._NOT_COMPARED)
    twin = twin_cls(*(getattr(record, f) for f in record._FIELDS))
    assert repr(record) == repr(twin)
    assert record.asdict() == dataclasses.asdict(twin)
    assert hash(record) == hash(twin)
    assert record == copy.copy(record) == copy.deepcopy(record) == pickle.loads(pickle.dumps(record))
    assert record != twin
    for field in record._FIELDS:
        changed = record.replace(**{field: "other"})
        assert getattr(changed, field) == "other"
        assert (changed == record) is (field in record._NOT_COMPARED)
        assert (changed == record) is (dataclasses.replace(twin, **{field: "other"}) == twin)
    with pytest.raises(AttributeError):
        record.offset = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del record.offset  # type: ignore[misc]
    with pytest.raises(AttributeError):
        record.unknown = 1  # type: ignore[attr-defined]


def test_an_entry_compares_without_its_name_size() -> None:
    assert ENTRY.replace(c_namesize=99) == ENTRY
    assert {ENTRY, ENTRY.replace(c_namesize=99)} == {ENTRY}
    assert ENTRY.replace(c_ino=8) != ENTRY


def test_the_defaults_are_the_dataclass_defaults() -> None:
    assert Entry("x", 0).asdict() == {
        "name": "x", "c_mode": 0, "c_ino": 0, "c_uid": 0, "c_gid": 0, "c_nlink": 1, "c_mtime": 0,
        "c_filesize": 0, "c_devmajor": 0, "c_devminor": 0, "c_rdevmajor": 0, "c_rdevminor": 0,
        "c_check": 0, "format": "newc", "linkname": None, "offset": 0, "segment": 0, "archive": 0,
        "c_namesize": 0,
    }  # fmt: skip
    none = Codec("none", (), (), None, None)
    assert (none.levels, none.default_level, none.kernel, none.messages) == (range(0), 0, True, {})
    assert CODECS["zstd"].replace(name="z").engine is CODECS["zstd"].engine

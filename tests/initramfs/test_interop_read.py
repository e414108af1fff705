"""What bootmem lists equals what the real tools list, for archives and images they made.

Trees come from :mod:`tests.initramfs.corpus`; GNU ``cpio -t`` is the reference for names (it
stops at the first trailer, so each segment is compared with its own archive).  A name holding
a newline comes out of ``cpio -t`` as two lines: names are compared joined by newlines.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import bootmem.initramfs
from bootmem.cli import main
from bootmem.cli.output import printable
from tests.conftest import require_tool
from tests.initramfs import corpus

pytestmark = pytest.mark.peer


def _lines(names: list[str]) -> list[str]:
    return "\n".join(names).split("\n")


@pytest.mark.parametrize("tool", corpus.PEER_TOOLS)
def test_names_match_cpio_t(tool: corpus.PeerTool, peer_archive: Callable[[str], bytes]) -> None:
    data = peer_archive(tool)
    with bootmem.initramfs.open(data) as img:
        names = img.getnames()
        (seg,) = img.segments
    assert _lines(names) == corpus.peer_list(data)
    assert seg.format == ("crc" if tool == "gnu-crc" else "newc")
    assert seg.end == corpus.cpio_end(data)
    assert seg.uncompressed_size == seg.end


@pytest.mark.parametrize("tool", corpus.PEER_TOOLS)
def test_entries_match_the_tree(
    tool: corpus.PeerTool, peer_archive: Callable[[str], bytes], corpus_tree: Path
) -> None:
    with bootmem.initramfs.open(peer_archive(tool)) as img:
        members = {m.name.removeprefix("./"): m for m in img}
        for name, entry in members.items():
            path = corpus_tree / name
            st = path.lstat()
            assert entry.c_mode == st.st_mode, name
            assert entry.c_mtime == corpus.MTIME, name
            if entry.issym():
                assert entry.linkname == str(Path(path).readlink()), name
            elif entry.isreg() and entry.c_filesize:
                f = img.extractfile(entry)
                assert f is not None and f.read() == path.read_bytes(), name
            if entry.ischr() or entry.isblk():
                assert entry.rdev == (st.st_rdev >> 8, st.st_rdev & 0xFF), name


@pytest.mark.parametrize("compression", list(corpus.PEER_COMPRESSORS))
def test_distro_image_each_compression(
    compression: str, distro_image: Callable[..., corpus.DistroImage]
) -> None:
    image = distro_image(compression=compression)
    with bootmem.initramfs.open(image.data) as img:
        early, main_ = img.segments
        names = {0: [], 1: []}  # type: dict[int, list[str]]
        for entry in img:
            names[entry.segment].append(entry.name)
    assert _lines(names[0]) == corpus.peer_list(image.early)
    assert _lines(names[1]) == corpus.peer_list(image.main)
    assert (early.offset, early.end, early.compression) == (0, image.early_end, "none")
    assert (main_.offset, main_.end, main_.compression) == (image.main_offset, image.main_end, compression)
    assert main_.compressed_size == image.main_end - image.main_offset
    assert main_.uncompressed_size == len(image.main)
    assert (early.entries, main_.entries) == (len(names[0]), len(names[1]))


def test_bootmem_ls_prints_every_segment(
    distro_image: Callable[..., corpus.DistroImage], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = distro_image(compression="zstd", tool="bsdcpio")
    path = tmp_path / "initrd.img"
    path.write_bytes(image.data)
    assert main(["ls", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    with bootmem.initramfs.open(path) as img:
        names = img.getnames()
    assert out == [printable(n) for n in names]  # one line per entry, the newline escaped
    assert _lines(names) == corpus.peer_list(image.early) + corpus.peer_list(image.main)


def test_bootmem_examine_figures(
    distro_image: Callable[..., corpus.DistroImage], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    image = distro_image(compression="xz", tool="busybox")
    path = tmp_path / "initrd.img"
    path.write_bytes(image.data)
    assert main(["examine", "--json", str(path)]) == 0
    segments = json.loads(capsys.readouterr().out)["segments"]
    assert [(s["offset"], s["end"], s["compression"], s["uncompressed_size"]) for s in segments] == [
        (0, image.early_end, "none", image.early_end),
        (image.main_offset, image.main_end, "xz", len(image.main)),
    ]


def test_lsinitramfs_agrees(distro_image: Callable[..., corpus.DistroImage], tmp_path: Path) -> None:
    """initramfs-tools' lister (cpio -t over each segment it finds) sees the same names."""
    lsinitramfs = require_tool("lsinitramfs")
    image = distro_image(compression="gzip")
    path = tmp_path / "initrd.img"
    path.write_bytes(image.data)
    out = subprocess.run([lsinitramfs, str(path)], capture_output=True, check=True).stdout.decode()
    theirs = set(out.split("\n")) - {""}
    with bootmem.initramfs.open(path) as img:
        ours = set(_lines(img.getnames()))
    assert ours == theirs

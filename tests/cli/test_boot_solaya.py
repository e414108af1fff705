"""`bootmem boot --kernel solaya`: Solaya's log and figures, every difference from Linux, the same
--json, --map and --plot as a Linux boot, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bootmem.cli import main
from tests.conftest import validate_json
from tests.initramfs import corpus
from tests.kernel.conftest import small_image


@pytest.fixture
def newc(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs.cpio"
    path.write_bytes(small_image())
    return path


def test_newc_image(newc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["boot", "--kernel", "solaya", "--initrd", str(newc), "--mem", "256M", "--kernel-size", "4M"])
        == 0
    )
    out = capsys.readouterr().out
    size = newc.stat().st_size
    assert f"[CPU 0][info][kernel::initramfs] initramfs: extracting {size} bytes from /chosen\n" in out
    assert "[CPU 0][info][kernel::initramfs] initramfs: extracted 8 entries into /\n" in out
    pages = -(-size // 4096)
    assert (
        "held today" in out and f"({pages} pages)  reserved for the kernel's lifetime without the fix" in out
    )
    assert f"({pages} pages)  by the planned release_reserved after extract()" in out
    assert "differences from Linux:" in out and "  /etc/a: differs: size 0 (Linux 12)" in out


def test_compressed_multi_segment_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = corpus.build_tree(tmp_path / "root", files=30, big_mb=1)
    image = tmp_path / "distro.img"
    image.write_bytes(corpus.distro_image(tree, compression="zstd").data)
    assert main(["boot", "--kernel", "solaya", "--initrd", str(image), "--mem", "256M"]) == 0
    out = capsys.readouterr().out
    assert "initramfs: extracted 4 entries into /" in out  # the early microcode archive only
    assert "  segment 1: in zstd-compressed segment 1, which Solaya never reads" in out


def test_json_map_and_plot(newc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "boot.png"
    args = ["boot", "--kernel", "solaya", "--initrd", str(newc), "--mem", "256M", "--kernel-size", "4M"]
    timeline = tmp_path / "timeline.json"
    assert main([*args, "--json", "--plot", str(png), "--timeline", str(timeline)]) == 0
    data = json.loads(capsys.readouterr().out)
    validate_json(data, "boot-solaya")
    validate_json(json.loads(timeline.read_text()), "timeline")
    assert data["kernel"] == "solaya" and data["solaya"]["released_pages"] == data["freed_pages"] > 0
    assert png.read_bytes().startswith(b"\x89PNG")
    assert main([*args, "--map"]) == 0
    out = capsys.readouterr().out
    assert "before the release:" in out and "after the release:" in out


def test_linux_is_the_default(newc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", "--initrd", str(newc), "--mem", "256M", "--kernel", "linux"]) == 0
    assert "Freeing initrd memory:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--base", "0x40001000"], "--base 0x40001000: QEMU virt's RAM is at 0x80000000"),
        (["--cmdline", "retain_initrd"], "--cmdline does not apply to --kernel solaya"),
        (["--mem", "4M"], "leaves no heap"),
    ],
)
def test_bad_options_are_one_line(
    newc: Path, extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["boot", "--kernel", "solaya", "--initrd", str(newc), *extra]) != 0
    err = capsys.readouterr().err
    assert err.startswith("bootmem: error: ") and needle in err and err.count("\n") == 1

"""`bootmem boot --plot/--map/--timeline`: real picture files, maps, and quiet pipes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from bootmem.cli import main
from bootmem.cli.progress import progress_bar
from bootmem.report.owners import COLOURS, DESCRIPTIONS
from tests.conftest import validate_json


def test_png(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure
    from PIL import Image

    legends: list[list[str]] = []
    savefig = Figure.savefig

    def recording_savefig(fig: Figure, *args: Any, **kwargs: Any) -> None:
        legends.extend([t.get_text() for t in legend.get_texts()] for legend in fig.legends)
        savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    out = tmp_path / "boot.png"
    assert main(["boot", "--mem", "256M", "--plot", str(out)]) == 0
    with Image.open(out) as picture:
        assert picture.format == "PNG"
        picture.load()  # decodes every row: a truncated or corrupt file raises here
        # figsize (11 + 2 per memory map) x 6.4 inches at 110 dpi; two maps (before and after the release).
        assert picture.size == ((11 + 2 * 2) * 110, round(6.4 * 110))
        pixels = picture.convert("RGB").getcolors(1 << 24)
        colours = {f"#{r:02x}{g:02x}{b:02x}" for _, (r, g, b) in pixels}
    # The figure written is the one whose legend names the owners, each drawn in its colour.
    (labels,) = legends
    for owner in ("kernel", "device tree", "initrd", "rootfs", "free"):
        assert any(label.startswith(f"{owner}: {DESCRIPTIONS[owner]}") for label in labels), (owner, labels)
        assert COLOURS[owner] in colours, owner


def test_svg_names_the_owners(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "boot.svg"
    assert main(["boot", "--mem", "256M", "--plot", str(out)]) == 0
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    text = " ".join(t for el in root.iter() for t in (el.text,) if t)
    for name in ("kernel", "initrd", "rootfs", "device tree", "free", "unpack start", "release", "MiB"):
        assert name in text, name
    assert out.stat().st_size > 20_000


def test_bad_picture_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", "--plot", str(tmp_path / "boot.gif")]) == 1
    assert ".png or .svg" in capsys.readouterr().err


def test_map_before_and_after(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", "--mem", "256M", "--map"]) == 0
    out = capsys.readouterr().out
    before = out.index("before the release:")
    after = out.index("after the release:")
    assert before < after
    assert "I initrd" in out[before:after] and "I initrd" not in out[after:]
    assert "\x1b[" not in out


def test_timeline_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.json"
    assert main(["boot", "--mem", "256M", "--timeline", str(out)]) == 0
    data = json.loads(out.read_text())
    validate_json(data, "timeline")
    assert all(sum(s["pages"].values()) == data["total_pages"] for s in data["samples"])


def test_boot_quiet_when_piped(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bootmem", "boot", "--mem=256M", "--map", "--plot", str(tmp_path / "b.png")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stderr == ""
    assert "\x1b[" not in result.stdout


def test_progress_bar_silent_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    with progress_bar("work", total=10, stream=stream) as bar:
        bar.advance(5)
        bar.update(description="more", completed=10)
    with progress_bar("work") as bar:  # stderr is captured, not a terminal
        bar.advance()
    assert stream.getvalue() == ""
    assert capsys.readouterr().err == ""

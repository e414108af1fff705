"""The benchmark runner's quick mode, end to end on a tiny image, so that it cannot rot.

No timing is asserted: only that every section runs against the installed peers and that the
document and the plot are written with every section in them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import require_tool


def test_quick_run_writes_document_and_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for tool in ("bsdtar", "cpio", "zstd"):
        require_tool(tool)
    bench_main = pytest.importorskip("bench.__main__")
    monkeypatch.setenv("BOOTMEM_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "docs"

    assert bench_main.main(["--quick", "--sizes", "0.5", "--compressions", "zstd", "--out", str(out)]) == 0

    doc = (out / "BENCHMARKS.md").read_text()
    for heading in (
        "## Goals",
        "## Listing",
        "## Start-up",
        "## Extraction to disk",
        "## Creation",
        "## Creation at zstd -19",
        "## Boot against",
        "## Scaling",
        "## Allocator",
        "## Where the time goes",
    ):
        assert heading in doc
    assert "| 0.5 MB zstd |" in doc
    assert (out / "bench-scaling.png").stat().st_size > 10_000
    results = json.loads((tmp_path / "cache" / "results-quick.json").read_text())
    assert {"bootmem ls", "bsdtar -tf", "cpio -t"} <= set(results["list"][0]["samples"])


def test_render_from_saved_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench_main = pytest.importorskip("bench.__main__")
    saved = tmp_path / "results.json"
    samples = {"bootmem ls": [0.2, 0.3], "bsdtar -tf": [0.25, 0.2]}
    saved.write_text(
        json.dumps(
            {
                "meta": {
                    "date": "2024-01-01 00:00 UTC",
                    "command": "python -m bench",
                    "machine": {},
                    "tools": {},
                },
                "list": [{"title": "130 MB zstd", "samples": samples}],
            }
        )
    )
    assert bench_main.main(["--render", str(saved), "--out", str(tmp_path)]) == 0
    doc = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| 130 MB zstd | 250 ms | 225 ms (1.11x) | within 1.15x of bsdtar -tf: met |" in doc


def _saved(path: Path, date: str, rows: list[tuple[str, list[float], list[float]]]) -> Path:
    path.write_text(
        json.dumps(
            {
                "meta": {
                    "date": date,
                    "command": "python -m bench",
                    "commit": date[-5:],
                    "machine": {},
                    "tools": {},
                },
                "list": [
                    {"title": title, "samples": {"bootmem ls": ours, "bsdtar -tf": peer}}
                    for title, ours, peer in rows
                ],
            }
        )
    )
    return path


def test_render_merges_runs_later_rows_win(tmp_path: Path) -> None:
    bench_main = pytest.importorskip("bench.__main__")
    first = _saved(
        tmp_path / "a.json",
        "2024-01-01 00:00",
        [("10 MB zstd", [0.05], [0.02]), ("130 MB zstd", [0.3], [0.2])],
    )
    second = _saved(
        tmp_path / "b.json", "2024-01-02 00:00", [("130 MB zstd", [0.21], [0.2]), ("4 MB xz", [0.1], [0.1])]
    )
    assert bench_main.main(["--render", str(first), str(second), "--out", str(tmp_path)]) == 0
    doc = (tmp_path / "BENCHMARKS.md").read_text()
    assert "2024-01-01 00:00" in doc and "2024-01-02 00:00" in doc
    # 10 MB images are bound by start-up: their goal is 1.5x; the later run's 130 MB row replaces the first's
    assert "| 10 MB zstd | 50.0 ms | 20.0 ms (2.50x) | within 1.5x of bsdtar -tf: **missed** |" in doc
    assert "| 130 MB zstd | 210 ms | 200 ms (1.05x) | within 1.15x of bsdtar -tf: met |" in doc
    assert "1.50x" not in doc
    assert "| list, all 3 images: bootmem ls within 1.15x of bsdtar -tf (10 MB images: within 1.5x) | " in doc
    # rows by image size, whichever run measured them
    assert doc.index("| 4 MB xz |") < doc.index("| 10 MB zstd |") < doc.index("| 130 MB zstd |")


def test_cpu_times_are_shown_beside_the_elapsed_ones(tmp_path: Path) -> None:
    bench_main = pytest.importorskip("bench.__main__")
    from bench.timing import alternate

    c = alternate(
        "x", {"spin": lambda: sum(range(200_000)), "sleep": lambda: __import__("time").sleep(0.02)}, 2
    )
    assert min(c.cpu["spin"]) > 0 and max(c.cpu["sleep"]) < min(c.samples["sleep"])
    saved = tmp_path / "results.json"
    row = {
        "title": "130 MB zstd",
        "samples": {"bootmem ls": [0.2, 0.3], "bsdtar -tf": [0.25, 0.2]},
        "cpu": {"bootmem ls": [0.1, 0.1], "bsdtar -tf": [0.08, 0.08]},
    }
    boot = {
        "title": "130 MB zstd",
        "ram": 1 << 30,
        "samples": {"boot()": [0.4], "floor": [0.2]},
        "cpu": {"boot()": [0.3], "floor": [0.2]},
    }
    meta = {"date": "2024-01-01 00:00 UTC", "command": "python -m bench", "machine": {}, "tools": {}}
    saved.write_text(json.dumps({"meta": meta, "list": [row], "boot": [boot]}))
    assert bench_main.main(["--render", str(saved), "--out", str(tmp_path)]) == 0
    doc = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| 130 MB zstd | 250 ms; CPU 100 ms | 225 ms (1.11x; CPU 1.25x) |" in doc
    assert "| list, 130 MB zstd: bootmem ls within 1.15x of bsdtar -tf | 1.11x (CPU 1.25x) | met |" in doc
    assert "| 130 MB zstd | 1 GiB | 200 ms | - | 400 ms | 2.00x | 200 ms, 300 ms, 1.50x | **missed** |" in doc


def test_boot_table_shows_the_floor_with_a_memory_file() -> None:
    report = pytest.importorskip("bench.report")
    row = {
        "title": "130 MB zstd",
        "ram": 1 << 30,
        "samples": {"boot()": [0.4], "floor": [0.2], "floor + memory file": [0.25, 0.3, 0.26]},
    }
    table = report.boot_table([row])
    assert "floor + memory file" in table[0]
    assert "| 130 MB zstd | 1 GiB | 200 ms | 260 ms (1.30x) | 400 ms | 2.00x | - | **missed** |" in table

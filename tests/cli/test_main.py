"""The manners every `bootmem` command shares: write errors, broken pipes, usage, colour, progress."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootmem import __version__
from bootmem.cli import main
from bootmem.cli import progress as progress_module
from bootmem.cli.output import console, set_color, styled
from bootmem.initramfs.create import create_image


def bootmem(*args: str, stdout: int | object = subprocess.PIPE, env: dict[str, str] | None = None,
            stdin: object = None) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    """Run ``python -m bootmem ARGS`` with this tree's sources."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    if "NO_COLOR" not in (env or {}):
        full_env.pop("NO_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "bootmem", *args],
        stdout=stdout,  # type: ignore[arg-type]
        stderr=subprocess.PIPE,
        stdin=stdin,  # type: ignore[arg-type]
        env=full_env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    (root / "init").write_text("#!/bin/sh\n")
    (root / "init").chmod(0o755)
    for name in ("bin", "etc", "usr"):
        (root / name).mkdir()
        (root / name / "file").write_bytes(bytes(5000))
    path = tmp_path_factory.mktemp("img") / "a.img"
    create_image(path, root=root, compression="gzip")
    return path


@pytest.fixture(scope="module")
def broken_image(image: Path) -> Path:
    """An image whose gzip member is cut short: boot logs the failure and exits 1."""
    path = image.with_name("cut.img")
    path.write_bytes(image.read_bytes()[:-40])
    return path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"bootmem {__version__}"


def test_help_lists_the_tool() -> None:
    out = bootmem("--help").stdout.decode()
    assert "usage: bootmem" in out and "--color" in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: bootmem" in capsys.readouterr().out


@pytest.mark.parametrize("compression", ["zstd", "lz4", "gzip", "none"])
def test_ls_imports_only_what_listing_needs(compression: str, tmp_path: Path) -> None:
    """`bootmem ls` starts in tens of milliseconds, so its start-up is mostly imports: the boot
    model, plotting, rich, numpy and json (only --json needs it) stay out of it, and so do
    shutil (argparse's way to the terminal's width), tempfile (for images on a pipe), the
    codecs of other compressions, dataclasses with the inspect, ast, dis and tokenize it
    imports (7 ms; the records ls reads are :class:`bootmem.record.Record`), and the size
    pattern of bootmem.units (only --max-size needs it)."""
    from bootmem.initramfs.create import create_image

    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "init").write_bytes(b"#!/bin/sh\n")
    create_image(tmp_path / "img", root=tmp_path / "tree", compression=compression)
    code = (
        "import sys\nfrom bootmem.cli import main\n"
        f"main(['ls', {str(tmp_path / 'img')!r}])\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "init\n"
    loaded = set(done.stderr.split())
    heavy = {
        "json",
        "rich",
        "numpy",
        "matplotlib",
        "bootmem.kernel",
        "bootmem.mm",
        "bootmem.fs",
        "bootmem.report",
        "shutil",
        "tempfile",
        "bz2",
        "lzma",
        "dataclasses",
        "inspect",
        "ast",
        "dis",
        "tokenize",
        "bootmem.units",
    }
    assert not heavy & loaded


@pytest.mark.parametrize("columns", [None, "", "0", "-3", "wide", "7", "57", "200"])
def test_the_width_is_the_one_shutil_finds(columns: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from bootmem.cli import _columns

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert _columns() == shutil.get_terminal_size().columns
    monkeypatch.setattr(sys, "__stdout__", None)
    assert _columns() == shutil.get_terminal_size().columns


def test_help_follows_columns() -> None:
    narrow = bootmem("ls", "--help", env={"COLUMNS": "50"}).stdout.decode()
    wide = bootmem("ls", "--help", env={"COLUMNS": "200"}).stdout.decode()
    assert max(len(line) for line in narrow.splitlines()) <= 48
    assert max(len(line) for line in wide.splitlines()) > 100


def test_extract_imports_no_memory_model(tmp_path: Path) -> None:
    """`bootmem extract` runs the kernel's unpacker but not its memory model: numpy (about 40 ms
    of start-up), the allocators, the modelled tmpfs (and hashlib with it), reports and plotting
    stay out of it, and so do tempfile and shutil (only a hardlink set selected in part needs
    a private directory)."""
    from bootmem.initramfs.create import create_image

    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "init").write_bytes(b"#!/bin/sh\n")
    create_image(tmp_path / "img", root=tmp_path / "tree", compression="zstd")
    code = (
        "import sys\nfrom bootmem.cli import main\n"
        f"main(['extract', {str(tmp_path / 'img')!r}, {str(tmp_path / 'out')!r}])\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (tmp_path / "out" / "init").read_bytes() == b"#!/bin/sh\n"
    loaded = set(done.stderr.split())
    heavy = {"numpy", "rich", "matplotlib", "bootmem.mm", "bootmem.fs", "bootmem.report"}
    assert not (heavy | {"hashlib", "tempfile", "shutil"}) & loaded


# --- write errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "status"),
    [(["--version"], 1), (["--help"], 1), (["ls", "--help"], 1), (["ls", "IMAGE"], 1),
     (["examine", "IMAGE"], 1), (["boot", "--mem", "256M"], 1), (["diff", "IMAGE", "OTHER"], 2)],
)  # fmt: skip
def test_a_write_error_on_stdout_is_reported(
    args: list[str], status: int, image: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.img"
    create_image(other, root=Path(__file__).parent)
    args = [str(image) if a == "IMAGE" else str(other) if a == "OTHER" else a for a in args]
    with open("/dev/full", "wb") as full:
        proc = bootmem(*args, stdout=full)
    assert proc.returncode == status
    assert proc.stderr.decode() == "bootmem: error: write error: No space left on device\n"


def test_running_out_of_host_memory_is_one_line(
    monkeypatch: pytest.MonkeyPatch, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bootmem.initramfs.image import Image

    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(Image, "__init__", exhausted)
    assert main(["ls", str(image)]) == 1
    assert capsys.readouterr().err == "bootmem: error: out of host memory in ls\n"


def test_a_reader_that_goes_away_keeps_the_exit_status(image: Path, broken_image: Path) -> None:
    for path, status in ((image, 0), (broken_image, 1)):
        unpiped = bootmem("boot", "--mem", "256M", "--initrd", str(path))
        assert unpiped.returncode == status
        read, write = os.pipe()
        os.close(read)  # every write gets EPIPE, as `| head -2` after its two lines
        try:
            piped = bootmem("boot", "--mem", "256M", "--initrd", str(path), stdout=write)
        finally:
            os.close(write)
        assert (piped.returncode, piped.stderr) == (status, b""), piped.stderr


# --- inputs and usage -------------------------------------------------------------------------


def test_ls_of_a_pipe_names_the_file_and_the_reason(image: Path) -> None:
    feeder = subprocess.Popen(["cat", str(image)], stdout=subprocess.PIPE)
    try:
        proc = bootmem("ls", "/dev/stdin", stdin=feeder.stdout)
    finally:
        assert feeder.stdout is not None
        feeder.stdout.close()
        feeder.wait()
    assert proc.returncode == 1
    message = proc.stderr.decode()
    assert message.startswith("bootmem: error: '/dev/stdin': Illegal seek: not a seekable file ('-' reads")
    assert message.count("\n") == 1


def test_a_bad_option_prints_the_subcommands_usage(image: Path) -> None:
    proc = bootmem("ls", str(image), "usr/*", "--bogus")
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert (
        err.startswith("usage: bootmem ls ") and "bootmem ls: error: unrecognized arguments: --bogus" in err
    )


def test_ls_with_a_pattern_lists_it(image: Path) -> None:
    proc = bootmem("ls", str(image), "usr/*")
    assert (proc.returncode, proc.stdout) == (0, b"usr/file\n")


# --- colour -------------------------------------------------------------------------------------


def on_a_terminal(*args: str, env: dict[str, str]) -> str:
    """What ``bootmem ARGS`` writes to a terminal (a pseudo-terminal as stdout and stderr)."""
    leader, follower = pty.openpty()
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "100", **env}
    if "NO_COLOR" not in env:
        full_env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bootmem", *args], stdout=follower, stderr=follower, env=full_env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=120)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize(
    ("args", "env", "escapes"),
    [
        ([], {}, True),
        ([], {"NO_COLOR": "1"}, False),
        (["--color=never"], {}, False),
        (["--color=always"], {"NO_COLOR": "1"}, True),
    ],
)
def test_styling_follows_no_color_and_the_color_option(
    args: list[str], env: dict[str, str], escapes: bool
) -> None:
    out = on_a_terminal(*args, "boot", "--mem", "256M", env=env)
    assert "Freeing initrd memory" in out
    # NO_COLOR drops bold too, not only colour: no escape sequence at all.
    assert ("\x1b[" in out) is escapes


def test_color_always_styles_a_pipe_and_the_option_goes_after_the_command_too() -> None:
    assert b"\x1b[" in bootmem("boot", "--mem", "256M", "--color=always").stdout
    assert b"\x1b[" not in bootmem("boot", "--mem", "256M").stdout


@pytest.mark.parametrize("kernel", ["linux", "solaya"])
def test_the_memory_map_follows_the_color_option(kernel: str) -> None:
    args = ("boot", "--kernel", kernel, "--mem", "256M", "--map")
    assert b"\x1b[" in bootmem(*args, "--color=always").stdout
    assert b"\x1b[" not in on_a_terminal(*args, env={"NO_COLOR": "1"}).encode()


def test_styled_and_console(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    try:
        set_color("auto")
        assert styled(Terminal()) and not styled(io.StringIO())
        monkeypatch.setenv("NO_COLOR", "")  # empty: not set, as no-color.org says
        assert styled(Terminal())
        monkeypatch.setenv("NO_COLOR", "1")
        assert not styled(Terminal())
        out = Terminal()
        console(out).print("[bold]bold[/bold]")
        assert out.getvalue() == "bold\n"
        set_color("always")
        out = io.StringIO()
        console(out).print("[bold]bold[/bold]")
        assert "\x1b[1m" in out.getvalue()
    finally:
        set_color("auto")


# --- progress -----------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_progress_for_work_under_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "DELAY", 0.3)
    stream = _Terminal()
    with progress_module.progress_bar("quick", unit="bytes", stream=stream) as bar:
        bar.advance(4096)
    assert stream.getvalue() == ""
    stream = _Terminal()
    with progress_module.progress_bar("slow", unit="bytes", stream=stream) as bar:
        bar.advance(4096)
        time.sleep(0.8)
    assert "slow" in stream.getvalue()


def test_extract_prints_its_totals_and_create_its_progress_on_a_terminal(image: Path, tmp_path: Path) -> None:
    out = on_a_terminal("extract", str(image), str(tmp_path / "x"), env={})
    assert "bootmem: extracted 4 files, 14.7 KiB" in out
    assert "?" not in out
    big = tmp_path / "big"
    big.mkdir()
    (big / "data").write_bytes(os.urandom(24 << 20))
    out = on_a_terminal("create", str(big), "-o", str(tmp_path / "big.img"), "--compress", "xz:9", env={})
    assert "archiving" in out


def test_patterns_may_follow_options(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", str(image), "--sort", "name", "usr/*", "--segment", "0", "etc"]) == 0
    assert capsys.readouterr().out == "etc\netc/file\nusr/file\n"

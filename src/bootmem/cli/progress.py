"""Progress bars on stderr for long work, and silence when stderr is not a terminal.

A bar appears only once the work has run for :data:`DELAY` seconds, so quick commands print
nothing; it is transient (erased when the work ends) and styled as ``--color`` says.

>>> with progress_bar("unpacking", unit="bytes") as bar:   # a no-op when piped
...     bar.advance(4096)
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, Protocol, TextIO

from bootmem.units import format_size

Unit = Literal["bytes", "steps", "none"]

#: Seconds of work before a bar is shown.
DELAY = 0.5


class Bar(Protocol):
    """What a caller does with a progress bar."""

    def advance(self, amount: float = 1) -> None: ...

    def update(
        self, *, total: float | None = None, completed: float | None = None, description: str | None = None
    ) -> None: ...


class _Quiet:
    def advance(self, amount: float = 1) -> None:
        pass

    def update(
        self, *, total: float | None = None, completed: float | None = None, description: str | None = None
    ) -> None:
        pass


class _RichBar:
    """A rich task that the progress display shows once :data:`DELAY` has passed."""

    def __init__(self, progress: Any, task: Any) -> None:
        self._progress = progress
        self._task = task
        self._shown = threading.Event()
        self._ended = threading.Event()
        self._timer = threading.Thread(target=self._show_later, name="bootmem-progress", daemon=True)
        self._timer.start()

    def _show_later(self) -> None:
        if not self._ended.wait(DELAY):
            self._progress.start()
            self._shown.set()

    def end(self) -> None:
        self._ended.set()
        self._timer.join()
        if self._shown.is_set():
            self._progress.stop()

    def advance(self, amount: float = 1) -> None:
        self._progress.advance(self._task, amount)

    def update(
        self, *, total: float | None = None, completed: float | None = None, description: str | None = None
    ) -> None:
        fields: dict[str, Any] = {}
        if total is not None:
            fields["total"] = total
        if completed is not None:
            fields["completed"] = completed
        if description is not None:
            fields["description"] = description
        self._progress.update(self._task, **fields)


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr) is a terminal."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def progress_bar(
    description: str,
    *,
    total: float | None = None,
    unit: Unit = "steps",
    stream: TextIO | None = None,
) -> Iterator[Bar]:
    """A transient rich progress bar on ``stream`` (default stderr) when it is a terminal,
    shown after :data:`DELAY` seconds of work.

    ``total`` ``None`` shows the amount done and the time, without a fraction; ``unit="bytes"``
    shows sizes as ``2.1 MiB``, ``unit="none"`` only the time.  When the stream is not a
    terminal the bar does nothing and nothing is written.
    """
    stream = stream if stream is not None else sys.stderr
    if not is_terminal(stream):
        yield _Quiet()
        return
    from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
    from rich.text import Text

    from bootmem.cli.output import console

    class _Amount(ProgressColumn):
        def render(self, task: Task) -> Text:
            if unit == "none":
                return Text("")
            if unit == "bytes":
                done = format_size(int(task.completed))
                whole = f" / {format_size(int(task.total))}" if task.total is not None else ""
            else:
                done = f"{int(task.completed)}"
                whole = f"/{int(task.total)}" if task.total is not None else ""
            return Text(done + whole, style="progress.download")

    columns = (TextColumn("{task.description}"), BarColumn(), _Amount(), TimeElapsedColumn())
    progress = Progress(
        *columns, transient=True, console=console(stream), redirect_stdout=False, redirect_stderr=False
    )
    task = progress.add_task(description, total=total)
    bar = _RichBar(progress, task)
    try:
        yield bar
    finally:
        bar.end()

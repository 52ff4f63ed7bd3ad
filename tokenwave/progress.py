"""Progress bars for long work (rich)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def progress_bar(description: str, total: float | None, unit: str = "") -> Iterator["_Bar"]:
    """A rich progress bar; ``bar.advance(n)`` moves it. Rendered on stderr, so JSON on stdout stays clean."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.completed:.0f}/{task.total:.0f} " + unit) if unit else MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield _Bar(progress, task)


class _Bar:
    def __init__(self, progress: Progress, task) -> None:
        self._p, self._t = progress, task

    def advance(self, n: float = 1.0) -> None:
        self._p.advance(self._t, n)

    def update(self, **kw) -> None:
        self._p.update(self._t, **kw)

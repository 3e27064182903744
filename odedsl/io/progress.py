"""The commands' progress bars: rich, on stderr, and only when stderr is a terminal (a log file gets none)."""

from __future__ import annotations

import sys


class Bar:
    """One progress bar, a context manager: ``open`` shows it, ``update`` moves it, leaving the block hides it.

    ``fields`` is a rich template over the task's fields (``"loss {task.fields[loss]}"``);
    with a ``total`` the bar shows done/total and the time remaining, without one a count.
    """

    def __init__(self, enabled: bool, label: str, fields: str = "", unit: str = "") -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.label, self.fields, self.unit = label, fields, unit
        self.progress = None
        self.task = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def open(self, total: int | None = None, completed: int = 0, **fields) -> None:
        if not self.enabled or self.progress is not None:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        count = [BarColumn(), MofNCompleteColumn()] if total is not None else \
            [TextColumn("{task.completed} " + self.unit)]
        columns = [TextColumn(self.label), *count, TextColumn(self.fields), TimeElapsedColumn()]
        if total is not None:
            columns.append(TimeRemainingColumn())
        self.progress = Progress(*columns, console=Console(stderr=True), transient=True)
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=total, completed=completed, **fields)

    def update(self, **changes) -> None:
        if self.progress is not None:
            self.progress.update(self.task, **changes)
